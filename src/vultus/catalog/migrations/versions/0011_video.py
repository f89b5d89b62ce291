"""Video: an image row may be a video (kind, duration), and each of its faces a face track
with its time span, sampled boxes and best frame's sealed crop.

Revision ID: 0011
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("kind", sa.String(8), nullable=False, server_default="photo"))
        batch.add_column(sa.Column("duration_s", sa.Float(), nullable=True))
    op.create_table(
        "face_tracks",
        sa.Column(
            "face_id",
            sa.Integer(),
            sa.ForeignKey("faces.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("best_s", sa.Float(), nullable=False),
        sa.Column("detections", sa.Integer(), nullable=False),
        sa.Column("boxes", sa.JSON(), nullable=False),
        sa.Column("crop", sa.LargeBinary(), nullable=False),
        sa.Column("crop_box", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("face_tracks")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("duration_s")
        batch.drop_column("kind")
