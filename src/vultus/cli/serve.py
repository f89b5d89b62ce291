"""`vultus serve`: the REST API (and the web UI, when installed) on the chosen data directory."""

from __future__ import annotations

import typer

from vultus.cli.common import console, state


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level."),
) -> None:
    """Serve the REST API at /v1/ (OpenAPI at /docs), health at /healthz and /readyz.

    Example: vultus serve --host 0.0.0.0 --port 8000
    """
    import uvicorn

    from vultus.api import create_app
    from vultus.config import Settings

    app = create_app(Settings.load(state["data_dir"]))
    console.print(f"Vultus API on http://{host}:{port}/v1/ (documentation at /docs)")
    # One process: the engine keeps the index in memory and serialises its own work.
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
