"""Alembic environment. Vultus runs migrations itself when it opens a catalog, passing the
connection in `config.attributes`; `alembic` on the command line is not needed."""

from alembic import context

from vultus.catalog.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable from a hand-run alembic
    raise RuntimeError("open the catalog through vultus.catalog.open_catalog()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies tables instead
)
with context.begin_transaction():
    context.run_migrations()
