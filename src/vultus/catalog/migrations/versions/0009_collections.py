"""Clients of other face services: AWS-style credentials of API keys (the secret sealed, since a
SigV4 signature is checked with the secret itself) and collections of faces, with their users.

Revision ID: 0009
Revises: 0008 (0007 until the branch took 0008 in with the key bindings)
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aws_credentials",
        sa.Column(
            "key_id",
            sa.Integer(),
            sa.ForeignKey("api_keys.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("access_key_id", sa.String(32), nullable=False, unique=True),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("source_id", sa.Integer(), sa.ForeignKey("sources.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_collections_source_id", "collections", ["source_id"])
    op.create_table(
        "collection_faces",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column(
            "collection_id",
            sa.Integer(),
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "face_id", sa.Integer(), sa.ForeignKey("faces.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("image_uuid", sa.String(36), nullable=False),
        sa.Column("external_image_id", sa.String(255), nullable=True),
        sa.Column("user_id", sa.String(128), nullable=True),
        sa.Column("added_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("collection_id", "face_id", name="uq_collection_face"),
    )
    op.create_index("ix_collection_faces_collection_id", "collection_faces", ["collection_id"])
    op.create_index("ix_collection_faces_face_id", "collection_faces", ["face_id"])
    op.create_table(
        "collection_users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "collection_id",
            sa.Integer(),
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("collection_id", "user_id", name="uq_collection_user"),
    )
    op.create_index("ix_collection_users_collection_id", "collection_users", ["collection_id"])


def downgrade() -> None:
    op.drop_table("collection_users")
    op.drop_table("collection_faces")
    op.drop_table("collections")
    op.drop_table("aws_credentials")
