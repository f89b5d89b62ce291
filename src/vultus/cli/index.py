"""`vultus index`: the vector index, derived from the catalog."""

from __future__ import annotations

import typer
from rich.table import Table

from vultus.cli.common import console, open_engine

app = typer.Typer(
    help="The vector index (rebuildable from the catalog at any time).", no_args_is_help=True
)


@app.command("rebuild")
def rebuild(
    factory: str | None = typer.Option(
        None, "--factory", help='A FAISS factory string, e.g. "IVF4096,Flat", or "auto".'
    ),
) -> None:
    """Recreate the index from the catalog's templates.

    Example: vultus index rebuild --factory "IVF1024,Flat"
    """
    with open_engine() as engine:
        index = engine.rebuild_index(factory)
        console.print(f"[green]✓[/] rebuilt {index.factory} with {len(index):,} faces")


@app.command("status")
def status() -> None:
    """Show catalog and index counts."""
    with open_engine() as engine:
        info = engine.status()
    table = Table(show_header=False, title="Vultus")
    for key, value in info.items():
        table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
