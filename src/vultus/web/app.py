"""The operator UI as a sub-application of the API app, mounted at /ui.

A sub-application rather than routes on the API app: it answers errors with HTML pages (the API
answers with its JSON error model), its routes stay out of the OpenAPI document, and the API's
route checks (every /v1 route declares its roles) see one mount, not pages guarded another way.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException

from vultus.errors import (
    AuthError,
    ForbiddenError,
    NotFoundError,
    RateLimitError,
    VultusError,
)
from vultus.web import audit, keys, library, media_routes, people, rights, search
from vultus.web.forms import EngineDep, UploadTooLarge
from vultus.web.render import UI, home_of, page, secure
from vultus.web.session import (
    Forbidden,
    LoginRequired,
    check_origin,
    clear_session,
    current,
    set_session,
)

log = logging.getLogger(__name__)


def create_ui(host: FastAPI) -> FastAPI:
    ui = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, title="Vultus UI")
    ui.state.host = host
    # Signs the links to face pictures an investigator's search returned (see session.py).
    ui.state.secret = secrets.token_bytes(32)

    @ui.middleware("http")
    async def headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        return secure(await call_next(request))

    ui.add_exception_handler(LoginRequired, _login_required)  # type: ignore[arg-type]
    ui.add_exception_handler(Forbidden, _forbidden)  # type: ignore[arg-type]
    ui.add_exception_handler(VultusError, _vultus_error)  # type: ignore[arg-type]
    ui.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    ui.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    ui.add_exception_handler(Exception, _unexpected)

    ui.include_router(router)
    for module in (search, library, people, rights, audit, keys, media_routes):
        ui.include_router(module.router)
    return ui


router = APIRouter()


@router.get("/")
def home(request: Request) -> Response:
    try:
        principal = current(request)
    except LoginRequired:
        return RedirectResponse(f"{UI}/login", status_code=303)
    return RedirectResponse(home_of(principal.roles), status_code=303)


@router.get("/login")
def login_form(request: Request, next: str = "", reason: str = "") -> Response:
    shown = reason if reason in SIGNED_OUT else ""
    return page(request, "login.html", title="Sign in", next=_local(next), reason=shown)


@router.post("/login")
def login(
    request: Request,
    engine: EngineDep,
    api_key: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    check_origin(request)
    try:
        principal = engine.keys.authenticate(api_key.strip())
    except AuthError as exc:
        return page(
            request, "login.html", status=401, title="Sign in", next=_local(next), error=exc.message
        )
    target = _local(next) or home_of(principal.roles)
    response = RedirectResponse(target, status_code=303)
    set_session(request, response, api_key.strip())
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    check_origin(request)
    response = RedirectResponse(f"{UI}/login", status_code=303)
    clear_session(response)
    return response


def _local(target: str) -> str:
    """Only a path on this site: never an open redirect."""
    if target.startswith(f"{UI}/") and not target.startswith("//") and "\\" not in target:
        return target
    return ""


# -- errors as pages ---------------------------------------------------------------------------
STATUS: list[tuple[type[VultusError], int]] = [
    (AuthError, 401),
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (UploadTooLarge, 413),
    (RateLimitError, 429),
]
# Why a key was signed out, by its code: the login page never echoes text from its address.
SIGNED_OUT = {"key_revoked", "key_expired", "key_invalid"}


def _status_of(exc: VultusError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    # The rest are requests that cannot be carried out as asked (purpose, image, face ...),
    # save the failures of the server's own parts.
    return 503 if exc.code in {"index_error", "model_error", "wrong_key"} else 422


def _error_page(
    request: Request, status: int, heading: str, message: str | None, **context: Any
) -> Response:
    context.setdefault("needed", [])
    return page(
        request,
        "error.html",
        status=status,
        title=heading,
        heading=heading,
        message=message,
        **context,
    )


async def _login_required(request: Request, exc: LoginRequired) -> Response:
    params = {}
    if request.method == "GET" and request.url.path != f"{UI}/":
        params["next"] = request.url.path
    if exc.reason in SIGNED_OUT:
        params["reason"] = exc.reason
    query = f"?{urlencode(params, safe='/')}" if params else ""
    response = RedirectResponse(f"{UI}/login{query}", status_code=303)
    if exc.reason:  # a revoked or expired key: sign it out for good
        clear_session(response)
    return response


async def _forbidden(request: Request, exc: Forbidden) -> Response:
    if not exc.needed:
        return _error_page(request, 403, "Request refused", f"Refused: {exc.what}.")
    return _error_page(
        request, 403, "This page is not for your role", None, needed=sorted(exc.needed)
    )


async def _vultus_error(request: Request, exc: VultusError) -> Response:
    return _error_page(
        request, _status_of(exc), "That could not be done", exc.message, code=exc.code
    )


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 404:
        return _error_page(request, 404, "Nothing here", "There is no page at this address.")
    return _error_page(request, exc.status_code, "That could not be done", str(exc.detail))


async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    return _error_page(request, 422, "That could not be done", "The address is not as expected.")


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    # Answered outside the middleware that adds the page headers: add them here.
    return secure(
        _error_page(
            request, 500, "Something went wrong", "An unexpected error; the server log has more."
        )
    )
