"""Settings (admin): the settings that otherwise need `vultus.toml` and a restart (controller,
portal, purposes, false-match rates), viewed and changed while Vultus runs. Stored in the
catalog, they override the file; every change is audited (engine/admin.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from vultus.engine import Engine
from vultus.engine.admin import EDITABLE
from vultus.engine.apikeys import Principal
from vultus.errors import VultusError
from vultus.web.forms import EngineDep, settings_of
from vultus.web.render import UI, page, redirect
from vultus.web.session import Role

router = APIRouter(prefix="/settings")
Admin = Annotated[Principal, Depends(Role("admin"))]


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:g}" if isinstance(value, float) else str(value)


@router.get("")
def settings_page(request: Request, engine: EngineDep, _: Admin) -> Response:
    overridden = engine.settings_overrides()
    rows = [
        {
            "name": name,
            "label": e.label,
            "help": e.help,
            "value": _shown(getattr(engine.settings, name)),
            "kind": type(getattr(engine.settings, name)).__name__,
            "here": name in overridden,
        }
        for name, e in EDITABLE.items()
    ]
    return page(request, "settings.html", title="Settings", rows=rows)


def _follow(request: Request, engine: Engine, values: dict[str, Any]) -> None:
    """The server may hold its own copy of the settings (the API app's): it follows the
    engine's."""
    served = settings_of(request)
    if served is not engine.settings:
        for name, value in values.items():
            setattr(served, name, value)


@router.post("")
async def save_settings(request: Request, engine: EngineDep, principal: Admin) -> Response:
    form = await request.form()
    changes = {name: str(form.get(name, "")) for name in EDITABLE if name in form}
    if "portal_enabled" in EDITABLE and "portal_shown" in form:
        changes["portal_enabled"] = "yes" if form.get("portal_enabled") else "no"
    try:
        with engine.lock:
            changed = engine.update_settings(changes, actor=principal.actor)
    except VultusError as exc:
        return redirect(f"{UI}/settings", error=exc.message)
    _follow(request, engine, {name: change["to"] for name, change in changed.items()})
    if not changed:
        return redirect(f"{UI}/settings", ok="Nothing changed.")
    names = ", ".join(EDITABLE[n].label.lower() for n in changed)
    return redirect(
        f"{UI}/settings", ok=f"Saved: {names}. In effect now; written to the audit log."
    )


@router.post("/reset")
async def reset_setting(request: Request, engine: EngineDep, principal: Admin) -> Response:
    """ "Reset to vultus.toml" on one setting saved here (the button names it; the rest of the
    form is not saved)."""
    form = await request.form()
    name = str(form.get("reset", ""))
    try:
        with engine.lock:
            change = engine.reset_setting(name, actor=principal.actor)
    except VultusError as exc:
        return redirect(f"{UI}/settings", error=exc.message)
    _follow(request, engine, {name: change["to"]})
    return redirect(
        f"{UI}/settings",
        ok=f"{EDITABLE[name].label} is back to vultus.toml ({_shown(change['to']) or 'empty'}); "
        "written to the audit log. Unsaved edits on this page were not kept.",
    )
