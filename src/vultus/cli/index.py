"""`vultus index`: the vector index, derived from the catalog."""

from __future__ import annotations

import typer
from rich.table import Table

from vultus.cli.common import console, open_engine, progress

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
    with open_engine() as engine, progress("reading templates", unit="faces") as update:
        index = engine.rebuild_index(factory, on_progress=update)
        note = engine.explain_index(factory, len(index)) if factory else None
    console.print(f"[green]✓[/] rebuilt {index.factory} with {len(index):,} faces")
    if note:
        console.print(f"[yellow]![/] not {factory}: {note}")


@app.command("status")
def status() -> None:
    """Show catalog and index counts."""
    with open_engine() as engine:
        info = engine.status()
    table = Table(show_header=False, title="Vultus")
    for key, value in info.items():
        table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)


@app.command("tune")
def tune(
    target_recall: float = typer.Option(0.95, "--target-recall", help="Recall@10 to reach."),
    sample: int = typer.Option(1000, "--sample", help="Catalog templates used as queries."),
) -> None:
    """Pick nprobe (IVF) or efSearch (HNSW) for a target recall, measured against exact search.

    Example: vultus index tune --target-recall 0.95 --sample 1000
    """
    with open_engine() as engine:
        result = engine.tune_index(target_recall, sample=sample)
    table = Table(title=f"{result.knob} for recall@{result.k} >= {result.target_recall:g}")
    for col in (result.knob, f"recall@{result.k}", "p50 ms"):
        table.add_column(col, justify="right")
    for p in result.points:
        table.add_row(str(p.value), f"{p.recall:.3f}", f"{p.p50_ms:.2f}")
    console.print(table)
    if result.reached:
        console.print(f"[green]✓[/] {result.knob} = {result.chosen} (was {result.previous})")
    else:
        console.print(
            f"[yellow]![/] no {result.knob} reached the target; set to {result.chosen}, "
            f"the largest tried (was {result.previous})"
        )


@app.command("compact")
def compact() -> None:
    """Rebuild the index without erased faces' entries (HNSW keeps wiped tombstones until then).

    Example: vultus index compact
    """
    with open_engine() as engine:
        index = engine.compact_index()
        console.print(f"[green]✓[/] compacted {index.factory}: {len(index):,} faces")
