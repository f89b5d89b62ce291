"""`vultus keys`: the master key that encrypts templates at rest."""

from __future__ import annotations

import typer
from rich.table import Table

from vultus.cli.common import console, open_engine
from vultus.rights.crypto import KeyRing

app = typer.Typer(help="Encryption keys.", no_args_is_help=True)


@app.command("rotate")
def rotate() -> None:
    """Re-encrypt every template, the suppression list and the index under a new key.
    Safe to interrupt: run it again to finish.

    Example: vultus keys rotate
    """
    with open_engine() as engine:
        counts = engine.rotate_keys()
        active = engine.keyring.active_id
    table = Table(title=f"Re-encrypted under key {active}", show_header=False)
    for key, value in counts.items():
        table.add_row(key, str(value))
    console.print(table)


@app.command("generate")
def generate() -> None:
    """Print a new random key, for VULTUS_KEY (keep it secret).

    Example: export VULTUS_KEY=$(vultus keys generate)
    """
    typer.echo(KeyRing.generate().to_env())
