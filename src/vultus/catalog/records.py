"""What the catalog hands out and takes in: plain records, free of SQL sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select

from vultus.catalog.models import (
    Face,
    Image,
    Source,
)


@dataclass(frozen=True)
class FaceRecord:
    """A face with everything a search result or a report shows about it."""

    face_id: int
    image_id: int
    image_path: str
    box: tuple[int, int, int, int]
    source: str
    lawful_basis: str
    special_condition: str
    subject: str | None
    status: str
    added_at: datetime
    retain_until: datetime
    source_kind: str = "folder"
    legal_reference: str | None = None
    purpose: str = ""
    restricted: bool = False
    image_sha256: str = ""
    # The photo as the people who sent it know it (see `file_name_of`), and the integrator's
    # id for it, given at upload.
    file_name: str = ""
    external_id: str | None = None


@dataclass(frozen=True)
class ImageSummary:
    """An image as a listing shows it: where it is, where it came from, how many faces."""

    id: int
    path: str
    source: str
    width: int
    height: int
    added_at: datetime
    retain_until: datetime
    status: str
    faces: int
    format: str = ""
    sha256: str = ""
    file_name: str = ""
    external_id: str | None = None


@dataclass(frozen=True)
class ErasedFaces:
    face_ids: list[int]
    images_removed: list[tuple[int, str, str]]  # id, path, sha256
    images_kept: list[tuple[int, str, list[list[int]]]]  # id, path, boxes of the erased faces
    # Per image: the boxes of the erased faces, and its source's name and whether the operator
    # lets Vultus delete that source's originals (what happens to the files depends on both).
    boxes: dict[int, list[list[int]]] = field(default_factory=dict)
    sources: dict[int, tuple[str, bool]] = field(default_factory=dict)


@dataclass(frozen=True)
class NewFace:
    """What ingest hands the catalog for one face: the analysed face, flattened."""

    box: tuple[int, int, int, int]
    landmarks: list[list[float]]
    detector: str
    det_score: float
    box_size: int
    sharpness: float
    yaw: float
    model_id: str
    template: npt.NDArray[np.float32] | None
    skip_reason: str | None


@dataclass(frozen=True)
class NewImage:
    path: str
    sha256: str
    size_bytes: int
    width: int
    height: int
    format: str
    faces: list[NewFace]
    # Frames or pages in the file; only the first was analysed. Not stored: said in the run's
    # summary (see vultus.ingest.batches.RunNotes).
    frames: int = 1


def file_name_of(image: Image) -> str:
    """The name an upload was sent with, else the last part of where the photo lies (a path or
    an `s3://` key): never the content-named stored copy's name, unless that is all there is."""
    return image.original_name or image.path.rstrip("/").rsplit("/", 1)[-1]


def summaries_query() -> Any:
    faces = select(Face.image_id, func.count(Face.id).label("n")).group_by(Face.image_id).subquery()
    return (
        select(Image, Source.name, func.coalesce(faces.c.n, 0))
        .join(Source, Source.id == Image.source_id)
        .outerjoin(faces, faces.c.image_id == Image.id)
    )


def image_summary_of(image: Image, source: str, faces: int) -> ImageSummary:
    return ImageSummary(
        id=image.id,
        path=image.path,
        source=source,
        width=image.width,
        height=image.height,
        added_at=image.added_at,
        retain_until=image.retain_until,
        status=image.status,
        faces=int(faces),
        format=image.format,
        sha256=image.sha256,
        file_name=file_name_of(image),
        external_id=image.external_id,
    )


def face_record_of(face: Face) -> FaceRecord:
    image = face.image
    return FaceRecord(
        face_id=face.id,
        image_id=image.id,
        image_path=image.path,
        box=(face.left, face.top, face.right, face.bottom),
        source=image.source.name,
        lawful_basis=image.source.lawful_basis,
        special_condition=image.source.special_condition,
        subject=face.subject.name if face.subject else None,
        status=face.status,
        added_at=image.added_at,
        retain_until=image.retain_until,
        source_kind=image.source.kind,
        legal_reference=image.source.legal_reference,
        purpose=image.source.purpose,
        restricted=face.restricted,
        image_sha256=image.sha256,
        file_name=file_name_of(image),
        external_id=image.external_id,
    )
