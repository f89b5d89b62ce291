"""APIs in other engines' shapes, so that their clients work against Vultus unchanged. Each is
mounted into the API app: its errors keep its own shapes, and its routes stay out of Vultus's
OpenAPI document (docs/compat.md documents them)."""

from __future__ import annotations

from fastapi import FastAPI

from vultus.api.compat import compreface
from vultus.api.compat.rekognition import protocol as rekognition


def mount(app: FastAPI) -> None:
    app.mount(compreface.PREFIX, compreface.create(app))
    # Routes rather than a sub-application: botocore posts to `/rekognition` itself, which a
    # mount would answer with a redirect.
    rekognition.mount(app)
