"""Liveness and readiness: no key needed, nothing personal in them. Prometheus metrics take a
key of role admin or auditor: they hold no personal data, but they tell how large the gallery is
and how each route is used, which is not for anyone who can reach the port."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

from vultus.api.deps import EngineDep, require
from vultus.api.errors import NotReadyError, responses
from vultus.api.metrics import CONTENT_TYPE
from vultus.api.schemas.health import HealthOut, ReadyOut
from vultus.engine.apikeys import Principal
from vultus.errors import VultusError

router = APIRouter(tags=["health"])
ERROR_SCHEMA = {"$ref": "#/components/schemas/Error"}


@router.get("/healthz", summary="Liveness: the process answers", response_model=HealthOut)
def healthz() -> HealthOut:
    return HealthOut()


@router.get(
    "/readyz",
    summary="Readiness: the catalog opens and the vector index is loaded",
    response_model=ReadyOut,
    responses=responses(503),
)
def readyz(engine: EngineDep) -> ReadyOut:
    try:
        status = engine.status()
    except VultusError as exc:
        raise NotReadyError(f"not ready: {exc.message} ({exc.code})") from exc
    except Exception as exc:
        raise NotReadyError(f"not ready: {type(exc).__name__}: {exc}") from exc
    return ReadyOut(
        images=int(status["images"]),
        faces_indexed=int(status["faces_indexed"]),
        index_size=int(status.get("index_size", 0)),
        model=status.get("model"),
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics (text format 0.0.4; a key of role admin or auditor)",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Metrics, as text."},
        # Errors are JSON, whatever this route's own media type.
        **{
            status: {**spec, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
            for status, spec in responses(401, 403, 429).items()
        },
    },
)
def metrics(
    request: Request, _: Annotated[Principal, Depends(require("admin", "auditor"))]
) -> PlainTextResponse:
    return PlainTextResponse(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
