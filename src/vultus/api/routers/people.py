"""People: proposed people among the unnamed faces, what reviewers decide about them (name,
set apart, hide), the unnamed faces, and more faces that may be a named person."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from vultus.api.deps import EngineDep, Offset, require
from vultus.api.errors import responses
from vultus.api.schemas.common import Count, Id, NameStr, exactly_one_of
from vultus.api.schemas.images import FaceOut
from vultus.api.schemas.subjects import SubjectDetailOut
from vultus.engine.apikeys import Principal
from vultus.engine.people import DEFAULT_MIN_FACES

router = APIRouter(prefix="/people", tags=["people"], responses=responses(401, 403, 429))

Operator = Annotated[Principal, Depends(require("operator"))]
FaceList = Annotated[list[Id], Field(min_length=1, max_length=10_000)]


class ProposalOut(BaseModel):
    faces: list[FaceOut]
    core_face_ids: list[int] = Field(description="The faces that hold the proposal together.")
    cohesion: float = Field(description="Mean distance of its faces to their centre.")


class AcceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=exactly_one_of("name", "subject"))

    face_ids: FaceList = Field(description="The faces to name: a proposal's, or several's.")
    name: NameStr | None = Field(None, description="A new person's name.")
    subject: NameStr | None = Field(None, description="Or an existing person to link them to.")
    left_out: list[Id] = Field(
        default_factory=list,
        max_length=10_000,
        description="Faces of the proposal that are not this person: never suggested for them.",
    )

    @model_validator(mode="after")
    def _one_name(self) -> AcceptIn:
        if (self.name is None) == (self.subject is None):
            raise ValueError("give either name (a new person) or subject (an existing one)")
        return self


class ApartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    face_ids: FaceList = Field(description="One face (not this person) or several (split off).")
    from_face_ids: FaceList = Field(description="The rest of the proposal they were in.")


class FacesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    face_ids: FaceList


class UnnamedOut(BaseModel):
    faces: list[FaceOut]
    total: int


class SuggestionOut(BaseModel):
    face: FaceOut
    distance: float
    tier: str = Field(description='"match" or "possible, check by eye".')
    odds: str = Field(description="How often a stranger comes this close, in words.")


@router.get(
    "/proposals",
    summary="Propose people among the unnamed faces (nothing is linked)",
    description="Faces once set apart stay apart; hidden faces are left out. Audited.",
    response_model=list[ProposalOut],
    responses=responses(422),
)
def proposals(
    engine: EngineDep,
    principal: Operator,
    min_faces: Annotated[
        int, Query(ge=2, le=1000, description="Faces a person has at least.")
    ] = DEFAULT_MIN_FACES,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ProposalOut]:
    found = engine.discover_people(min_faces=min_faces, actor=principal.actor)
    shown = found[offset : offset + limit]
    records = engine.faces_by_id([f for p in shown for f in p.face_ids])
    return [
        ProposalOut(
            faces=[FaceOut.of(records[f]) for f in p.face_ids if f in records],
            core_face_ids=p.core_face_ids,
            cohesion=p.cohesion,
        )
        for p in shown
    ]


@router.post(
    "/accept",
    summary="Name a proposal's faces: a new person, or an existing one",
    response_model=SubjectDetailOut,
    responses=responses(404, 422),
)
def accept(body: AcceptIn, engine: EngineDep, principal: Operator) -> SubjectDetailOut:
    person = engine.accept_person(
        body.face_ids,
        name=body.name,
        subject=body.subject,
        left_out=body.left_out,
        actor=principal.actor,
    )
    return SubjectDetailOut.of(person, engine.subject_faces(person.name))


@router.post(
    "/apart",
    summary="Not this person (one face) or split off (several), remembered",
    response_model=Count,
    responses=responses(404, 422),
)
def apart(body: ApartIn, engine: EngineDep, principal: Operator) -> Count:
    return Count(count=engine.set_apart(body.face_ids, body.from_face_ids, actor=principal.actor))


@router.post(
    "/hide",
    summary="Hide faces from proposals (they stay in the catalog and in search)",
    response_model=Count,
    responses=responses(404, 422),
)
def hide(body: FacesIn, engine: EngineDep, principal: Operator) -> Count:
    return Count(count=engine.hide_faces(body.face_ids, actor=principal.actor))


@router.post(
    "/unhide",
    summary="Bring hidden faces back into proposals",
    response_model=Count,
    responses=responses(422),
)
def unhide(body: FacesIn, engine: EngineDep, principal: Operator) -> Count:
    return Count(count=engine.unhide_faces(body.face_ids, actor=principal.actor))


@router.get(
    "/unnamed",
    summary="Faces no one has named, newest first",
    response_model=UnnamedOut,
    responses=responses(422),
)
def unnamed(
    engine: EngineDep,
    _: Operator,
    hidden: Annotated[bool, Query(description="The faces hidden from proposals instead.")] = False,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 60,
) -> UnnamedOut:
    faces, total = engine.unnamed_faces(hidden=hidden, offset=offset, limit=limit)
    return UnnamedOut(faces=[FaceOut.of(f) for f in faces], total=total)


@router.get(
    "/{name}/suggestions",
    summary="More faces that may be this named person, each with its odds",
    response_model=list[SuggestionOut],
    responses=responses(404),
)
def suggestions(
    name: str,
    engine: EngineDep,
    _: Operator,
    limit: Annotated[int, Query(ge=1, le=200)] = 24,
) -> list[SuggestionOut]:
    return [
        SuggestionOut(face=FaceOut.of(s.face), distance=s.distance, tier=s.tier, odds=s.odds)
        for s in engine.suggestions(name, limit=limit)
    ]


@router.post(
    "/{name}/not",
    summary="These faces are not this named person: never suggested for them again",
    response_model=Count,
    responses=responses(404, 422),
)
def not_this_person(name: str, body: FacesIn, engine: EngineDep, principal: Operator) -> Count:
    return Count(count=engine.not_this_person(name, body.face_ids, actor=principal.actor))
