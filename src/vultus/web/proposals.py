"""Finding people (operator): proposed people as rows of faces to name, split, set apart, merge
or hide; the faces no one has named; and every face picture on these pages.

Naming never means typing face ids: each form carries the faces it shows. Each page view is
audited once, listing the faces on it; its pictures are drawn against that entry (`v=`), so
browsing writes one entry per page, not one per thumbnail.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from vultus.engine.apikeys import Principal
from vultus.engine.people import DEFAULT_MIN_FACES
from vultus.errors import ConfigError, VultusError
from vultus.web import media
from vultus.web.forms import EngineDep, parse_ids, settings_of
from vultus.web.render import UI, page, redirect
from vultus.web.session import Role

# Its routes live under /people: the people router includes it (see people.py).
router = APIRouter()
Operator = Annotated[Principal, Depends(Role("operator"))]
PER_PAGE = 20  # proposals per page
FACES_PER_PAGE = 60
TILE_SIZES = (120, 240)


def face_src(face_id: int, view: int, size: int = 120) -> str:
    """Where a page viewed as audit entry `view` draws the picture of `face_id`."""
    return f"{UI}/people/faces/{face_id}.jpg?v={view}&size={size}"


@router.get("/faces/{face_id}.jpg")
def face_picture(
    request: Request,
    face_id: int,
    engine: EngineDep,
    principal: Operator,
    v: int = 0,
    size: int = 120,
) -> Response:
    record = engine.face(face_id)
    side = min(TILE_SIZES, key=lambda c: abs(c - size))
    if record.restricted:
        picture = media.placeholder("restricted", side)
    else:
        record, data = engine.face_photo_in_view(face_id, v, actor=principal.actor)
        picture = media.face_tile(
            data,
            record.box,
            size=side,
            colour=media.QUERY,
            max_pixels=settings_of(request).max_pixels,
        )
    # no-store: after an erasure, no copy of the face may linger in a browser cache.
    return Response(
        picture, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"}
    )


# -- proposed people ---------------------------------------------------------------------------
@router.get("/proposals")
def proposals(
    request: Request,
    engine: EngineDep,
    principal: Operator,
    min_faces: int = 0,
    p: int = 1,
) -> Response:
    at_least = max(2, min_faces or DEFAULT_MIN_FACES)
    found = engine.discover_people(min_faces=at_least, actor=principal.actor)
    p = max(1, p)
    shown = found[(p - 1) * PER_PAGE : p * PER_PAGE]
    ids = [f for proposal in shown for f in proposal.face_ids]
    records = engine.faces_by_id(ids)
    view = engine.view_faces(ids, page="people/proposals", actor=principal.actor)
    rows = [
        {
            "number": (p - 1) * PER_PAGE + k,
            "faces": [records[f] for f in proposal.face_ids if f in records],
            "all": ",".join(map(str, proposal.face_ids)),
        }
        for k, proposal in enumerate(shown, 1)
    ]
    return page(
        request,
        "proposals.html",
        title="Proposed people",
        proposals=rows,
        total=len(found),
        min_faces=at_least,
        p=p,
        pages=max(1, -(-len(found) // PER_PAGE)),
        subjects=[s for s, _ in engine.subjects()],
        view=view,
        face_src=face_src,
        faces_shown=len(ids),
    )


@router.post("/proposals/act")
def act_on_proposal(
    engine: EngineDep,
    principal: Operator,
    all: Annotated[str, Form()] = "",
    face: Annotated[list[int] | None, Form()] = None,
    action: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    subject: Annotated[str, Form()] = "",
    not_: Annotated[int | None, Form(alias="not")] = None,
    back: Annotated[str, Form()] = "",
) -> Response:
    """One proposal's form: name the ticked faces, split off the unticked ones, set one face
    apart ("not this person") or hide the whole proposal."""
    target = back if back.startswith(f"{UI}/people/proposals") else f"{UI}/people/proposals"
    try:
        every = parse_ids(all)
        ticked = [f for f in (face or []) if f in every]
        unticked = [f for f in every if f not in ticked]
        if not_ is not None:
            engine.set_apart([not_], every, actor=principal.actor)
            return redirect(target, ok="Set apart: that face will not be proposed with these.")
        if action == "hide":
            n = engine.hide_faces(every, actor=principal.actor)
            return redirect(target, ok=f"Hidden: {n} face(s) will not be proposed again.")
        if action == "split":
            if not unticked:
                raise ConfigError("untick the faces to split off first", code="no_faces")
            engine.set_apart(unticked, ticked, actor=principal.actor)
            return redirect(target, ok=f"{len(unticked)} face(s) split off this proposal.")
        person = engine.accept_person(
            ticked,
            name=name.strip() or None,
            subject=subject or None,
            left_out=unticked,
            actor=principal.actor,
        )
    except VultusError as exc:
        return redirect(target, error=exc.message)
    return redirect(f"{UI}/people/{person.id}", ok=f"{len(ticked)} face(s) named {person.name}.")


@router.post("/proposals/merge")
def merge_proposals(
    engine: EngineDep,
    principal: Operator,
    proposal: Annotated[list[str] | None, Form()] = None,
    name: Annotated[str, Form()] = "",
    subject: Annotated[str, Form()] = "",
) -> Response:
    """Proposals that are one person: all their faces named at once."""
    back = f"{UI}/people/proposals"
    chosen = proposal or []
    if len(chosen) < 2:
        return redirect(back, error="Choose two or more proposals to merge.")
    try:
        faces = sorted({f for p in chosen for f in parse_ids(p)})
        person = engine.accept_person(
            faces,
            name=name.strip() or None,
            subject=subject or None,
            actor=principal.actor,
        )
    except VultusError as exc:
        return redirect(back, error=exc.message)
    return redirect(
        f"{UI}/people/{person.id}",
        ok=f"{len(chosen)} proposals merged: {len(faces)} face(s) named {person.name}.",
    )


# -- unnamed faces ------------------------------------------------------------------------------
@router.get("/unnamed")
def unnamed(
    request: Request, engine: EngineDep, principal: Operator, hidden: bool = False, p: int = 1
) -> Response:
    p = max(1, p)
    faces, total = engine.unnamed_faces(
        hidden=hidden, offset=(p - 1) * FACES_PER_PAGE, limit=FACES_PER_PAGE
    )
    view = engine.view_faces(
        [f.face_id for f in faces],
        page="people/hidden" if hidden else "people/unnamed",
        actor=principal.actor,
    )
    return page(
        request,
        "unnamed.html",
        title="Hidden faces" if hidden else "Unnamed faces",
        faces=faces,
        total=total,
        hidden=hidden,
        p=p,
        pages=max(1, -(-total // FACES_PER_PAGE)),
        subjects=[s for s, _ in engine.subjects()],
        view=view,
        face_src=face_src,
    )


@router.post("/unnamed/act")
def act_on_unnamed(
    engine: EngineDep,
    principal: Operator,
    face: Annotated[list[int] | None, Form()] = None,
    action: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    subject: Annotated[str, Form()] = "",
    hidden: Annotated[bool, Form()] = False,
) -> Response:
    back = f"{UI}/people/unnamed" + ("?hidden=true" if hidden else "")
    ticked = face or []
    if not ticked:
        return redirect(back, error="Tick the faces first.")
    try:
        if action == "hide":
            n = engine.hide_faces(ticked, actor=principal.actor)
            return redirect(back, ok=f"{n} face(s) hidden from proposals.")
        if action == "unhide":
            n = engine.unhide_faces(ticked, actor=principal.actor)
            return redirect(back, ok=f"{n} face(s) brought back into proposals.")
        person = engine.accept_person(
            ticked,
            name=name.strip() or None,
            subject=subject or None,
            actor=principal.actor,
        )
    except VultusError as exc:
        return redirect(back, error=exc.message)
    return redirect(f"{UI}/people/{person.id}", ok=f"{len(ticked)} face(s) named {person.name}.")
