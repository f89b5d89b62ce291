"""Errors as HTTP: every error body is `{"code": ..., "message": ...}` (the `Error` schema).

Statuses, by error class (the most specific class decides):

- 401 AuthError: no key, an unknown key, an expired or revoked one
- 403 ForbiddenError: a valid key whose role may not do this
- 404 NotFoundError, and unknown paths
- 413 an upload over `max_upload_bytes` (or a request body over twice that)
- 415 a body of a content type the endpoint does not read
- 422 the request cannot be carried out as asked: PurposeError, DecodeError, SourceError,
  NoFaceError, ConfigError, RightsError, ModelMismatchError; a field the endpoint does not know
  (`unknown_field`); and a request that does not match its schema (code `invalid_request`; a
  missing `purpose` gives `purpose_required`)
- 429 RateLimitError: too many requests a minute, or the key's daily search cap
- 503 VectorIndexError, ModelError, a wrong master key, not ready
- 500 anything else (code `internal_error`; logged with its traceback, never shown)
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from vultus.api.schemas.common import Error
from vultus.crypto import WrongKeyError
from vultus.errors import (
    AuthError,
    ConfigError,
    DecodeError,
    ForbiddenError,
    ModelError,
    ModelMismatchError,
    NoFaceError,
    NotFoundError,
    PurposeError,
    RateLimitError,
    RightsError,
    SourceError,
    VectorIndexError,
    VultusError,
)

log = logging.getLogger(__name__)


class UploadTooLargeError(VultusError):
    """An upload, or a whole request body, over the server's limit (HTTP 413)."""

    code = "upload_too_large"


class UnknownFieldError(VultusError):
    """A field the endpoint does not take, refused rather than ignored (HTTP 422)."""

    code = "unknown_field"


class NotReadyError(VultusError):
    """The catalog or the index cannot be opened yet (HTTP 503)."""

    code = "not_ready"


STATUS: dict[type[VultusError], int] = {
    AuthError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    UploadTooLargeError: 413,
    UnknownFieldError: 422,
    PurposeError: 422,
    DecodeError: 422,
    SourceError: 422,
    NoFaceError: 422,
    ConfigError: 422,
    RightsError: 422,
    ModelMismatchError: 422,
    RateLimitError: 429,
    VectorIndexError: 503,
    ModelError: 503,
    WrongKeyError: 503,
    NotReadyError: 503,
}

DESCRIPTIONS: dict[int, str] = {
    400: "The request body could not be read (`bad_request`): not valid JSON, or a form "
    "with more files than the endpoint takes.",
    401: "No API key, or an unknown, expired (`key_expired`) or revoked (`key_revoked`) one.",
    403: "The key's role may not do this (`forbidden`).",
    404: "No such resource (`not_found`, ...).",
    413: "An upload over the server's `max_upload_bytes` (`upload_too_large`).",
    415: "A body that is neither multipart/form-data nor application/json "
    "(`unsupported_media_type`).",
    422: "The request cannot be carried out as asked: a missing or unknown purpose "
    "(`purpose_required`, `purpose_unknown`), a file that is not a usable image "
    "(`not_an_image`, `corrupt_image`, ...), no usable face (`no_face`), an unknown source, "
    "a field the endpoint does not take (`unknown_field`), or a request that does not match "
    "the schema (`invalid_request`).",
    429: "Too many requests a minute with this key, or its daily search cap (`rate_limited`).",
    503: "The vector index or the face model is unavailable, or the server is not ready.",
}

HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "upload_too_large",
    415: "unsupported_media_type",
}


def status_for(exc: VultusError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error responses of an endpoint, all with the one `Error` model."""
    return {s: {"model": Error, "description": DESCRIPTIONS[s]} for s in statuses}


def error_response(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"code": code, "message": message}, headers=headers or None
    )


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into the one error model."""

    @app.exception_handler(VultusError)
    async def vultus_error(request: Request, exc: VultusError) -> JSONResponse:
        status = status_for(exc)
        if status == 500:
            log.error("%s %s failed: %s (%s)", request.method, request.url.path, exc, exc.code)
        return error_response(status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        # A missing purpose is refused like the engine refuses it: the caller should learn that
        # searches are purpose-bound, not just that a form field is missing.
        unstated = {"missing", "string_too_short"}
        if any(e.get("loc", ())[-1:] == ("purpose",) and e.get("type") in unstated for e in errors):
            return error_response(
                422, PurposeError.code, "a search must state its purpose (field `purpose`)"
            )
        extra = [str(e["loc"][-1]) for e in errors if e.get("type") == "extra_forbidden"]
        if extra:
            names = ", ".join(f"`{name}`" for name in extra)
            return error_response(422, UnknownFieldError.code, f"unknown field(s) {names}")
        return error_response(422, "invalid_request", _describe(errors))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route that matched the path only; a
            # path served by several routes (GET and POST /v1/sources) allows them all.
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(exc.status_code, code, str(exc.detail), **headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "an unexpected error; see the server log")


def allowed_methods(request: Request) -> list[str]:
    """Every method the routes of the request's path serve."""
    matches: list[tuple[int, set[str]]] = []
    for ctx in iter_route_contexts(request.app.routes):
        template = ctx.path_format or ctx.path
        if template and compile_path(template)[0].match(request.url.path):
            matches.append((template.count("{"), set(ctx.methods or ())))
    # The most specific templates name the resource: /v1/images/register, not /v1/images/{id}.
    fewest = min((params for params, _ in matches), default=0)
    methods = {m for params, found in matches if params == fewest for m in found}
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return sorted(methods, key=lambda m: order.index(m) if m in order else len(order))


def _describe(errors: list[Any]) -> str:
    parts = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p not in {"body", "query", "path"})
        parts.append(f"{where or 'request'}: {e.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more
