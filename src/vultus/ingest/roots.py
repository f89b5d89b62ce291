"""Where the server may read photos that a client names by path: the configured ingest roots.

A client of the server (an API key, a browser session) names paths on a machine it cannot see.
Without a boundary, an operator key could make the server read `/etc` or a colleague's home,
and the error codes would tell it which files exist. So every path a client names is resolved
(symbolic links followed, `..` removed) and must lie under one of `ingest_roots`; a path
outside them and a path that does not exist get the same refusal, word for word. The
operator's own CLI on the machine is not confined: it runs with the operator's rights anyway.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from vultus.errors import NotFoundError


def confine(raw: str, roots: Sequence[Path]) -> Path:
    """The real path of `raw`, an absolute path a client named, when it exists under one of
    `roots`; else NotFoundError (`path_not_found`), the same for every reason.

    >>> confine("/srv/photos/2024/../2025", [Path("/srv/photos")])  # doctest: +SKIP
    PosixPath('/srv/photos/2025')
    """
    path = Path(raw)
    try:
        resolved = path.resolve() if path.is_absolute() else None
        found = resolved is not None and inside(resolved, roots) and os.path.exists(resolved)
    except (OSError, ValueError):  # a name too long, a NUL byte, a loop
        found = False
    if not found or resolved is None:
        raise refusal(roots)
    return resolved


def inside(resolved: Path, roots: Sequence[Path]) -> bool:
    """Whether a resolved path is one of `roots` or lies under one (roots resolved too, so a
    root that is itself a link to a mounted share works)."""
    return any(resolved.is_relative_to(_real(root)) for root in roots)


def refusal(roots: Sequence[Path]) -> NotFoundError:
    """The one answer for a path the server will not read, word for word the same whether the
    path is missing, outside the roots, relative or unreadable (it does not even repeat the
    path), so that it tells nothing of the files outside. The roots are named: an operator
    who may ingest needs to know where to put photos."""
    names = ", ".join(str(r) for r in roots) or "none configured"
    return NotFoundError(
        "no file or folder at that path that the server may read: paths sent to the server "
        f"must be absolute and lie under its ingest roots ({names}; the `ingest_roots` setting)",
        code="path_not_found",
    )


def _real(root: Path) -> Path:
    try:
        return root.expanduser().resolve()
    except (OSError, RuntimeError):
        return root
