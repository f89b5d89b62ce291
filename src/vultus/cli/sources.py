"""`vultus sources`: where images come from, and on what lawful basis."""

from __future__ import annotations

import typer
from rich.table import Table

from vultus.cli.common import console, open_engine
from vultus.lawful_basis import ART6_BASES, ART9_CONDITIONS, SOURCE_KINDS

app = typer.Typer(
    help="Sources: every image enters under one, with its lawful basis.", no_args_is_help=True
)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="A short name, e.g. press-archive."),
    basis: str = typer.Option(
        ..., "--basis", help="GDPR Art. 6(1) basis: " + ", ".join(ART6_BASES)
    ),
    condition: str = typer.Option(
        ..., "--condition", help="GDPR Art. 9(2) condition: " + ", ".join(ART9_CONDITIONS)
    ),
    purpose: str = typer.Option(..., "--purpose", help="Why these images are processed."),
    retention_days: int = typer.Option(..., "--retention-days", help="Days each image is kept."),
    kind: str = typer.Option("folder", "--kind", help="One of: " + ", ".join(SOURCE_KINDS)),
    legal_reference: str | None = typer.Option(
        None, "--legal-reference", help="The law a condition rests on, where it needs one."
    ),
    notes: str | None = typer.Option(None, "--notes"),
    originals_deletable: bool = typer.Option(
        False,
        "--originals-deletable",
        help="Let an erasure delete this source's original files (photos that showed only "
        "the erased person; in a bucket only if it keeps no object versions). Off: originals "
        "are left in place, and the receipt names them.",
    ),
) -> None:
    """Register a source with its lawful basis. Nothing can be ingested without one.

    Example: vultus sources add staff-badges --basis contract --condition employment
    --legal-reference "Employment Act s.12" --purpose "building access" --retention-days 365
    --originals-deletable
    """
    with open_engine() as engine:
        engine.add_source(
            name,
            lawful_basis_code=basis,
            special_condition=condition,
            purpose=purpose,
            retention_days=retention_days,
            kind=kind,
            legal_reference=legal_reference,
            notes=notes,
            originals_deletable=originals_deletable,
        )
    console.print(f"[green]✓[/] source [bold]{name}[/] added")


@app.command("list")
def list_sources() -> None:
    """List sources with their lawful basis, retention and counts."""
    with open_engine() as engine:
        rows = engine.sources()
    table = Table(title="Sources")
    columns = ("name", "kind", "Art. 6", "Art. 9(2)", "purpose", "retention")
    for col in (*columns, "erasure deletes originals", "images", "faces"):
        table.add_column(col)
    for src, images, faces in rows:
        table.add_row(
            src.name,
            src.kind,
            src.lawful_basis,
            src.special_condition + (f" ({src.legal_reference})" if src.legal_reference else ""),
            src.purpose,
            f"{src.retention_days} d",
            "yes" if src.originals_deletable else "no",
            str(images),
            str(faces),
        )
    console.print(table)
