"""Audit (DPO, auditor): the log, searchable, with the state of its hash chain and exports;
reports (DPO): the Art. 30 record of processing and the Art. 35 DPIA draft."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask

from vultus import audit as actions
from vultus.audit import AuditVerification
from vultus.engine import Engine
from vultus.engine.apikeys import Principal
from vultus.errors import ConfigError
from vultus.web.forms import EngineDep, settings_of
from vultus.web.render import page
from vultus.web.session import Role

router = APIRouter()
Reader = Annotated[Principal, Depends(Role("dpo", "auditor"))]
Dpo = Annotated[Principal, Depends(Role("dpo"))]
LIMITS = (100, 500, 2000)

# Walking the chain reads the whole log: do it once per head, not on every page view.
_verified: dict[int, tuple[tuple[int, str] | None, AuditVerification]] = {}
_verified_lock = threading.Lock()


def _verification(engine: Engine) -> AuditVerification:
    head = engine.audit.head()
    with _verified_lock:
        cached = _verified.get(id(engine))
        if cached is not None and cached[0] == head:
            return cached[1]
    result = engine.audit.verify()
    with _verified_lock:
        _verified[id(engine)] = (head, result)
    return result


def _since(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not a date (YYYY-MM-DD)", code="bad_date") from None


@router.get("/audit")
def audit_page(
    request: Request,
    engine: EngineDep,
    _: Reader,
    action: str = "",
    actor: str = "",
    purpose: str = "",
    since: str = "",
    limit: int = LIMITS[0],
) -> Response:
    limit = limit if limit in LIMITS else LIMITS[0]
    filters = {"action": action, "actor": actor.strip(), "purpose": purpose, "since": since}
    error = None
    try:
        entries = engine.audit.entries(
            since=_since(since),
            action=action or None,
            actor=actor.strip() or None,
            purpose=purpose or None,
            limit=limit,
            newest_first=True,
        )
    except ConfigError as exc:
        entries, error = [], exc.message
    return page(
        request,
        "audit.html",
        title="Audit",
        entries=[_row(e) for e in entries],
        verification=_verification(engine),
        actions=actions.ACTIONS,
        purposes=settings_of(request).purposes,
        filters=filters,
        limit=limit,
        limits=LIMITS,
        error=error,
    )


def _row(entry: Any) -> dict[str, Any]:
    details = entry.details or {}
    return {
        "seq": entry.seq,
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "purpose": entry.purpose,
        "case_ref": entry.case_ref,
        "results": len(entry.result_ids or []),
        "summary": summary(entry.action, details, len(entry.result_ids or [])),
        "details": json.dumps(details, sort_keys=True, ensure_ascii=False)[:300],
    }


def _n(count: int, noun: str, plural: str = "") -> str:
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def summary(action: str, details: dict[str, Any], faces: int) -> str:
    """An entry in a sentence, for people reading the log; the raw details stay one click
    away. Unknown shapes fall back to "key: value" pairs, never to nothing."""
    d = details
    if action == actions.VIEW:
        if "page" in d:
            images = d.get("images", [])
            return f"Saw a {d['page']} page: {_n(len(images), 'photo')}, {_n(faces, 'face')}"
        if "search" in d:
            return f"Opened a photo from search {d['search']} ({_n(faces, 'face')})"
        if "request" in d:
            return f"Looked at the photo of request {d['request']}"
        if "image" in d:
            return f"Looked at photo {d['image']} ({_n(faces, 'face')})"
        return f"Looked at {_n(faces, 'face')}"
    if action == actions.SEARCH:
        found = "a match found" if d.get("found") else "no match"
        gallery = d.get("gallery_size")
        among = f" among {gallery:,} faces" if isinstance(gallery, int) else ""
        return f"Searched by {d.get('query', 'photo')}: {found}{among}, {_n(faces, 'result')}"
    if action == actions.VERIFY:
        same = d.get("same_person")
        return "Compared two faces: " + ("same person" if same else "not the same person")
    if action == actions.EXPORT:
        if d.get("export") == "case sheet":
            return f"Took the case sheet of search {d.get('search')} ({_n(faces, 'face')})"
        if "audit_export" in d:
            count = _n(int(d.get("entries") or 0), "audit entry", "audit entries")
            return f"Exported {count} as {d['audit_export']}"
        if "report" in d:
            return f"Made the {d['report']} report"
    if action == actions.KEY_CHANGE and "api_key" in d:
        role = f" ({d['role']})" if d.get("role") else ""
        return f"API key {d['api_key']}{role} {d.get('event', 'changed')}"
    if action == actions.CONFIG and d.get("change") == "first_open":
        return f"Settings first recorded ({_n(len(d.get('settings', {})), 'setting')})"
    if action == actions.CONFIG and d.get("change") in {
        "settings",
        "settings_ui",
        "settings_reset",
    }:
        where = {
            "settings_ui": " in the UI",
            "settings_reset": " back to vultus.toml",
        }.get(d["change"], " (vultus.toml or environment)")
        changes = [
            f"{name.replace('_', ' ')} from {_short(c.get('from'))} to {_short(c.get('to'))}"
            for name, c in sorted(d.get("settings", {}).items())
            if isinstance(c, dict)
        ]
        return f"Changed settings{where}: " + "; ".join(changes)
    pairs = [f"{k.replace('_', ' ')}: {_short(v)}" for k, v in sorted(d.items())]
    return "; ".join(pairs) if pairs else (f"{_n(faces, 'face')}" if faces else "")


def _short(value: Any) -> str:
    if isinstance(value, list):
        if not value:
            return "none"
        shown = ", ".join(str(v) for v in value[:5])
        return shown + (f" and {len(value) - 5} more" if len(value) > 5 else "")
    if isinstance(value, dict):
        return ", ".join(f"{k} {_short(v)}" for k, v in value.items())
    return str(value)


@router.get("/audit/export.{fmt}")
def export(fmt: str, engine: EngineDep, principal: Reader, since: str = "") -> Response:
    if fmt not in actions.EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}", code="bad_format")
    folder = Path(tempfile.mkdtemp(prefix="vultus-audit-"))
    path = folder / f"audit.{fmt}"
    try:
        n = engine.audit.export(path, since=_since(since), fmt=fmt)
        # An export of the log discloses what it holds: it is itself logged.
        engine.audit.append(
            actions.EXPORT,
            actor=principal.actor,
            details={"audit_export": fmt, "entries": n, "since": since or None},
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    media = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return FileResponse(
        path,
        media_type=f"{media}; charset=utf-8",
        filename=f"vultus-audit-{stamp}.{fmt}",
        headers={"Cache-Control": "no-store"},
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


@router.get("/reports")
def reports_page(request: Request, _: Dpo) -> Response:
    return page(request, "reports.html", title="Reports")


@router.get("/reports/{kind}.{fmt}")
def report(kind: str, fmt: str, engine: EngineDep, principal: Dpo) -> Response:
    if kind not in {"ropa", "dpia"} or fmt not in {"html", "md"}:
        raise ConfigError("reports are ropa or dpia, as html or md", code="report_kind_invalid")
    with tempfile.TemporaryDirectory(prefix="vultus-report-") as folder:
        engine.report(kind, Path(folder), actor=principal.actor)
        text = (Path(folder) / f"{kind}.{fmt}").read_text(encoding="utf-8")
    media = "text/html" if fmt == "html" else "text/markdown"
    return Response(
        text,
        media_type=f"{media}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="vultus-{kind}.{fmt}"'},
    )
