"""Ingest runs, images and their faces."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from vultus.api.schemas.common import Box, Id, NameStr, Timestamp
from vultus.engine.records import FaceRecord, ImageSummary
from vultus.ingest.batches import IngestSummary


class IngestErrorOut(BaseModel):
    path: str
    code: str
    message: str


class MultiFrameOut(BaseModel):
    path: str
    frames: int = Field(description="Frames or pages in the file; only the first was read.")


class IngestSummaryOut(BaseModel):
    run_id: int | None
    source: str
    files_seen: int
    images_added: int
    images_duplicate: int
    images_no_face: int
    faces_indexed: int
    faces_skipped: int
    faces_suppressed: int
    skip_reasons: dict[str, int]
    errors: list[IngestErrorOut]
    seconds: float
    suppressed_photos: list[str] = Field(
        description="The photos in which faces were refused as on the suppression list."
    )
    multi_frame: list[MultiFrameOut] = Field(
        description="Animated images and multi-page files: only their first frame or page was "
        "read and indexed. Split them into single images to add the others."
    )

    @classmethod
    def of(cls, s: IngestSummary) -> IngestSummaryOut:
        return cls(
            run_id=s.run_id,
            source=s.source,
            files_seen=s.files_seen,
            images_added=s.images_added,
            images_duplicate=s.images_duplicate,
            images_no_face=s.images_no_face,
            faces_indexed=s.faces_indexed,
            faces_skipped=s.faces_skipped,
            faces_suppressed=s.faces_suppressed,
            skip_reasons=s.skip_reasons,
            errors=[IngestErrorOut(path=p, code=c, message=m) for p, c, m in s.errors],
            seconds=round(s.seconds, 3),
            suppressed_photos=s.suppressed_photos,
            multi_frame=[MultiFrameOut(path=p, frames=n) for p, n in s.multi_frame],
        )


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, description="A photo on the server; folders go to a job.")
    source: NameStr
    consent: Id | None = Field(
        None, description="The consent record the photo rests on; required by consent sources."
    )


# An integrator's id for a photo: printable, as search results and listings show it.
ExternalId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
EXTERNAL_ID_HELP = (
    "Your own id for the photo (1 to 200 characters): search results and listings carry it. "
    "A photo already held under another external id is refused (`external_id_conflict`)."
)


class ImageUploadFields(BaseModel):
    """An upload's fields beside the photo (`file`)."""

    model_config = ConfigDict(extra="forbid")

    source: NameStr = Field(description="A registered source.")
    consent: Id | None = Field(
        None, description="The consent record the photo rests on; required by consent sources."
    )
    external_id: ExternalId | None = Field(None, description=EXTERNAL_ID_HELP)
    filename: str | None = Field(
        None,
        max_length=255,
        description="The photo's file name, as search results show it (the stored copy is named "
        "by its content). Multipart: defaults to the file part's name.",
    )


class ImageOut(BaseModel):
    id: int
    file_name: str = Field(
        description="The name the photo was uploaded with, else the name of its file."
    )
    external_id: str | None = Field(description="The id given at upload.")
    path: str
    source: str
    width: int
    height: int
    format: str
    added_at: Timestamp
    retain_until: Timestamp
    status: str
    faces: int

    @classmethod
    def of(cls, i: ImageSummary) -> ImageOut:
        return cls(
            id=i.id,
            file_name=i.file_name,
            external_id=i.external_id,
            path=i.path,
            source=i.source,
            width=i.width,
            height=i.height,
            format=i.format,
            added_at=i.added_at,
            retain_until=i.retain_until,
            status=i.status,
            faces=i.faces,
        )


class IngestOut(BaseModel):
    """An ingested photo: its image id (None when every face in it was suppressed)."""

    image_id: int | None
    image: ImageOut | None = Field(
        None, description="The photo as held, with the names search results give it."
    )
    summary: IngestSummaryOut


class FaceOut(BaseModel):
    id: int
    image_id: int
    box: Box
    status: str
    source: str
    lawful_basis: str
    special_condition: str
    subject: str | None
    restricted: bool
    added_at: Timestamp
    retain_until: Timestamp

    @classmethod
    def of(cls, r: FaceRecord) -> FaceOut:
        return cls(
            id=r.face_id,
            image_id=r.image_id,
            box=Box.of(r.box),
            status=r.status,
            source=r.source,
            lawful_basis=r.lawful_basis,
            special_condition=r.special_condition,
            subject=r.subject,
            restricted=r.restricted,
            added_at=r.added_at,
            retain_until=r.retain_until,
        )


class ImageDetailOut(BaseModel):
    image: ImageOut
    faces: list[FaceOut]
