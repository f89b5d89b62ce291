"""Vultus: a self-hosted face search engine built for data protection by design.

`vultus.Engine` is the Python API (see the README): the one façade the command line, the REST
API and the web UI call. It is imported on first use, so that `import vultus.config` and the
other foundations do not load the whole engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vultus.engine import Engine

__version__ = "0.1.0"
__all__ = ["Engine", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from vultus.engine import Engine

        return Engine
    raise AttributeError(f"module 'vultus' has no attribute {name!r}")
