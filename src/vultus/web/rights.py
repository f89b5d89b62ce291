"""Rights (DPO): the request queue with its Art. 12(3) deadlines, new requests, access packages,
erasure with a preview a person reviews (striking faces that are not the person) and a
confirmation, the suppression list, and restrictions."""

from __future__ import annotations

import shutil
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask

from vultus.engine import Engine
from vultus.engine.apikeys import Principal
from vultus.engine.records import RightsRequest
from vultus.errors import RightsError, VultusError
from vultus.files import build_in_private_folder
from vultus.rights import requests as req
from vultus.web.forms import EngineDep, parse_ids, read_upload, settings_of
from vultus.web.render import UI, page, redirect
from vultus.web.session import Role

router = APIRouter(prefix="/rights")
Dpo = Annotated[Principal, Depends(Role("dpo"))]
OPEN = {"received", "in_review"}


def _open_request(engine: Engine, ref: str, kind: str | None = None) -> RightsRequest:
    request = engine.request(ref)
    if kind is not None and request.kind != kind:
        raise RightsError(
            f"request {ref} is a {request.kind} request, not {kind}", code="wrong_kind"
        )
    if request.status not in OPEN:
        raise RightsError(f"request {ref} is {request.status}: reopen it first", code="closed")
    return request


@router.get("")
def rights_page(request: Request, engine: EngineDep, _: Dpo, closed: bool = False) -> Response:
    return page(
        request,
        "rights.html",
        title="Rights",
        requests=engine.requests(open_only=not closed),
        show_closed=closed,
        kinds=req.KINDS,
        statuses=req.STATUSES,
        suppression=engine.suppression_list(),
        subjects=engine.subjects(),
    )


@router.post("/requests")
def create_request(
    request: Request,
    engine: EngineDep,
    principal: Dpo,
    kind: Annotated[str, Form()] = "",
    contact: Annotated[str, Form()] = "",
    notes: Annotated[str, Form()] = "",
    selfie: Annotated[UploadFile | None, File()] = None,
) -> Response:
    try:
        data = (
            read_upload(selfie, settings_of(request).max_upload_bytes)
            if selfie is not None and selfie.filename
            else None
        )
        created = engine.create_request(
            kind,
            contact=contact.strip() or None,
            selfie=data,
            notes=notes.strip() or None,
            actor=principal.actor,
        )
    except VultusError as exc:
        return redirect(f"{UI}/rights", error=exc.message)
    return redirect(
        f"{UI}/rights#req-{created.ref}",
        ok=f"Request {created.ref} recorded; due {created.due_at:%Y-%m-%d}.",
    )


@router.post("/requests/{ref}/update")
def update_request(
    ref: str,
    engine: EngineDep,
    principal: Dpo,
    status: Annotated[str, Form()] = "",
    extend: Annotated[str, Form()] = "0",
    reason: Annotated[str, Form()] = "",
) -> Response:
    try:
        months = int(extend) if extend.isdigit() else 0
        engine.update_request(
            ref,
            status=status or None,
            extend_months=months,
            reason=reason.strip() or None,
            actor=principal.actor,
        )
    except VultusError as exc:
        return redirect(f"{UI}/rights", error=exc.message)
    return redirect(f"{UI}/rights#req-{ref}", ok=f"Request {ref} updated.")


# -- erasure: preview, review, confirm --------------------------------------------------------
@router.get("/requests/{ref}/erasure")
def erasure_preview(request: Request, ref: str, engine: EngineDep, _: Dpo) -> Response:
    rights_request = _open_request(engine, ref, "erasure")
    plan = engine.find_person(engine.request_selfie(ref))
    return page(
        request,
        "erasure.html",
        title=f"Erasure {ref}",
        ref=ref,
        rights_request=rights_request,
        plan=plan,
    )


@router.post("/requests/{ref}/erasure")
def erasure_execute(
    request: Request,
    ref: str,
    engine: EngineDep,
    principal: Dpo,
    reviewed: Annotated[list[int] | None, Form()] = None,
    strike: Annotated[list[int] | None, Form()] = None,
    confirm: Annotated[str, Form()] = "",
    blur_originals: Annotated[str, Form()] = "",
) -> Response:
    back = f"{UI}/rights/requests/{ref}/erasure"
    if confirm != "yes":
        return redirect(back, error="Tick the confirmation: an erasure cannot be undone.")
    excluded = set(strike or [])
    try:
        _open_request(engine, ref, "erasure")
        # Preview check and erasure as one step: no ingest slips in between.
        with engine.lock:
            plan = engine.find_person(engine.request_selfie(ref)).without(excluded)
            if set(plan.face_ids) != set(reviewed or []) - excluded:
                return redirect(
                    back,
                    error=f"The matches changed since the preview ({len(plan.face_ids)} now); "
                    "review them again.",
                )
            receipt = engine.erase(
                plan, request_ref=ref, blur_originals=blur_originals == "yes", actor=principal.actor
            )
    except VultusError as exc:
        return redirect(back, error=exc.message)
    return page(
        request,
        "erasure_done.html",
        title=f"Erased: {ref}",
        ref=ref,
        receipt=receipt,
        struck=sorted(excluded),
    )


@router.post("/requests/{ref}/access")
def access_package(request: Request, ref: str, engine: EngineDep, principal: Dpo) -> Response:
    _open_request(engine, ref, "access")
    path, folder = build_in_private_folder(
        lambda folder: engine.access(
            engine.request_review(ref, reviewer=principal.actor),
            folder / f"{ref}.zip",
            actor=principal.actor,
        )[0]
    )
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"access-{ref}.zip",
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


@router.post("/requests/{ref}/restrict")
def restrict_request(
    ref: str, engine: EngineDep, principal: Dpo, action: Annotated[str, Form()] = "restrict"
) -> Response:
    """A restriction (or objection) request: restrict every face of the person in the selfie,
    or lift that restriction once the request is settled."""
    lift = action == "lift"
    try:
        rights_request = _open_request(engine, ref)
        if rights_request.kind not in {"restriction", "objection"}:
            raise RightsError(f"request {ref} is an {rights_request.kind} request")
        with engine.lock:
            # find_person includes restricted faces, so a lift finds what was restricted.
            plan = engine.find_person(engine.request_selfie(ref))
            n = (
                engine.restrict(
                    face_ids=plan.face_ids,
                    reason=f"request {ref}",
                    lift=lift,
                    actor=principal.actor,
                )
                if plan.face_ids
                else 0
            )
    except VultusError as exc:
        return redirect(f"{UI}/rights", error=exc.message)
    verb = "lifted for" if lift else "placed on"
    ids = f" (faces {', '.join(str(i) for i in plan.face_ids[:20])})" if plan.face_ids else ""
    return redirect(
        f"{UI}/rights#req-{ref}", ok=f"Restriction {verb} {n} face(s) of the person in {ref}{ids}."
    )


# -- suppression and restriction --------------------------------------------------------------
@router.post("/suppression/{entry_id}/remove")
def unsuppress(
    entry_id: int, engine: EngineDep, principal: Dpo, reason: Annotated[str, Form()] = ""
) -> Response:
    try:
        engine.remove_suppression(entry_id, reason=reason, actor=principal.actor)
    except VultusError as exc:
        return redirect(f"{UI}/rights#suppression", error=exc.message)
    return redirect(f"{UI}/rights#suppression", ok=f"Suppression entry {entry_id} removed.")


@router.post("/restrictions")
def restrict(
    engine: EngineDep,
    principal: Dpo,
    subject: Annotated[str, Form()] = "",
    faces: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "restrict",
) -> Response:
    back = f"{UI}/rights#restrictions"
    lift = action == "lift"
    try:
        if not reason.strip():
            raise RightsError("state the reason for the restriction or its lifting")
        ids = parse_ids(faces)
        if not subject and not ids:
            raise RightsError("choose a person or give face ids")
        n = engine.restrict(
            face_ids=ids or None,
            subject=subject or None,
            reason=reason.strip(),
            lift=lift,
            actor=principal.actor,
        )
    except VultusError as exc:
        return redirect(back, error=exc.message)
    verb = "lifted for" if lift else "placed on"
    return redirect(back, ok=f"Restriction {verb} {n} face(s).")
