"""Deleting a photo or a face (operator, the role that may delete, as in the API): never one
click. The delete opens a review in the erasure review's form: every face of the photo as a
card, ticked where it goes, what happens to the photo, a confirmation, and a button that says
how many faces it deletes (the same page mechanics as the rights review). A deletion removes
from Vultus: the catalog rows, the templates and the index entries; the file itself stays
where it lies (an erasure, by a data subject's request, is the way that also deletes files)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from vultus.engine.apikeys import Principal
from vultus.web.forms import EngineDep, parse_ids
from vultus.web.render import UI, page, redirect
from vultus.web.session import Role

router = APIRouter(prefix="/library/images")
Operator = Annotated[Principal, Depends(Role("operator"))]


@router.get("/{image_id}/delete")
def delete_review(
    request: Request, image_id: int, engine: EngineDep, principal: Operator, face: int = 0
) -> Response:
    """The review: with `face`, only that face is ticked; else the whole photo's."""
    summary, faces = engine.image(image_id)
    ticked = {face} if face in {f.face_id for f in faces} else {f.face_id for f in faces}
    view = engine.view_page([image_id], actor=principal.actor, page="delete review")
    return page(
        request,
        "delete.html",
        title=f"Delete from photo {image_id}",
        image=summary,
        faces=faces,
        ticked=ticked,
        view=view,
    )


@router.post("/{image_id}/delete")
def delete(
    request: Request,
    image_id: int,
    engine: EngineDep,
    principal: Operator,
    include: Annotated[list[str] | None, Form()] = None,
    confirm: Annotated[str, Form()] = "",
) -> Response:
    back = f"{UI}/library/images/{image_id}/delete"
    if confirm != "yes":
        return redirect(back, error="Tick the confirmation: a deletion cannot be undone.")
    summary, faces = engine.image(image_id)
    held = {f.face_id for f in faces}
    chosen = set(parse_ids(" ".join(include or []))) & held
    if faces and not chosen:
        return redirect(back, error="Tick at least one face to delete.")
    with engine.lock:
        if chosen == held:  # every face, or a photo without any: the photo goes
            engine.delete_image(image_id, actor=principal.actor)
            return redirect(
                f"{UI}/library",
                ok=f"Deleted photo {summary.file_name} and its {len(held)} face(s) from Vultus; "
                f"the file stays at {summary.path}.",
            )
        engine.delete_faces(sorted(chosen), actor=principal.actor)
    return redirect(
        f"{UI}/library/images/{image_id}",
        ok=f"Deleted {len(chosen)} face(s) from Vultus; the photo stays for the others in it.",
    )
