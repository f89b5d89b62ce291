"""The roles an API key can hold (separate duties, each admitted to its own routes) and how long
a key may live. A module of its own, free of imports, so that the command line's help can list
them without loading the engine."""

from __future__ import annotations

ROLES: dict[str, str] = {
    "admin": "configuration and keys",
    "operator": "ingest and subjects",
    "investigator": "search and verify, always with a purpose",
    "dpo": "rights requests, audit and reports",
    "auditor": "read-only audit",
}

# A key expires after 1 to this many days, or never (a 0 or negative count is refused, not
# read as "never").
MAX_EXPIRES_DAYS = 36500
