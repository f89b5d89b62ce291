"""`vultus reembed`: migrate the catalog to another face model."""

from __future__ import annotations

import typer

from vultus.cli.common import console, open_engine, progress, shown


def reembed(
    model: str = typer.Option(
        None,
        "--model",
        help='"dlib", "dlib-plain", a model pack folder, or a pack name under DATA_DIR/packs/.',
    ),
    background: bool = typer.Option(
        False, "--background", help="Queue it as a job for `vultus serve` to run."
    ),
    cancel: bool = typer.Option(False, "--cancel", help="Drop a migration in progress."),
) -> None:
    """Re-embed every image with another face model, then swap the catalog and the index to it.

    Resumable: run it again after an interruption and it goes on after the last image done.
    Searches use the old model until the swap. Needs the images' files.

    Example: vultus reembed --model buffalo_l
    """

    from vultus.engine.jobs import JobQueue
    from vultus.ingest.reembed import cancel as cancel_migration
    from vultus.ingest.reembed import pending

    with open_engine() as engine:
        if cancel:
            n = cancel_migration(engine.catalog)
            console.print(f"[green]✓[/] migration cancelled; {n:,} staged faces dropped")
            return
        if not model:
            state = pending(engine.catalog)
            raise typer.BadParameter(
                "--model is required"
                + (f" (a migration to {state['model']!r} is in progress)" if state else "")
            )
        if background:
            job = JobQueue(engine).submit("reembed", {"model": model}, "cli")
            console.print(
                f"[green]✓[/] queued as job {job.id}; `vultus serve` on this data directory "
                "runs it (the API's /jobs shows its progress)"
            )
            return
        with progress("re-embedding images", unit="images") as update:
            summary = engine.reembed(
                model, actor="cli", on_progress=lambda p: update(p.images_done, p.images_total)
            )
    console.print(
        f"[green]✓[/] now {summary.model_id} (was {summary.previous_model_id}): "
        f"{summary.images:,} images, {summary.faces_kept:,} faces kept, "
        f"{summary.faces_new:,} new, {summary.faces_not_found:,} not found by the new model "
        f"(kept, unsearchable), {summary.faces_suppressed:,} suppressed, "
        f"in {summary.seconds:.1f} s"
    )
    if summary.images_missing:
        console.print(
            f"[yellow]{len(summary.images_missing)} image(s) could not be read; their "
            f"{summary.faces_file_missing:,} face(s) stay in the catalog, unsearchable:[/]"
        )
        for image_id, path in summary.images_missing:
            console.print(f"  image {image_id}: {shown(path)}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("reembed")(reembed)
