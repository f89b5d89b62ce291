"""Photos named as the integrator knows them: the file name an upload was sent with (its
stored copy is named by its content) and the integrator's own id for the photo, set at upload.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("original_name", sa.String(255), nullable=True))
        batch.add_column(sa.Column("external_id", sa.String(200), nullable=True))
        batch.create_index("ix_images_external_id", ["external_id"])


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_index("ix_images_external_id")
        batch.drop_column("external_id")
        batch.drop_column("original_name")
