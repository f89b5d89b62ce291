"""Request bodies that carry photos, as multipart form data or as JSON with each photo in
base64, and the refusal of fields an endpoint does not know.

FastAPI reads one content type per endpoint, and many integrators find JSON easier to send
than multipart, so the endpoints that take photos read either, by hand: `PhotoBody` reads the
photos, then validates every other field with one Pydantic model that forbids extra fields.
The OpenAPI document describes both ways, as the component schemas `<Name>Form` and
`<Name>Json` (`install` adds them).

An unknown field is an error (`unknown_field`), never a silent default: `top=3` or `tpo_k=2`
beside a search used to be dropped, and the search answered with ten results. Endpoints whose
form FastAPI reads itself get the same refusal from `refuse_unknown_form_fields`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from vultus.api.deps import check_known, read_upload
from vultus.api.errors import UnknownFieldError, UploadTooLargeError

M = TypeVar("M", bound=BaseModel)
JSON = "application/json"
FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")
# What `install` adds to the OpenAPI document's components: filled as routers are imported.
SCHEMAS: dict[str, dict[str, Any]] = {}


@dataclass(frozen=True)
class Photo:
    data: bytes
    # As the client named it: the multipart part's file name, or None.
    filename: str | None


@dataclass(frozen=True)
class PhotoRequest(Generic[M]):
    fields: M
    photos: dict[str, Photo]


class PhotoBody(Generic[M]):
    """The dependency that reads a body of photos (`photos`: field name -> description) and
    `fields`, either as multipart form data or as JSON with each photo in base64 (a `data:`
    URL's prefix is allowed). `name` names the body's two schemas in the OpenAPI document;
    `openapi` is the route's `openapi_extra`."""

    def __init__(
        self, name: str, fields: type[M], photos: dict[str, str], *, document: bool = True
    ) -> None:
        self.fields = fields
        self.photos = photos
        self.names = [*photos, *(f.alias or n for n, f in fields.model_fields.items())]
        schema = fields.model_json_schema()
        assert "$defs" not in schema, f"{fields.__name__}: the fields must be plain values"
        form = _with(
            schema, photos, {"type": "string", "contentMediaType": "application/octet-stream"}
        )
        as_json = _with(
            schema,
            photos,
            {
                "type": "string",
                "contentEncoding": "base64",
                "contentMediaType": "image/*",
                "pattern": BASE64,
            },
            note=" In base64 (a `data:image/...;base64,` prefix is allowed).",
        )
        if document:  # bodies of other APIs' shapes (api/compat) stay out of the document
            SCHEMAS[f"{name}Form"] = {**form, "title": f"{name}Form"}
            SCHEMAS[f"{name}Json"] = {**as_json, "title": f"{name}Json"}
        self.openapi: dict[str, Any] = {
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {"schema": {"$ref": f"#/components/schemas/{name}Form"}},
                    JSON: {"schema": {"$ref": f"#/components/schemas/{name}Json"}},
                },
            }
        }

    async def __call__(self, request: Request) -> PhotoRequest[M]:
        # Declare it after the key's dependency: the key is checked before the body is read.
        limit: int = request.app.state.settings.max_upload_bytes
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == JSON:
            values, photos, errors = await self._read_json(request, limit)
        elif kind in FORMS:
            values, photos, errors = await self._read_form(request, limit)
        else:
            raise HTTPException(
                415, f"send the photo as multipart/form-data, or as {JSON} with it in base64"
            )
        if kind != JSON:  # an empty form field is an absent one, as browsers send them
            values = {name: value for name, value in values.items() if value != ""}
        try:
            fields = self.fields.model_validate(values)
        except ValidationError as exc:
            errors += [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        if errors:
            raise RequestValidationError(errors)
        return PhotoRequest(fields, photos)

    async def _read_json(
        self, request: Request, limit: int
    ) -> tuple[dict[str, Any], dict[str, Photo], list[dict[str, Any]]]:
        try:
            values = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise HTTPException(400, "the body is not valid JSON") from None
        if not isinstance(values, dict):
            raise RequestValidationError([_error("body", "model_type", "must be a JSON object")])
        check_known(values, self.names, request)
        photos: dict[str, Photo] = {}
        errors: list[dict[str, Any]] = []
        for name in self.photos:
            value = values.pop(name, None)
            if value is None:
                errors.append(_error(name, "missing", "Field required"))
            elif not isinstance(value, str):
                errors.append(_error(name, "string_type", "must be the photo in base64"))
            else:
                try:
                    photos[name] = Photo(_base64(value, name, limit), None)
                except ValueError as exc:
                    errors.append(_error(name, "base64_decode", str(exc)))
        return values, photos, errors

    async def _read_form(
        self, request: Request, limit: int
    ) -> tuple[dict[str, Any], dict[str, Photo], list[dict[str, Any]]]:
        form = await request.form(max_files=len(self.photos))
        # The photos are read into memory: their spooled files go, whatever happens.
        try:
            check_known(form.keys(), self.names, request)
            values: dict[str, Any] = {}
            photos: dict[str, Photo] = {}
            errors: list[dict[str, Any]] = []
            seen: set[str] = set()
            for name, value in form.multi_items():
                if name in seen:
                    errors.append(_error(name, "duplicate", "given more than once"))
                    continue
                seen.add(name)
                if name in self.photos:
                    if isinstance(value, UploadFile):
                        photos[name] = Photo(read_upload(value, limit), value.filename)
                    else:
                        errors.append(_error(name, "file_type", "must be a file"))
                elif isinstance(value, UploadFile):
                    errors.append(_error(name, "string_type", "must be a value, not a file"))
                else:
                    values[name] = value
        finally:
            await form.close()
        errors += [_error(n, "missing", "Field required") for n in self.photos if n not in seen]
        return values, photos, errors


async def refuse_unknown_form_fields(request: Request) -> None:
    """For the endpoints whose form FastAPI reads: a field none of their parameters names is
    refused (FastAPI would drop it). Runs before the key is checked, so the refusal waits in
    `request.state` for `Require` to raise once the caller is admitted: a caller without a
    valid key learns only that. Endpoints that read their body by hand check it there."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    route = request.scope.get("route")
    if kind not in FORMS or not isinstance(route, APIRoute):
        return
    names = _body_names(route)
    if names:
        try:
            check_known((await request.form()).keys(), names, request)
        except UnknownFieldError as exc:
            request.state.refused = exc


def install(app: FastAPI) -> None:
    """Add the photo bodies' schemas to the app's OpenAPI document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schemas = generate().setdefault("components", {}).setdefault("schemas", {})
            schemas.update(SCHEMAS)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def _body_names(route: APIRoute) -> list[str]:
    """The body fields a route's parameters and dependencies declare (a form model's fields
    each count)."""
    names: list[str] = []
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        for param in dependant.body_params:
            model = param.field_info.annotation
            if isinstance(model, type) and issubclass(model, BaseModel):
                names += [f.alias or n for n, f in model.model_fields.items()]
            else:
                names.append(param.alias)
        stack.extend(dependant.dependencies)
    return names


def _with(
    schema: dict[str, Any], photos: dict[str, str], kind: dict[str, str], note: str = ""
) -> dict[str, Any]:
    properties = {n: {**kind, "description": d + note} for n, d in photos.items()}
    return {
        **schema,
        "properties": {**properties, **schema.get("properties", {})},
        "required": [*photos, *schema.get("required", [])],
        "additionalProperties": False,
    }


# What `_base64` reads, as the document states it: standard base64, padded, after an optional
# `data:` URL prefix.
BASE64 = r"^(data:[^,]*;base64,)?([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


def _base64(value: str, name: str, limit: int) -> bytes:
    if value.startswith("data:") and ";base64," in value[:100]:
        value = value.split(",", 1)[1]
    if len(value) > (limit + 2) // 3 * 4:
        raise UploadTooLargeError(
            f"{name} is over the limit of {limit:,} bytes (setting max_upload_bytes)"
        )
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("is not valid base64") from None


def _error(name: str, kind: str, message: str) -> dict[str, Any]:
    return {"loc": ("body", name) if name != "body" else ("body",), "type": kind, "msg": message}
