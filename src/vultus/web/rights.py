"""Rights (DPO): the request queue with its Art. 12(3) deadlines; a page per request (its photo,
status, history, notes, receipt and deadline); new requests whose photo must show the person;
and the review of every request by selfie, where each candidate face is included or struck
before anything leaves (an access package) or goes (an erasure), or is restricted. Also the
suppression list and the restricted faces."""

from __future__ import annotations

import shutil
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask

from vultus.engine import Engine
from vultus.engine.apikeys import Principal
from vultus.engine.records import AuditEntry
from vultus.errors import RightsError, VultusError
from vultus.files import build_in_private_folder
from vultus.rights import requests as req
from vultus.rights.review import Review
from vultus.web import media
from vultus.web.forms import (
    EngineDep,
    parse_ids,
    photo_field,
    read_photo_field,
    read_upload,
    settings_of,
)
from vultus.web.render import UI, page, redirect
from vultus.web.session import Role

router = APIRouter(prefix="/rights")
Dpo = Annotated[Principal, Depends(Role("dpo"))]
# The photo a person chooses a face in comes back as a form field (see forms.photo_field).
PICKER_LIMITS: Any = {"max_part_size": 8 * 1024 * 1024}
PREVIEW_SIDE = 720
# What each kind of request does with its reviewed faces, for the review screen.
ACTS = {
    "erasure": "erase",
    "access": "access",
    "restriction": "restrict",
    "objection": "restrict",
}
Ids = Annotated[list[int] | None, Form()]


def _request_page(ref: str) -> str:
    return f"{UI}/rights/requests/{ref}"


def _review_page(ref: str) -> str:
    return f"{UI}/rights/requests/{ref}/review"


# -- the queue ---------------------------------------------------------------------------------
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
        labels=req.STATUS_LABELS,
        suppression=engine.suppression_list(),
        subjects=engine.subjects(),
        restricted=engine.restricted_faces(),
    )


# -- new requests, and a request's photo: one face, or the person's chosen ----------------------
def _photo_from(
    request: Request, selfie: UploadFile | None, photo: str
) -> tuple[bytes | None, bool]:
    """The photo of a form: a fresh upload, or the working copy sent back with a choice of
    face (then True)."""
    limit = settings_of(request).max_upload_bytes
    if photo:
        return read_photo_field(photo, limit), True
    if selfie is not None and selfie.filename:
        return read_upload(selfie, limit), False
    return None, False


def _picker(
    request: Request,
    engine: Engine,
    data: bytes,
    *,
    action: str,
    heading: str,
    fields: dict[str, str],
    back: str,
) -> Response:
    """A photo of several people: show it with its faces numbered, to choose the person's."""
    copy, found = engine.face_choice(data)
    src, width, height = media.preview(
        copy, max_side=PREVIEW_SIDE, max_pixels=settings_of(request).max_pixels
    )
    return page(
        request,
        "pick.html",
        title=heading,
        heading=heading,
        action=action,
        fields=fields,
        photo=photo_field(copy),
        preview={"src": src, "width": width, "height": height},
        found=found,
        back=back,
    )


def _face(value: str) -> int | None:
    return int(value) if value.isdigit() and int(value) > 0 else None


@router.post("/requests", form_limits=PICKER_LIMITS)
def create_request(
    request: Request,
    engine: EngineDep,
    principal: Dpo,
    kind: Annotated[str, Form()] = "",
    contact: Annotated[str, Form()] = "",
    notes: Annotated[str, Form()] = "",
    selfie: Annotated[UploadFile | None, File()] = None,
    photo: Annotated[str, Form()] = "",
    face: Annotated[str, Form()] = "",
) -> Response:
    back = f"{UI}/rights#new-h"
    try:
        data, chosen = _photo_from(request, selfie, photo)
        kept = None
        if data is not None:
            try:
                kept = engine.intake_photo(data, face=_face(face))
            except RightsError as exc:
                if exc.code != "several_faces" or _face(face) is not None:
                    raise
                return _picker(
                    request,
                    engine,
                    data,
                    action=f"{UI}/rights/requests",
                    heading="Which face is the person's?",
                    fields={"kind": kind, "contact": contact, "notes": notes},
                    back=back,
                )
        if chosen and kept is None:
            raise RightsError("choose the person's face in the photo", code="no_face_chosen")
        created = engine.create_request(
            kind,
            contact=contact.strip() or None,
            selfie=kept,
            notes=notes.strip() or None,
            actor=principal.actor,
        )
    except VultusError as exc:
        return redirect(back, error=f"Nothing was recorded: {exc.message}.")
    return redirect(
        _request_page(created.ref),
        ok=f"Request {created.ref} recorded; due {created.due_at:%Y-%m-%d}.",
    )


@router.post("/requests/{ref}/photo", form_limits=PICKER_LIMITS)
def replace_photo(
    request: Request,
    ref: str,
    engine: EngineDep,
    principal: Dpo,
    selfie: Annotated[UploadFile | None, File()] = None,
    photo: Annotated[str, Form()] = "",
    face: Annotated[str, Form()] = "",
) -> Response:
    back = _request_page(ref)
    try:
        data, _ = _photo_from(request, selfie, photo)
        if data is None:
            raise RightsError("choose a photo of the person", code="no_photo")
        try:
            engine.replace_request_photo(ref, data, face=_face(face), actor=principal.actor)
        except RightsError as exc:
            if exc.code != "several_faces" or _face(face) is not None:
                raise
            return _picker(
                request,
                engine,
                data,
                action=f"{UI}/rights/requests/{ref}/photo",
                heading=f"Which face is the person's? ({ref})",
                fields={},
                back=back,
            )
    except VultusError as exc:
        return redirect(back, error=f"The photo was not replaced: {exc.message}.")
    return redirect(back, ok="Photo replaced. Its review starts again from the new photo.")


# -- one request's page ------------------------------------------------------------------------
@router.get("/requests/{ref}")
def request_page(request: Request, ref: str, engine: EngineDep, _: Dpo) -> Response:
    rights_request = engine.request(ref)
    history = engine.request_history(ref)
    return page(
        request,
        "request.html",
        title=f"Request {ref}",
        r=rights_request,
        review=engine.stored_review(ref),
        receipt=engine.request_receipt(ref),
        history=[(e, describe(e)) for e in history],
        notes=(rights_request.notes or "").splitlines(),
        statuses=req.STATUSES,
        labels=req.STATUS_LABELS,
        is_open=rights_request.status in req.OPEN,
        packaged=any(e.action == "access" and "identity_check" not in e.details for e in history),
    )


@router.post("/requests/{ref}/update")
def update_request(
    ref: str,
    engine: EngineDep,
    principal: Dpo,
    status: Annotated[str, Form()] = "",
    extend: Annotated[str, Form()] = "0",
    reason: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
) -> Response:
    target = _request_page(ref) if back == "request" else f"{UI}/rights#req-{ref}"
    try:
        months = int(extend) if extend.isdigit() else 0
        before = engine.request(ref).status
        updated = engine.update_request(
            ref,
            status=status or None,
            extend_months=months,
            reason=reason.strip() or None,
            actor=principal.actor,
        )
    except VultusError as exc:
        return redirect(target, error=exc.message)
    if status and status == before and not months:
        return redirect(target, ok=f"Request {ref} is already {req.STATUS_LABELS[before]}.")
    closed = " Its photo was destroyed." if updated.status in req.CLOSED else ""
    return redirect(target, ok=f"Request {ref} updated.{closed}")


@router.post("/requests/{ref}/notes")
def add_note(
    ref: str, engine: EngineDep, principal: Dpo, text: Annotated[str, Form()] = ""
) -> Response:
    try:
        engine.add_request_note(ref, text, actor=principal.actor)
    except VultusError as exc:
        return redirect(f"{_request_page(ref)}#notes-h", error=exc.message)
    return redirect(f"{_request_page(ref)}#notes-h", ok="Note added.")


# -- the review: every candidate, included or struck by a person --------------------------------
@router.get("/requests/{ref}/review")
def review_page(request: Request, ref: str, engine: EngineDep, principal: Dpo) -> Response:
    rights_request = engine.request(ref)
    if rights_request.status in req.CLOSED or rights_request.selfie is None:
        return redirect(_request_page(ref))
    try:
        review = engine.request_review(ref, reviewer=principal.actor, refresh=True)
    except RightsError as exc:
        # A photo kept before intake was checked (no face, several): replace it there.
        return redirect(
            f"{_request_page(ref)}#photo-h",
            error=f"This request's photo cannot be reviewed: {exc.message}. Replace it below.",
        )
    return page(
        request,
        "review.html",
        title=f"Review {ref}",
        ref=ref,
        r=engine.request(ref),  # read again: the first review moves it into review
        labels=req.STATUS_LABELS,
        review=review,
        act=ACTS[rights_request.kind],
        rounds=_rounds(review),
    )


@router.get("/requests/{ref}/erasure")
def erasure_preview(ref: str, _: Dpo) -> Response:
    """The erasure preview became the review of the request."""
    return redirect(_review_page(ref))


def _decisions(shown: list[int] | None, include: list[int] | None) -> tuple[set[int], set[int]]:
    """The form's ticks: every face shown is the person (ticked) or not (unticked)."""
    ticked = set(include or [])
    return ticked, set(shown or []) - ticked


def _id_photo(request: Request, verify_with: UploadFile | None) -> bytes | None:
    if verify_with is None or not verify_with.filename:
        return None
    return read_upload(verify_with, settings_of(request).max_upload_bytes, what="an ID photo")


@router.post("/requests/{ref}/review")
def save_review(
    request: Request,
    ref: str,
    engine: EngineDep,
    principal: Dpo,
    version: Annotated[str, Form()] = "",
    shown: Ids = None,
    include: Ids = None,
    verify_with: Annotated[UploadFile | None, File()] = None,
) -> Response:
    ticked, struck = _decisions(shown, include)
    try:
        before = engine.stored_review(ref)
        review = engine.decide_request(
            ref,
            include=ticked,
            strike=struck,
            version=version or None,
            verify_with=_id_photo(request, verify_with),
            reviewer=principal.actor,
        )
    except VultusError as exc:
        return redirect(_review_page(ref), error=exc.message)
    known = {c.face_id for c in before.candidates} if before else set()
    new = len([c for c in review.candidates if c.face_id not in known])
    found = (
        f" Searching again from the confirmed faces found {new} new candidate"
        f"{'s' if new != 1 else ''}: look at {'them' if new != 1 else 'it'}."
        if new
        else " Searching again from the confirmed faces found no new candidate."
    )
    checked = " Identity check passed." if verify_with is not None and verify_with.filename else ""
    return redirect(f"{_review_page(ref)}#candidates", ok=f"Decisions saved.{checked}{found}")


@router.post("/requests/{ref}/erasure")
def erasure_execute(
    request: Request,
    ref: str,
    engine: EngineDep,
    principal: Dpo,
    version: Annotated[str, Form()] = "",
    shown: Ids = None,
    include: Ids = None,
    confirm: Annotated[str, Form()] = "",
    blur_originals: Annotated[str, Form()] = "",
) -> Response:
    back = _review_page(ref)
    if confirm != "yes":
        return redirect(back, error="Tick the confirmation: an erasure cannot be undone.")
    ticked, struck = _decisions(shown, include)
    try:
        receipt = engine.erase_request(
            ref,
            version=version or None,
            include=ticked,
            strike=struck,
            blur_originals=blur_originals == "yes",
            actor=principal.actor,
        )
        review = engine.stored_review(ref)
    except VultusError as exc:
        return redirect(back, error=exc.message)
    return page(
        request,
        "erasure_done.html",
        title=f"Erased: {ref}",
        ref=ref,
        receipt=receipt,
        struck=sorted(c.face_id for c in review.struck) if review else [],
    )


@router.post("/requests/{ref}/access")
def access_package(
    request: Request,
    ref: str,
    engine: EngineDep,
    principal: Dpo,
    version: Annotated[str, Form()] = "",
    shown: Ids = None,
    include: Ids = None,
    verify_with: Annotated[UploadFile | None, File()] = None,
) -> Response:
    ticked, struck = _decisions(shown, include)
    try:
        id_photo = _id_photo(request, verify_with)
        path, folder = build_in_private_folder(
            lambda folder: engine.access_request(
                ref,
                folder / f"{ref}.zip",
                version=version or None,
                include=ticked,
                strike=struck,
                verify_with=id_photo,
                actor=principal.actor,
            )[0]
        )
    except VultusError as exc:
        return redirect(_review_page(ref), error=exc.message)
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"access-{ref}.zip",
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


@router.post("/requests/{ref}/restrict")
def restrict_request(
    ref: str,
    engine: EngineDep,
    principal: Dpo,
    version: Annotated[str, Form()] = "",
    shown: Ids = None,
    include: Ids = None,
    action: Annotated[str, Form()] = "restrict",
) -> Response:
    """A restriction (or objection) request: restrict the reviewed faces of the person, or
    lift that restriction once the request is settled."""
    lift = action == "lift"
    ticked, struck = _decisions(shown, include)
    try:
        ids = engine.restrict_request(
            ref,
            lift=lift,
            version=version or None,
            include=ticked,
            strike=struck,
            actor=principal.actor,
        )
    except VultusError as exc:
        return redirect(_review_page(ref), error=exc.message)
    verb = "lifted for" if lift else "placed on"
    faces = f" (faces {', '.join(str(i) for i in ids[:20])})" if ids else ""
    return redirect(
        _review_page(ref),
        ok=f"Restriction {verb} {len(ids)} face(s) of the person in {ref}{faces}.",
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


# -- words for the pages ------------------------------------------------------------------------
def _rounds(review: Review) -> dict[int, str]:
    return {
        n: "the request's photo" if n == 0 else f"search {n} from the confirmed faces"
        for n in range(review.rounds + 1)
    }


def describe(entry: AuditEntry) -> str:
    """An audit entry about a request, in a line a DPO reads."""
    d = entry.details
    if entry.action == "request":
        event = d.get("event")
        if event == "received":
            return f"Request received ({d.get('kind')})"
        if event == "reviewed":
            struck = cast(list[int], d.get("struck") or [])
            included = cast(list[int], d.get("included") or [])
            text = (
                f"Review kept: {d.get('candidates')} candidate(s), {len(included)} included, "
                f"{len(struck)} struck"
            )
            if d.get("rounds"):
                text += f", {d['rounds']} search(es) again from confirmed faces"
            if d.get("identity_check"):
                text += "; identity check passed"
            return text
        if event == "photo_replaced":
            return "Photo replaced; the review starts again"
        if event == "note":
            return "Note added"
        status = req.STATUS_LABELS.get(str(d.get("status")), str(d.get("status")))
        text = f"Status: {status}"
        if d.get("extended"):
            text += f"; deadline extended by {d['extended']} month(s)"
        if d.get("photo_destroyed"):
            text += "; the request's photo destroyed"
        return text
    if entry.action == "view":
        return "The request's photo viewed"
    if entry.action == "access":
        if d.get("identity_check") == "failed":
            return "Identity check failed: nothing disclosed"
        return f"Access package made: {len(entry.result_ids)} face(s)"
    if entry.action == "erasure":
        return f"Erasure: {d.get('faces')} face(s) erased; receipt {d.get('receipt')}"
    if entry.action == "restriction":
        verb = "lifted for" if d.get("lifted") else "placed on"
        return f"Restriction {verb} {len(entry.result_ids)} face(s)"
    return entry.action
