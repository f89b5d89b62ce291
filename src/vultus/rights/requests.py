"""Data-subject requests: references and the Art. 12(3) deadlines."""

from __future__ import annotations

import calendar
import secrets
from datetime import datetime

KINDS = ("access", "erasure", "restriction", "objection")
STATUSES = ("received", "in_review", "done", "rejected")
OPEN = frozenset({"received", "in_review"})
CLOSED = frozenset({"done", "rejected"})
# What people read: a rejected request is one the controller refused (Art. 12(4) and (5)).
STATUS_LABELS = {
    "received": "received",
    "in_review": "in review",
    "done": "done",
    "rejected": "refused",
}
# Art. 12(3): one month, extendable by two further months where necessary.
MAX_EXTENSION_MONTHS = 2


def add_months(start: datetime, months: int) -> datetime:
    """Calendar months, clamped to the month's end: 31 January + 1 month = 28/29 February."""
    month0 = start.month - 1 + months
    year, month = start.year + month0 // 12, month0 % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def new_ref(at: datetime) -> str:
    return f"R-{at:%Y%m%d}-{secrets.token_hex(3).upper()}"
