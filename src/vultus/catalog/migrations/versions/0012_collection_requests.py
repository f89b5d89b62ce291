"""Idempotent Rekognition requests: the answer to each request that carried a
`ClientRequestToken`, kept a day, so that a client's retry has no second effect.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "collection_requests",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "collection_id",
            sa.Integer(),
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key_name", sa.String(200), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("key_name", "operation", "token", name="uq_collection_request"),
    )
    op.create_index(
        "ix_collection_requests_collection_id", "collection_requests", ["collection_id"]
    )
    op.create_index("ix_collection_requests_at", "collection_requests", ["at"])


def downgrade() -> None:
    op.drop_table("collection_requests")
