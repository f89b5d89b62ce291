"""Small helpers the page handlers share: uploads, lists of ids, the engine dependency."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated

from fastapi import Depends, Request, UploadFile

from vultus.config import Settings
from vultus.engine import Engine
from vultus.errors import ConfigError, DecodeError, VultusError
from vultus.web.session import get_engine, host_state

EngineDep = Annotated[Engine, Depends(get_engine)]


class UploadTooLarge(VultusError):
    code = "upload_too_large"


def settings_of(request: Request) -> Settings:
    """The server's settings (the API app's, which may differ from the engine's)."""
    state = host_state(request)
    settings: Settings = getattr(state, "settings", None) or get_engine(request).settings
    return settings


def read_upload(upload: UploadFile | None, limit: int, *, what: str = "a photo") -> bytes:
    """The upload's bytes; refused when missing, empty or over `limit`."""
    if upload is None or not upload.filename:
        raise DecodeError(f"choose {what} to upload", code="empty_file")
    upload.file.seek(0)
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise UploadTooLarge(
            f"{upload.filename} is over the limit of {limit:,} bytes (setting max_upload_bytes)"
        )
    if not data:
        raise DecodeError(f"{upload.filename} is empty (0 bytes)", code="empty_file")
    return data


def parse_ids(text: str) -> list[int]:
    """Face ids as people type them: "12, 15 17" -> [12, 15, 17]."""
    parts = [p for p in re.split(r"[\s,;]+", text.strip()) if p]
    bad = [p for p in parts if not p.isdigit()]
    if bad:
        raise ConfigError(f"face ids are numbers; not {', '.join(bad[:3])}", code="bad_ids")
    return [int(p) for p in parts]


def photo_field(photo: bytes) -> str:
    """A photo as a form field (base64): the working copy a person chooses a face in travels
    back with the choice, so nothing is kept on the server in between."""
    return base64.b64encode(photo).decode()


def read_photo_field(value: str, limit: int) -> bytes:
    """The photo a `photo_field` carried back; checked again like any upload."""
    try:
        data = base64.b64decode(value.encode(), validate=True)
    except (ValueError, binascii.Error):
        raise DecodeError(
            "the photo sent back is damaged: choose it again", code="not_an_image"
        ) from None
    if len(data) > limit:
        raise UploadTooLarge(f"the photo is over the limit of {limit:,} bytes")
    if not data:
        raise DecodeError("choose a photo to upload", code="empty_file")
    return data
