"""`vultus audit`: check, list and export the tamper-evident audit log."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import typer
from rich.table import Table

from vultus.cli.common import console, err_console, open_engine

app = typer.Typer(
    help="The audit log: every search, view, export, erasure, ingest and key change.",
    no_args_is_help=True,
)

# Dates as a person types them; times are UTC, as the log stores them.
DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]


@app.command("verify")
def verify() -> None:
    """Check every entry's hash, the chain between entries and the signed head.

    Example: vultus audit verify
    """
    with open_engine() as engine:
        result = engine.audit.verify()
    if result.ok:
        console.print(f"[green]✓[/] audit log intact: {result.entries} entries, chain unbroken")
        return
    table = Table(title="Audit log tampered with", title_style="bold red", style="red")
    for col in ("seq", "entry id", "problem", "detail"):
        table.add_column(col)
    for p in result.problems:
        table.add_row(
            "-" if p.seq is None else str(p.seq),
            "-" if p.entry_id is None else str(p.entry_id),
            p.kind,
            p.message,
        )
    console.print(table)
    console.print(f"[bold red]✗[/] {len(result.problems)} problem(s) in {result.entries} entries")
    raise typer.Exit(1)


@app.command("export")
def export(
    since: datetime | None = typer.Option(
        None, "--since", formats=DATE_FORMATS, help="Only entries from this date (UTC) on."
    ),
    fmt: str = typer.Option("jsonl", "--format", help="One of: jsonl, csv."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="File to write; standard output when not given."
    ),
) -> None:
    """Export entries with their hashes, so the export can be checked offline.

    Example: vultus audit export --since 2025-01-01 --format csv --out audit.csv
    """
    with open_engine() as engine:
        n = engine.audit.export(out if out is not None else sys.stdout, since=since, fmt=fmt)
    if out is not None:
        console.print(f"[green]✓[/] {n} entries written to {out}")
    else:
        # The entries went to stdout; the count must not end up inside a piped export.
        err_console.print(f"{n} entries exported")


@app.command("list")
def list_entries(
    since: datetime | None = typer.Option(
        None, "--since", formats=DATE_FORMATS, help="Only entries from this date (UTC) on."
    ),
    action: str | None = typer.Option(None, "--action", help="e.g. search, erasure, export."),
    actor: str | None = typer.Option(None, "--actor", help="e.g. os:alice or key:ci."),
    limit: int = typer.Option(50, "--limit", "-n", help="Newest entries to show."),
) -> None:
    """List the newest entries, newest first.

    Example: vultus audit list --action search --since 2025-06-01 --limit 20
    """
    with open_engine() as engine:
        rows = engine.audit.entries(
            since=since, action=action, actor=actor, limit=limit, newest_first=True
        )
    table = Table(title="Audit log")
    for col in ("seq", "at (UTC)", "actor", "action", "purpose", "case", "query", "results"):
        table.add_column(col)
    for e in rows:
        ids = e.result_ids
        shown = ", ".join(map(str, ids[:5])) + (f" … (+{len(ids) - 5})" if len(ids) > 5 else "")
        table.add_row(
            str(e.seq),
            e.at.isoformat(sep=" ", timespec="seconds"),
            e.actor,
            e.action,
            e.purpose or "",
            e.case_ref or "",
            e.query_hash[:12] if e.query_hash else "",
            shown,
        )
    console.print(table)
