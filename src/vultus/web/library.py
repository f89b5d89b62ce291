"""Library and ingest (operator): the sources with their lawful basis and retention, the photos
and their faces, uploads under a source, and folder ingests run as background jobs whose
progress the page follows."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from vultus.engine import Engine
from vultus.engine.apikeys import Principal
from vultus.engine.records import Job
from vultus.errors import VultusError
from vultus.lawful_basis import ART6_BASES, ART9_CONDITIONS, SOURCE_KINDS
from vultus.web.forms import EngineDep, read_upload, settings_of
from vultus.web.render import UI, page, redirect
from vultus.web.session import Role, host_state

router = APIRouter()
Operator = Annotated[Principal, Depends(Role("operator"))]
PAGE_SIZE = 24


def _sources(engine: Engine) -> list[dict[str, Any]]:
    return [
        {
            "name": src.name,
            "kind": src.kind,
            "basis": src.lawful_basis,
            "basis_text": ART6_BASES.get(src.lawful_basis, ""),
            "condition": src.special_condition,
            "condition_text": ART9_CONDITIONS.get(src.special_condition, ""),
            "legal_reference": src.legal_reference,
            "purpose": src.purpose,
            "retention_days": src.retention_days,
            "originals_deletable": bool(src.originals_deletable),
            "images": images,
            "faces": faces,
        }
        for src, images, faces in engine.sources()
    ]


@router.get("/library")
def library(
    request: Request,
    engine: EngineDep,
    principal: Operator,
    source: str = "",
    person: str = "",
    added_from: str = "",
    added_until: str = "",
    q: str = "",
    page_no: int = 1,
) -> Response:
    """Newest first, so that what was just uploaded is on page 1; filtered by source, person,
    the day added and part of the file name. One audit entry for the page's photos."""
    page_no = max(1, page_no)
    sources = _sources(engine)
    people = [s.name for s, _ in engine.subjects()]
    chosen = {
        "source": source if source in {s["name"] for s in sources} else "",
        "person": person if person in people else "",
        "added_from": _day(added_from),
        "added_until": _day(added_until),
        "q": q.strip()[:200],
    }
    since, until = chosen["added_from"], chosen["added_until"]
    images = engine.list_images(
        source=chosen["source"] or None,
        subject=chosen["person"] or None,
        added_from=datetime.combine(date.fromisoformat(since), time.min) if since else None,
        added_until=(
            datetime.combine(date.fromisoformat(until) + timedelta(days=1), time.min)
            if until
            else None
        ),
        name=chosen["q"] or None,
        newest_first=True,
        offset=(page_no - 1) * PAGE_SIZE,
        limit=PAGE_SIZE + 1,
    )[: PAGE_SIZE + 1]
    shown = images[:PAGE_SIZE]
    view = engine.view_page([im.id for im in shown], actor=principal.actor, page="library")
    filters = {k: v for k, v in chosen.items() if v}
    return page(
        request,
        "library.html",
        title="Library",
        bases=ART6_BASES,
        conditions=ART9_CONDITIONS,
        kinds=SOURCE_KINDS,
        sources=sources,
        people=people,
        source=chosen["source"],
        chosen=chosen,
        filtered=bool(filters),
        query=urlencode(filters),
        images=shown,
        view=view,
        page_no=page_no,
        more=len(images) > PAGE_SIZE,
        totals={
            "images": sum(s["images"] for s in sources),
            "faces": sum(s["faces"] for s in sources),
        },
    )


def _day(value: str) -> str:
    """A date from a date field (YYYY-MM-DD), or "" for anything else."""
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        return ""


@router.get("/library/images/{image_id}")
def image_detail(
    request: Request, image_id: int, engine: EngineDep, principal: Operator
) -> Response:
    summary, faces = engine.image(image_id)
    view = engine.view_page([image_id], actor=principal.actor, page="photo")
    return page(
        request,
        "image.html",
        title=f"Photo {image_id}",
        image=summary,
        faces=faces,
        view=view,
        subjects=[s.name for s, _ in engine.subjects()],
    )


@router.post("/library/sources")
def add_source(
    request: Request,
    engine: EngineDep,
    principal: Operator,
    name: Annotated[str, Form()] = "",
    kind: Annotated[str, Form()] = "folder",
    basis: Annotated[str, Form()] = "",
    condition: Annotated[str, Form()] = "",
    legal_reference: Annotated[str, Form()] = "",
    purpose: Annotated[str, Form()] = "",
    retention_days: Annotated[str, Form()] = "",
    originals_deletable: Annotated[str, Form()] = "",
) -> Response:
    """Register a source with its lawful basis, as `vultus sources add` does: nothing enters
    Vultus without one."""
    if not name.strip():
        return redirect(f"{UI}/library#new-source", error="A source needs a name.")
    if not retention_days.strip().isdigit():
        return redirect(
            f"{UI}/library#new-source", error="Retention is a whole number of days, such as 3650."
        )
    try:
        engine.add_source(
            name.strip(),
            actor=principal.actor,
            lawful_basis_code=basis,
            special_condition=condition,
            purpose=purpose.strip(),
            retention_days=int(retention_days),
            kind=kind,
            legal_reference=legal_reference.strip() or None,
            originals_deletable=originals_deletable == "yes",
        )
    except VultusError as exc:
        return redirect(f"{UI}/library#new-source", error=exc.message)
    return redirect(f"{UI}/library", ok=f"Source {name.strip()} registered.")


@router.post("/library/upload")
def upload(
    request: Request,
    engine: EngineDep,
    principal: Operator,
    source: Annotated[str, Form()] = "",
    consent: Annotated[str, Form()] = "",
    photos: Annotated[list[UploadFile] | None, File()] = None,
) -> Response:
    settings = settings_of(request)
    files = [p for p in photos or [] if p.filename]
    try:  # a key bound to a source adds to it alone
        source = principal.bound_source(source or None) or ""
    except VultusError as exc:
        return redirect(f"{UI}/library", error=exc.message)
    if not source:
        return redirect(f"{UI}/library", error="Choose the source the photos come from.")
    if not files:
        return redirect(f"{UI}/library", error="Choose one or more photos to upload.")
    if consent.strip() and not consent.strip().isdigit():
        return redirect(f"{UI}/library", error="The consent is the number of a consent record.")
    consent_id = int(consent) if consent.strip() else None
    added = faces = duplicates = suppressed = 0
    problems: list[str] = []
    refused: list[str] = []
    first_frame_only: list[str] = []
    for upload_file in files:
        name = upload_file.filename or "upload"
        try:
            data = read_upload(upload_file, settings.max_upload_bytes)
            summary, _ = engine.upload(
                data, name, source=source, consent=consent_id, actor=principal.actor
            )
        except VultusError as exc:
            problems.append(exc.message)
            continue
        added += summary.images_added
        faces += summary.faces_indexed
        duplicates += summary.images_duplicate
        suppressed += summary.faces_suppressed
        refused.extend(summary.suppressed_photos)
        first_frame_only.extend(f"{path} ({n} frames)" for path, n in summary.multi_frame)
        problems.extend(f"{path}: {message}" for path, _, message in summary.errors)
    text = f"{added} photo(s) added under {source}, {faces} face(s) indexed"
    if duplicates:
        text += f"; {duplicates} already held"
    if suppressed:
        text += (
            f"; {suppressed} face(s) refused (on the suppression list) in "
            + ", ".join(refused[:10])
            + (f" and {len(refused) - 10} more" if len(refused) > 10 else "")
        )
    if first_frame_only:
        text += "; only the first frame read of " + ", ".join(first_frame_only[:10])
    if problems:
        text += ". Not added: " + "; ".join(problems[:5])
        return redirect(f"{UI}/library?source={source}", error=text)
    return redirect(f"{UI}/library?source={source}", ok=text + ".")


# -- folder ingest as a background job ---------------------------------------------------------
def _jobs(request: Request) -> Any:
    return getattr(host_state(request), "jobs", None)


def job_json(job: Job) -> dict[str, Any]:
    """What the page shows of a job, and what its script polls."""
    result: dict[str, Any] = dict(job.result or {})
    params = job.params or {}
    summary: dict[str, Any] = {
        k: result[k]
        for k in (
            "images_added",
            "images_duplicate",
            "faces_indexed",
            "faces_suppressed",
            "suppressed_photos",
        )
        if k in result
    }
    if result.get("multi_frame"):
        summary["multi_frame"] = [f"{p} ({n} frames)" for p, n in result["multi_frame"]]
    if "errors" in result:
        summary["errors"] = len(result["errors"])
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "done": job.done or 0,
        "total": job.total,
        "error": job.error,
        "path": params.get("path"),
        "source": params.get("source"),
        "summary": summary,
    }


@router.get("/ingest")
def ingest_page(request: Request, engine: EngineDep, _: Operator, job: int = 0) -> Response:
    queue = _jobs(request)
    jobs = [job_json(j) for j in queue.list(limit=20)] if queue is not None else []
    return page(
        request,
        "ingest.html",
        title="Ingest",
        available=queue is not None,
        jobs=jobs,
        current=job,
        sources=_sources(engine),
        roots=[str(r) for r in engine.settings.ingest_root_paths],
    )


@router.post("/ingest")
def start_ingest(
    request: Request,
    principal: Operator,
    path: Annotated[str, Form()] = "",
    source: Annotated[str, Form()] = "",
    consent: Annotated[str, Form()] = "",
) -> Response:
    queue = _jobs(request)
    if queue is None:
        return redirect(f"{UI}/ingest", error="Background jobs are unavailable on this server.")
    try:
        bound = principal.bound_source(source or None) or ""
        params = {"path": path.strip(), "source": bound, "consent": consent.strip() or None}
        job = queue.submit("ingest", params, principal.actor)
    except VultusError as exc:
        return redirect(f"{UI}/ingest", error=exc.message)
    return redirect(f"{UI}/ingest?job={job.id}", ok=f"Ingest job {job.id} queued.")


@router.get("/ingest/jobs/{job_id}.json")
def job_status(request: Request, job_id: int, _: Operator) -> JSONResponse:
    queue = _jobs(request)
    if queue is None:
        return JSONResponse({"error": "jobs unavailable"}, status_code=503)
    return JSONResponse(job_json(queue.get(job_id)), headers={"Cache-Control": "no-store"})
