"""People discovery remembers what reviewers decided: a face is not the person of the faces it
was proposed with, not a named subject, or hidden from proposals.

Revision ID: 0010
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "person_decisions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "face_id", sa.Integer(), sa.ForeignKey("faces.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column(
            "subject_id",
            sa.Integer(),
            sa.ForeignKey("subjects.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("others", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_person_decisions_face_id", "person_decisions", ["face_id"])
    op.create_index("ix_person_decisions_kind", "person_decisions", ["kind"])
    op.create_index("ix_person_decisions_subject_id", "person_decisions", ["subject_id"])


def downgrade() -> None:
    op.drop_table("person_decisions")
