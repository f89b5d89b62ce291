"""Sources: where photos come from, each registered with its lawful basis before any ingest."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from vultus.api.deps import EngineDep, require
from vultus.api.errors import responses
from vultus.api.schemas.sources import SourceIn, SourceOut
from vultus.engine.apikeys import Principal

router = APIRouter(prefix="/sources", tags=["sources"], responses=responses(401, 403, 429))


@router.get(
    "", summary="List sources with their image and face counts", response_model=list[SourceOut]
)
def list_sources(
    engine: EngineDep, _: Annotated[Principal, Depends(require("operator", "dpo"))]
) -> list[SourceOut]:
    return [SourceOut.of(src, images, faces) for src, images, faces in engine.sources()]


@router.post(
    "",
    summary="Register a source with its GDPR Art. 6 basis and Art. 9 condition",
    response_model=SourceOut,
    status_code=status.HTTP_201_CREATED,
    responses=responses(422),
)
def create_source(
    body: SourceIn,
    engine: EngineDep,
    principal: Annotated[Principal, Depends(require("operator"))],
) -> SourceOut:
    source = engine.add_source(
        body.name,
        actor=principal.actor,
        lawful_basis_code=body.lawful_basis,
        special_condition=body.special_condition,
        purpose=body.purpose,
        retention_days=body.retention_days,
        kind=body.kind,
        legal_reference=body.legal_reference,
        notes=body.notes,
        originals_deletable=body.originals_deletable,
    )
    return SourceOut.of(source)
