"""The one façade the CLI, the REST API and the web UI call (see `vultus.engine.core`)."""

from vultus.engine.core import Engine

__all__ = ["Engine"]
