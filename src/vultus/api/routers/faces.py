"""Faces: what the catalog holds about each face found in a photo."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from vultus.api.deps import EngineDep, Offset, PathId, QueryId, SearchQuery, require, via_search
from vultus.api.errors import responses
from vultus.api.schemas.common import Count
from vultus.api.schemas.images import FaceOut
from vultus.engine.apikeys import Principal
from vultus.errors import NotFoundError

router = APIRouter(prefix="/faces", tags=["faces"], responses=responses(401, 403, 429))

Operator = Annotated[Principal, Depends(require("operator"))]


@router.get(
    "",
    summary="List faces, of an image or a subject",
    response_model=list[FaceOut],
    responses=responses(404, 422),
)
def list_faces(
    engine: EngineDep,
    _: Operator,
    image_id: QueryId = None,
    subject: Annotated[str | None, Query(max_length=200)] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[FaceOut]:
    records = engine.list_faces(image_id=image_id, subject=subject, offset=offset, limit=limit)
    return [FaceOut.of(r) for r in records]


@router.get(
    "/{face_id}",
    summary="One face: its image, box, source, lawful basis and subject",
    description="An investigator names the search whose results hold the face (`search`).",
    response_model=FaceOut,
    responses=responses(404, 422),
)
def get_face(
    face_id: PathId,
    engine: EngineDep,
    principal: Annotated[Principal, Depends(require("operator", "investigator", "dpo"))],
    search: SearchQuery = None,
) -> FaceOut:
    via = via_search(principal, search)
    return FaceOut.of(engine.view_face(face_id, actor=principal.actor, via_search=via))


@router.delete(
    "/{face_id}",
    summary="Delete a face from the catalog and the index (a photo left with none goes too)",
    response_model=Count,
    responses=responses(404),
)
def delete_face(face_id: PathId, engine: EngineDep, principal: Operator) -> Count:
    deleted = engine.delete_faces([face_id], actor=principal.actor)
    if not deleted:
        raise NotFoundError(f"no face with id {face_id}")
    return Count(count=deleted)
