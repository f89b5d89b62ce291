"""The sources photos come from, with the lawful basis they are held on."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from vultus.api.schemas.common import NameStr, Timestamp
from vultus.engine.records import Source


class SourceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: NameStr
    lawful_basis: str = Field(description="GDPR Art. 6(1) basis, e.g. `legitimate_interests`.")
    special_condition: str = Field(
        description="GDPR Art. 9(2) condition, e.g. `archiving_research`."
    )
    purpose: str = Field(min_length=1, description="Why these photos are held.")
    retention_days: int = Field(gt=0, le=36500)
    kind: str = Field("folder", description="folder, upload, archive, video or object_storage.")
    legal_reference: str | None = Field(None, description="The law a condition rests on.")
    notes: str | None = None
    originals_deletable: bool = Field(
        False,
        description="Let an erasure delete this source's original files (photos that showed "
        "only the erased person; objects only in buckets that keep no versions). Off: "
        "originals are left in place, and the receipt names them.",
    )


class SourceOut(BaseModel):
    name: str
    kind: str
    lawful_basis: str
    special_condition: str
    legal_reference: str | None
    purpose: str
    retention_days: int
    originals_deletable: bool
    created_at: Timestamp
    images: int = 0
    faces: int = 0

    @classmethod
    def of(cls, source: Source, images: int = 0, faces: int = 0) -> SourceOut:
        return cls(
            name=source.name,
            kind=source.kind,
            lawful_basis=source.lawful_basis,
            special_condition=source.special_condition,
            legal_reference=source.legal_reference,
            purpose=source.purpose,
            retention_days=source.retention_days,
            originals_deletable=bool(source.originals_deletable),
            created_at=source.created_at,
            images=images,
            faces=faces,
        )
