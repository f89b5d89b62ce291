"""The web UI for operators (`/ui`) and the rights portal for data subjects (`/portal`), served
by the API's own process: server-rendered pages, one stylesheet, a little vanilla JavaScript,
nothing fetched from anywhere else.

`mount(app)` installs it into a FastAPI app whose state holds the engine (`app.state.engine`)
and, optionally, the background job queue (`app.state.jobs`).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.routing import Route

from vultus.config import Settings, require_controller
from vultus.web.render import HERE, UI


def mount(app: FastAPI) -> None:
    """Add the operator UI, the portal and the static files to `app`. An enabled portal
    without a named controller refuses to start: it would tell people nobody's name."""
    from vultus.web.app import create_ui
    from vultus.web.portal import portal_routes

    settings: Settings | None = getattr(app.state, "settings", None)
    if settings is None and hasattr(app.state, "engine"):
        settings = app.state.engine.settings
    if settings is not None and settings.portal_enabled:
        require_controller(settings.controller, "the rights portal (portal_enabled)")

    app.mount(UI, create_ui(app), name="ui")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    # Plain routes, not API routes: the portal is no part of the API and has no key.
    app.router.routes.extend(portal_routes())
    app.router.routes.append(Route("/", _root, methods=["GET"], include_in_schema=False))


async def _root(request: Request) -> RedirectResponse:
    return RedirectResponse(f"{UI}/", status_code=307)


__all__ = ["mount"]
