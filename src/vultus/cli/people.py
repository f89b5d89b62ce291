"""`vultus people`: proposed groupings of faces not yet tied to a named subject."""

from __future__ import annotations

import typer
from rich.table import Table

from vultus.cli.common import console, open_engine

app = typer.Typer(help="People: proposed groupings of unnamed faces.", no_args_is_help=True)


@app.command("discover")
def discover(
    max_distance: float | None = typer.Option(
        None, "--max-distance", help="Default: calibrated for the gallery size."
    ),
    min_faces: int = typer.Option(
        2, "--min-faces", min=2, help="Faces a proposed person has at least (2 or more)."
    ),
    limit: int = typer.Option(20, "--limit", help="Proposals to show."),
) -> None:
    """Propose people for review; nothing is merged into subjects. Faces once set apart or
    hidden (in the web UI or the API) stay so.

    Example: vultus people discover --min-faces 2
    """
    with open_engine() as engine:
        proposals = engine.discover_people(max_distance=max_distance, min_faces=min_faces)
    table = Table("#", "faces", "cohesion", "face ids", title="Proposed people")
    for k, p in enumerate(proposals[:limit], 1):
        ids = " ".join(map(str, p.face_ids[:12])) + (" …" if len(p.face_ids) > 12 else "")
        table.add_row(str(k), str(len(p.face_ids)), f"{p.cohesion:.3f}", ids)
    console.print(table)
    console.print(
        f"{len(proposals)} proposal(s). Review the faces, then name a person with: "
        "vultus subjects create NAME --face ID ..., or in the web UI's People page"
    )
