"""Images: upload a photo (kept as a stored copy; multipart, or JSON in base64) or register one
on the server, list them, and view them. Every view is written to the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import Response

from vultus.api.bodies import PhotoBody, PhotoRequest
from vultus.api.deps import EngineDep, Offset, PathId, SearchQuery, require, via_search
from vultus.api.errors import responses
from vultus.api.schemas.common import Count
from vultus.api.schemas.images import (
    FaceOut,
    ImageDetailOut,
    ImageOut,
    ImageUploadFields,
    IngestOut,
    IngestSummaryOut,
    RegisterIn,
)
from vultus.engine import Engine
from vultus.engine.apikeys import Principal
from vultus.ingest.batches import IngestSummary

router = APIRouter(prefix="/images", tags=["images"], responses=responses(401, 403, 429, 503))

Operator = Annotated[Principal, Depends(require("operator"))]
# Investigators see the photos their own results point to, naming the search; DPOs those a
# rights request finds.
Viewer = Annotated[Principal, Depends(require("operator", "investigator", "dpo"))]
IMAGE_CONTENT = {"content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}}
upload_body = PhotoBody("ImageUpload", ImageUploadFields, {"file": "The photo."})


@router.post(
    "",
    summary="Upload a photo under a source, and ingest it",
    description="Multipart form data, or JSON with `file` in base64 (and `filename`). Refused "
    "past `max_upload_bytes` and checked by the same decoder as the command line before "
    "anything is written. The photo is kept under the data directory, so that an erasure can "
    "blur it; search results name it by its file name as sent and by `external_id`. A source "
    "that rests on consent takes a photo only with `consent`, the id of the consent record it "
    "rests on (else `consent_required`). Sending a photo already held answers its image id.",
    response_model=IngestOut,
    status_code=status.HTTP_201_CREATED,
    responses=responses(400, 404, 413, 415, 422),
    openapi_extra=upload_body.openapi,
)
def upload_image(
    principal: Operator,
    body: Annotated[PhotoRequest[ImageUploadFields], Depends(upload_body)],
    engine: EngineDep,
) -> IngestOut:
    fields, photo = body.fields, body.photos["file"]
    summary, image_id = engine.upload(
        photo.data,
        fields.filename or photo.filename,
        source=principal.bound_source(fields.source) or "",
        consent=fields.consent,
        external_id=fields.external_id,
        actor=principal.actor,
    )
    return _ingested(engine, summary, image_id)


@router.post(
    "/register",
    summary="Ingest a photo that lies on the server",
    description="For a folder, start an ingest job instead (`POST /v1/jobs/ingest`).",
    response_model=IngestOut,
    status_code=status.HTTP_201_CREATED,
    responses=responses(404, 422),
)
def register_image(body: RegisterIn, engine: EngineDep, principal: Operator) -> IngestOut:
    summary, image_id = engine.register(
        body.path,
        source=principal.bound_source(body.source) or "",
        consent=body.consent,
        actor=principal.actor,
    )
    return _ingested(engine, summary, image_id)


def _ingested(engine: Engine, summary: IngestSummary, image_id: int | None) -> IngestOut:
    image = ImageOut.of(engine.image(image_id)[0]) if image_id is not None else None
    return IngestOut(image_id=image_id, image=image, summary=IngestSummaryOut.of(summary))


@router.get(
    "",
    summary="List images, oldest first",
    response_model=list[ImageOut],
    responses=responses(422),
)
def list_images(
    engine: EngineDep,
    _: Operator,
    source: Annotated[str | None, Query(max_length=200)] = None,
    external_id: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="Only photos given this id at upload."),
    ] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ImageOut]:
    images = engine.list_images(source=source, external_id=external_id, offset=offset, limit=limit)
    return [ImageOut.of(i) for i in images]


@router.get(
    "/{image_id}",
    summary="One image with its faces",
    response_model=ImageDetailOut,
    responses=responses(404),
)
def get_image(image_id: PathId, engine: EngineDep, _: Operator) -> ImageDetailOut:
    summary, faces = engine.image(image_id)
    return ImageDetailOut(image=ImageOut.of(summary), faces=[FaceOut.of(f) for f in faces])


@router.get(
    "/{image_id}/file",
    summary="The photo as stored (audited as a view)",
    description="An investigator names the search whose results hold the photo (`search`).",
    response_class=Response,
    responses={200: IMAGE_CONTENT, **responses(404, 422)},
)
def image_file(
    image_id: PathId, engine: EngineDep, principal: Viewer, search: SearchQuery = None
) -> Response:
    data, media_type = engine.image_data(
        image_id, actor=principal.actor, via_search=via_search(principal, search)
    )
    return Response(data, media_type=media_type)


@router.get(
    "/{image_id}/thumbnail",
    summary="A JPEG thumbnail of the photo (audited as a view)",
    description="An investigator names the search whose results hold the photo (`search`).",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
        **responses(404, 422),
    },
)
def image_thumbnail(
    image_id: PathId,
    engine: EngineDep,
    principal: Viewer,
    max: Annotated[int, Query(ge=16, le=2048, description="Longest side, in pixels.")] = 256,
    search: SearchQuery = None,
) -> Response:
    data = engine.thumbnail(
        image_id, max_side=max, actor=principal.actor, via_search=via_search(principal, search)
    )
    return Response(data, media_type="image/jpeg")


@router.delete(
    "/{image_id}",
    summary="Delete an image and its faces from the catalog and the index",
    response_model=Count,
    responses=responses(404),
)
def delete_image(image_id: PathId, engine: EngineDep, principal: Operator) -> Count:
    return Count(count=engine.delete_image(image_id, actor=principal.actor))
