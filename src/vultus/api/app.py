"""The FastAPI application: the Engine behind `/v1/`, a thin layer that adds no logic of its own.

`create_app()` builds it for a data directory (the default one, as `vultus serve` does) or
around an open Engine (tests, or an embedding program). The engine is `app.state.engine` and the
job queue `app.state.jobs`; the web UI, when installed, mounts itself through `vultus.web.mount`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vultus import __version__
from vultus.api import bodies, compat, docs, errors
from vultus.api.deps import RateLimiter, roles_of
from vultus.api.metrics import Gauges, Metrics, MetricsMiddleware, RouteTemplates
from vultus.api.routers import (
    audit,
    faces,
    health,
    images,
    jobs,
    keys,
    people,
    reports,
    rights,
    search,
    sources,
    subjects,
)
from vultus.config import Settings
from vultus.engine import Engine
from vultus.engine.jobs import JobQueue

log = logging.getLogger(__name__)

DESCRIPTION = """\
Self-hosted face search with data protection by design.

**Authentication.** Every `/v1/` endpoint needs an API key (`vultus keys create`), sent as
`X-API-Key: vk_...` or `Authorization: Bearer vk_...`. Each endpoint admits some roles
(listed in its description and in `x-roles`): admin (keys, configuration), operator (sources,
ingest, images, faces, subjects), investigator (search and verify, always with a purpose),
dpo (rights requests, audit, reports), auditor (read-only audit).

**Photos** go to `POST /v1/images`, `/v1/search` and `/v1/verify` as multipart form data, or
as JSON with each photo in base64. A field an endpoint does not take is refused
(`unknown_field`), never ignored. A search result names each photo by the file name it was
uploaded with and the `external_id` given then; where it lies on the server (`image_path`) is
for operator keys only.

**Errors** are `{"code": ..., "message": ...}` with a stable code: 401 no or bad key, 403 role
not admitted, 404 not found, 413 upload too large, 415 a body neither form data nor JSON, 422
the request cannot be carried out (purpose, image, face, source, an unknown field ...), 429
rate limited, 503 index or model unavailable.

Every search, verification, view of a photo, erasure and key change is written to the
tamper-evident audit log with the key as the actor.
"""

TAGS = [
    {"name": "sources", "description": "Where photos come from, each with its lawful basis."},
    {"name": "images", "description": "Upload or register photos; list and view them."},
    {"name": "faces", "description": "The faces found in the photos."},
    {"name": "subjects", "description": "Named people and the faces linked to them."},
    {"name": "people", "description": "Proposed people among unnamed faces, and their review."},
    {"name": "search", "description": "Search and verify, always with a stated purpose."},
    {"name": "rights", "description": "Data-subject requests: access, erasure, restriction."},
    {"name": "audit", "description": "The tamper-evident audit log."},
    {"name": "reports", "description": "Art. 30 record of processing and Art. 35 DPIA draft."},
    {"name": "keys", "description": "API keys and their roles."},
    {"name": "jobs", "description": "Long work in the background: ingest, rebuild, rotation."},
    {
        "name": "health",
        "description": "Liveness and readiness (no key needed); metrics (admin or auditor key).",
    },
]


def create_app(
    settings: Settings | None = None, *, engine: Engine | None = None, run_jobs: bool = True
) -> FastAPI:
    """The API for `settings` (default: the default data directory), or around `engine`.

    Server settings (`max_upload_bytes`, `requests_per_minute`) come from `settings` when
    given, else from the engine's. An engine passed in stays the caller's to close. With
    `run_jobs` False this app queues jobs but never runs them (another process of the data
    directory does, or nobody: a generated request that queues an ingest must stay queued).
    """
    owns_engine = engine is None
    if engine is None:
        engine = Engine(settings or Settings.load())
    settings = settings or engine.settings
    queue = JobQueue(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if run_jobs:
            queue.start()
        try:
            yield
        finally:
            queue.close()
            if owns_engine:
                engine.close()

    app = FastAPI(
        title="Vultus",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        docs_url=None,  # served by vultus.api.docs, from the package rather than a CDN
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.jobs = queue
    app.state.settings = settings
    app.state.limiter = RateLimiter(settings.requests_per_minute)
    metrics = Metrics()
    metrics.gauges.append(Gauges(lambda: _gauges(engine, queue)))
    app.state.metrics = metrics

    errors.install(app)
    for module in (
        sources,
        images,
        faces,
        subjects,
        people,
        search,
        rights,
        audit,
        reports,
        keys,
        jobs,
    ):
        _document(module.router)
        app.include_router(
            module.router,
            prefix="/v1",
            dependencies=[Depends(bodies.refuse_unknown_form_fields)],
        )
    _document(health.router)
    app.include_router(health.router)
    bodies.install(app)
    _forms_take_no_other_fields(app)
    docs.install(app)
    compat.mount(app)
    _mount_web(app)

    # Room for the two photos of a verification; each file's own limit is checked on reading.
    app.add_middleware(BodyLimitMiddleware, limit=2 * settings.max_upload_bytes + (1 << 20))
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=RouteTemplates(app))
    return app


def _document(router: APIRouter) -> None:
    """Name each endpoint's roles in the OpenAPI document, read from its dependency, and give
    every endpoint that takes input the one error model for 422 (FastAPI's default would be
    its own validation model). Done on the router before it is included: included routes are
    derived from these."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        if _takes_input(route):
            route.responses.setdefault(422, errors.responses(422)[422])
        if _reads_body(route):  # a body that is not JSON, or not the form it should be
            route.responses.setdefault(400, errors.responses(400)[400])
        roles = roles_of(route)
        if roles is None or (route.openapi_extra or {}).get("x-roles"):
            continue
        listed = ", ".join(sorted(roles))
        route.description = f"{route.description}\n\nRoles: {listed}.".strip()
        route.openapi_extra = {**(route.openapi_extra or {}), "x-roles": sorted(roles)}


def _takes_input(route: APIRoute) -> bool:
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        if dependant.path_params or dependant.query_params or dependant.body_params:
            return True
        stack.extend(dependant.dependencies)
    return False


def _forms_take_no_other_fields(app: FastAPI) -> None:
    """Say in the OpenAPI document what the server does with form bodies: a field an endpoint
    does not take is refused (`unknown_field`, see vultus.api.bodies), which FastAPI's
    generated form schemas (`Body_...`) do not say; and an optional field is left out, since a
    form has no null (FastAPI documents `int | None` as "an integer or null")."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        for name, schema in document.get("components", {}).get("schemas", {}).items():
            if name.startswith("Body_"):
                schema["additionalProperties"] = False
            if name.startswith("Body_") or name.endswith("Form"):
                for field in schema.get("properties", {}).values():
                    _without_null(field)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _without_null(field: dict[str, Any]) -> None:
    options = field.get("anyOf")
    if not options or not any(o.get("type") == "null" for o in options):
        return
    kept = [o for o in options if o.get("type") != "null"]
    del field["anyOf"]
    if len(kept) == 1:
        field.update(kept[0])
    else:
        field["anyOf"] = kept
    if field.get("default", 0) is None:
        del field["default"]


def _reads_body(route: APIRoute) -> bool:
    if "requestBody" in (route.openapi_extra or {}):  # photos, read by vultus.api.bodies
        return True
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        if dependant.body_params:
            return True
        stack.extend(dependant.dependencies)
    return False


def _mount_web(app: FastAPI) -> None:
    """The web UI, when installed. A broken one is logged and left out: the API still serves."""
    try:
        web = importlib.import_module("vultus.web")
        mount = getattr(web, "mount", None)
        if mount is not None:
            mount(app)
    except ImportError as exc:
        if not (isinstance(exc, ModuleNotFoundError) and exc.name == "vultus.web"):
            log.warning("the web UI is not mounted: %s", exc)


def _gauges(engine: Engine, queue: JobQueue) -> dict[str, tuple[str, float]]:
    counts = engine.catalog.counts()
    out = {
        "vultus_images": ("Images in the catalog.", float(counts["images"])),
        "vultus_faces_indexed": (
            "Searchable faces in the catalog.",
            float(counts["faces_indexed"]),
        ),
        "vultus_subjects": ("Named subjects.", float(counts["subjects"])),
        "vultus_jobs_queued": ("Background jobs waiting.", float(len(queue.list(status="queued")))),
    }
    return out


class BodyLimitMiddleware:
    """Refuse a request body over `limit` by its Content-Length before reading it, or while it
    streams in without one: an upload is never spooled in full only to be refused. Both give
    413 with the error model (FastAPI's own `max_body_size` answers in plain text)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is over {self.limit:,} bytes"
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await errors.error_response(413, "upload_too_large", message)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            incoming = await receive()
            if incoming["type"] == "http.request":
                received += len(incoming.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, message)
            return incoming

        await self.app(scope, counted, send)
