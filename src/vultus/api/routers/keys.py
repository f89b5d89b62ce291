"""API keys and their roles. For admins: the secret is shown once, only its hash is stored."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from vultus.api.deps import EngineDep, require
from vultus.api.errors import responses
from vultus.api.schemas.keys import KeyCreatedOut, KeyIn, KeyOut
from vultus.engine.apikeys import Principal
from vultus.errors import NotFoundError

router = APIRouter(prefix="/keys", tags=["keys"], responses=responses(401, 403, 429))

Admin = Annotated[Principal, Depends(require("admin"))]


@router.get(
    "", summary="List API keys: name, roles, bindings, dates, state", response_model=list[KeyOut]
)
def list_keys(engine: EngineDep, _: Admin) -> list[KeyOut]:
    aws = engine.aws_credentials.access_key_ids()
    return [KeyOut.of(k, aws.get(k.name)) for k in engine.keys.list()]


@router.post(
    "",
    summary="Create an API key with its roles, bound to a purpose, case and source",
    response_model=KeyCreatedOut,
    status_code=status.HTTP_201_CREATED,
    responses=responses(404, 422),
)
def create_key(body: KeyIn, engine: EngineDep, principal: Admin) -> KeyCreatedOut:
    key, secret = engine.keys.create(
        body.name,
        body.all_roles,
        expires_days=body.expires_days,
        searches_per_day=body.searches_per_day,
        purpose=body.purpose,
        case_ref=body.case_ref,
        source=body.source,
        actor=principal.actor,
    )
    if not body.aws:
        return KeyCreatedOut(key=KeyOut.of(key), secret=secret)
    access, aws_secret = engine.aws_credentials.create(key.name, actor=principal.actor)
    return KeyCreatedOut(
        key=KeyOut.of(key, access),
        secret=secret,
        aws_access_key_id=access,
        aws_secret_access_key=aws_secret,
    )


@router.delete(
    "/{name}",
    summary="Revoke an API key at once (never the last active admin key)",
    response_model=KeyOut,
    responses=responses(404),
)
def revoke_key(name: str, engine: EngineDep, principal: Admin) -> KeyOut:
    engine.keys.revoke(name, actor=principal.actor)
    for key in engine.keys.list():
        if key.name == name:
            return KeyOut.of(key, engine.aws_credentials.access_key_ids().get(name))
    raise NotFoundError(f"no API key named {name!r}")
