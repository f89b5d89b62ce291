"""What every command group shares: the console, the engine for the chosen data directory.

The command modules import only this, Typer and Rich at module level, and the engine and the
library inside the commands that use them: `vultus --help` and `--version` must not pay for
the whole engine (seconds of imports), and a command pays only for what it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from vultus.config import Settings

if TYPE_CHECKING:
    from vultus.engine import Engine

console = Console()
err_console = Console(stderr=True)

# Set by the root callback from --data-dir and --engine; commands read it through `open_engine`.
state: dict[str, Any] = {"data_dir": None, "engine": None}


def open_engine(**overrides: object) -> Engine:
    from vultus.engine import Engine

    return Engine(Settings.load(state["data_dir"], engine=state.get("engine"), **overrides))


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)
