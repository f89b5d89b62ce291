"""Search and verify: always with a purpose from the configured list, always audited, with
the calling key as the actor."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from vultus.api.deps import EngineDep, read_upload, require
from vultus.api.errors import responses
from vultus.api.schemas import MARGIN_HELP, SearchByFace, SearchBySubject, SearchOut, VerifyOut
from vultus.engine.apikeys import Principal

router = APIRouter(tags=["search"], responses=responses(401, 403, 429, 503))

Searcher = Annotated[Principal, Depends(require("investigator", counts_search=True))]
Purpose = Annotated[
    str,
    Form(max_length=200, description="Why you search: one of the configured purposes."),
]
CaseRef = Annotated[str | None, Form(max_length=200, description="A case reference.")]
Fmr = Annotated[
    float | None, Form(gt=0, lt=1, description="False-match rate of the match decision.")
]


@router.post(
    "/search",
    summary="Search with a photo: where else does this person appear?",
    description="Uses the largest face, or face number `face` (1 = largest). The answer lists "
    "the matches and every face seen in the photo, with boxes.",
    response_model=SearchOut,
    responses=responses(404, 413, 422),
)
def search_photo(
    request: Request,
    photo: Annotated[UploadFile, File(description="A photo with the face to look for.")],
    purpose: Purpose,
    engine: EngineDep,
    principal: Searcher,
    case_ref: CaseRef = None,
    top_k: Annotated[int, Form(ge=1, le=1000)] = 10,
    face: Annotated[int, Form(ge=1, le=1000, description="Which face (1 = largest).")] = 1,
    fmr: Fmr = None,
    margin: Annotated[float | None, Form(ge=0, le=2, description=MARGIN_HELP)] = None,
) -> SearchOut:
    data = read_upload(photo, request.app.state.settings.max_upload_bytes)
    result = engine.search(
        data,
        purpose=purpose,
        case_ref=case_ref,
        top_k=top_k,
        face=face,
        fmr=fmr,
        margin=margin,
        actor=principal.actor,
    )
    return SearchOut.of(result)


@router.post(
    "/search/face",
    summary="Search with a catalogued face",
    response_model=SearchOut,
    responses=responses(404, 422),
)
def search_face(body: SearchByFace, engine: EngineDep, principal: Searcher) -> SearchOut:
    result = engine.search_face(
        body.face_id,
        purpose=body.purpose,
        case_ref=body.case_ref,
        top_k=body.top_k,
        fmr=body.fmr,
        margin=body.margin,
        actor=principal.actor,
    )
    return SearchOut.of(result)


@router.post(
    "/search/subject",
    summary="Search with all the faces linked to a subject",
    response_model=SearchOut,
    responses=responses(404, 422),
)
def search_subject(body: SearchBySubject, engine: EngineDep, principal: Searcher) -> SearchOut:
    result = engine.search_subject(
        body.subject,
        purpose=body.purpose,
        case_ref=body.case_ref,
        top_k=body.top_k,
        fmr=body.fmr,
        margin=body.margin,
        actor=principal.actor,
    )
    return SearchOut.of(result)


@router.post(
    "/verify",
    summary="1:1: are the largest faces of two photos the same person?",
    response_model=VerifyOut,
    responses=responses(413, 422),
)
def verify(
    request: Request,
    photo_a: Annotated[UploadFile, File(description="The first photo (an ID photo).")],
    photo_b: Annotated[UploadFile, File(description="The second photo.")],
    purpose: Purpose,
    engine: EngineDep,
    principal: Annotated[Principal, Depends(require("investigator"))],
    case_ref: CaseRef = None,
    fmr: Annotated[float, Form(gt=0, lt=1, description="False-match rate of the decision.")] = 1e-3,
) -> VerifyOut:
    limit = request.app.state.settings.max_upload_bytes
    result = engine.verify(
        read_upload(photo_a, limit),
        read_upload(photo_b, limit),
        purpose=purpose,
        case_ref=case_ref,
        fmr=fmr,
        actor=principal.actor,
    )
    return VerifyOut.of(result)
