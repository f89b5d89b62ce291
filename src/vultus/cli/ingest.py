"""`vultus add`: ingest folders, files, bucket prefixes or a manifest under named sources."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from vultus.cli.common import (
    EXIT_PARTIAL,
    console,
    err_console,
    open_engine,
    plain,
    progress,
    shown,
)

if TYPE_CHECKING:
    from vultus.ingest.batches import IngestSummary
    from vultus.ingest.batches import Progress as IngestProgress


def add(
    paths: list[str] = typer.Argument(
        None,
        help="Image files, folders (walked recursively) and s3://bucket/prefix/ listings.",
        show_default=False,
    ),
    source: str | None = typer.Option(
        None,
        "--source",
        "-s",
        help="The source these images come from; with --manifest, for rows that name none.",
    ),
    manifest: Path | None = typer.Option(
        None,
        "--manifest",
        "-m",
        help="A CSV (with a header) or JSONL file of path or uri, and source, one image a row.",
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Count only, write nothing: the files that would be read, those already held (by "
        "content hash) and those that would be skipped, with why (from the files and their "
        "headers; no face model is loaded, so faces are not counted).",
    ),
    workers: int | None = typer.Option(None, "--workers", "-w", help="Worker processes."),
    consent: int | None = typer.Option(
        None, "--consent", help="The consent record these photos rest on (consent sources)."
    ),
) -> None:
    """Add photos and videos to the catalog and the index. Idempotent and resumable.

    Videos (MP4, MOV, MKV, WebM, AVI) are sampled (video_sample_s, plus scene cuts) and each
    person's appearance is indexed once, as a face track (see docs/video.md); they need the
    video extra: pip install 'vultus[video]'.

    Exit status: 0 when every file was added or already held; 3 when it finished but some
    files (or named paths) could not be added, as the summary lists; 2 on an error that
    stopped it (an unknown source, for one).

    Examples:

      vultus add ~/archive/2024 --source press-archive

      vultus add s3://press-photos/1998/ --source press-archive

      vultus add --manifest scans.csv   (CSV header: path,source  or  uri,source)

    Objects in S3-compatible storage are read with boto3 (the s3 extra: pip install boto3),
    with the standard AWS credentials; set s3_endpoint_url (vultus.toml or
    VULTUS_S3_ENDPOINT_URL) for MinIO and other S3-compatible stores.
    """
    if bool(paths) == bool(manifest):
        raise typer.BadParameter("give paths to add, or --manifest FILE (not both)")
    if manifest is None and source is None:
        raise typer.BadParameter("--source is required when adding paths", param_hint="--source")
    if dry_run:
        err_console.print(
            "Dry run: files counted and their headers read; no face is looked for, nothing is "
            "written."
        )
    latest: list[IngestProgress] = []

    def faces() -> str:
        if not latest:
            return ""
        note = f"{latest[-1].faces_indexed:,} faces"
        video = latest[-1].video
        if video is not None:  # one video can take hours: say how far into it
            name = video.location.rsplit("/", 1)[-1]
            of = f" of {video.duration_s:,.0f}" if video.duration_s else ""
            note += f"; video {name}: {video.seconds_done:,.0f}{of} s"
        return note

    with (
        open_engine(workers=workers) as engine,
        progress("ingest", unit="files", note=faces) as shown,
    ):

        def update(p: IngestProgress) -> None:
            latest[:] = [p]
            shown(p.files_done, p.files_total)

        if manifest is not None:
            summaries = engine.add_manifest(
                manifest,
                source=source,
                dry_run=dry_run,
                on_progress=update,
                consent=consent,
            )
        else:
            assert source is not None
            summaries = [
                engine.add(
                    paths, source=source, dry_run=dry_run, on_progress=update, consent=consent
                )
            ]
    for summary in summaries:
        print_summary(summary)
    failed = sum(len(s.errors) for s in summaries)
    if failed:
        err_console.print(
            f"[yellow]finished with errors:[/] {failed:,} file(s) could not be added (exit "
            f"status {EXIT_PARTIAL}); what could be added was"
        )
        raise typer.Exit(EXIT_PARTIAL)


def print_summary(s: IngestSummary) -> None:
    if s.dry_run:
        print_dry_run(s)
        return
    table = Table(title=f"Ingest run {s.run_id} into {s.source}", show_header=False)
    table.add_row("files seen", f"{s.files_seen:,}")
    table.add_row("images added", f"{s.images_added:,}")
    table.add_row("already held (skipped)", f"{s.images_duplicate:,}")
    table.add_row("images with no face", f"{s.images_no_face:,}")
    table.add_row("faces indexed", f"{s.faces_indexed:,}")
    skipped = ", ".join(f"{k}: {v}" for k, v in sorted(s.skip_reasons.items()))
    table.add_row("faces skipped", f"{s.faces_skipped:,}" + (f" ({skipped})" if skipped else ""))
    if s.faces_suppressed:
        table.add_row(
            "faces refused (suppression list)",
            f"{s.faces_suppressed:,} in {len(s.suppressed_photos):,} photo(s), listed below",
        )
    if s.multi_frame:
        table.add_row("several frames (first read)", f"{len(s.multi_frame):,}, listed below")
    table.add_row("errors", f"{len(s.errors):,}")
    table.add_row("time", f"{s.seconds:.1f} s ({s.images_per_second:.1f} images/s)")
    console.print(table)
    print_details(s)


def print_dry_run(s: IngestSummary) -> None:
    table = Table(title=f"Dry run into {s.source}: nothing was written", show_header=False)
    table.add_row("files seen", f"{s.files_seen:,}")
    table.add_row("photos to read", f"{s.images_added:,}")
    table.add_row("already held (by content)", f"{s.images_duplicate:,}")
    table.add_row("would be skipped", f"{len(s.errors):,}" + (", listed below" if s.errors else ""))
    if s.multi_frame:
        table.add_row("several frames (first read)", f"{len(s.multi_frame):,}, listed below")
    table.add_row("faces", "not counted: a dry run loads no face model")
    table.add_row("time", f"{s.seconds:.1f} s ({s.images_per_second:.1f} files/s)")
    console.print(table)
    print_details(s)


def print_details(s: IngestSummary) -> None:
    for path, code, message in s.errors[:20]:
        text = message if path in message else f"{path}: {message}"
        console.print(f"[red]✗[/] [dim]{shown(code)}[/] {shown(text)}", soft_wrap=True)
    if len(s.errors) > 20:
        console.print(f"… and {len(s.errors) - 20} more errors")
    # Named, so that a wrong refusal (a stranger taken for an erased person) can be checked.
    for path in s.suppressed_photos[:20]:
        console.print("[yellow]⊘[/] refused (suppression list): ", end="")
        console.print(plain(path), markup=False, highlight=False, soft_wrap=True)
    if len(s.suppressed_photos) > 20:
        console.print(f"… and {len(s.suppressed_photos) - 20} more refused photos")
    # Said, not silent: the other frames of an animated image or a multi-page scan are not in
    # the catalog, and may show other people.
    for path, frames in s.multi_frame[:20]:
        console.print(f"[yellow]⧉[/] only the first of {frames} frames read: ", end="")
        console.print(plain(path), markup=False, highlight=False, soft_wrap=True)
    if len(s.multi_frame) > 20:
        console.print(f"… and {len(s.multi_frame) - 20} more files of several frames")


def register(app: typer.Typer) -> None:
    app.command("add")(add)
