"""The AWS JSON 1.1 protocol at `/rekognition`: `POST` with `X-Amz-Target:
RekognitionService.<Operation>`, a JSON body, a SigV4 signature; the answer is JSON, an error
`{"__type": ..., "message": ...}` with its HTTP status, as Rekognition answers.

Each request: the signature is checked (the secret is the API key's sealed AWS credential), the
key must be in force and within its rate limit, the body must fit the operation's input shape,
and then the operation runs (`operations`), as the key's role and bindings allow."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from vultus.api.compat.rekognition import operations, shapes, sigv4
from vultus.crypto import WrongKeyError
from vultus.engine import Engine
from vultus.errors import (
    AuthError,
    ConfigError,
    DecodeError,
    ForbiddenError,
    ModelError,
    NotFoundError,
    PurposeError,
    RateLimitError,
    VectorIndexError,
    VultusError,
)

log = logging.getLogger(__name__)

PATH = "/rekognition"
CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "RekognitionService."


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def mount(app: FastAPI) -> None:
    """Serve the protocol at `/rekognition` (and `/rekognition/`, where botocore sends it),
    outside the native OpenAPI document."""

    async def endpoint(request: Request) -> Response:
        body = await request.body()
        answer = await run_in_threadpool(
            handle,
            request.app,
            method=request.method,
            raw_path=request.scope.get("raw_path") or request.url.path.encode(),
            query=request.scope.get("query_string", b""),
            headers=list(request.scope["headers"]),
            body=body,
        )
        return Response(
            json.dumps(answer.body, separators=(",", ":")),
            status_code=answer.status,
            media_type=CONTENT_TYPE,
            headers={"x-amzn-RequestId": str(uuid.uuid4())},
        )

    for path in (PATH, PATH + "/"):
        app.add_route(path, endpoint, methods=["POST"], include_in_schema=False)


def error(aws_type: str, message: str, status: int = 400) -> Answer:
    return Answer(status, {"__type": aws_type, "message": message})


def handle(
    app: FastAPI,
    *,
    method: str,
    raw_path: bytes,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> Answer:
    engine: Engine = app.state.engine
    names: dict[str, str] = {}

    def secret_for(access_key_id: str) -> str | None:
        try:
            names[access_key_id], secret = engine.aws_credentials.secret_of(access_key_id)
        except AuthError:
            return None
        return secret

    try:
        signed = sigv4.verify(
            method=method,
            raw_path=raw_path,
            query=query,
            headers=headers,
            body=body,
            secret_for=secret_for,
        )
        principal = engine.keys.principal_of(names[signed.access_key_id])
        app.state.limiter.hit(principal)
        target = dict(headers).get(b"x-amz-target", b"").decode("latin-1")
        name = target.removeprefix(TARGET_PREFIX)
        if not target.startswith(TARGET_PREFIX) or name not in operations.OPERATIONS:
            return error("UnknownOperationException", f"unknown operation {target!r}")
        try:
            params = json.loads(body or b"{}")
        except ValueError as exc:
            return error("SerializationException", f"the body is not JSON: {exc}")
        checked = shapes.check(name, params)
        call = operations.Call(engine, principal, signed.region, app.state.settings)
        return Answer(200, operations.run(name, call, checked))
    except sigv4.SignatureError as exc:
        return error(exc.aws_type, exc.message)
    except shapes.ShapeError as exc:
        return error("InvalidParameterException", str(exc))
    except operations.AwsError as exc:
        return error(exc.aws_type, exc.message, exc.status)
    except VultusError as exc:
        return _vultus_error(exc)
    except Exception:
        log.exception("Rekognition call failed")
        return error("InternalServerError", "Internal server error", 500)


def _vultus_error(exc: VultusError) -> Answer:
    """A Vultus error under the Rekognition type its clients catch; the message is Vultus's
    own, which names the cause."""
    message = f"{exc.message} ({exc.code})"
    if isinstance(exc, AuthError):
        return error("UnrecognizedClientException", message)
    if isinstance(exc, ForbiddenError | PurposeError):
        return error("AccessDeniedException", message)
    if isinstance(exc, RateLimitError):
        return error("ThrottlingException", message)
    if isinstance(exc, NotFoundError):
        return error("ResourceNotFoundException", message)
    if isinstance(exc, DecodeError):
        kind = (
            "ImageTooLargeException" if "too_large" in exc.code else "InvalidImageFormatException"
        )
        return error(kind, message)
    if isinstance(exc, ConfigError) and exc.code == "collection_exists":
        return error("ResourceAlreadyExistsException", message)
    if isinstance(exc, ConfigError) and exc.code == "user_exists":
        return error("ConflictException", message)
    if isinstance(exc, ConfigError) and exc.code == "token_mismatch":
        return error("IdempotentParameterMismatchException", message)
    if isinstance(exc, VectorIndexError | ModelError | WrongKeyError):
        # The server's own trouble, not the caller's: logged, and not described to a client.
        log.error("Rekognition call: %s", exc.message)
        return error("InternalServerError", "Internal server error", 500)
    # The rest is the request's: no usable face, a source or consent it lacks, a model
    # mismatch ... each named in Vultus's message.
    return error("InvalidParameterException", message)
