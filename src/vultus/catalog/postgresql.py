"""What the catalog does differently on PostgreSQL: its connection pool, its scrub after an
erasure, and a clear error for what SQLite lets through. `store.open_catalog` applies these."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext, make_url

from vultus.errors import ConfigError

DRIVER = "postgresql+psycopg"

# The server calls the catalog from many threads at once (a request pool plus the job runner):
# each checks a connection out of this pool. Pre-ping: a restarted or failed-over database
# costs one reconnect instead of a failed request; recycle: no connection outlives the idle
# timeouts of proxies such as PgBouncer.
POOL_OPTIONS: dict[str, Any] = {
    "pool_size": 10,
    "max_overflow": 20,
    "pool_timeout": 30,
    "pool_pre_ping": True,
    "pool_recycle": 1800,
}

# The tables whose rows erasure, a suppression removal or a key rotation deletes or rewrites.
SCRUBBED_TABLES = ("faces", "images", "suppression", "rights_requests", "consents", "meta")

# SQLSTATE 22001: a value longer than its VARCHAR(n). SQLite never checks lengths.
STRING_TOO_LONG = "22001"


def normalise_url(url: str) -> str:
    """`postgresql://...` means psycopg 3 here, the driver Vultus installs (SQLAlchemy's own
    default for that scheme is psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        return parsed.set(drivername=DRIVER).render_as_string(hide_password=False)
    return url


def prepare(engine: Engine) -> None:
    event.listen(engine, "handle_error", _clear_errors)


def _clear_errors(context: ExceptionContext) -> None:
    if getattr(context.original_exception, "sqlstate", None) == STRING_TOO_LONG:
        raise ConfigError(
            f"a value is longer than the catalog allows ({context.original_exception}); "
            "shorten it: nothing was written",
            code="value_too_long",
        ) from context.original_exception


def scrub(engine: Engine) -> None:
    """After an erasure: VACUUM the tables it touched, so the deleted rows' dead tuples (and
    older versions of rewritten rows) are reclaimed instead of lingering until autovacuum.

    What this does not guarantee (measured on PostgreSQL 15, 2,000 faces): VACUUM compacts the
    pages that keep live rows, which overwrote every erased template when one face in ten was
    erased; but it does not zero a page it empties, so erasing a run of consecutive rows (a
    consent withdrawal, a retention purge) left all 300 templates in the table file until new
    rows reused the pages. The WAL keeps them until it is recycled, and so do base backups and
    replicas. VACUUM FULL removes them, but it holds an exclusive lock for the whole rewrite of
    the table, which no erasure should impose on a large catalog. What may be left is
    ciphertext: templates and selfies are sealed with AES-256-GCM under the master key, so a
    key rotation (`vultus keys rotate`), once the old key is destroyed, makes every such copy
    unreadable.
    """
    tables = ", ".join(f'"{t}"' for t in SCRUBBED_TABLES)
    # VACUUM cannot run inside a transaction block.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"VACUUM {tables}")
