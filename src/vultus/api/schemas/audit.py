"""The audit log and its verification."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from vultus.api.schemas.common import Timestamp
from vultus.audit import AuditVerification


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    seq: int
    at: Timestamp
    actor: str
    action: str
    purpose: str | None
    case_ref: str | None
    query_hash: str | None
    result_ids: list[int]
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditProblemOut(BaseModel):
    seq: int | None
    entry_id: int | None
    kind: str
    message: str


class AuditVerifyOut(BaseModel):
    ok: bool
    entries: int
    problems: list[AuditProblemOut]

    @classmethod
    def of(cls, v: AuditVerification) -> AuditVerifyOut:
        return cls(
            ok=v.ok,
            entries=v.entries,
            problems=[
                AuditProblemOut(seq=p.seq, entry_id=p.entry_id, kind=p.kind, message=p.message)
                for p in v.problems
            ],
        )
