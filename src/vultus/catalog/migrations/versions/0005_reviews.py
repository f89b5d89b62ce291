"""Rights requests reviewed by a person: the review (candidates in tiers and the reviewer's
decisions) and the receipt on the request; which request made a suppression entry; a source
setting that lets Vultus delete originals on erasure; and an index on restricted faces.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rights_requests") as batch:
        batch.add_column(sa.Column("review", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("receipt_id", sa.String(64), nullable=True))
    with op.batch_alter_table("suppression") as batch:
        batch.add_column(sa.Column("request_ref", sa.String(32), nullable=True))
    # Every rights request reads the restricted faces (they are out of the vector index): found
    # by an index, not by scanning every face of a large catalog.
    op.create_index("ix_faces_restricted", "faces", ["restricted"])
    with op.batch_alter_table("sources") as batch:
        batch.add_column(
            sa.Column(
                "originals_deletable", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )


def downgrade() -> None:
    op.drop_index("ix_faces_restricted", table_name="faces")
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("originals_deletable")
    with op.batch_alter_table("suppression") as batch:
        batch.drop_column("request_ref")
    with op.batch_alter_table("rights_requests") as batch:
        batch.drop_column("receipt_id")
        batch.drop_column("review")
