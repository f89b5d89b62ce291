"""The catalog's change feed for the vector index: every process that holds an index in memory
(a server, a CLI command beside it) reads here what the others changed.

Triggers on `faces`, not the code that writes faces, append to `index_changes`: a face added
("I"), deleted ("D") or whose searchability changed ("U": status, restriction, model), in the
same transaction as the change. No writer can forget to record one, and a change that rolls
back leaves no record. Each process remembers the last `seq` it applied; see
`vultus.index.keeper` for how it catches up, and docs/processes.md for why.

Only face ids and an operation are recorded, never templates or anything else about a person.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, delete, func, select, text

from vultus.catalog.models import IndexChange, Meta

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

# Meta keys: the last seq the persisted index reflects (written with each save), and the last
# seq pruned from the feed (a process that had not read that far reloads the saved index).
SAVED_THROUGH = "index_saved_through"
PRUNED_THROUGH = "index_changes_pruned"
# Changes kept beyond what the saved index reflects, so that a process a little behind catches
# up from the feed instead of reloading the whole index.
KEEP_CHANGES = 100_000

_CHANGE_HEAD = select(func.max(IndexChange.seq))

_SQLITE_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS vultus_index_insert AFTER INSERT ON faces
    BEGIN INSERT INTO index_changes (face_id, op) VALUES (NEW.id, 'I'); END""",
    """CREATE TRIGGER IF NOT EXISTS vultus_index_delete AFTER DELETE ON faces
    BEGIN INSERT INTO index_changes (face_id, op) VALUES (OLD.id, 'D'); END""",
    """CREATE TRIGGER IF NOT EXISTS vultus_index_update
    AFTER UPDATE OF status, restricted, model_id ON faces
    WHEN OLD.status IS NOT NEW.status OR OLD.restricted IS NOT NEW.restricted
        OR OLD.model_id IS NOT NEW.model_id
    BEGIN INSERT INTO index_changes (face_id, op) VALUES (NEW.id, 'U'); END""",
)

# PostgreSQL hands out sequence numbers at insert, not at commit: two writers could commit
# out of order and a reader that saw the later one would skip the earlier. The table lock
# (held to commit; readers are not blocked) makes seq order the commit order, as SQLite's
# single writer does by itself.
_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION vultus_index_change() RETURNS trigger AS $$
BEGIN
    LOCK TABLE index_changes IN EXCLUSIVE MODE;
    IF TG_OP = 'DELETE' THEN
        INSERT INTO index_changes (face_id, op) VALUES (OLD.id, 'D');
        RETURN OLD;
    END IF;
    INSERT INTO index_changes (face_id, op)
        VALUES (NEW.id, CASE WHEN TG_OP = 'INSERT' THEN 'I' ELSE 'U' END);
    RETURN NEW;
END $$ LANGUAGE plpgsql
"""
_PG_TRIGGERS = (
    """CREATE TRIGGER vultus_index_insert_delete AFTER INSERT OR DELETE ON faces
    FOR EACH ROW EXECUTE FUNCTION vultus_index_change()""",
    """CREATE TRIGGER vultus_index_update AFTER UPDATE OF status, restricted, model_id ON faces
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
        OR OLD.restricted IS DISTINCT FROM NEW.restricted
        OR OLD.model_id IS DISTINCT FROM NEW.model_id)
    EXECUTE FUNCTION vultus_index_change()""",
)


def install_triggers(engine: Engine) -> None:
    """Create the triggers that feed `index_changes`, where missing. Run on every open, not
    only by the migration: SQLite drops a table's triggers when a later migration rebuilds it
    (batch mode), and the feed must never silently stop."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            for statement in _SQLITE_TRIGGERS:
                conn.exec_driver_sql(statement)
            return
        if _pg_triggers(conn) == 2:
            return
        conn.exec_driver_sql(_PG_FUNCTION)
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS vultus_index_insert_delete ON faces")
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS vultus_index_update ON faces")
        for statement in _PG_TRIGGERS:
            conn.exec_driver_sql(statement)


def _pg_triggers(conn: Connection) -> int:
    return int(
        conn.execute(
            text(
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'faces'::regclass "
                "AND tgname IN ('vultus_index_insert_delete', 'vultus_index_update')"
            )
        ).scalar_one()
    )


class ChangeQueries:
    """Mixed into `Catalog`: reading and pruning the change feed."""

    if TYPE_CHECKING:
        engine: Engine

        def session(self) -> Session: ...
        def get_meta(self, key: str) -> str | None: ...

    def change_head(self) -> int:
        """The last change recorded (0 before any). Read before every search (has the index
        missed a change?), so on a plain connection: an ORM session cost 0.3 ms of it."""
        with self.engine.connect() as conn:
            return int(conn.execute(_CHANGE_HEAD).scalar() or 0)

    def changes_since(self, seq: int) -> tuple[int, dict[int, bool]]:
        """The changes after `seq`: (the last seq read, {face id: deleted at least once}).
        A deletion matters apart: SQLite may give a new face the id of a deleted one."""
        with self.session() as s:
            rows = s.execute(
                select(IndexChange.seq, IndexChange.face_id, IndexChange.op)
                .where(IndexChange.seq > seq)
                .order_by(IndexChange.seq)
            ).all()
        changed: dict[int, bool] = {}
        for _, face_id, op in rows:
            changed[int(face_id)] = changed.get(int(face_id), False) or op == "D"
        return (int(rows[-1][0]) if rows else seq), changed

    def meta_int(self, key: str) -> int | None:
        value = self.get_meta(key)
        return int(value) if value is not None else None

    def mark_saved(self, seq: int) -> None:
        """Record that the persisted index reflects every change up to `seq`, and prune the
        feed below what it and the last KEEP_CHANGES need."""
        with self.session() as s, s.begin():
            s.merge(Meta(key=SAVED_THROUGH, value=str(seq)))
            below = seq - KEEP_CHANGES
            if below > 0 and s.scalar(
                select(IndexChange.seq).where(IndexChange.seq <= below).limit(1)
            ):
                s.execute(delete(IndexChange).where(IndexChange.seq <= below))
                s.merge(Meta(key=PRUNED_THROUGH, value=str(below)))
