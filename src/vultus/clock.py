"""The one clock the catalog, the audit log and the interfaces read."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    # Naive UTC throughout: SQLite has no time zones and PostgreSQL columns are WITHOUT TIME ZONE.
    return datetime.now(UTC).replace(tzinfo=None)
