"""Data-subject rights (Arts. 12-21): requests with their deadlines, erasure by the request's
selfie (preview, then execution with confirmation), access packages, restriction, objection,
and the suppression list. For the DPO."""

from __future__ import annotations

import shutil
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile, status
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from vultus.api.deps import EngineDep, PathId, read_upload, require
from vultus.api.errors import responses
from vultus.api.schemas import (
    Count,
    ErasureIn,
    ErasurePreviewOut,
    ObjectionOut,
    ReceiptOut,
    RequestKind,
    RequestOut,
    RequestUpdate,
    RestrictionIn,
    SuppressionOut,
    UnsuppressIn,
)
from vultus.engine import Engine
from vultus.engine.apikeys import Principal
from vultus.engine.records import RightsRequest
from vultus.errors import RightsError
from vultus.files import build_in_private_folder

router = APIRouter(prefix="/rights", tags=["rights"], responses=responses(401, 403, 429, 503))

Dpo = Annotated[Principal, Depends(require("dpo"))]
OPEN = {"received", "in_review"}


def _open_request(engine: Engine, ref: str, kind: str) -> RightsRequest:
    """Guard against acting on the wrong request: the kind must fit and it must be open."""
    request = engine.request(ref)
    if request.kind != kind:
        raise RightsError(
            f"request {ref} is a {request.kind} request, not {kind}", code="wrong_kind"
        )
    if request.status not in OPEN:
        raise RightsError(f"request {ref} is {request.status}: reopen it first", code="closed")
    return request


@router.post(
    "/requests",
    summary="Record a request received, with its one-month deadline (Art. 12(3))",
    description="Multipart, so that the person's selfie can come with it: erasure and access "
    "by request find the person with it. The selfie is stored encrypted.",
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
    selfie: Annotated[UploadFile | None, File(description="A photo of the person, alone.")] = None,
) -> RequestOut:
    data = read_upload(selfie, request.app.state.settings.max_upload_bytes) if selfie else None
    created = engine.create_request(
        kind, contact=contact, selfie=data or None, notes=notes, actor=principal.actor
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


@router.get(
    "/requests/{ref}/erasure-preview",
    summary="What erasing the person of an erasure request would remove",
    description="Every catalogued face of the person in the request's selfie, restricted faces "
    "included, at the strict per-request false-match rate. Review it; then execute.",
    response_model=ErasurePreviewOut,
    responses=responses(404, 422),
)
def erasure_preview(ref: str, engine: EngineDep, _: Dpo) -> ErasurePreviewOut:
    _open_request(engine, ref, "erasure")
    plan = engine.find_person(engine.request_selfie(ref))
    return ErasurePreviewOut.of(ref, plan)


@router.post(
    "/requests/{ref}/erasure",
    summary="Execute the erasure of an erasure request (Art. 17), after review",
    description="Needs `confirm: true`. Send back the preview's `face_ids` to erase exactly "
    "what was reviewed: if the matches changed since, nothing is erased (`plan_changed`). "
    "Returns the signed receipt.",
    response_model=ReceiptOut,
    responses=responses(404, 422),
)
def execute_erasure(ref: str, body: ErasureIn, engine: EngineDep, principal: Dpo) -> ReceiptOut:
    _open_request(engine, ref, "erasure")
    if not body.confirm:
        raise RightsError(
            "an erasure cannot be undone: send confirm: true", code="confirmation_required"
        )
    excluded = set(body.exclude)
    with engine.lock:  # preview check and erasure as one step: no ingest slips in between
        plan = engine.find_person(engine.request_selfie(ref)).without(excluded)
        if body.face_ids is not None and set(plan.face_ids) != set(body.face_ids) - excluded:
            raise RightsError(
                f"the matches changed since the preview ({len(plan.face_ids)} now); "
                "preview again and review",
                code="plan_changed",
            )
        receipt = engine.erase(
            plan, request_ref=ref, blur_originals=body.blur_originals, actor=principal.actor
        )
    return ReceiptOut.of(receipt)


@router.post(
    "/requests/{ref}/access-package",
    summary="The access package (Art. 15) of the person of an access request, as a zip",
    description="Optionally with `verify_with`, an ID photo that must match the request's "
    "selfie before anything is written.",
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
) -> FileResponse:
    _open_request(engine, ref, "access")
    limit = request.app.state.settings.max_upload_bytes
    id_photo = read_upload(verify_with, limit) if verify_with else None
    path, folder = build_in_private_folder(
        lambda folder: engine.access(
            engine.request_review(ref, verify_with=id_photo or None, reviewer=principal.actor),
            folder / f"{ref}.zip",
            include_templates=include_templates,
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
    return [SuppressionOut(id=i, created_at=at) for i, at in engine.suppression_list()]


@router.post(
    "/suppression/{entry_id}/remove",
    summary="Remove a suppression entry, with a reason: the person could be ingested again",
    response_model=Count,
    responses=responses(404, 422),
)
def unsuppress(entry_id: PathId, body: UnsuppressIn, engine: EngineDep, principal: Dpo) -> Count:
    engine.remove_suppression(entry_id, reason=body.reason, actor=principal.actor)
    return Count(count=1)
