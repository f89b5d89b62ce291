"""Data-subject rights (Arts. 12-21): requests with their deadlines, photo and notes; the review
of the faces a request's selfie finds (in tiers, decided by a person, searched again from the
confirmed faces); erasure, access packages and restriction made from that review alone;
objection and the suppression list. For the DPO."""

from __future__ import annotations

import shutil
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile, status
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from vultus.api.deps import EngineDep, PathId, read_upload, require
from vultus.api.errors import responses
from vultus.api.schemas.audit import AuditEntryOut
from vultus.api.schemas.common import Box, Count, RequestKind
from vultus.api.schemas.images import FaceOut
from vultus.api.schemas.rights import (
    ErasureIn,
    ErasurePreviewOut,
    NoteIn,
    ObjectionOut,
    PhotoFaceOut,
    PhotoFacesOut,
    ReceiptOut,
    RequestOut,
    RequestRestrictionIn,
    RequestRestrictionOut,
    RequestUpdate,
    RestrictionIn,
    ReviewOut,
    SuppressionOut,
    UnsuppressIn,
)
from vultus.engine import Engine
from vultus.engine.apikeys import Principal
from vultus.errors import RightsError
from vultus.files import build_in_private_folder

router = APIRouter(prefix="/rights", tags=["rights"], responses=responses(401, 403, 429, 503))

Dpo = Annotated[Principal, Depends(require("dpo"))]
_FACE = Form(
    ge=1,
    description="In a photo of several people, the person's face by number (1 is the "
    "largest; see POST /v1/rights/photo-faces): the request keeps a crop of it.",
)


@router.post(
    "/photo-faces",
    summary="The usable faces in a photo, to choose the person's among several",
    description="Nothing is stored or searched. A request's photo must show one usable face, "
    "or name the person's face by its `number` here.",
    response_model=PhotoFacesOut,
    responses=responses(413, 422),
)
def photo_faces(
    request: Request,
    photo: Annotated[UploadFile, File(description="A photo.")],
    engine: EngineDep,
    _: Dpo,
) -> PhotoFacesOut:
    found = engine.photo_faces(read_upload(photo, request.app.state.settings.max_upload_bytes))
    return PhotoFacesOut(
        width=found.width,
        height=found.height,
        faces=[PhotoFaceOut(number=f.number, box=Box.of(f.box)) for f in found.faces],
        unusable=found.unusable,
    )


@router.post(
    "/requests",
    summary="Record a request received, with its one-month deadline (Art. 12(3))",
    description="Multipart, so that the person's selfie can come with it: every act on the "
    "request (access, erasure, restriction) starts from a review of the faces it finds. The "
    "selfie is stored encrypted. A photo with no usable face is refused (`no_face`); one of "
    "several people needs `face` (`several_faces`).",
    response_model=RequestOut,
    status_code=status.HTTP_201_CREATED,
    responses=responses(413, 422),
)
def create_request(
    request: Request,
    kind: Annotated[RequestKind, Form()],
    engine: EngineDep,
    principal: Dpo,
    contact: Annotated[str | None, Form(max_length=320)] = None,
    notes: Annotated[str | None, Form(max_length=5000)] = None,
    selfie: Annotated[UploadFile | None, File(description="A photo of the person.")] = None,
    face: Annotated[int | None, _FACE] = None,
) -> RequestOut:
    data = read_upload(selfie, request.app.state.settings.max_upload_bytes) if selfie else None
    photo = engine.intake_photo(data, face=face) if data else None
    created = engine.create_request(
        kind, contact=contact, selfie=photo, notes=notes, actor=principal.actor
    )
    return RequestOut.of(created)


@router.get(
    "/requests",
    summary="Requests with their status and deadlines, the most urgent first",
    response_model=list[RequestOut],
)
def list_requests(
    engine: EngineDep,
    _: Dpo,
    all: Annotated[bool, Query(description="Closed requests too.")] = False,
) -> list[RequestOut]:
    return [RequestOut.of(r) for r in engine.requests(open_only=not all)]


@router.get(
    "/requests/{ref}", summary="One request", response_model=RequestOut, responses=responses(404)
)
def get_request(ref: str, engine: EngineDep, _: Dpo) -> RequestOut:
    return RequestOut.of(engine.request(ref))


@router.patch(
    "/requests/{ref}",
    summary="Move a request along, or extend its deadline with reasons",
    description="Closing a request (`done`, or `rejected`: refused) destroys its photo; a "
    "closed request stays closed (`closed`). Setting the status it has changes nothing.",
    response_model=RequestOut,
    responses=responses(404, 422),
)
def update_request(ref: str, body: RequestUpdate, engine: EngineDep, principal: Dpo) -> RequestOut:
    updated = engine.update_request(
        ref,
        status=body.status,
        extend_months=body.extend_months,
        reason=body.reason,
        actor=principal.actor,
    )
    return RequestOut.of(updated)


@router.put(
    "/requests/{ref}/selfie",
    summary="Replace the photo of an open request",
    description="Checked like a new request's photo. The review made from the old photo is "
    "dropped: the next review starts from the new one.",
    response_model=RequestOut,
    responses=responses(404, 413, 422),
)
def replace_photo(
    request: Request,
    ref: str,
    selfie: Annotated[UploadFile, File(description="A photo of the person.")],
    engine: EngineDep,
    principal: Dpo,
    face: Annotated[int | None, _FACE] = None,
) -> RequestOut:
    data = read_upload(selfie, request.app.state.settings.max_upload_bytes)
    return RequestOut.of(engine.replace_request_photo(ref, data, face=face, actor=principal.actor))


@router.post(
    "/requests/{ref}/notes",
    summary="Add a dated note to a request",
    response_model=RequestOut,
    responses=responses(404, 422),
)
def add_note(ref: str, body: NoteIn, engine: EngineDep, principal: Dpo) -> RequestOut:
    return RequestOut.of(engine.add_request_note(ref, body.text, actor=principal.actor))


@router.get(
    "/requests/{ref}/history",
    summary="The audit entries about a request, oldest first",
    response_model=list[AuditEntryOut],
    responses=responses(404),
)
def history(ref: str, engine: EngineDep, _: Dpo) -> list[AuditEntryOut]:
    return [AuditEntryOut.model_validate(e) for e in engine.request_history(ref)]


@router.get(
    "/requests/{ref}/review",
    summary="The review of a request by selfie: every candidate, in tiers",
    description="Made from the request's photo the first time (the request moves to "
    "`in_review`), then kept with the request with its decisions; faces catalogued since "
    "that may be the person join it. Matches are included, possible matches are not until a "
    "reviewer includes them.",
    response_model=ReviewOut,
    responses=responses(404, 422),
)
def get_review(ref: str, engine: EngineDep, principal: Dpo) -> ReviewOut:
    return ReviewOut.of(engine.request_review(ref, reviewer=principal.actor, refresh=True))


@router.post(
    "/requests/{ref}/review",
    summary="Decide candidates, search again from the confirmed faces, and keep the review",
    description="Multipart: `include` and `strike` name face ids (repeatable fields); "
    "`verify_with`, an ID photo, records an identity check (refused if it does not match the "
    "selfie: `identity_check_failed`). Every confirmed face is searched from again, which may "
    "bring new candidates: look at the answer before acting.",
    response_model=ReviewOut,
    responses=responses(404, 413, 422),
)
def decide_review(
    request: Request,
    ref: str,
    engine: EngineDep,
    principal: Dpo,
    include: Annotated[list[int] | None, Form(description="Face ids: the person.")] = None,
    strike: Annotated[list[int] | None, Form(description="Face ids: not the person.")] = None,
    review_version: Annotated[str | None, Form(max_length=64)] = None,
    verify_with: Annotated[UploadFile | None, File(description="An ID photo.")] = None,
) -> ReviewOut:
    limit = request.app.state.settings.max_upload_bytes
    id_photo = read_upload(verify_with, limit) if verify_with else None
    review = engine.decide_request(
        ref,
        include=include or (),
        strike=strike or (),
        version=review_version,
        verify_with=id_photo or None,
        reviewer=principal.actor,
    )
    return ReviewOut.of(review)


@router.get(
    "/requests/{ref}/erasure-preview",
    summary="What erasing the person of an erasure request would remove",
    description="The included faces of the request's review (GET .../review for every "
    "candidate), restricted faces included. Review, then execute.",
    response_model=ErasurePreviewOut,
    responses=responses(404, 422),
)
def erasure_preview(ref: str, engine: EngineDep, principal: Dpo) -> ErasurePreviewOut:
    _check_kind(engine, ref, "erasure")
    review = engine.request_review(ref, reviewer=principal.actor)
    return ErasurePreviewOut.of(ref, engine.settle(review), review)


@router.post(
    "/requests/{ref}/erasure",
    summary="Execute the erasure of an erasure request (Art. 17), after review",
    description="Needs `confirm: true`. Erases the included faces of the request's review "
    "and closes the request. Refused when a possible candidate is undecided "
    "(`review_pending`), when the review changed since `review_version` or brings new "
    "candidates (`review_changed`), or when `face_ids` are not what it includes "
    "(`plan_changed`). Returns the signed receipt.",
    response_model=ReceiptOut,
    responses=responses(404, 422),
)
def execute_erasure(ref: str, body: ErasureIn, engine: EngineDep, principal: Dpo) -> ReceiptOut:
    if not body.confirm:
        raise RightsError(
            "an erasure cannot be undone: send confirm: true", code="confirmation_required"
        )
    excluded = set(body.exclude)
    receipt = engine.erase_request(
        ref,
        version=body.review_version,
        strike=excluded,
        expect=set(body.face_ids) - excluded if body.face_ids is not None else None,
        blur_originals=body.blur_originals,
        actor=principal.actor,
    )
    return ReceiptOut.of(receipt)


@router.post(
    "/requests/{ref}/access-package",
    summary="The access package (Art. 15) of the person of an access request, as a zip",
    description="Made from the included faces of the request's review, refused while a "
    "possible candidate is undecided (`review_pending`). Optionally with `verify_with`, an ID "
    "photo that must match the request's selfie before anything is written.",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}},
        **responses(404, 413, 422),
    },
)
def access_package(
    request: Request,
    ref: str,
    engine: EngineDep,
    principal: Dpo,
    verify_with: Annotated[UploadFile | None, File(description="An ID photo.")] = None,
    include_templates: Annotated[bool, Form()] = False,
    review_version: Annotated[str | None, Form(max_length=64)] = None,
) -> FileResponse:
    _check_kind(engine, ref, "access")
    limit = request.app.state.settings.max_upload_bytes
    id_photo = read_upload(verify_with, limit) if verify_with else None
    path, folder = build_in_private_folder(
        lambda folder: engine.access_request(
            ref,
            folder / f"{ref}.zip",
            version=review_version,
            include_templates=include_templates,
            verify_with=id_photo or None,
            actor=principal.actor,
        )[0]
    )
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"access-{ref}.zip",
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


@router.post(
    "/requests/{ref}/restriction",
    summary="Restrict the reviewed faces of a restriction or objection request, or lift it",
    description="Acts on the included faces of the request's review; refused while a "
    "possible candidate is undecided (`review_pending`).",
    response_model=RequestRestrictionOut,
    responses=responses(404, 422),
)
def restrict_request(
    ref: str, body: RequestRestrictionIn, engine: EngineDep, principal: Dpo
) -> RequestRestrictionOut:
    ids = engine.restrict_request(
        ref, lift=body.lift, version=body.review_version, actor=principal.actor
    )
    return RequestRestrictionOut(face_ids=ids, lifted=body.lift)


@router.get(
    "/restrictions",
    summary="The restricted faces: held, out of every search, until lifted",
    response_model=list[FaceOut],
)
def restricted(engine: EngineDep, _: Dpo) -> list[FaceOut]:
    return [FaceOut.of(f) for f in engine.restricted_faces()]


@router.post(
    "/restrictions",
    summary="Restrict faces or a subject (Arts. 18, 21), or lift a restriction",
    description="Restricted faces stay stored but never appear in search results.",
    response_model=Count,
    responses=responses(404, 422),
)
def restrict(body: RestrictionIn, engine: EngineDep, principal: Dpo) -> Count:
    n = engine.restrict(
        face_ids=body.face_ids or None,
        subject=body.subject,
        reason=body.reason,
        lift=body.lift,
        actor=principal.actor,
    )
    return Count(count=n)


@router.post(
    "/objections",
    summary="An objection (Art. 21): restrict the person's faces at once, queue a review",
    response_model=ObjectionOut,
    status_code=status.HTTP_201_CREATED,
    responses=responses(413, 422),
)
def object_to_processing(
    request: Request,
    selfie: Annotated[UploadFile, File(description="A photo of the person, alone.")],
    engine: EngineDep,
    principal: Dpo,
    contact: Annotated[str | None, Form(max_length=320)] = None,
) -> ObjectionOut:
    data = read_upload(selfie, request.app.state.settings.max_upload_bytes)
    created, n = engine.object_to_processing(data, contact=contact, actor=principal.actor)
    # Read back: the objection moved on to review after it was created.
    return ObjectionOut(request=RequestOut.of(engine.request(created.ref)), faces_restricted=n)


@router.get(
    "/suppression",
    summary="The suppression list: erased people kept out of later ingests (ids and dates)",
    response_model=list[SuppressionOut],
)
def suppression(engine: EngineDep, _: Dpo) -> list[SuppressionOut]:
    return [
        SuppressionOut(id=e.id, created_at=e.created_at, request_ref=e.request_ref)
        for e in engine.suppression_list()
    ]


@router.post(
    "/suppression/{entry_id}/remove",
    summary="Remove a suppression entry, with a reason: the person could be ingested again",
    response_model=Count,
    responses=responses(404, 422),
)
def unsuppress(entry_id: PathId, body: UnsuppressIn, engine: EngineDep, principal: Dpo) -> Count:
    engine.remove_suppression(entry_id, reason=body.reason, actor=principal.actor)
    return Count(count=1)


def _check_kind(engine: Engine, ref: str, kind: str) -> None:
    """Guard against acting on the wrong request: the kind must fit."""
    request = engine.request(ref)
    if request.kind != kind:
        raise RightsError(
            f"request {ref} is a {request.kind} request, not {kind}", code="wrong_kind"
        )
