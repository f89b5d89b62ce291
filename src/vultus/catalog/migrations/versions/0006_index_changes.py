"""Several processes on one data directory: the change feed of `faces` for the vector index,
from which every process holding an index in memory catches up (see vultus.catalog.changes;
its triggers are installed on every open); and the owner of an ingest run, so that a later run
closes one whose process died.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "index_changes",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("face_id", sa.Integer(), nullable=False),
        sa.Column("op", sa.String(1), nullable=False),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("ingest_runs") as batch:
        batch.add_column(sa.Column("owner", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ingest_runs") as batch:
        batch.drop_column("owner")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS vultus_index_insert_delete ON faces")
        op.execute("DROP TRIGGER IF EXISTS vultus_index_update ON faces")
        op.execute("DROP FUNCTION IF EXISTS vultus_index_change()")
    else:
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS vultus_index_{name}")
    op.drop_table("index_changes")
