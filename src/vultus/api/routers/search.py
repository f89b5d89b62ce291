"""Search and verify: always with a purpose from the configured list, always audited, with
the calling key as the actor. A key bound to a purpose or case searches under it alone. Photos
come as multipart form data or as JSON in base64."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from vultus.api.bodies import PhotoBody, PhotoRequest
from vultus.api.deps import EngineDep, require
from vultus.api.errors import responses
from vultus.api.schemas.search import (
    SearchByFace,
    SearchBySubject,
    SearchOut,
    SearchPhotoFields,
    VerifyFields,
    VerifyOut,
)
from vultus.engine.apikeys import Principal

router = APIRouter(tags=["search"], responses=responses(401, 403, 429, 503))

Searcher = Annotated[Principal, Depends(require("investigator", counts_search=True))]
search_body = PhotoBody(
    "SearchPhoto", SearchPhotoFields, {"photo": "A photo with the face to look for."}
)
verify_body = PhotoBody(
    "Verify",
    VerifyFields,
    {"photo_a": "The first photo (an ID photo).", "photo_b": "The second photo."},
)


@router.post(
    "/search",
    summary="Search with a photo: where else does this person appear?",
    description="Uses the largest face, or face number `face` (1 = largest). The answer lists "
    "the matches and every face seen in the photo, with boxes. Send the photo as multipart "
    "form data, or as JSON with `photo` in base64; a field the endpoint does not take is "
    "refused (`unknown_field`).",
    response_model=SearchOut,
    responses=responses(400, 404, 413, 415, 422),
    openapi_extra=search_body.openapi,
)
def search_photo(
    principal: Searcher,
    body: Annotated[PhotoRequest[SearchPhotoFields], Depends(search_body)],
    engine: EngineDep,
) -> SearchOut:
    q = body.fields
    result = engine.search(
        body.photos["photo"].data,
        purpose=principal.bound_purpose(q.purpose) or "",
        case_ref=principal.bound_case(q.case_ref),
        top_k=q.top_k,
        face=q.face,
        fmr=q.fmr,
        margin=q.margin,
        actor=principal.actor,
        detection=q.detection,
    )
    return SearchOut.of(result, paths=principal.sees_paths)


@router.post(
    "/search/face",
    summary="Search with a catalogued face",
    response_model=SearchOut,
    responses=responses(404, 422),
)
def search_face(body: SearchByFace, engine: EngineDep, principal: Searcher) -> SearchOut:
    result = engine.search_face(
        body.face_id,
        purpose=principal.bound_purpose(body.purpose) or "",
        case_ref=principal.bound_case(body.case_ref),
        top_k=body.top_k,
        fmr=body.fmr,
        margin=body.margin,
        actor=principal.actor,
    )
    return SearchOut.of(result, paths=principal.sees_paths)


@router.post(
    "/search/subject",
    summary="Search with all the faces linked to a subject",
    response_model=SearchOut,
    responses=responses(404, 422),
)
def search_subject(body: SearchBySubject, engine: EngineDep, principal: Searcher) -> SearchOut:
    result = engine.search_subject(
        body.subject,
        purpose=principal.bound_purpose(body.purpose) or "",
        case_ref=principal.bound_case(body.case_ref),
        top_k=body.top_k,
        fmr=body.fmr,
        margin=body.margin,
        actor=principal.actor,
    )
    return SearchOut.of(result, paths=principal.sees_paths)


@router.post(
    "/verify",
    summary="1:1: are the largest faces of two photos the same person?",
    description="Send the photos as multipart form data, or as JSON with `photo_a` and "
    "`photo_b` in base64.",
    response_model=VerifyOut,
    responses=responses(400, 413, 415, 422),
    openapi_extra=verify_body.openapi,
)
def verify(
    principal: Searcher,
    body: Annotated[PhotoRequest[VerifyFields], Depends(verify_body)],
    engine: EngineDep,
) -> VerifyOut:
    result = engine.verify(
        body.photos["photo_a"].data,
        body.photos["photo_b"].data,
        purpose=principal.bound_purpose(body.fields.purpose) or "",
        case_ref=principal.bound_case(body.fields.case_ref),
        fmr=body.fields.fmr,
        actor=principal.actor,
    )
    return VerifyOut.of(result)
