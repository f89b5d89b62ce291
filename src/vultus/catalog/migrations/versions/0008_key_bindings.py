"""Keys with several roles, bound to a purpose, a case reference and a source: for clients
(CompreFace, AWS Rekognition) that use one key to add and to search, and cannot state a
purpose on each call. The `role` column widens to hold "operator+investigator".

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column(
            "role", existing_type=sa.String(32), type_=sa.String(100), existing_nullable=False
        )
        batch.add_column(sa.Column("purpose", sa.String(200), nullable=True))
        batch.add_column(sa.Column("case_ref", sa.String(200), nullable=True))
        batch.add_column(sa.Column("source", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("source")
        batch.drop_column("case_ref")
        batch.drop_column("purpose")
        batch.alter_column(
            "role", existing_type=sa.String(100), type_=sa.String(32), existing_nullable=False
        )
