"""The `vultus` command line: one module per command group, each a thin call into the Engine."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from typer.core import TyperGroup

from vultus import __version__
from vultus.cli import (
    accuracy,
    audit,
    faces,
    index,
    ingest,
    keys,
    people,
    reembed,
    rights,
    search,
    serve,
    sources,
)
from vultus.cli.common import print_error, shown, state
from vultus.errors import VultusError


class _Group(TyperGroup):
    """Turns Vultus errors into a one-line message and exit code 2, for every command."""

    def invoke(self, ctx: typer.Context) -> object:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except VultusError as exc:
            print_error(f"[bold red]error[/] [dim]({shown(exc.code)})[/]: {shown(exc.message)}")
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_Group,
    name="vultus",
    help="Vultus: self-hosted face search, with data protection by design.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vultus {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        "-d",
        envvar="VULTUS_HOME",
        help="The data directory (catalog, index, models). Default: ~/.local/share/vultus.",
    ),
    engine: str | None = typer.Option(
        None, "--engine", help="Embedding engine: onnx (default, fast) or dlib (the reference)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    state["data_dir"] = data_dir
    state["engine"] = engine
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )


ingest.register(app)
search.register(app)
accuracy.register(app)
reembed.register(app)
serve.register(app)
app.add_typer(sources.app, name="sources")
app.add_typer(index.app, name="index")
app.add_typer(faces.app, name="faces")
app.add_typer(faces.subjects_app, name="subjects")
app.add_typer(audit.app, name="audit")
app.add_typer(rights.app, name="rights")
app.add_typer(rights.retention_app, name="retention")
app.add_typer(rights.consent_app, name="consent")
app.add_typer(rights.report_app, name="report")
app.add_typer(keys.app, name="keys")
app.add_typer(people.app, name="people")


def main() -> None:
    app()
