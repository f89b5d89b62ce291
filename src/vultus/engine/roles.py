"""The roles an API key can hold: separate duties, each admitted to its own routes. A module of
its own, free of imports, so that the command line's help can list them without loading the
engine."""

from __future__ import annotations

ROLES: dict[str, str] = {
    "admin": "configuration and keys",
    "operator": "ingest and subjects",
    "investigator": "search and verify, always with a purpose",
    "dpo": "rights requests, audit and reports",
    "auditor": "read-only audit",
}
