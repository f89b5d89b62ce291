"""People (operator): named subjects and their faces; create, rename, merge, link, unlink;
on a person's page, more faces that may be them. Proposals and unnamed faces are in
`proposals`. Each page view is audited once, listing the faces it shows."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from vultus.engine import Engine
from vultus.engine.apikeys import Principal
from vultus.errors import NotFoundError, VultusError
from vultus.web import proposals
from vultus.web.forms import EngineDep, parse_ids
from vultus.web.proposals import face_src
from vultus.web.render import UI, page, redirect
from vultus.web.session import Role

router = APIRouter(prefix="/people")
# First: its fixed paths (/people/proposals ...) must not be read as a person's id.
router.include_router(proposals.router)
Operator = Annotated[Principal, Depends(Role("operator"))]
SAMPLE = 6


def _name_of(engine: Engine, subject_id: int) -> str:
    for subject, _ in engine.subjects():
        if subject.id == subject_id:
            return subject.name
    raise NotFoundError(f"no subject with id {subject_id}")


@router.get("")
def people(request: Request, engine: EngineDep, principal: Operator) -> Response:
    named = [(s, n, engine.subject_faces(s.name)[:SAMPLE]) for s, n in engine.subjects()]
    view = engine.view_faces(
        [f.face_id for _, _, sample in named for f in sample], page="people", actor=principal.actor
    )
    subjects = [
        {"id": s.id, "name": s.name, "faces": n, "restricted": s.restricted, "sample": sample}
        for s, n, sample in named
    ]
    return page(
        request, "people.html", title="People", subjects=subjects, view=view, face_src=face_src
    )


@router.post("")
def create(
    engine: EngineDep,
    principal: Operator,
    name: Annotated[str, Form()] = "",
    faces: Annotated[str, Form()] = "",
) -> Response:
    try:
        subject = engine.create_subject(name.strip(), parse_ids(faces), actor=principal.actor)
    except VultusError as exc:
        return redirect(f"{UI}/people", error=exc.message)
    return redirect(f"{UI}/people/{subject.id}", ok=f"{subject.name} created.")


@router.post("/merge")
def merge(
    engine: EngineDep,
    principal: Operator,
    into: Annotated[str, Form()] = "",
    other: Annotated[str, Form()] = "",
) -> Response:
    try:
        moved = engine.merge_subjects(into, other, actor=principal.actor)
        target = engine.subject(into)
    except VultusError as exc:
        return redirect(f"{UI}/people", error=exc.message)
    return redirect(
        f"{UI}/people/{target.id}", ok=f"{other} merged into {into}: {moved} face(s) moved."
    )


@router.get("/{subject_id}")
def person(request: Request, subject_id: int, engine: EngineDep, principal: Operator) -> Response:
    name = _name_of(engine, subject_id)
    others = [s for s, _ in engine.subjects() if s.id != subject_id]
    faces = engine.subject_faces(name)
    suggested = engine.suggestions(name)
    view = engine.view_faces(
        [f.face_id for f in faces] + [s.face.face_id for s in suggested],
        page="people/person",
        actor=principal.actor,
        details={"subject": name},
    )
    return page(
        request,
        "person.html",
        title=name,
        subject=engine.subject(name),
        faces=faces,
        suggestions=suggested,
        others=others,
        view=view,
        face_src=face_src,
    )


@router.post("/{subject_id}/not")
def not_this_person(
    subject_id: int, engine: EngineDep, principal: Operator, face: Annotated[int, Form()] = 0
) -> Response:
    back = f"{UI}/people/{subject_id}"
    try:
        name = _name_of(engine, subject_id)
        engine.not_this_person(name, [face], actor=principal.actor)
    except VultusError as exc:
        return redirect(back, error=exc.message)
    return redirect(back, ok=f"Noted: that face is not {name}; it will not be suggested again.")


@router.post("/{subject_id}/rename")
def rename(
    subject_id: int, engine: EngineDep, principal: Operator, name: Annotated[str, Form()] = ""
) -> Response:
    try:
        old = _name_of(engine, subject_id)
        engine.rename_subject(old, name.strip(), actor=principal.actor)
    except VultusError as exc:
        return redirect(f"{UI}/people/{subject_id}", error=exc.message)
    return redirect(f"{UI}/people/{subject_id}", ok=f"{old} is now {name.strip()}.")


@router.post("/{subject_id}/link")
def link(
    subject_id: int, engine: EngineDep, principal: Operator, faces: Annotated[str, Form()] = ""
) -> Response:
    back = f"{UI}/people/{subject_id}"
    try:
        ids = parse_ids(faces)
        if not ids:
            return redirect(back, error="Give the id of one or more faces to link.")
        n = engine.link_faces(_name_of(engine, subject_id), ids, actor=principal.actor)
    except VultusError as exc:
        return redirect(back, error=exc.message)
    return redirect(back, ok=f"{n} face(s) linked.")


@router.post("/{subject_id}/unlink")
def unlink(
    subject_id: int,
    engine: EngineDep,
    principal: Operator,
    face: Annotated[list[int] | None, Form()] = None,
) -> Response:
    back = f"{UI}/people/{subject_id}"
    if not face:
        return redirect(back, error="Tick the faces to unlink first.")
    try:
        n = engine.unlink_faces(face, actor=principal.actor)
    except VultusError as exc:
        return redirect(back, error=exc.message)
    return redirect(back, ok=f"{n} face(s) unlinked.")


@router.post("/link-face")
def link_from_image(
    engine: EngineDep,
    principal: Operator,
    face: Annotated[int, Form()] = 0,
    subject: Annotated[str, Form()] = "",
    image: Annotated[int, Form()] = 0,
) -> Response:
    """From a photo's page: link one of its faces to a subject, new or existing."""
    back = f"{UI}/library/images/{image}"
    name = subject.strip()
    try:
        if not name:
            return redirect(back, error="Name the person to link the face to.")
        if name not in {s.name for s, _ in engine.subjects()}:
            engine.create_subject(name, actor=principal.actor)
        engine.link_faces(name, [face], actor=principal.actor)
    except VultusError as exc:
        return redirect(back, error=exc.message)
    return redirect(back, ok=f"Face {face} linked to {name}.")
