"""The REST API: a thin FastAPI layer over the Engine (see `vultus.api.app.create_app`)."""

from vultus.api.app import create_app

__all__ = ["create_app"]
