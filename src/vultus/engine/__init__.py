"""The one façade the CLI, the REST API and the web UI call (see `vultus.engine.core`).

`Engine` is imported on first use: importing it loads every layer below (seconds), and
`vultus --help` or a light module of this package (`roles`, `records`) must not pay for that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vultus.engine.core import Engine

__all__ = ["Engine"]


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from vultus.engine.core import Engine

        return Engine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
