"""Data protection: audit log, suppression list, consents, rights requests, restriction flags.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("seq", sa.Integer(), nullable=False, unique=True),
        sa.Column("at", sa.DateTime(), nullable=False, index=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False, index=True),
        sa.Column("purpose", sa.String(200), nullable=True),
        sa.Column("case_ref", sa.String(200), nullable=True),
        sa.Column("query_hash", sa.String(64), nullable=True),
        sa.Column("result_ids", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "suppression",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("template", sa.LargeBinary(), nullable=False),
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "source_id", sa.Integer(), sa.ForeignKey("sources.id"), nullable=False, index=True
        ),
        sa.Column("person", sa.String(200), nullable=False),
        sa.Column("given_at", sa.DateTime(), nullable=False),
        sa.Column("notice_version", sa.String(64), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "rights_requests",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("ref", sa.String(32), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False, index=True),
        sa.Column("extended_until", sa.DateTime(), nullable=True),
        sa.Column("extension_reason", sa.Text(), nullable=True),
        sa.Column("contact", sa.String(320), nullable=True),
        sa.Column("selfie", sa.LargeBinary(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
    )
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("consent_id", sa.Integer(), nullable=True))
        batch.create_index("ix_images_consent_id", ["consent_id"])
        batch.create_foreign_key("fk_images_consent_id", "consents", ["consent_id"], ["id"])
    with op.batch_alter_table("ingest_runs") as batch:
        batch.add_column(
            sa.Column("faces_suppressed", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("subjects") as batch:
        batch.add_column(
            sa.Column("restricted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("faces") as batch:
        batch.add_column(
            sa.Column("restricted", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("faces") as batch:
        batch.drop_column("restricted")
    with op.batch_alter_table("subjects") as batch:
        batch.drop_column("restricted")
    with op.batch_alter_table("ingest_runs") as batch:
        batch.drop_column("faces_suppressed")
    with op.batch_alter_table("images") as batch:
        batch.drop_constraint("fk_images_consent_id", type_="foreignkey")
        batch.drop_index("ix_images_consent_id")
        batch.drop_column("consent_id")
    for table in ("rights_requests", "consents", "suppression", "audit_log"):
        op.drop_table(table)
