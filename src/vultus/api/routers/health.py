"""Liveness, readiness and Prometheus metrics: no key needed, nothing personal in them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from vultus.api.deps import EngineDep
from vultus.api.errors import NotReadyError, responses
from vultus.api.metrics import CONTENT_TYPE
from vultus.api.schemas import HealthOut, ReadyOut
from vultus.errors import VultusError

router = APIRouter(tags=["health"])


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
    summary="Prometheus metrics (text format 0.0.4)",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "Metrics, as text."}},
)
def metrics(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
