"""What the catalog hands out and takes in: plain records, free of SQL sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select

from vultus.catalog.models import (
    Face,
    FaceTrack,
    Image,
    Source,
    Subject,
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
    # A face of a video is a face track: when in the video it appears (None for a photo).
    track: TrackSpan | None = None

    @property
    def searchable(self) -> bool:
        """Whether a search may return this face (the catalog's `SEARCHABLE`)."""
        return self.status == "indexed" and not self.restricted


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
    kind: str = "photo"
    duration_s: float | None = None


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
class TrackSpan:
    """Where a face track of a video is: its time span and its best frame's time (seconds)."""

    start_s: float
    end_s: float
    best_s: float


@dataclass(frozen=True)
class NewTrack:
    """What makes a new face a face track: see `models.FaceTrack`. `crop` is a plain JPEG;
    the catalog seals it."""

    start_s: float
    end_s: float
    best_s: float
    detections: int
    boxes: list[list[float]]
    crop: bytes
    crop_box: tuple[int, int, int, int]


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
    track: NewTrack | None = None  # a video's face: its track


@dataclass(frozen=True)
class NewImage:
    path: str
    sha256: str
    size_bytes: int
    width: int
    height: int
    format: str
    faces: list[NewFace]
    kind: str = "photo"  # or "video"
    duration_s: float | None = None
    # Frames or pages in the file; only the first was analysed. Not stored: said in the run's
    # summary (see vultus.ingest.batches.RunNotes).
    frames: int = 1


def file_name_of(image: Image) -> str:
    """The name an upload was sent with, else the last part of where the photo lies (a path or
    an `s3://` key): never the content-named stored copy's name, unless that is all there is."""
    return _file_name(image.original_name, image.path)


def _file_name(original_name: str | None, path: str) -> str:
    return original_name or path.rstrip("/").rsplit("/", 1)[-1]


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
        kind=image.kind,
        duration_s=image.duration_s,
    )


def face_record_of(face: Face) -> FaceRecord:
    track = face.track
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
        track=None if track is None else TrackSpan(track.start_s, track.end_s, track.best_s),
    )


# The columns of a `FaceRecord`, read as plain rows: searches read the records of their hits on
# every call, and loading ORM objects (with their image, source and subject) for them cost
# several times the query itself.
_RECORD_COLUMNS = (
    Face.id,
    Face.image_id,
    Image.path,
    Face.left,
    Face.top,
    Face.right,
    Face.bottom,
    Source.name,
    Source.lawful_basis,
    Source.special_condition,
    Subject.name,
    Face.status,
    Image.added_at,
    Image.retain_until,
    Source.kind,
    Source.legal_reference,
    Source.purpose,
    Face.restricted,
    Image.sha256,
    Image.original_name,
    Image.external_id,
    FaceTrack.start_s,
    FaceTrack.end_s,
    FaceTrack.best_s,
)


@cache
def face_records_query() -> Any:
    """The rows `face_record_of_row` reads; the caller adds its WHERE. Built once: building
    the joined select cost about a millisecond a search (statements are immutable)."""
    return (
        select(*_RECORD_COLUMNS)
        .join(Image, Image.id == Face.image_id)
        .join(Source, Source.id == Image.source_id)
        .outerjoin(Subject, Subject.id == Face.subject_id)
        .outerjoin(FaceTrack, FaceTrack.face_id == Face.id)
    )


def face_record_of_row(row: Any) -> FaceRecord:
    """The same record as `face_record_of`, from a row of `face_records_query`."""
    (fid, image_id, path, left, top, right, bottom, source, basis, condition, subject) = row[:11]
    (status, added_at, retain_until, kind, reference, purpose, restricted, sha256) = row[11:19]
    original_name, external_id, start_s, end_s, best_s = row[19:]
    return FaceRecord(
        face_id=fid,
        image_id=image_id,
        image_path=path,
        box=(left, top, right, bottom),
        source=source,
        lawful_basis=basis,
        special_condition=condition,
        subject=subject,
        status=status,
        added_at=added_at,
        retain_until=retain_until,
        source_kind=kind,
        legal_reference=reference,
        purpose=purpose,
        restricted=bool(restricted),
        image_sha256=sha256,
        file_name=_file_name(original_name, path),
        external_id=external_id,
        track=None if start_s is None else TrackSpan(start_s, end_s, best_s),
    )
