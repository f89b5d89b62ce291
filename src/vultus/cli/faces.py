"""`vultus faces` and `vultus subjects`: what the catalog holds about faces and people."""

from __future__ import annotations

import typer
from rich.table import Table

from vultus.cli.common import console, open_engine

app = typer.Typer(help="Faces in the catalog.", no_args_is_help=True)
subjects_app = typer.Typer(help="Subjects: named people and their faces.", no_args_is_help=True)


@app.command("show")
def show(face_id: int = typer.Argument(..., help="A face id from a search result.")) -> None:
    """Show one face: its image, box, source, lawful basis and subject."""
    with open_engine() as engine:
        r = engine.view_face(face_id)
    table = Table(show_header=False, title=f"Face {r.face_id}")
    for key, value in (
        ("image", f"{r.image_path} (id {r.image_id})"),
        ("box", ", ".join(map(str, r.box))),
        ("status", r.status),
        ("source", r.source),
        ("lawful basis", f"{r.lawful_basis} / {r.special_condition}"),
        ("subject", r.subject or "-"),
        ("added", r.added_at.isoformat(timespec="seconds")),
        ("retain until", r.retain_until.isoformat(timespec="seconds")),
    ):
        table.add_row(key, value)
    console.print(table)


@app.command("delete")
def delete(
    face_ids: list[int] = typer.Argument(..., help="Face ids to delete."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete faces from the catalog and the index (images left with no face go too)."""
    if not yes:
        typer.confirm(f"Delete {len(face_ids)} face(s)?", abort=True)
    with open_engine() as engine:
        n = engine.delete_faces(face_ids)
    console.print(f"[green]✓[/] deleted {n} face(s)")


@subjects_app.command("create")
def create(
    name: str = typer.Argument(...),
    face: list[int] = typer.Option([], "--face", help="Face ids to link (repeatable)."),
) -> None:
    """Create a subject, optionally linking faces to it.

    Example: vultus subjects create "Ada Lovelace" --face 12 --face 40
    """
    with open_engine() as engine:
        engine.create_subject(name, face)
    console.print(f"[green]✓[/] subject [bold]{name}[/] created with {len(face)} face(s)")


@subjects_app.command("link")
def link(name: str = typer.Argument(...), face_ids: list[int] = typer.Argument(...)) -> None:
    """Link faces to a subject."""
    with open_engine() as engine:
        n = engine.link_faces(name, face_ids)
    console.print(f"[green]✓[/] linked {n} face(s) to {name}")


@subjects_app.command("list")
def list_subjects() -> None:
    """List subjects and how many faces each has."""
    with open_engine() as engine:
        rows = engine.subjects()
    table = Table(title="Subjects")
    table.add_column("name")
    table.add_column("faces", justify="right")
    for subject, n in rows:
        table.add_row(subject.name, str(n))
    console.print(table)


@subjects_app.command("rename")
def rename(old: str = typer.Argument(...), new: str = typer.Argument(...)) -> None:
    """Rename a subject; its faces stay linked.

    Example: vultus subjects rename "A. Lovelace" "Ada Lovelace"
    """
    with open_engine() as engine:
        engine.rename_subject(old, new)
    console.print(f"[green]✓[/] {old} is now [bold]{new}[/]")


@subjects_app.command("merge")
def merge(
    into: str = typer.Argument(..., help="The subject that stays."),
    other: str = typer.Argument(..., help="The subject whose faces move, and which goes."),
) -> None:
    """Merge two subjects found to be one person: OTHER's faces move to INTO; OTHER goes.

    Example: vultus subjects merge "Ada Lovelace" "Augusta Ada King"
    """
    with open_engine() as engine:
        moved = engine.merge_subjects(into, other)
    console.print(f"[green]✓[/] {other} merged into [bold]{into}[/]: {moved} face(s) moved")


@subjects_app.command("unlink")
def unlink(face_ids: list[int] = typer.Argument(..., help="Face ids to untie.")) -> None:
    """Untie faces from their subject; the faces stay in the catalog, unnamed.

    Example: vultus subjects unlink 1234 1240
    """
    with open_engine() as engine:
        n = engine.unlink_faces(face_ids)
    console.print(f"[green]✓[/] unlinked {n} face(s)")


@subjects_app.command("delete")
def delete_subject(
    name: str = typer.Argument(...),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a subject: its name and links go, its faces stay in the catalog, unnamed.

    Example: vultus subjects delete "Ada Lovelace" --yes
    """
    if not yes:
        typer.confirm(f"Delete the subject {name!r} (its faces stay)?", abort=True)
    with open_engine() as engine:
        n = engine.delete_subject(name)
    console.print(f"[green]✓[/] subject {name} deleted; {n} face(s) left unnamed")
