"""Keys (admin): who may use Vultus, in which roles, bound to which purpose, case and source;
create (the secret is shown once) and revoke (a revoked key is signed out of the UI at its next
request)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from vultus.clock import now
from vultus.engine.apikeys import ROLES, Principal
from vultus.engine.roles import COMBINABLE
from vultus.errors import VultusError
from vultus.web.forms import EngineDep
from vultus.web.render import UI, page, redirect
from vultus.web.session import Role

router = APIRouter(prefix="/keys")
Admin = Annotated[Principal, Depends(Role("admin"))]


def _keys_page(request: Request, engine: EngineDep, **context: Any) -> Response:
    return page(
        request,
        "keys.html",
        title="Keys",
        keys=engine.keys.list(),
        aws_ids=engine.aws_credentials.access_key_ids(),
        roles=ROLES,
        combinable=COMBINABLE,
        purposes=engine.settings.purposes,
        sources=[src.name for src, _, _ in engine.sources()],
        now=now(),
        **context,
    )


@router.get("")
def keys_page(request: Request, engine: EngineDep, _: Admin) -> Response:
    return _keys_page(request, engine)


@router.post("")
def create_key(
    request: Request,
    engine: EngineDep,
    principal: Admin,
    name: Annotated[str, Form()] = "",
    role: Annotated[list[str] | None, Form()] = None,
    expires_days: Annotated[str, Form()] = "",
    searches_per_day: Annotated[str, Form()] = "",
    purpose: Annotated[str, Form()] = "",
    case_ref: Annotated[str, Form()] = "",
    source: Annotated[str, Form()] = "",
    aws: Annotated[bool, Form()] = False,
) -> Response:
    try:
        if not name.strip():
            raise VultusError("a key needs a name", code="key_name_empty")
        key, secret = engine.keys.create(
            name.strip(),
            role or [],
            expires_days=_days(expires_days),
            searches_per_day=int(searches_per_day) if searches_per_day.isdigit() else None,
            purpose=purpose,
            case_ref=case_ref,
            source=source,
            actor=principal.actor,
        )
        credential = engine.aws_credentials.create(key.name, actor=principal.actor) if aws else None
    except VultusError as exc:
        return redirect(f"{UI}/keys", error=exc.message)
    # Shown once, on this response only: it is stored nowhere but as a hash (the AWS secret
    # sealed under the master key, for checking signatures, and never shown again).
    return _keys_page(request, engine, created=key, secret=secret, credential=credential)


def _days(text: str) -> int | None:
    """The form's expiry: empty for never; anything else must be a number of days, which the
    key store checks (a "-1" read as "never" once made a key that never expired)."""
    if not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        raise VultusError(f"{text!r} is not a number of days", code="expires_invalid") from None


@router.post("/revoke")
def revoke_key(engine: EngineDep, principal: Admin, name: Annotated[str, Form()] = "") -> Response:
    try:
        engine.keys.revoke(name, actor=principal.actor)
    except VultusError as exc:
        return redirect(f"{UI}/keys", error=exc.message)
    return redirect(f"{UI}/keys", ok=f"Key {name} revoked.")
