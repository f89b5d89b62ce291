"""API keys."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vultus.api.schemas.common import NameStr, Role, Timestamp, exactly_one_of
from vultus.engine.apikeys import ROLES
from vultus.engine.records import ApiKey


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=exactly_one_of("role", "roles"))

    name: NameStr
    role: Role | None = Field(None, description="One role; or give several as `roles`.")
    roles: list[Role] | None = Field(
        None,
        min_length=1,
        max_length=len(ROLES),
        description="Several roles for one key: only operator and investigator may share one "
        "(separation of duties).",
    )
    expires_days: int | None = Field(None, gt=0, le=36500)
    searches_per_day: int | None = Field(None, ge=0, le=1_000_000)
    purpose: str | None = Field(
        None,
        max_length=200,
        description="Bind the key's searches to this configured purpose (investigator).",
    )
    case_ref: str | None = Field(
        None, max_length=200, description="Bind the key's searches to this case reference."
    )
    source: str | None = Field(
        None, max_length=200, description="Bind the photos the key adds to this source (operator)."
    )
    aws: bool = Field(
        False,
        description="Also give the key an AWS-style credential, for Rekognition clients (boto3) "
        "at /rekognition: its access key id and secret are answered once.",
    )

    @model_validator(mode="after")
    def one_way_to_name_roles(self) -> KeyIn:
        if (self.role is None) == (self.roles is None):
            raise ValueError("give the key's role as `role`, or its roles as `roles`: one of them")
        return self

    @property
    def all_roles(self) -> list[str]:
        return [self.role] if self.role is not None else list(self.roles or [])


class KeyOut(BaseModel):
    name: str
    role: str = Field(description='The key\'s roles, joined by "+" where it has several.')
    roles: list[str]
    created_at: Timestamp
    expires_at: Timestamp | None
    revoked_at: Timestamp | None
    last_used_at: Timestamp | None
    searches_per_day: int | None
    purpose: str | None = None
    case_ref: str | None = None
    source: str | None = None
    aws_access_key_id: str | None = Field(
        None, description="The access key id of the key's AWS credential, if it has one."
    )

    @classmethod
    def of(cls, k: ApiKey, aws_access_key_id: str | None = None) -> KeyOut:
        return cls(
            aws_access_key_id=aws_access_key_id,
            name=k.name,
            role=k.role,
            roles=list(k.roles),
            created_at=k.created_at,
            expires_at=k.expires_at,
            revoked_at=k.revoked_at,
            last_used_at=k.last_used_at,
            searches_per_day=k.searches_per_day,
            purpose=k.purpose,
            case_ref=k.case_ref,
            source=k.source,
        )


class KeyCreatedOut(BaseModel):
    key: KeyOut
    secret: str = Field(description="Shown only now: only a hash of it is stored.")
    aws_access_key_id: str | None = Field(
        default=None, description="With `aws`: for SigV4 clients."
    )
    aws_secret_access_key: str | None = Field(
        default=None, description="With `aws`: shown only now (kept sealed under the master key)."
    )
