"""1:1 verification (investigator): are the faces in two photos the same person? Two photos,
a purpose, a false-match rate; the answer leads with the verdict and its odds in words, and
outlines the face of each photo that was compared. The largest face is compared unless the
investigator picks another (the search's picker, in the browser: face N there is face N
here, detected the same way). Each comparison is audited, and counts against the key's daily
searches, as in the API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from vultus.engine.apikeys import Principal
from vultus.errors import VultusError
from vultus.pipeline.analyse import AnalysedImage
from vultus.search.tiers import odds_in_words
from vultus.web import media
from vultus.web.forms import EngineDep, read_upload, settings_of
from vultus.web.render import page
from vultus.web.session import Role, check_search_cap

router = APIRouter(prefix="/verify")
Investigator = Annotated[Principal, Depends(Role("investigator"))]
# The false-match rates offered, strictest last: one stranger's face in N comes this close.
FMR_CHOICES = (1e-3, 1e-4, 1e-5)
PREVIEW_SIDE = 480


def _form(request: Request, **context: Any) -> dict[str, Any]:
    return {
        "purposes": settings_of(request).purposes,
        "fmr_choices": FMR_CHOICES,
        "chosen": {},
        **context,
    }


@router.get("")
def verify_page(request: Request, _: Investigator) -> Response:
    return page(request, "verify.html", title="Verify", **_form(request))


@router.post("")
def verify(
    request: Request,
    engine: EngineDep,
    principal: Investigator,
    first: Annotated[UploadFile | None, File()] = None,
    second: Annotated[UploadFile | None, File()] = None,
    purpose: Annotated[str, Form()] = "",
    case_ref: Annotated[str, Form()] = "",
    fmr: Annotated[str, Form()] = "",
    face_first: Annotated[int, Form(ge=1, le=1000)] = 1,
    face_second: Annotated[int, Form(ge=1, le=1000)] = 1,
    detection_first: Annotated[str, Form()] = "",
    detection_second: Annotated[str, Form()] = "",
) -> Response:
    settings = settings_of(request)
    rate = next((f for f in FMR_CHOICES if f"{f:g}" == fmr), FMR_CHOICES[0])
    chosen = {"purpose": purpose, "case_ref": case_ref, "fmr": rate}
    try:
        a = read_upload(first, settings.max_upload_bytes, what="the first photo")
        b = read_upload(second, settings.max_upload_bytes, what="the second photo")
        engine.check_purpose(purpose)
        check_search_cap(engine, principal)
        with engine.lock:
            result, found_a, found_b = engine.verify_faces(
                a,
                b,
                purpose=purpose,
                case_ref=case_ref.strip() or None,
                fmr=rate,
                faces=(face_first, face_second),
                detection=(_detection(detection_first), _detection(detection_second)),
                actor=principal.actor,
            )
        previews = [
            _outlined(x, found, number, settings.max_pixels)
            for x, found, number in ((a, found_a, face_first), (b, found_b, face_second))
        ]
    except VultusError as exc:
        return page(
            request,
            "verify.html",
            status=422,
            title="Verify",
            error=exc.message,
            **_form(request, chosen=chosen),
        )
    return page(
        request,
        "verify.html",
        title="Verify",
        result=result,
        odds=_odds(result.fmr),
        previews=previews,
        **_form(request, chosen=chosen),
    )


def _detection(value: str) -> str:
    """As the search's picker detected the photo: "harder" if asked, else as query photos."""
    return "harder" if value == "harder" else "query"


def _outlined(data: bytes, found: AnalysedImage, number: int, max_pixels: int) -> dict[str, Any]:
    """A photo's preview with its faces' boxes (in the photo's pixels, as the preview's
    viewBox is), the compared face `number` among them."""
    src, width, height = media.preview(data, max_side=PREVIEW_SIDE, max_pixels=max_pixels)
    boxes = [
        {"number": n, "box": (f.box.left, f.box.top, f.box.right, f.box.bottom)}
        for n, f in enumerate(found.faces, start=1)
    ]
    return {"src": src, "width": width, "height": height, "faces": boxes, "compared": number}


def _odds(fmr: float) -> str:
    """The 1:1 false-match rate at this distance, in words."""
    if fmr <= 0:
        return "no stranger's face in the calibration came this close"
    return odds_in_words(fmr, 1).split("; ")[0]
