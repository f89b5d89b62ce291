"""Subjects: named people and their faces."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from vultus.api.schemas.common import Id, NameStr, Timestamp
from vultus.api.schemas.images import FaceOut
from vultus.engine.records import FaceRecord, Subject


class SubjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: NameStr
    face_ids: list[Id] = Field(default_factory=list, max_length=10_000)


class SubjectRename(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: NameStr


class SubjectMerge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    other: str = Field(min_length=1, max_length=200, description="Its faces move; it goes.")


class FaceIds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    face_ids: list[Id] = Field(min_length=1, max_length=10_000)


class SubjectOut(BaseModel):
    name: str
    created_at: Timestamp
    restricted: bool
    faces: int

    @classmethod
    def of(cls, subject: Subject, faces: int) -> SubjectOut:
        return cls(
            name=subject.name,
            created_at=subject.created_at,
            restricted=bool(subject.restricted),
            faces=faces,
        )


class SubjectDetailOut(BaseModel):
    subject: SubjectOut
    faces: list[FaceOut]

    @classmethod
    def of(cls, subject: Subject, faces: list[FaceRecord]) -> SubjectDetailOut:
        return cls(subject=SubjectOut.of(subject, len(faces)), faces=[FaceOut.of(f) for f in faces])
