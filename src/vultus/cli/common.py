"""What every command group shares: the console, the engine for the chosen data directory, the
exit statuses, and the progress of long commands.

The command modules import only this, Typer and Rich at module level, and the engine and the
library inside the commands that use them: `vultus --help` and `--version` must not pay for
the whole engine (seconds of imports), and a command pays only for what it runs.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape as escape_markup
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vultus.config import Settings

if TYPE_CHECKING:
    from vultus.engine import Engine

console = Console()
err_console = Console(stderr=True)

# Exit statuses, documented in the README: 0 done; 1 refused by the command itself (`fail`);
# 2 a Vultus error (one line, a stable code) or a usage error; 3 finished, but some of the
# input failed (listed in the summary, recorded in the run).
EXIT_ERROR = 2
EXIT_PARTIAL = 3

# Where the output is not a terminal (cron, a log file, CI), long commands print a line at
# most this often, in seconds, instead of a progress bar nobody sees.
PROGRESS_EVERY = 5.0

# Set by the root callback from --data-dir and --engine; commands read it through `open_engine`.
state: dict[str, Any] = {"data_dir": None, "engine": None}


def open_engine(**overrides: object) -> Engine:
    from vultus.engine import Engine

    return Engine(Settings.load(state["data_dir"], engine=state.get("engine"), **overrides))


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def plain(text: object) -> str:
    """Text from outside (a file name, or a message naming one) as one printable line: control
    and format characters, a terminal's escape codes among them, shown escaped as Python writes
    them (`\\n`, `\\x1b`), so a file name can neither move the cursor nor forge a line."""
    out = []
    for c in str(text):
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(repr(c)[1:-1] if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
        else:
            out.append(c)
    return "".join(out)


def shown(text: object) -> str:
    """`plain(text)` with Rich markup escaped too: for text printed inside markup."""
    return escape_markup(plain(text))


def print_error(message: str) -> None:
    """One line on stderr, never wrapped (a log or a script reads it whole); `message` may
    hold markup, so what it quotes from outside goes through `shown`."""
    err_console.print(message, soft_wrap=True, highlight=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    print_error(f"[bold red]error:[/] {shown(message)}")
    return typer.Exit(code)


ProgressUpdate = Callable[[int, int | None], None]


@contextmanager
def progress(
    what: str, *, unit: str = "items", note: Callable[[], str] | None = None
) -> Iterator[ProgressUpdate]:
    """Show a long command's progress: a bar on a terminal, otherwise (cron, logs, CI) one line
    every PROGRESS_EVERY seconds on standard error, with what is done, the total, the rate and
    the time left. Yields `update(done, total)`; `total` may be None while unknown.

    >>> with progress("ingest", unit="files") as update:
    ...     update(120, 5000)
    """
    if err_console.is_terminal:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        ) as bar:
            task = bar.add_task(what, total=None, note="")

            def update_bar(done: int, total: int | None) -> None:
                bar.update(task, completed=done, total=total, note=note() if note else "")

            yield update_bar
        return
    started = time.monotonic()
    last = started

    def update_line(done: int, total: int | None) -> None:
        nonlocal last
        at = time.monotonic()
        if at - last < PROGRESS_EVERY:
            return
        last = at
        rate = done / max(at - started, 1e-9)
        line = f"{what}: {done:,}"
        if total is not None:
            line += f"/{total:,} ({100 * done / max(total, 1):.0f}%)"
        line += f" {unit}, {rate:,.1f}/s"
        if total is not None and rate > 0:
            line += f", about {_duration((total - done) / rate)} left"
        if note is not None:
            line += f", {note()}"
        err_console.print(line, highlight=False, soft_wrap=True)

    yield update_line


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
