"""`make demo`: index a folder of photos, then find a person from one photo.

Run as `python -m vultus.cli.demo --shared-faces ../shared/faces` or `--photos FOLDER`.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from rich.console import Console

from vultus.cli.ingest import print_summary
from vultus.cli.search import print_result
from vultus.config import CONFIG_FILE
from vultus.engine import Engine
from vultus.errors import SourceError, VultusError
from vultus.pipeline.decode import SUPPORTED_SUFFIXES
from vultus.search.sheet import render_sheet

console = Console()
SOURCE = "demo"
DEMO_CONTROLLER = "the Vultus demo (a test installation; no real controller)"


def _dev_set(faces: Path) -> tuple[list[Path], Path] | None:
    """Gallery: every dev photo but one of Barack Obama; query: the one held back, so the
    search has to find him in the other photos rather than in the identical file."""
    labels = faces / "dev" / "labels.csv"
    if not labels.exists():
        return None
    with labels.open(newline="") as fh:
        rows = [(faces / "dev" / r["path"], r["identity"]) for r in csv.DictReader(fh)]
    counts: dict[str, int] = {}
    for _, who in rows:
        counts[who] = counts.get(who, 0) + 1
    person = "Barack_Obama" if "Barack_Obama" in counts else max(counts, key=counts.__getitem__)
    query = next(p for p, who in rows if who == person)
    return [p for p, _ in rows if p != query], query


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path(".vultus-demo"))
    parser.add_argument("--shared-faces", type=Path, help="the shared faces folder")
    parser.add_argument("--photos", type=Path, help="your own folder of photos")
    args = parser.parse_args(argv)

    if args.photos:
        if not args.photos.is_dir():
            console.print(f"[red]PHOTOS={args.photos} is not a folder[/]")
            return 2
        files = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in SUPPORTED_SUFFIXES)
        if not files:
            console.print(f"[red]no photos found in {args.photos}[/]")
            return 2
        gallery, query = [args.photos], files[0]
    else:
        picked = _dev_set(args.shared_faces) if args.shared_faces else None
        if picked is None:
            console.print(
                "[red]No photos to index.[/] The shared test faces were not found at "
                f"{args.shared_faces}. Run `make demo PHOTOS=/path/to/photos` with a folder of "
                "your own photos."
            )
            return 2
        gallery, query = picked  # type: ignore[assignment]

    console.rule("[bold]Vultus demo")
    console.print(f"data directory: {args.data_dir.resolve()}")
    # The portal, access packages and reports name the controller, and refuse to run without
    # one: the demo's own data directory names itself.
    config = args.data_dir / CONFIG_FILE
    if not config.exists():
        args.data_dir.mkdir(parents=True, exist_ok=True)
        config.write_text(f"controller = {DEMO_CONTROLLER!r}\n")
    try:
        with Engine.open(args.data_dir) as engine:
            try:
                engine.add_source(
                    SOURCE,
                    lawful_basis_code="legitimate_interests",
                    special_condition="archiving_research",
                    purpose="demonstration of face search on a test photo set",
                    retention_days=30,
                    notes="created by `make demo`",
                )
            except SourceError as exc:
                if exc.code != "source_exists":
                    raise
            console.print(f"\n[bold]1. Indexing {len(gallery)} path(s)[/] under source '{SOURCE}'")
            print_summary(engine.add(gallery, source=SOURCE))
            console.print(f"\n[bold]2. Searching with[/] {query}")
            result = engine.search(query, purpose="archive research", top_k=9)
            print_result(result)
            sheet = render_sheet(result, query, args.data_dir / "results.jpg")
            console.print(f"\nThe results as pictures: [bold]{sheet}[/]")
    except VultusError as exc:
        console.print(f"[red]error ({exc.code}):[/] {exc.message}")
        return 2
    console.print(
        f"\nTry it yourself: [bold].venv/bin/vultus --data-dir {args.data_dir} search PHOTO "
        '--purpose "archive research"[/]'
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
