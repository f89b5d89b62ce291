"""Search (investigator): drop a photo in, see its faces, choose one, state the purpose, and
see the photos where that person appears, each face outlined. Photos first, text second."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from vultus.clock import now
from vultus.engine.apikeys import Principal
from vultus.errors import VultusError
from vultus.search.sheet import CaseFacts, query_tile
from vultus.web import media
from vultus.web.forms import EngineDep, read_upload, settings_of
from vultus.web.render import UI, page, redirect
from vultus.web.results import recent
from vultus.web.session import Role, check_search_cap

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
def search_page(
    request: Request, _: Investigator, purpose: str = "", case_ref: str = ""
) -> Response:
    """The search form; `purpose` and `case_ref` fill it in (a search run again after its
    results were forgotten: web/results.py), the photo is always chosen anew."""
    chosen = {"purpose": purpose, "case_ref": case_ref[:200]} if purpose or case_ref else None
    return page(request, "search.html", title="Search", **_form(request, chosen=chosen))


@router.post("/faces")
def detect(
    request: Request,
    engine: EngineDep,
    _: Investigator,
    photo: Annotated[UploadFile | None, File()] = None,
    detection: Annotated[str, Form()] = "",
) -> JSONResponse:
    """The faces in a photo, largest first, with an upright preview to draw them on. Nothing
    is searched and nothing is kept: the choice of face comes before the search. Detected as
    query photos are ("look harder": `detection=harder`), so that face N here is face N of
    the search."""
    settings = settings_of(request)
    try:
        data = read_upload(photo, settings.max_upload_bytes)
        with engine.lock:
            analysed = engine.analyse(data, detection=_detection(detection))
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
    return JSONResponse(
        {
            "width": width,
            "height": height,
            "src": src,
            "faces": faces,
            "detection": _detection(detection),
        }
    )


def _detection(value: str) -> str:
    """How hard a query photo is searched for faces: "harder" on request, else as configured."""
    return "harder" if value == "harder" else "query"


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
    detection: Annotated[str, Form()] = "",
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
                detection=_detection(detection),
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
    assert result.search_id is not None  # audited, so it has its entry
    facts = CaseFacts(
        purpose=purpose,
        case_ref=case_ref.strip() or None,
        actor=principal.actor,
        when=now(),
        controller=settings.controller,
    )
    preview = {"src": src, "width": width, "height": height}
    recent(request).keep(principal, result, query_tile(result, data), facts, preview)
    # POST, then redirect, then GET: a reload or "back" shows the results again, never
    # searching again (another search in the audit log).
    return redirect(f"{UI}/search/{result.search_id}")
