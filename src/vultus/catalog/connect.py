"""Opening a catalog: the two databases Vultus supports, their connection set-up, and the
migrations applied on open."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from vultus.catalog import postgresql
from vultus.catalog.changes import install_triggers
from vultus.catalog.store import Catalog
from vultus.crypto import KeyRing
from vultus.errors import ConfigError
from vultus.files import private_file


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers (a server, a second CLI) work while ingest writes; foreign keys make
    # deletes cascade; NORMAL sync is durable at every transaction boundary under WAL.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    # Erasure must leave no bytes behind: overwrite deleted content instead of freeing pages.
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()


MIGRATIONS = Path(__file__).parent / "migrations"
_REVISION_LINE = re.compile(r"^(down_)?revision\b[^=]*=(.*)$", re.MULTILINE)


def script_heads() -> set[str]:
    """The newest migration(s), read from the scripts' `revision` and `down_revision` lines:
    what a catalog at head has in alembic_version. Reading them takes a millisecond; loading
    Alembic to ask it takes half a second, on every command."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        for down, value in _REVISION_LINE.findall(script.read_text()):
            names = set(re.findall(r"[\"']([^\"']+)[\"']", value))
            (parents if down else revisions).update(names)
    return revisions - parents


def _at_head(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            stamped = set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except DBAPIError:  # no such table (a new catalog), or no connection: Alembic decides
        return False
    return stamped == script_heads()


def _migrate(engine: Engine) -> None:
    if _at_head(engine):
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _create_engine(url: str, *, pooled: bool = True) -> Engine:
    """An engine for one of the two catalogs Vultus supports: SQLite or PostgreSQL. Unpooled:
    for one look, closed at once."""
    url = postgresql.normalise_url(url)
    if not url.startswith(("sqlite:///", "postgresql+")):
        raise ConfigError(
            f"catalog_url {url.split(':', 1)[0]}:... is not supported: use sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DATABASE",
            code="catalog_url",
        )
    try:
        if not pooled:
            return create_engine(url, poolclass=NullPool)
        if url.startswith("sqlite:///"):
            return create_engine(url)
        return create_engine(url, **postgresql.POOL_OPTIONS)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"the catalog's database driver is not installed ({exc.name}): "
            "pip install 'vultus[postgres]'",
            code="catalog_driver",
        ) from exc


def _unavailable(engine: Engine, exc: OperationalError) -> ConfigError:
    where = engine.url.render_as_string(hide_password=True)
    return ConfigError(
        f"cannot open the catalog at {where}: {exc.orig}", code="catalog_unavailable"
    )


def catalog_exists(url: str) -> bool:
    """Whether a catalog was ever created at this URL (opening it creates it)."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).exists()
    engine = _create_engine(url, pooled=False)
    try:
        return inspect(engine).has_table("alembic_version")
    except OperationalError as exc:
        raise _unavailable(engine, exc) from exc
    finally:
        engine.dispose()


def open_catalog(url: str, keyring: KeyRing | None = None) -> Catalog:
    """Open (creating and migrating as needed) the catalog at a SQLAlchemy URL. The key ring
    seals templates; without one the catalog can be read and audited but holds no templates."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        # SQLite would create it with the umask's mode, often world-readable; its -wal and
        # -shm files take the database file's mode.
        private_file(path)
    engine = _create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        postgresql.prepare(engine)
    try:
        _migrate(engine)
        install_triggers(engine)
    except OperationalError as exc:
        engine.dispose()
        raise _unavailable(engine, exc) from exc
    return Catalog(engine, keyring)
