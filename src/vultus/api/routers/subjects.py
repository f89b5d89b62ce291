"""Subjects: named people, and the faces linked to them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from vultus.api.deps import EngineDep, PathId, require
from vultus.api.errors import responses
from vultus.api.schemas.common import Count
from vultus.api.schemas.subjects import (
    FaceIds,
    SubjectDetailOut,
    SubjectIn,
    SubjectMerge,
    SubjectOut,
    SubjectRename,
)
from vultus.engine import Engine
from vultus.engine.apikeys import Principal
from vultus.errors import NotFoundError

router = APIRouter(prefix="/subjects", tags=["subjects"], responses=responses(401, 403, 429))

Operator = Annotated[Principal, Depends(require("operator"))]


def _detail(engine: Engine, name: str) -> SubjectDetailOut:
    return SubjectDetailOut.of(engine.subject(name), engine.subject_faces(name))


@router.get("", summary="List subjects with their face counts", response_model=list[SubjectOut])
def list_subjects(engine: EngineDep, _: Operator) -> list[SubjectOut]:
    return [SubjectOut.of(subject, n) for subject, n in engine.subjects()]


@router.post(
    "",
    summary="Create a subject, optionally linking faces to it",
    response_model=SubjectDetailOut,
    status_code=status.HTTP_201_CREATED,
    responses=responses(404, 422),
)
def create_subject(body: SubjectIn, engine: EngineDep, principal: Operator) -> SubjectDetailOut:
    engine.create_subject(body.name, body.face_ids, actor=principal.actor)
    return _detail(engine, body.name)


@router.get(
    "/{name}",
    summary="One subject with its faces",
    description="Not for investigators: they find a subject's photos by searching with it "
    "(`POST /v1/search/subject`), for a purpose, and see only those results.",
    response_model=SubjectDetailOut,
    responses=responses(404),
)
def get_subject(name: str, engine: EngineDep, _: Operator) -> SubjectDetailOut:
    return _detail(engine, name)


@router.patch(
    "/{name}",
    summary="Rename a subject",
    response_model=SubjectDetailOut,
    responses=responses(404, 422),
)
def rename_subject(
    name: str, body: SubjectRename, engine: EngineDep, principal: Operator
) -> SubjectDetailOut:
    engine.rename_subject(name, body.name, actor=principal.actor)
    return _detail(engine, body.name)


@router.post(
    "/{name}/merge",
    summary="Merge another subject into this one (its faces move here; it goes)",
    response_model=SubjectDetailOut,
    responses=responses(404, 422),
)
def merge_subjects(
    name: str, body: SubjectMerge, engine: EngineDep, principal: Operator
) -> SubjectDetailOut:
    engine.merge_subjects(name, body.other, actor=principal.actor)
    return _detail(engine, name)


@router.post(
    "/{name}/faces",
    summary="Link faces to a subject",
    response_model=Count,
    responses=responses(404, 422),
)
def link_faces(name: str, body: FaceIds, engine: EngineDep, principal: Operator) -> Count:
    return Count(count=engine.link_faces(name, body.face_ids, actor=principal.actor))


@router.delete(
    "/{name}/faces/{face_id}",
    summary="Unlink a face from a subject",
    response_model=Count,
    responses=responses(404),
)
def unlink_face(name: str, face_id: PathId, engine: EngineDep, principal: Operator) -> Count:
    if engine.face(face_id).subject != name:
        raise NotFoundError(f"face {face_id} is not linked to subject {name!r}")
    return Count(count=engine.unlink_faces([face_id], actor=principal.actor))


@router.delete(
    "/{name}",
    summary="Delete a subject: its name and links go, its faces stay, unnamed",
    response_model=Count,
    responses=responses(404),
)
def delete_subject(name: str, engine: EngineDep, principal: Operator) -> Count:
    return Count(count=engine.delete_subject(name, actor=principal.actor))
