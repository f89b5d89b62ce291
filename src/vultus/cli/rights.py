"""`vultus rights`: access, erasure, restriction and objection by selfie; the request queue;
the suppression list. Also `vultus retention`, `vultus consent` and `vultus report`."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from vultus.cli.common import console, fail, open_engine
from vultus.clock import now
from vultus.errors import RightsError

if TYPE_CHECKING:
    from vultus.engine import Engine
    from vultus.rights.erasure import ErasureReceipt
    from vultus.rights.review import Review

app = typer.Typer(
    help="Data-subject rights: access, erasure, restriction, objection.", no_args_is_help=True
)
retention_app = typer.Typer(help="Retention: purge what has expired.", no_args_is_help=True)
consent_app = typer.Typer(help="Consent records of consent-based sources.", no_args_is_help=True)
report_app = typer.Typer(
    help="Records of processing (Art. 30) and DPIA drafts (Art. 35).", no_args_is_help=True
)


def _review(
    engine: Engine,
    selfie: Path,
    kind: str,
    *,
    include: list[int],
    exclude: list[int],
    request: str | None,
    verify_with: Path | None = None,
    ask: bool,
    settle: bool = False,
) -> Review:
    """The review of a request by selfie: settled by --include/--exclude, then, when a person
    is at the terminal, by asking about each possible candidate; every confirmation reruns the
    search from the confirmed faces. With `settle` (--yes), possible candidates not given with
    --include are recorded as struck: a request's review leaves none undecided."""
    if request is not None:
        _check_open(engine, request)
    review = engine.review_person(
        selfie,
        kind=kind,
        include=include,
        exclude=exclude,
        verify_with=verify_with,
        request_ref=request,
    )
    while ask and review.to_check:
        _print_review(review)
        for c in review.to_check:
            yes = typer.confirm(
                f"Is face {c.face_id} ({c.image_path}) this person? {c.odds}", default=False
            )
            review.decide(include=[c.face_id] if yes else [], strike=[] if yes else [c.face_id])
        review = engine.expand_review(review)
    if settle and review.to_check:
        review.decide(strike=[c.face_id for c in review.to_check])
    if request is not None:
        engine.record_review(request, review)
    return review


def _check_open(engine: Engine, ref: str) -> None:
    status = engine.request(ref).status
    if status in {"done", "rejected"}:
        raise fail(f"request {ref} is {status}: nothing more is done for it", code=2)


def _print_review(review: Review) -> None:
    table = Table(title=f"Review: {review.kind}")
    for col in ("face", "tier", "image", "distance", "odds", "round", "others", "decision"):
        table.add_column(col)
    for c in review.candidates:
        table.add_row(
            str(c.face_id),
            c.label,
            f"{c.image_id}: {c.image_path}",
            f"{c.distance:.3f}",
            c.odds,
            str(c.found_in_round),
            str(c.other_faces),
            "include" if c.included else "strike" if c.decision == "strike" else "not included",
        )
    console.print(table)
    console.print(review.headline())
    if review.to_check:
        console.print(
            "Possible matches are not included unless a person confirms them: look at each "
            "photo, then rerun with --include FACE (or --exclude FACE)."
        )


def _show(review: Review, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(review.to_json(), default=str, indent=2))
    else:
        _print_review(review)


_INCLUDE = typer.Option([], "--include", help="Face ids confirmed as the person (repeatable).")
_EXCLUDE = typer.Option([], "--exclude", help="Face ids judged not the person (repeatable).")
_PREVIEW = typer.Option(False, "--preview", help="Print the review and change nothing.")
_JSON = typer.Option(False, "--json", help="With --preview: print the review as JSON.")


@app.command("access")
def access(
    selfie: Path = typer.Argument(..., exists=True, help="A photo of the person, alone."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Where to write the package."),
    include_templates: bool = typer.Option(False, "--include-templates"),
    verify_with: Path | None = typer.Option(
        None, "--verify-with", exists=True, help="An ID photo that must match the selfie."
    ),
    request: str | None = typer.Option(None, "--request", help="The request reference."),
    include: list[int] = _INCLUDE,
    exclude: list[int] = _EXCLUDE,
    preview: bool = _PREVIEW,
    as_json: bool = _JSON,
    yes: bool = typer.Option(
        False,
        "--yes",
        "-y",
        help="Ask nothing (scripts): possible matches not --include'd are struck.",
    ),
) -> None:
    """Art. 15: review the candidates, then write what is held about the person to a package.

    Example: vultus rights access selfie.jpg --verify-with passport.jpg --out package.zip
    """
    with open_engine() as engine:
        review = _review(
            engine,
            selfie,
            "access",
            include=include,
            exclude=exclude,
            request=request,
            verify_with=verify_with,
            ask=not (yes or preview or as_json),
            settle=yes and not (preview or as_json),
        )
        _show(review, as_json)
        if preview or as_json:
            return
        if out is None:
            raise fail("give --out FILE for the package (or --preview to see the review)", 2)
        if request is not None:
            # From the reviewed review kept with the request.
            path, plan = engine.access_request(request, out, include_templates=include_templates)
        else:
            path, plan = engine.access(review, out, include_templates=include_templates)
    console.print(f"[green]✓[/] package written: {path} ({len(plan.matches)} face(s))")


@app.command("erase")
def erase(
    selfie: Path = typer.Argument(..., exists=True, help="A photo of the person, alone."),
    yes: bool = typer.Option(
        False,
        "--yes",
        "-y",
        help="Erase without asking (scripts): possible matches not --include'd are struck.",
    ),
    include: list[int] = _INCLUDE,
    exclude: list[int] = _EXCLUDE,
    preview: bool = _PREVIEW,
    as_json: bool = _JSON,
    request: str | None = typer.Option(None, "--request", help="The request reference."),
    blur_originals: bool = typer.Option(
        False,
        "--blur-originals",
        help="Also blur the face in the operator's original files, and in objects in S3 "
        "buckets (refused for a bucket that keeps versions: the unblurred one would remain).",
    ),
) -> None:
    """Art. 17: review the candidates, then erase the person's faces and keep them erased.

    Matches are included and possible matches are not, unless confirmed (asked at a terminal,
    or --include FACE). Example: vultus rights erase selfie.jpg --request R-20261121-A1B2C3
    """
    with open_engine() as engine:
        review = _review(
            engine,
            selfie,
            "erasure",
            include=include,
            exclude=exclude,
            request=request,
            ask=not (yes or preview or as_json),
            settle=yes and not (preview or as_json),
        )
        _show(review, as_json)
        if preview or as_json:
            return
        if not review.included:
            if review.candidates:
                possible = sum(c.tier == "possible" for c in review.candidates)
                raise fail(
                    f"{review.headline()} Nothing was erased: none of the candidates was "
                    f"confirmed ({possible} possible match(es) among them). Look at them "
                    "(--preview) and confirm the person's faces with --include FACE.",
                    code=1,
                )
            console.print(review.headline())
            return
        if not yes and not typer.confirm(f"Erase these {len(review.included)} face(s)?"):
            raise typer.Exit(1)
        if request is not None:
            # The reviewed review kept with the request; the request closes with its receipt.
            receipt = engine.erase_request(request, blur_originals=blur_originals)
        else:
            receipt = engine.erase(engine.settle(review), blur_originals=blur_originals)
        folder = engine.settings.data_dir / "receipts"
    _print_receipt(receipt)
    console.print(f"Signed receipt: {folder / (receipt.receipt_id + '.json')}")


def _print_receipt(receipt: ErasureReceipt) -> None:
    """Exactly what happened, file by file: an original outside the data directory is the
    operator's and may still show the person, and the operator must learn that here."""
    console.print(
        f"[green]✓[/] {receipt.faces_erased} face(s) removed from Vultus (catalog and index); "
        f"{receipt.images_erased} image(s) removed from the catalog, "
        f"{receipt.images_kept_with_others} kept there for the other people in them"
        + ("; the person is on the suppression list" if receipt.suppression_added else "")
    )
    for label, locations in (
        ("stored copies deleted", receipt.stored_copies_deleted),
        ("original files deleted", receipt.originals_deleted),
        ("files with the face blurred", receipt.blurred),
    ):
        console.print(f"  {label}: {len(locations)}")
        for location in locations:
            console.print(f"    {location}", markup=False, highlight=False)
    if receipt.collection_memberships:
        console.print(f"  collection memberships removed: {len(receipt.collection_memberships)}")
        for held in receipt.collection_memberships:
            console.print(
                f"    {held['collection']}: FaceId {held['face_id']}", markup=False, highlight=False
            )
    if receipt.left_in_place:
        console.print(
            f"[yellow]![/] files left in place, which may still show the person: "
            f"{len(receipt.left_in_place)}"
        )
        for item in receipt.left_in_place:
            console.print(f"    {item['location']}", markup=False, highlight=False)
            console.print(f"      {item['reason']}", markup=False, highlight=False)
    else:
        console.print("  files left in place: none")


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


_FACE = typer.Option(
    None, "--face", min=1, help="In a photo of several people, the person's face (1: largest)."
)


def _intake(engine: Engine, photo: Path, face: int | None) -> bytes:
    """The request's photo through the engine's check: one face, or the one chosen."""
    try:
        return engine.intake_photo(photo.read_bytes(), face=face)
    except RightsError as exc:
        if exc.code == "several_faces" and face is None:
            table = Table(title=f"Faces in {photo.name}, largest first")
            for col in ("face", "left", "top", "right", "bottom"):
                table.add_column(col)
            for f in engine.photo_faces(photo).faces:
                table.add_row(str(f.number), *(str(v) for v in f.box))
            console.print(table)
            raise fail(f"{exc.message}: give --face N", code=2) from None
        raise


@app.command("request")
def new_request(
    kind: str = typer.Argument(..., help="access, erasure, restriction or objection"),
    contact: str | None = typer.Option(None, "--contact"),
    selfie: Path | None = typer.Option(None, "--selfie", exists=True),
    face: int | None = _FACE,
    notes: str | None = typer.Option(None, "--notes"),
) -> None:
    """Record a request received, with its one-month deadline (Art. 12(3)). A photo with no
    usable face is refused; of several people, choose the person's face with --face.

    Example: vultus rights request erasure --contact person@example.org --selfie selfie.jpg
    """
    with open_engine() as engine:
        photo = _intake(engine, selfie, face) if selfie else None
        r = engine.create_request(kind, contact=contact, selfie=photo, notes=notes)
    console.print(f"[green]✓[/] request {r.ref} ({kind}) due {r.due_at:%Y-%m-%d}")


@app.command("update")
def update_request(
    ref: str = typer.Argument(...),
    status: str | None = typer.Option(
        None,
        "--status",
        help="received, in_review, done or rejected (closing destroys the request's photo).",
    ),
    extend: int = typer.Option(0, "--extend", help="Extend by 1 or 2 months (Art. 12(3))."),
    reason: str | None = typer.Option(None, "--reason"),
    selfie: Path | None = typer.Option(
        None, "--selfie", exists=True, help="Replace the request's photo (its review restarts)."
    ),
    face: int | None = _FACE,
    note: str | None = typer.Option(None, "--note", help="Add a dated note to the request."),
) -> None:
    """Move a request along, extend its deadline with reasons, replace its photo or add a note.

    Example: vultus rights update R-20261121-A1B2C3 --selfie better-photo.jpg
    """
    with open_engine() as engine:
        if selfie is not None:
            engine.replace_request_photo(ref, _intake(engine, selfie, face))
            console.print(f"[green]✓[/] {ref}: photo replaced; its review starts again")
        if note:
            engine.add_request_note(ref, note)
        r = engine.request(ref)
        if status is not None or extend or selfie is None and not note:
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
    table.add_column("request")
    for entry in rows:
        table.add_row(str(entry.id), f"{entry.created_at:%Y-%m-%d %H:%M}", entry.request_ref or "")
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
