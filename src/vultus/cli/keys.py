"""`vultus keys`: API keys with roles, and the master key that encrypts templates at rest."""

from __future__ import annotations

import os

import typer
from rich.table import Table

from vultus.cli.common import console, open_engine
from vultus.clock import now
from vultus.engine.roles import COMBINABLE, MAX_EXPIRES_DAYS, ROLES

app = typer.Typer(help="API keys (roles) and the encryption key.", no_args_is_help=True)


@app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="Who or what uses the key."),
    role: list[str] = typer.Option(
        ...,
        "--role",
        help="One of: "
        + ", ".join(ROLES)
        + ". Repeat it for a key of several roles: only "
        + " and ".join(sorted(COMBINABLE))
        + " may share a key.",
    ),
    purpose: str | None = typer.Option(
        None,
        "--purpose",
        help="Bind the key's searches to this configured purpose: for clients that cannot "
        "state one (CompreFace, Rekognition).",
    ),
    case_ref: str | None = typer.Option(
        None, "--case", help="Bind the key's searches to this case reference."
    ),
    source: str | None = typer.Option(
        None, "--source", help="Bind the photos the key adds to this registered source."
    ),
    expires_days: int | None = typer.Option(
        None,
        "--expires-days",
        help=f"Days until the key expires, 1 to {MAX_EXPIRES_DAYS}; leave it out for never.",
    ),
    searches_per_day: int | None = typer.Option(
        None, "--searches-per-day", help="Cap the searches this key may run per day."
    ),
    aws: bool = typer.Option(
        False,
        "--aws",
        help="Also give the key an AWS-style credential, for Rekognition clients (boto3) at "
        "/rekognition: printed as AWS_ACCESS_KEY_ID=... and AWS_SECRET_ACCESS_KEY=... lines.",
    ),
) -> None:
    """Create an API key. The secret is shown once; only its hash is stored.

    Example: vultus keys create --role investigator --name "case team 4" --expires-days 90

    A key for a CompreFace or Rekognition client, which adds and searches with one key:
    vultus keys create --name archive-app --role operator --role investigator
    --purpose "archive research" --source press-archive

    With --aws it also prints AWS_ACCESS_KEY_ID=... and AWS_SECRET_ACCESS_KEY=... lines, for
    Rekognition clients (boto3) pointed at /rekognition.
    """
    with open_engine() as engine:
        key, secret = engine.keys.create(
            name,
            role,
            expires_days=expires_days,
            searches_per_day=searches_per_day,
            purpose=purpose,
            case_ref=case_ref,
            source=source,
        )
        credential = engine.aws_credentials.create(key.name) if aws else None
    bound = ", ".join(
        f"{what} {value!r}"
        for what, value in (
            ("purpose", key.purpose),
            ("case", key.case_ref),
            ("source", key.source),
        )
        if value
    )
    console.print(
        f"[green]✓[/] key [bold]{key.name}[/] ({key.role}) created"
        + (f", bound to {bound}" if bound else "")
        + ". Its secret, shown only now:"
    )
    typer.echo(secret)
    if credential is not None:
        # As environment lines: boto3 reads them from the environment as they are.
        typer.echo(f"AWS_ACCESS_KEY_ID={credential[0]}")
        typer.echo(f"AWS_SECRET_ACCESS_KEY={credential[1]}")


@app.command("list")
def list_keys() -> None:
    """List API keys: name, roles, bindings, dates, AWS credential, state."""
    with open_engine() as engine:
        keys = engine.keys.list()
        aws = engine.aws_credentials.access_key_ids()
    table = Table(title="API keys")
    for col in ("name", "roles", "bound to", "created", "expires", "last used", "aws", "state"):
        table.add_column(col)
    stamp = now()
    for k in keys:
        expired = k.expires_at is not None and k.expires_at <= stamp
        state = "revoked" if k.revoked_at else "expired" if expired else "active"
        table.add_row(
            k.name,
            k.role,
            "; ".join(v for v in (k.purpose, k.case_ref, k.source and f"source {k.source}") if v),
            f"{k.created_at:%Y-%m-%d}",
            f"{k.expires_at:%Y-%m-%d}" if k.expires_at else "never",
            f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "-",
            aws.get(k.name, "-"),
            state,
        )
    console.print(table)


@app.command("revoke")
def revoke(name: str = typer.Argument(...)) -> None:
    """Revoke an API key at once."""
    with open_engine() as engine:
        engine.keys.revoke(name)
    console.print(f"[green]✓[/] key {name} revoked")


@app.command("rotate")
def rotate(
    background: bool = typer.Option(
        False,
        "--background",
        help="Queue it as a job for the `vultus serve` running on this data directory.",
    ),
) -> None:
    """Re-encrypt every template, the suppression list and the index under a new master key.
    Safe to interrupt: run it again to finish.

    It needs the data directory to itself: while a server (or another command) has it open,
    it is refused, since that process would go on sealing under the retired key. Stop the
    server first, or queue the rotation for the server with --background.

    Example: vultus keys rotate
    """
    with open_engine() as engine:
        if background:
            from vultus.engine.jobs import JobQueue

            job = JobQueue(engine).submit("rotate_keys", {}, "cli")
            console.print(
                f"[green]✓[/] queued as job {job.id}; `vultus serve` on this data directory "
                "runs it (the API's /jobs shows its progress)"
            )
            return
        counts = engine.rotate_keys()
        active = engine.keyring.active_id
    table = Table(title=f"Re-encrypted under key {active}", show_header=False)
    for key, value in counts.items():
        table.add_row(key, str(value))
    console.print(table)
    from vultus.crypto import KEY_ENV

    if os.environ.get(KEY_ENV):
        console.print(f"Now set ${KEY_ENV} to the new key alone (the first of the two).")


@app.command("generate")
def generate() -> None:
    """Print a new random master key, for VULTUS_KEY (keep it secret).

    Example: export VULTUS_KEY=$(vultus keys generate)
    """
    from vultus.crypto import KeyRing

    typer.echo(KeyRing.generate().to_env())
