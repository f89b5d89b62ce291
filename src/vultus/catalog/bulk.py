"""Bulk inserts for the ingest write path: ids allocated up front, then every row in one
statement stream (SQLite: executemany; PostgreSQL: COPY).

Building an ORM object per row and flushing them held ingest to about 500 faces a second, and
SQLAlchemy's multi-row INSERT ... RETURNING falls back to a statement per row wherever it must
match returned ids to rows. Allocating the ids first removes the need to read any back:

* SQLite: the caller's transaction has already written (it holds the database's one write
  lock), so no other writer can take ids between reading the largest id and inserting; the
  ids are the ones SQLite itself would have chosen (the largest plus one, and on).
* PostgreSQL: the ids are drawn from the column's own sequence (`nextval`), as a default
  would draw them, so concurrent writers never collide.

The per-row triggers that feed `index_changes` fire for these rows as for any other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, func, select, text
from sqlalchemy.orm import Session

from vultus.catalog.models import Base
from vultus.catalog.postgresql import STRING_TOO_LONG
from vultus.errors import ConfigError


def allocate_ids(session: Session, model: type[Base], n: int) -> list[int]:
    """`n` fresh ids for the integer primary key `id` of `model`'s table. On SQLite the
    session's transaction must already have written (see the module docstring)."""
    table = cast(Table, model.__table__)
    if n <= 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        sequence = session.scalar(
            text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": table.name}
        )
        rows = session.scalars(
            text("SELECT nextval(:sequence) FROM generate_series(1, :n)"),
            {"sequence": sequence, "n": n},
        )
        return sorted(int(i) for i in rows)
    start = int(session.scalar(select(func.coalesce(func.max(table.c.id), 0))) or 0) + 1
    return list(range(start, start + n))


def insert_rows(session: Session, model: type[Base], rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows into `model`'s table, all with the same keys, ids included, in the
    session's transaction."""
    table = cast(Table, model.__table__)
    if not rows:
        return
    columns = list(rows[0])
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        _executemany(session, table, columns, rows)
        return
    json_columns = {c for c in columns if table.c[c].type.__class__.__name__ == "JSON"}
    names = ", ".join(f'"{c}"' for c in columns)
    raw = session.connection().connection.driver_connection
    assert raw is not None
    try:
        with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(
                    [json.dumps(row[c]) if c in json_columns else row[c] for c in columns]
                )
    except Exception as exc:
        # What the engine's error hook says for INSERTs: COPY goes past SQLAlchemy.
        if getattr(exc, "sqlstate", None) == STRING_TOO_LONG:
            raise ConfigError(
                f"a value is longer than the catalog allows ({exc}); shorten it: nothing was "
                "written",
                code="value_too_long",
            ) from exc
        raise


def _executemany(
    session: Session, table: Table, columns: list[str], rows: Sequence[dict[str, Any]]
) -> None:
    """The sqlite3 driver's executemany: one prepared statement, stepped per row in C. Values
    pass through the column types' own bind processors, so they are stored exactly as an
    ORM insert stores them (datetimes as text, JSON as text); SQLAlchemy's per-row parameter
    building, skipped here, cost more than the inserts themselves."""
    dialect = session.get_bind().dialect
    processors = [
        (i, fn)
        for i, c in enumerate(columns)
        if (fn := table.c[c].type.dialect_impl(dialect).bind_processor(dialect)) is not None
    ]
    values = []
    for row in rows:
        value = [row[c] for c in columns]
        for i, fn in processors:
            if value[i] is not None:
                value[i] = fn(value[i])
        values.append(value)
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" * len(columns))
    raw = session.connection().connection.driver_connection
    assert raw is not None
    raw.cursor().executemany(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", values)
