"""`vultus search` and `vultus verify`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from vultus.cli.common import console, fail, open_engine, shown

if TYPE_CHECKING:
    from vultus.search.results import SearchResult


def _short(path: str) -> str:
    """Relative to the working directory where possible: absolute paths drown the table."""
    p = Path(path)
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p) if len(p.parts) <= 4 else str(Path("…", *p.parts[-3:]))


def _fmr(x: float) -> str:
    return f"{x:.1e}" if x < 0.01 else f"{x:.2f}"


def search(
    photo: Path | None = typer.Argument(None, help="A photo with the face to look for."),
    top: int = typer.Option(10, "--top", "-k", min=1, max=1000, help="How many results."),
    face: int | None = typer.Option(
        None,
        "--face",
        "-f",
        min=1,
        help="Which face (1 = largest; near-equal largest faces are named, to choose from).",
    ),
    face_id: int | None = typer.Option(None, "--face-id", help="Search with a catalogued face."),
    subject: str | None = typer.Option(None, "--subject", help="Search with a subject's faces."),
    fmr: float | None = typer.Option(
        None, "--fmr", help="False-match rate for the match decision (default: setting)."
    ),
    margin: float | None = typer.Option(
        None,
        "--margin",
        min=0.0,
        help="Flag a match as ambiguous when its subject is not this much nearer (distance) "
        "than the next subject (default: the search_margin setting).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    look_harder: bool = typer.Option(
        False,
        "--look-harder",
        help="Look harder for faces in the photo (more scales and detectors; a few seconds): "
        "for a face the default detection misses. Face numbers refer to the faces found so.",
    ),
    sheet: Path | None = typer.Option(
        None,
        "--sheet",
        help="Also draw the results as a contact sheet (.jpg or .png), or write the case "
        "sheet (.html: self-contained, with purpose, case, who and when).",
    ),
    purpose: str | None = typer.Option(
        None, "--purpose", "-p", help="Why you search: one of the configured purposes."
    ),
    case_ref: str | None = typer.Option(None, "--case", help="A case reference for the audit."),
) -> None:
    """Find where else a person appears: by photo, by face id, or by subject.

    Every search states its purpose and is written to the audit log.

    Example: vultus search query.jpg --purpose "archive research" --top 5 --sheet results.jpg
    """
    given = sum(x is not None for x in (photo, face_id, subject))
    if given != 1:
        raise fail("give exactly one of: a PHOTO, --face-id or --subject")
    with open_engine() as engine:
        if photo is not None:
            result = engine.search(
                photo,
                purpose=purpose or "",
                case_ref=case_ref,
                top_k=top,
                face=face,
                fmr=fmr,
                margin=margin,
                detection="harder" if look_harder else None,
            )
        elif face_id is not None:
            result = engine.search_face(
                face_id, purpose=purpose or "", case_ref=case_ref, top_k=top, fmr=fmr, margin=margin
            )
        else:
            assert subject is not None
            result = engine.search_subject(
                subject, purpose=purpose or "", case_ref=case_ref, top_k=top, fmr=fmr, margin=margin
            )
    if sheet is not None:
        from vultus.audit import os_actor
        from vultus.clock import now
        from vultus.search.sheet import CaseFacts, render_sheet

        facts = CaseFacts(
            purpose=purpose or "",
            case_ref=case_ref,
            actor=os_actor(),
            when=now(),
            controller=engine.settings.controller,
        )
        render_sheet(
            result, photo, sheet, endpoint_url=engine.settings.s3_endpoint_url, facts=facts
        )
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    print_result(result)
    if sheet is not None:
        console.print(f"contact sheet: {sheet}")


def print_result(result: SearchResult) -> None:
    if result.query_face is not None:
        q = result.query_face
        others = f"; the others: --face {', '.join(str(f.number) for f in result.other_faces)}"
        console.print(
            f"{result.faces_seen} face(s) in the photo; searching with face {q.number} "
            f"({q.box_size} px){others if result.other_faces else ''}"
        )
        if result.face_tie:
            tied = ", ".join(str(n) for n in result.face_tie)
            console.print(
                f"[yellow]![/] faces {tied} are near-equal in size: face {result.face_tie[0]} "
                f"is the nearest the centre; which did you mean? Search again with --face N"
            )
    table = Table(title=f"Top {len(result.matches)} of {result.gallery_size:,} faces")
    with_subjects = any(m.subject for m in result.matches)
    with_ids = any(m.external_id for m in result.matches)
    columns = ["#", "face", "image", "distance", "est. FMR", "tier", "source"]
    extra = (["external id"] if with_ids else []) + (["subject"] if with_subjects else [])
    for col in columns + extra:
        table.add_column(col, justify="right" if col in {"#", "face"} else "left")
    table.columns[2].overflow = "fold"
    for i, m in enumerate(result.matches, start=1):
        image = _short(m.image_path)
        if not image.endswith(m.file_name):  # an upload, stored under its content's hash
            image = f"{m.file_name} ({image})"
        if m.video is not None:  # a face track: where in the video, and its best frame
            v = m.video
            image += f" @ {v.start_s:.1f}-{v.end_s:.1f} s (best frame {v.best_s:.1f} s)"
        row = [
            str(i),
            str(m.face_id),
            shown(image),
            f"{m.distance:.3f}",
            _fmr(m.fmr),
            "[green]match[/]" if m.is_match else "[yellow]possible, check by eye[/]",
            shown(m.source),
        ]
        row += [shown(m.external_id or "")] if with_ids else []
        table.add_row(*row, *([shown(m.subject or "")] if with_subjects else []))
    console.print(table)
    colour = "yellow" if result.ambiguous or not result.found else "green"
    console.print(
        f"[{colour}]{result.decision}[/] (threshold distance {result.threshold:.3f} at this "
        "gallery size)"
    )


def verify(
    photo_a: Path = typer.Argument(..., help="First photo (its largest face is used)."),
    photo_b: Path = typer.Argument(..., help="Second photo."),
    fmr: float = typer.Option(1e-3, "--fmr", help="False-match rate for the decision."),
    as_json: bool = typer.Option(False, "--json"),
    purpose: str | None = typer.Option(
        None, "--purpose", "-p", help="Why you compare: one of the configured purposes."
    ),
    case_ref: str | None = typer.Option(None, "--case", help="A case reference for the audit."),
) -> None:
    """1:1: are two photos of the same person, at a chosen false-match rate?

    Example: vultus verify id-card.jpg selfie.jpg --purpose "legal claim" --fmr 1e-4
    """
    with open_engine() as engine:
        v = engine.verify(photo_a, photo_b, purpose=purpose or "", case_ref=case_ref, fmr=fmr)
    if as_json:
        typer.echo(json.dumps(v.to_json(), indent=2))
        return
    verdict = "[green]same person[/]" if v.same_person else "[yellow]not the same person[/]"
    console.print(
        f"{verdict} at FMR {fmr:g}: distance {v.distance:.3f} (threshold {v.threshold:.3f}), "
        f"similarity {v.similarity:.3f}, est. FMR at this distance {_fmr(v.fmr)}"
    )


def register(app: typer.Typer) -> None:
    app.command("search")(search)
    app.command("verify")(verify)
