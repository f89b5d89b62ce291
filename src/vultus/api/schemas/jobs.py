"""Background jobs: ingest and index rebuilds."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vultus.api.schemas.common import Id, NameStr, Timestamp
from vultus.engine.records import Job


class IngestJobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, description="A folder (walked recursively) or file.")
    source: NameStr
    consent: Id | None = Field(
        None, description="The consent record the photos rest on; required by consent sources."
    )


class RebuildJobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    factory: str | None = Field(
        None, max_length=200, description="A FAISS factory string, or `auto`."
    )


class JobOut(BaseModel):
    id: int
    kind: str
    status: str = Field(description="queued, running, done or failed.")
    params: dict[str, Any]
    actor: str
    done: int
    total: int | None
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None

    @classmethod
    def of(cls, j: Job) -> JobOut:
        return cls(
            id=j.id,
            kind=j.kind,
            status=j.status,
            params=dict(j.params or {}),
            actor=j.actor,
            done=j.done or 0,
            total=j.total,
            result=j.result,
            error=j.error,
            attempts=j.attempts or 0,
            created_at=j.created_at,
            started_at=j.started_at,
            finished_at=j.finished_at,
        )
