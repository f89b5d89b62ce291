"""Re-embedding: faces analysed by the next model, staged until the swap.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reembed_staging",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("image_id", sa.Integer(), nullable=False, index=True),
        sa.Column("face_id", sa.Integer(), nullable=True),
        sa.Column("expect_faces", sa.JSON(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("face", sa.JSON(), nullable=True),
        sa.Column("template", sa.LargeBinary(), nullable=True),
        sa.Column("model_id", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("reembed_staging")
