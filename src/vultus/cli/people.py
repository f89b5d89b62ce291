"""`vultus people`: proposed groupings of faces not yet tied to a named subject, and what a
reviewer decides about them (name, set apart, hide), as the web UI and the API do.

A proposal is named by the id `discover` prints ("p" and its lowest face id), which holds
while its faces do: naming one proposal does not renumber the others, as the row number
would. The row number is accepted too, for the list just printed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from vultus.cli.common import console, fail, open_engine

if TYPE_CHECKING:
    from vultus.engine import Engine
    from vultus.people.clustering import Proposal

app = typer.Typer(help="People: proposed groupings of unnamed faces.", no_args_is_help=True)

MIN_FACES_HELP = "Faces a proposed person has at least (2 or more); as given to discover."
DISTANCE_HELP = "Default: calibrated for the gallery size; as given to discover."


def proposal_id(proposal: Proposal) -> str:
    """The stable reference of a proposal: its lowest face id (face ids are ascending)."""
    return f"p{proposal.face_ids[0]}"


@app.command("discover")
def discover(
    max_distance: float | None = typer.Option(None, "--max-distance", help=DISTANCE_HELP),
    min_faces: int = typer.Option(2, "--min-faces", min=2, help=MIN_FACES_HELP),
    limit: int = typer.Option(20, "--limit", help="Proposals to show."),
) -> None:
    """Propose people for review; nothing is merged into subjects. Faces once set apart or
    hidden (here, in the web UI or the API) stay so.

    Example: vultus people discover --min-faces 2
    """
    with open_engine() as engine:
        proposals = engine.discover_people(max_distance=max_distance, min_faces=min_faces)
    table = Table("#", "id", "faces", "cohesion", "face ids", title="Proposed people")
    for k, p in enumerate(proposals[:limit], 1):
        ids = " ".join(map(str, p.face_ids[:12])) + (" …" if len(p.face_ids) > 12 else "")
        table.add_row(str(k), proposal_id(p), str(len(p.face_ids)), f"{p.cohesion:.3f}", ids)
    console.print(table)
    console.print(
        f"{len(proposals)} proposal(s). Review the faces (the web UI's People page shows "
        "them), then: vultus people accept ID --name NAME; vultus people apart FACE; "
        "vultus people hide ID"
    )


def _find(engine: Engine, ref: str, max_distance: float | None, min_faces: int) -> Proposal:
    """The proposal `ref` names: its id ("p123") or its row number in `discover`'s list."""
    proposals = engine.discover_people(max_distance=max_distance, min_faces=min_faces)
    text = ref.strip().lower()
    if text.startswith("p") and text[1:].isdigit():
        for p in proposals:
            if p.face_ids[0] == int(text[1:]):
                return p
        raise fail(
            f"no proposal {ref} now: its faces were named, hidden or set apart since; "
            "run vultus people discover again"
        )
    if text.isdigit() and 1 <= int(text) <= len(proposals):
        return proposals[int(text) - 1]
    raise fail(
        f"{ref!r} is not a proposal: give its id (like p123) or its number (1 to "
        f"{len(proposals)}) from vultus people discover"
    )


@app.command("accept")
def accept(
    proposal: str = typer.Argument(..., help="The proposal's id (p123) or number."),
    name: str | None = typer.Option(None, "--name", help="A new person's name."),
    subject: str | None = typer.Option(
        None, "--subject", help="Or an existing person to link the faces to."
    ),
    leave_out: list[int] = typer.Option(
        [], "--leave-out", help="A face of the proposal that is not this person (repeatable)."
    ),
    max_distance: float | None = typer.Option(None, "--max-distance", help=DISTANCE_HELP),
    min_faces: int = typer.Option(2, "--min-faces", min=2, help=MIN_FACES_HELP),
) -> None:
    """Name a proposal's faces: a new person (--name) or an existing one (--subject). Faces
    left out are remembered as not this person.

    Example: vultus people accept p1234 --name "Ada Lovelace" --leave-out 1250
    """
    if (name is None) == (subject is None):
        raise fail("give --name (a new person) or --subject (an existing one), not both")
    with open_engine() as engine:
        found = _find(engine, proposal, max_distance, min_faces)
        stray = sorted(set(leave_out) - set(found.face_ids))
        if stray:
            raise fail(f"face(s) {' '.join(map(str, stray))} are not in proposal {proposal}")
        faces = [f for f in found.face_ids if f not in set(leave_out)]
        person = engine.accept_person(faces, name=name, subject=subject, left_out=leave_out)
    console.print(f"[green]✓[/] {len(faces)} face(s) named {person.name}")


@app.command("apart")
def apart(
    face_ids: list[int] = typer.Argument(..., help="One face (not this person) or several."),
    max_distance: float | None = typer.Option(None, "--max-distance", help=DISTANCE_HELP),
    min_faces: int = typer.Option(2, "--min-faces", min=2, help=MIN_FACES_HELP),
) -> None:
    """Set faces apart from the proposal they are in ("not this person", or split off several
    together); remembered, so discovery never proposes them with the rest again.

    Example: vultus people apart 1250
    """
    with open_engine() as engine:
        proposals = engine.discover_people(max_distance=max_distance, min_faces=min_faces)
        holding = [p for p in proposals if set(face_ids) & set(p.face_ids)]
        if len(holding) != 1 or not set(face_ids) <= set(holding[0].face_ids):
            raise fail(
                "the faces to set apart must all be in one proposal of vultus people discover"
            )
        n = engine.set_apart(face_ids, holding[0].face_ids)
    console.print(
        f"[green]✓[/] set apart from proposal {proposal_id(holding[0])} ({n} decision(s))"
    )


@app.command("hide")
def hide(
    refs: list[str] = typer.Argument(
        ..., help="Face ids, or a proposal's id (p123) for all of it."
    ),
    max_distance: float | None = typer.Option(None, "--max-distance", help=DISTANCE_HELP),
    min_faces: int = typer.Option(2, "--min-faces", min=2, help=MIN_FACES_HELP),
) -> None:
    """Hide faces from proposals (passers-by, crowds); they stay in the catalog and in search.

    Example: vultus people hide p1234 987
    """
    with open_engine() as engine:
        faces: list[int] = []
        for ref in refs:
            if ref.isdigit():
                faces.append(int(ref))
            else:
                faces.extend(_find(engine, ref, max_distance, min_faces).face_ids)
        n = engine.hide_faces(faces)
    console.print(f"[green]✓[/] hid {n} face(s); vultus people unhide FACE ... brings them back")


@app.command("unhide")
def unhide(face_ids: list[int] = typer.Argument(..., help="Face ids to bring back.")) -> None:
    """Bring hidden faces back into proposals.

    Example: vultus people unhide 987
    """
    with open_engine() as engine:
        n = engine.unhide_faces(face_ids)
    console.print(f"[green]✓[/] {n} face(s) back among proposals")
