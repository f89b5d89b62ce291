"""The rights portal (`/portal`): a data subject sends a selfie and an email address and asks
for access, erasure or restriction. They get a request reference; the request joins the DPO's
queue with its one-month deadline. The portal never searches and never shows anything held:
the DPO handles the request, and the answer goes to the person by the channel they gave.

The photo is checked at once, so that no request dead-ends on it: a photo with no usable face
is refused with a message (nothing is stored); a photo of several people shows the person
their own photo with the faces numbered, to choose theirs, and the request keeps only that
face (`Engine.intake_photo`).

Off unless `portal_enabled` (404 then). No account, so no session cookie to ride on: the form
carries a double-submit token (a random value in an HttpOnly, SameSite=Strict cookie and in a
hidden field, which must agree), and each client may send a few requests per hour.
"""

from __future__ import annotations

import hmac
import re
import secrets

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from vultus.config import Settings, require_controller
from vultus.errors import DecodeError, RightsError, VultusError
from vultus.pipeline.decode import decode_image
from vultus.web import media
from vultus.web.forms import photo_field, read_photo_field
from vultus.web.render import ENV, secure
from vultus.web.session import SlidingWindow

CSRF_COOKIE = "vultus_portal_csrf"
KINDS = {
    "access": "A copy of the photos of me you hold (Art. 15)",
    "erasure": "Erase the photos of me you hold (Art. 17)",
    "restriction": "Stop using the photos of me while my request is looked at (Art. 18)",
}
EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
SUBMISSIONS_PER_HOUR = 10
# The working copy of a photo of several people comes back as a form field (base64).
PHOTO_FIELD_BYTES = 8 * 1024 * 1024
PREVIEW_SIDE = 720
# What the engine's refusals of a photo mean to the person who sent it.
PHOTO_PROBLEMS = {
    "no_face": "We could not find a face in your photo. Please send a photo in which your face "
    "is clearly visible: facing the camera, in good light, not too small or blurred. Nothing "
    "was stored.",
    "several_faces": "We could not cut out your face alone from that photo. Please send a "
    "photo of just you. Nothing was stored.",
    "no_such_face": "Please choose one of the numbered faces.",
}


def portal_routes() -> list[Route]:
    return [Route("/portal", portal, methods=["GET", "POST"], include_in_schema=False)]


def _settings(request: Request) -> Settings:
    state = request.app.state
    settings: Settings = getattr(state, "settings", None) or state.engine.settings
    return settings


def _limiter(request: Request) -> SlidingWindow:
    state = request.app.state
    if not hasattr(state, "portal_limiter"):
        state.portal_limiter = SlidingWindow(SUBMISSIONS_PER_HOUR, 3600)
    limiter: SlidingWindow = state.portal_limiter
    return limiter


def _render(
    request: Request, template: str, token: str, *, status: int = 200, **context: object
) -> Response:
    settings = _settings(request)
    controller = require_controller(settings.controller, "the rights portal")
    html = ENV.get_template(template).render(
        csrf=token, kinds=KINDS, controller=controller, **context
    )
    response = HTMLResponse(html, status_code=status)
    response.set_cookie(
        CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/portal",
    )
    return secure(response)


def _token(request: Request) -> str:
    existing = request.cookies.get(CSRF_COOKIE, "")
    # Kept while valid, so two open tabs both work.
    return (
        existing if re.fullmatch(r"[A-Za-z0-9_-]{32,64}", existing) else secrets.token_urlsafe(32)
    )


async def portal(request: Request) -> Response:
    if not _settings(request).portal_enabled:
        return secure(HTMLResponse(ENV.get_template("portal/off.html").render(), status_code=404))
    token = _token(request)
    if request.method == "GET":
        return _render(request, "portal/form.html", token, form={})
    return await _submit(request, token)


async def _submit(request: Request, token: str) -> Response:
    settings = _settings(request)
    async with request.form(max_files=1, max_fields=8, max_part_size=PHOTO_FIELD_BYTES) as form:
        sent = str(form.get("csrf") or "")
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
            return _render(
                request,
                "portal/form.html",
                token,
                status=403,
                form={},
                error="This form had expired. Please fill it in again and send it.",
            )
        client = request.client.host if request.client else "unknown"
        if not _limiter(request).allow(client):
            return _render(
                request,
                "portal/form.html",
                token,
                status=429,
                form={},
                error="Too many requests from this connection. Please try again in an hour.",
            )
        email = str(form.get("email") or "").strip()
        kind = str(form.get("kind") or "")
        values = {"email": email, "kind": kind}
        selfie = form.get("selfie")
        chosen = str(form.get("photo") or "")
        face_field = str(form.get("face") or "")
        face = int(face_field) if face_field.isdigit() and int(face_field) > 0 else None
        problems: list[str] = []
        if not EMAIL.match(email) or len(email) > 320:
            problems.append("Give an email address we can answer you at.")
        if kind not in KINDS:
            problems.append("Choose what you are asking for.")
        data = b""
        if chosen:
            try:
                data = read_photo_field(chosen, settings.max_upload_bytes)
            except VultusError:
                problems.append("Your photo did not come back whole. Please send it again.")
            if face is None:
                problems.append(PHOTO_PROBLEMS["no_such_face"])
        elif not isinstance(selfie, UploadFile) or not selfie.filename:
            problems.append("Add a photo of your face.")
        else:
            data = await selfie.read(settings.max_upload_bytes + 1)
        if data and not problems:
            problems.extend(await run_in_threadpool(_check_photo, data, settings))
        if problems:
            return _render(
                request, "portal/form.html", token, status=422, form=values, problems=problems
            )
    engine = request.app.state.engine
    try:
        kept = await run_in_threadpool(engine.intake_photo, data, face=face)
    except RightsError as exc:
        if exc.code == "several_faces" and face is None:
            try:
                return await run_in_threadpool(_picker, request, token, data, values)
            except RightsError as unclear:
                exc = unclear
        problem = PHOTO_PROBLEMS.get(exc.code, exc.message)
        return _render(
            request, "portal/form.html", token, status=422, form=values, problems=[problem]
        )
    except VultusError as exc:
        return _render(
            request, "portal/form.html", token, status=422, form=values, problems=[exc.message]
        )
    try:
        created = await run_in_threadpool(
            engine.create_request, kind, contact=email, selfie=kept, actor="portal"
        )
    except VultusError as exc:
        return _render(
            request, "portal/form.html", token, status=422, form=values, problems=[exc.message]
        )
    # A fresh token: the sent form cannot be replayed from the browser's history.
    return _render(
        request,
        "portal/done.html",
        secrets.token_urlsafe(32),
        ref=created.ref,
        kind=KINDS[kind],
        due=created.due_at,
        email=email,
    )


def _picker(request: Request, token: str, data: bytes, values: dict[str, str]) -> Response:
    """The person's own photo with its faces numbered, to choose theirs. Nothing is kept: the
    working copy goes back in the form with the choice."""
    settings = _settings(request)
    copy, found = request.app.state.engine.face_choice(data)
    src, width, height = media.preview(copy, max_side=PREVIEW_SIDE, max_pixels=settings.max_pixels)
    return _render(
        request,
        "portal/pick.html",
        token,
        form=values,
        photo=photo_field(copy),
        preview={"src": src, "width": width, "height": height},
        found=found,
    )


def _check_photo(data: bytes, settings: Settings) -> list[str]:
    """The decoder's rules: a real image, of an accepted format, not too large."""
    if len(data) > settings.max_upload_bytes:
        return [f"The photo is too large: at most {settings.max_upload_bytes // 1_000_000} MB."]
    try:
        decode_image(data, max_pixels=settings.max_pixels)
    except DecodeError as exc:
        reason = {
            "empty_file": "the file is empty",
            "not_an_image": "the file is not an image",
            "unsupported_format": "that image format is not accepted (JPEG, PNG, WEBP ...)",
            "image_too_large": "the image has too many pixels",
            "corrupt_image": "the image is damaged",
        }.get(exc.code, exc.message)
        return [
            f"We cannot use that photo: {reason}. Please send a JPEG or PNG photo of your face."
        ]
    return []
