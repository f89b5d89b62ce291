"""Search (investigator): drop a photo in, see its faces, choose one, state the purpose, and
see the photos where that person appears, each face outlined. Photos first, text second."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from vultus.engine.apikeys import Principal
from vultus.errors import VultusError
from vultus.web import media
from vultus.web.forms import EngineDep, read_upload, settings_of
from vultus.web.render import page
from vultus.web.session import Role, check_search_cap, face_token

router = APIRouter(prefix="/search")
Investigator = Annotated[Principal, Depends(Role("investigator"))]
PREVIEW_SIDE = 720
TOP_CHOICES = (10, 20, 50)


def _form(request: Request, **context: Any) -> dict[str, Any]:
    settings = settings_of(request)
    return {
        "purposes": settings.purposes,
        "fmr_target": settings.search_fmr,
        "top_choices": TOP_CHOICES,
        **context,
    }


@router.get("")
def search_page(request: Request, _: Investigator) -> Response:
    return page(request, "search.html", title="Search", **_form(request))


@router.post("/faces")
def detect(
    request: Request,
    engine: EngineDep,
    _: Investigator,
    photo: Annotated[UploadFile | None, File()] = None,
) -> JSONResponse:
    """The faces in a photo, largest first, with an upright preview to draw them on. Nothing
    is searched and nothing is kept: the choice of face comes before the search."""
    settings = settings_of(request)
    try:
        data = read_upload(photo, settings.max_upload_bytes)
        with engine.lock:
            analysed = engine.analyse(data)
        src, width, height = media.preview(
            data, max_side=PREVIEW_SIDE, max_pixels=settings.max_pixels
        )
    except VultusError as exc:
        return JSONResponse({"error": exc.message, "code": exc.code}, status_code=422)
    faces = [
        {
            "number": n,
            "box": [f.box.left, f.box.top, f.box.right, f.box.bottom],
            "usable": f.template is not None,
            "reason": f.skip_reason,
        }
        for n, f in enumerate(analysed.faces, start=1)
    ]
    return JSONResponse({"width": width, "height": height, "src": src, "faces": faces})


@router.post("")
def search(
    request: Request,
    engine: EngineDep,
    principal: Investigator,
    photo: Annotated[UploadFile | None, File()] = None,
    face: Annotated[str, Form()] = "1",
    purpose: Annotated[str, Form()] = "",
    case_ref: Annotated[str, Form()] = "",
    top: Annotated[str, Form()] = "10",
) -> Response:
    settings = settings_of(request)
    number = int(face) if face.isdigit() and int(face) > 0 else 1
    top_k = int(top) if top.isdigit() and int(top) in TOP_CHOICES else TOP_CHOICES[0]
    chosen = {"purpose": purpose, "case_ref": case_ref, "top": top_k}
    try:
        data = read_upload(photo, settings.max_upload_bytes)
        # A key bound to a purpose or case searches under it alone.
        purpose = principal.bound_purpose(purpose) or ""
        case_ref = principal.bound_case(case_ref.strip() or None) or ""
        engine.check_purpose(purpose)
        check_search_cap(engine, principal)
        with engine.lock:
            result = engine.search(
                data,
                purpose=purpose,
                case_ref=case_ref.strip() or None,
                top_k=top_k,
                face=number,
                actor=principal.actor,
            )
        src, width, height = media.preview(
            data, max_side=PREVIEW_SIDE, max_pixels=settings.max_pixels
        )
    except VultusError as exc:
        return page(
            request,
            "search.html",
            status=422,
            title="Search",
            error=exc.message,
            **_form(request, chosen=chosen),
        )
    secret: bytes = request.app.state.secret
    assert result.search_id is not None  # audited, so it has its entry
    tokens = {
        m.face_id: face_token(secret, m.face_id, principal, result.search_id)
        for m in result.matches
    }
    query_faces = result.faces
    return page(
        request,
        "results.html",
        title="Search results",
        result=result,
        tokens=tokens,
        preview={"src": src, "width": width, "height": height},
        query_faces=query_faces,
        purpose=purpose,
        case_ref=case_ref.strip(),
        **_form(request, chosen=chosen),
    )
