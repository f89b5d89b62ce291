"""The roles an API key can hold (separate duties, each admitted to its own routes) and how long
a key may live. A module of its own, free of imports, so that the command line's help can list
them without loading the engine.

A key holds one role, or several where the duties do not check one another. Clients built for
other engines (CompreFace, AWS Rekognition) use one key both to add faces and to search, so
operator and investigator may share a key. The roles that oversee the others stay alone: an
admin creates and revokes keys (with another role it could mint itself any power and hide the
trail), the DPO answers rights requests and reads every search in the audit log (GDPR Art. 38(6):
no task that conflicts with that oversight), and the auditor reads the log of everyone's work,
its own included were it to hold another role.
"""

from __future__ import annotations

from collections.abc import Iterable

ROLES: dict[str, str] = {
    "admin": "configuration and keys",
    "operator": "ingest and subjects",
    "investigator": "search and verify, always with a purpose",
    "dpo": "rights requests, audit and reports",
    "auditor": "read-only audit",
}

# The roles one key may combine; every other role is held alone.
COMBINABLE = frozenset({"operator", "investigator"})

# How a key's roles are stored in its one `role` column: "operator+investigator".
JOIN = "+"

# A key expires after 1 to this many days, or never (a 0 or negative count is refused, not
# read as "never").
MAX_EXPIRES_DAYS = 36500


def role_problem(roles: Iterable[str]) -> str | None:
    """Why these roles cannot make one key, or None when they can."""
    chosen = list(dict.fromkeys(roles))
    if not chosen:
        return f"a key needs a role, one of: {', '.join(ROLES)}"
    unknown = [r for r in chosen if r not in ROLES]
    if unknown:
        return f"unknown role {unknown[0]!r}; one of: {', '.join(ROLES)}"
    if len(chosen) > 1:
        alone = [r for r in chosen if r not in COMBINABLE]
        if alone:
            return (
                f"the {alone[0]} role is held alone: it oversees the others' work (separation "
                f"of duties); only {' and '.join(sorted(COMBINABLE))} may share a key"
            )
    return None


def canonical(roles: Iterable[str]) -> tuple[str, ...]:
    """The roles once each, in the order of ROLES: the stored and shown form."""
    chosen = set(roles)
    return tuple(r for r in ROLES if r in chosen)
