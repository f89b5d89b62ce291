"""`vultus rights`: access, erasure, restriction and objection by selfie; the request queue;
the suppression list. Also `vultus retention`, `vultus consent` and `vultus report`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from vultus.cli.common import console, open_engine
from vultus.clock import now

if TYPE_CHECKING:
    from vultus.rights.erasure import ErasurePlan

app = typer.Typer(
    help="Data-subject rights: access, erasure, restriction, objection.", no_args_is_help=True
)
retention_app = typer.Typer(help="Retention: purge what has expired.", no_args_is_help=True)
consent_app = typer.Typer(help="Consent records of consent-based sources.", no_args_is_help=True)
report_app = typer.Typer(
    help="Records of processing (Art. 30) and DPIA drafts (Art. 35).", no_args_is_help=True
)


def _print_plan(plan: ErasurePlan, title: str) -> None:
    table = Table(title=title)
    for col in ("face", "image", "distance", "est. FMR", "others in photo", "restricted"):
        table.add_column(col)
    for m in plan.matches:
        table.add_row(
            str(m.face_id),
            m.image_path,
            f"{m.distance:.3f}",
            f"{m.fmr:.1e}",
            str(m.other_faces),
            "yes" if m.restricted else "",
        )
    console.print(table)
    console.print(
        f"{len(plan.matches)} face(s) within distance {plan.threshold:.3f} (per-request "
        f"false-match rate {plan.fmr_target:g} in a gallery of {plan.gallery_size:,})"
    )


@app.command("access")
def access(
    selfie: Path = typer.Argument(..., exists=True, help="A photo of the person, alone."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the package (.zip)."),
    include_templates: bool = typer.Option(False, "--include-templates"),
    verify_with: Path | None = typer.Option(
        None, "--verify-with", exists=True, help="An ID photo that must match the selfie."
    ),
    request: str | None = typer.Option(None, "--request", help="The request reference."),
) -> None:
    """Art. 15: write everything held about the person in a selfie to a package.

    Example: vultus rights access selfie.jpg --verify-with passport.jpg --out package.zip
    """
    with open_engine() as engine:
        path, plan = engine.access(
            selfie,
            out,
            include_templates=include_templates,
            verify_with=verify_with,
            request_ref=request,
        )
    _print_plan(plan, "Faces found for the access package")
    console.print(f"[green]✓[/] package written: {path}")


@app.command("erase")
def erase(
    selfie: Path = typer.Argument(..., exists=True, help="A photo of the person, alone."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Erase without asking (scripts)."),
    exclude: list[int] = typer.Option([], "--exclude", help="Face ids judged not the person."),
    request: str | None = typer.Option(None, "--request", help="The request reference."),
    blur_originals: bool = typer.Option(
        False,
        "--blur-originals",
        help="Also blur the face in the operator's original files, and in objects in S3 "
        "buckets (refused for a bucket that keeps versions: the unblurred one would remain).",
    ),
) -> None:
    """Art. 17: preview, then erase every face of the person and keep them erased.

    Example: vultus rights erase selfie.jpg --request R-20261121-A1B2C3
    """
    with open_engine() as engine:
        plan = engine.find_person(selfie).without(set(exclude))
        _print_plan(plan, "Erasure preview")
        if not plan.matches:
            console.print("Nothing held matches this person.")
            return
        if not yes and not typer.confirm(f"Erase these {len(plan.matches)} face(s)?"):
            raise typer.Exit(1)
        receipt = engine.erase(plan, request_ref=request, blur_originals=blur_originals)
    console.print(
        f"[green]✓[/] erased {receipt.faces_erased} face(s); {receipt.images_erased} image(s) "
        f"removed, {receipt.images_kept_with_others} kept for other people; receipt "
        f"{receipt.receipt_id} (signed)"
    )


@app.command("restrict")
def restrict(
    face: list[int] = typer.Option([], "--face", help="Face ids (repeatable)."),
    subject: str | None = typer.Option(None, "--subject"),
    reason: str = typer.Option(..., "--reason"),
    lift: bool = typer.Option(False, "--lift", help="Lift the restriction instead."),
) -> None:
    """Arts. 18/21: keep faces stored but out of every search, or lift that.

    Example: vultus rights restrict --subject "Ada Lovelace" --reason "accuracy contested"
    """
    with open_engine() as engine:
        n = engine.restrict(face_ids=face or None, subject=subject, reason=reason, lift=lift)
    console.print(f"[green]✓[/] {'lifted' if lift else 'restricted'}: {n} face(s)")


@app.command("object")
def object_(
    selfie: Path = typer.Argument(..., exists=True),
    contact: str | None = typer.Option(None, "--contact"),
) -> None:
    """Art. 21: restrict the person's faces at once and queue the objection for review.

    Example: vultus rights object selfie.jpg --contact person@example.org
    """
    with open_engine() as engine:
        request, n = engine.object_to_processing(selfie, contact=contact)
    console.print(f"[green]✓[/] {n} face(s) restricted; request {request.ref} is in review")


@app.command("request")
def new_request(
    kind: str = typer.Argument(..., help="access, erasure, restriction or objection"),
    contact: str | None = typer.Option(None, "--contact"),
    selfie: Path | None = typer.Option(None, "--selfie", exists=True),
    notes: str | None = typer.Option(None, "--notes"),
) -> None:
    """Record a request received, with its one-month deadline (Art. 12(3)).

    Example: vultus rights request erasure --contact person@example.org --selfie selfie.jpg
    """
    with open_engine() as engine:
        r = engine.create_request(
            kind, contact=contact, selfie=selfie.read_bytes() if selfie else None, notes=notes
        )
    console.print(f"[green]✓[/] request {r.ref} ({kind}) due {r.due_at:%Y-%m-%d}")


@app.command("update")
def update_request(
    ref: str = typer.Argument(...),
    status: str | None = typer.Option(None, "--status"),
    extend: int = typer.Option(0, "--extend", help="Extend by 1 or 2 months (Art. 12(3))."),
    reason: str | None = typer.Option(None, "--reason"),
) -> None:
    """Move a request along, or extend its deadline with reasons.

    Example: vultus rights update R-20261121-A1B2C3 --status done
    """
    with open_engine() as engine:
        r = engine.update_request(ref, status=status, extend_months=extend, reason=reason)
    due = r.extended_until or r.due_at
    console.print(f"[green]✓[/] {r.ref}: {r.status}, due {due:%Y-%m-%d}")


@app.command("list")
def list_requests(all_: bool = typer.Option(False, "--all", help="Closed ones too.")) -> None:
    """Show requests with their deadlines, the most urgent first."""
    with open_engine() as engine:
        rows = engine.requests(open_only=not all_)
    today = now()
    table = Table(title="Rights requests")
    for col in ("ref", "kind", "status", "received", "due", "days left", "contact"):
        table.add_column(col)
    for r in rows:
        due = r.extended_until or r.due_at
        left = (due - today).days
        colour = "red" if left < 0 else "yellow" if left < 7 else ""
        table.add_row(
            r.ref,
            r.kind,
            r.status,
            f"{r.received_at:%Y-%m-%d}",
            f"{due:%Y-%m-%d}",
            f"[{colour}]{left}[/]" if colour else str(left),
            r.contact or "",
        )
    console.print(table)


@app.command("suppression")
def suppression() -> None:
    """List the suppression list (ids and dates only: the entries are sealed templates)."""
    with open_engine() as engine:
        rows = engine.suppression_list()
    table = Table(title="Suppression list")
    table.add_column("id")
    table.add_column("added")
    for i, at in rows:
        table.add_row(str(i), f"{at:%Y-%m-%d %H:%M}")
    console.print(table)


@app.command("unsuppress")
def unsuppress(
    entry: int = typer.Argument(...),
    reason: str = typer.Option(..., "--reason"),
    yes: bool = typer.Option(False, "--yes", "-y"),
) -> None:
    """Remove a suppression entry: the person could then be ingested again. Audited.

    Example: vultus unsuppress 3 --reason "consent given again, request R-..."
    """
    if not yes:
        typer.confirm("The person could be ingested again. Remove the entry?", abort=True)
    with open_engine() as engine:
        engine.remove_suppression(entry, reason=reason)
    console.print(f"[green]✓[/] suppression entry {entry} removed")


@retention_app.command("run")
def retention_run(
    report: bool = typer.Option(False, "--report", help="Only show what would go."),
    at: datetime | None = typer.Option(None, "--at", help="Pretend it is this date."),
) -> None:
    """Purge images past their retention, with the erasure cascade.

    Example: vultus retention run --report
    """
    with open_engine() as engine:
        items = engine.retention_report(at) if report else engine.retention_run(at)
    table = Table(title="Expired" if report else "Purged")
    for col in ("image", "path", "retain until", "faces"):
        table.add_column(col)
    for item in items:
        table.add_row(
            str(item.image_id), item.image_path, f"{item.retain_until:%Y-%m-%d}", str(item.faces)
        )
    console.print(table)
    console.print(f"{len(items)} image(s) {'would go' if report else 'purged'}")


@consent_app.command("add")
def consent_add(
    source: str = typer.Argument(...),
    person: str = typer.Argument(..., help="Who consented (a name or your reference)."),
    notice_version: str = typer.Option(..., "--notice-version"),
) -> None:
    """Record a consent; ingest photos under it with `vultus add ... --consent ID`.

    Example: vultus consent add event-2026 "guest 0042" --notice-version v3
    """
    with open_engine() as engine:
        cid = engine.add_consent(source, person, notice_version=notice_version)
    console.print(f"[green]✓[/] consent {cid} recorded")


@consent_app.command("withdraw")
def consent_withdraw(consent: int = typer.Argument(...)) -> None:
    """Withdraw a consent: every face resting on it is erased."""
    with open_engine() as engine:
        n = engine.withdraw_consent(consent)
    console.print(f"[green]✓[/] consent {consent} withdrawn; {n} face(s) erased")


@report_app.command("ropa")
def ropa(
    out: Path = typer.Option(Path("."), "--out", "-o", help="Folder for .md and .html"),
) -> None:
    """Write the Art. 30 record of processing activities.

    Example: vultus report ropa --out reports/
    """
    with open_engine() as engine:
        paths = engine.report("ropa", out)
    console.print("[green]✓[/] " + ", ".join(map(str, paths)))


@report_app.command("dpia")
def dpia(
    out: Path = typer.Option(Path("."), "--out", "-o", help="Folder for .md and .html"),
) -> None:
    """Write a DPIA draft (Art. 35) with the facts Vultus knows.

    Example: vultus report dpia --out reports/
    """
    with open_engine() as engine:
        paths = engine.report("dpia", out)
    console.print("[green]✓[/] " + ", ".join(map(str, paths)))
