"""Background jobs: folder ingest, index rebuild, key rotation. Submit, then poll progress."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, status

from vultus.api.deps import JobsDep, PathId, require
from vultus.api.errors import responses
from vultus.api.schemas.jobs import IngestJobIn, JobOut, RebuildJobIn
from vultus.engine.apikeys import Principal

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=responses(401, 403, 429))

Watcher = Annotated[Principal, Depends(require("admin", "operator"))]


@router.post(
    "/ingest",
    summary="Start ingesting a folder (or file) on the server under a source",
    description="Returns at once with the job; poll `GET /v1/jobs/{id}` for progress "
    "(`done` of `total` files). Safe to repeat: what is already held is skipped.",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(404, 422),
)
def ingest(
    body: IngestJobIn,
    jobs: JobsDep,
    principal: Annotated[Principal, Depends(require("operator"))],
) -> JobOut:
    source = principal.bound_source(body.source)  # a key bound to a source adds to it alone
    params = {"path": body.path, "source": source, "consent": body.consent}
    return JobOut.of(jobs.submit("ingest", params, principal.actor))


@router.post(
    "/rebuild-index",
    summary="Rebuild the vector index from the catalog (optionally with a new factory)",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(422),
)
def rebuild_index(
    body: RebuildJobIn,
    jobs: JobsDep,
    principal: Annotated[Principal, Depends(require("admin", "operator"))],
) -> JobOut:
    return JobOut.of(jobs.submit("rebuild_index", {"factory": body.factory}, principal.actor))


@router.post(
    "/rotate-keys",
    summary="Re-encrypt everything under a new master key",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
)
def rotate_keys(
    jobs: JobsDep, principal: Annotated[Principal, Depends(require("admin"))]
) -> JobOut:
    return JobOut.of(jobs.submit("rotate_keys", {}, principal.actor))


@router.get("", summary="Jobs, newest first", response_model=list[JobOut])
def list_jobs(
    jobs: JobsDep,
    _: Watcher,
    status: Literal["queued", "running", "done", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[JobOut]:
    return [JobOut.of(j) for j in jobs.list(status=status, limit=limit)]


@router.get(
    "/{job_id}",
    summary="One job with its progress",
    response_model=JobOut,
    responses=responses(404),
)
def get_job(job_id: PathId, jobs: JobsDep, _: Watcher) -> JobOut:
    return JobOut.of(jobs.get(job_id))
