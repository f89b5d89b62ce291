"""The audit log: query it, export it with its hashes, verify its chain. Read-only."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from vultus.api.deps import EngineDep, QueryId, require
from vultus.api.errors import responses
from vultus.api.schemas.audit import AuditEntryOut, AuditVerifyOut
from vultus.api.schemas.common import UtcTime
from vultus.engine.apikeys import Principal

router = APIRouter(prefix="/audit", tags=["audit"], responses=responses(401, 403, 429))

Reader = Annotated[Principal, Depends(require("dpo", "auditor"))]
MEDIA = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


@router.get(
    "",
    summary="Audit entries matching every given filter, newest first",
    description="Times are UTC; `since` is inclusive, `until` exclusive. `face_id`: the "
    "entries whose results held that face, i.e. who received that person's data.",
    response_model=list[AuditEntryOut],
    responses=responses(422),
)
def query(
    engine: EngineDep,
    _: Reader,
    since: UtcTime = None,
    until: UtcTime = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    purpose: Annotated[str | None, Query(max_length=200)] = None,
    face_id: QueryId = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
) -> list[AuditEntryOut]:
    entries = engine.audit.entries(
        since=since,
        until=until,
        action=action,
        actor=actor,
        purpose=purpose,
        containing_face=face_id,
        limit=limit,
        newest_first=True,
    )
    return [AuditEntryOut.model_validate(e) for e in entries]


@router.get(
    "/export",
    summary="Export entries with their hashes (JSON lines or CSV), to check offline",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/x-ndjson": {}, "text/csv": {}}, "description": "Entries."},
        **responses(422),
    },
)
def export(
    engine: EngineDep,
    _: Reader,
    format: Annotated[Literal["jsonl", "csv"], Query()] = "jsonl",
    since: UtcTime = None,
) -> FileResponse:
    fd, name = tempfile.mkstemp(prefix="vultus-audit-", suffix=f".{format}")
    os.close(fd)
    path = Path(name)
    try:
        engine.audit.export(path, since=since, fmt=format)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(
        path,
        media_type=MEDIA[format],
        filename=f"audit.{format}",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


@router.get(
    "/verify",
    summary="Check every entry's hash, the chain and the signed head",
    response_model=AuditVerifyOut,
)
def verify(engine: EngineDep, _: Reader) -> AuditVerifyOut:
    return AuditVerifyOut.of(engine.audit.verify())
