"""The pieces every concept's models share: roles and request kinds, ids, names and times,
the error body, a face's box, a count."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from vultus.engine.apikeys import ROLES
from vultus.rights import requests as req

Role = Literal["admin", "operator", "investigator", "dpo", "auditor"]
assert set(Role.__args__) == set(ROLES)  # type: ignore[attr-defined]

RequestKind = Literal["access", "erasure", "restriction", "objection"]
RequestStatus = Literal["received", "in_review", "done", "rejected"]
assert set(RequestKind.__args__) == set(req.KINDS)  # type: ignore[attr-defined]
assert set(RequestStatus.__args__) == set(req.STATUSES)  # type: ignore[attr-defined]

NameStr = Annotated[str, Field(min_length=1, max_length=200)]
# Ids are SQLite integers, never near 2^53; past it a JSON number is not exact (a client may
# read 2^63 - 1 as 2^63), so the document bounds ids where every client reads them alike.
MAX_ID = 2**53 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


def _naive_utc(value: datetime | None) -> datetime | None:
    """Times are stored as naive UTC; a time with an offset is converted, if it can be."""
    if value is None or value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise ValueError("this time is out of range once converted to UTC") from None


UtcTime = Annotated[datetime | None, AfterValidator(_naive_utc)]


def _aware_utc(value: datetime) -> datetime:
    """Stored times are naive UTC; answered, they carry their offset (RFC 3339 needs one)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Every time the API answers with: `2026-11-22T10:15:00Z`, never a time without an offset.
Timestamp = Annotated[datetime, AfterValidator(_aware_utc)]


class Error(BaseModel):
    """Every error the API returns: a stable machine code and a sentence for people."""

    code: str = Field(examples=["purpose_required"])
    message: str = Field(examples=["a search must state its purpose, one of: ..."])


class Box(BaseModel):
    """A face's box in the image's upright pixels."""

    left: int
    top: int
    right: int
    bottom: int

    @classmethod
    def of(cls, box: tuple[int, int, int, int] | list[int]) -> Box:
        left, top, right, bottom = box
        return cls(left=left, top=top, right=right, bottom=bottom)


class Count(BaseModel):
    count: int


def exactly_one_of(*fields: str) -> dict[str, Any]:
    """The JSON Schema of "exactly one of these fields, not null": what a model validator
    checks, written into the document so that clients (and schemathesis) can read it."""
    return {
        "oneOf": [{"required": [f], "properties": {f: {"not": {"type": "null"}}}} for f in fields]
    }
