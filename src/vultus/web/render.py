"""Server-rendered pages: one Jinja environment (autoescaped), the navigation each role sees,
flash messages across a redirect, and the headers every page carries."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader

from vultus.clock import now
from vultus.engine.roles import canonical

HERE = Path(__file__).parent
UI = "/ui"  # where the operator UI is mounted; the portal lives at /portal
FLASH_COOKIE = "vultus_flash"

# What each role sees, in menu order; the first entry is the role's home page.
NAV: dict[str, list[tuple[str, str]]] = {
    "admin": [("Keys", f"{UI}/keys")],
    "operator": [
        ("Library", f"{UI}/library"),
        ("Ingest", f"{UI}/ingest"),
        ("People", f"{UI}/people"),
    ],
    "investigator": [("Search", f"{UI}/search")],
    "dpo": [("Rights", f"{UI}/rights"), ("Audit", f"{UI}/audit"), ("Reports", f"{UI}/reports")],
    "auditor": [("Audit", f"{UI}/audit")],
}

# Pages hold personal data: never cached, never framed, nothing from elsewhere.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


def nav_of(roles: tuple[str, ...]) -> list[tuple[str, str]]:
    """The menu of a key of these roles: each role's pages, in the order of ROLES."""
    return [item for role in canonical(roles) for item in NAV.get(role, [])]


def home_of(roles: tuple[str, ...]) -> str:
    return (nav_of(roles) or [("", f"{UI}/login")])[0][1]


# -- filters -----------------------------------------------------------------------------------
def fmt_fmr(value: float | None) -> str:
    """A false-match rate as people read it: "1 in 31,000" rather than 3.2e-05."""
    if value is None:
        return "n/a"
    if value <= 1e-9:
        return "under 1 in a billion"
    if value >= 0.5:
        return "very likely"
    return f"1 in {round(1 / value):,}"


def fmt_dt(value: datetime | None, with_time: bool = True) -> str:
    if value is None:
        return ""
    return value.strftime("%Y-%m-%d %H:%M UTC" if with_time else "%Y-%m-%d")


def basename(path: str) -> str:
    return Path(path).name


def days_left(due: datetime) -> int:
    return (due - now()).days if due >= now() else -((now() - due).days + 1)


ENV = Environment(
    loader=FileSystemLoader(str(HERE / "templates")),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(fmr=fmt_fmr, dt=fmt_dt, basename=basename, days_left=days_left)
ENV.globals.update(ui=UI, quote=quote)


# -- flash messages: one short message carried across a redirect -------------------------------
def _read_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(raw.encode()))
        return {"kind": str(data["kind"]), "text": str(data["text"])[:500]}
    except (ValueError, KeyError, TypeError):
        return None


def redirect(url: str, *, ok: str | None = None, error: str | None = None) -> RedirectResponse:
    """POST, then redirect, then GET: a reload never repeats an action."""
    response = RedirectResponse(url, status_code=303)
    if ok or error:
        payload = {"kind": "error" if error else "ok", "text": (error or ok or "")[:500]}
        value = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
        response.set_cookie(
            FLASH_COOKIE, value, httponly=True, samesite="strict", path=UI, max_age=60
        )
    return response


def page(
    request: Request, template: str, *, status: int = 200, title: str = "", **context: Any
) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    flash = _read_flash(request)
    html = ENV.get_template(template).render(
        request=request,
        principal=principal,
        nav=nav_of(principal.roles) if principal else [],
        path=request.url.path,
        flash=flash,
        title=title,
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path=UI)
    return response


def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
