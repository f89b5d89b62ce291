"""Manifest ingest at scale: does a manifest of millions of rows stream (flat memory), and how
fast are rows that need no analysis (the check pass, and rows whose content is already held)?

    python benchmarks/manifest.py [--folder ../shared/faces/lfw-a/images] [--photos 200]
                                  [--scan-rows 1000000] [--ingest-rows 200000]
                                  [--out benchmarks/results/manifest.json]

1. Writes a CSV manifest of `--scan-rows` rows (the photos over and over, two sources) and
   times the first pass `add_manifest` makes over it (format, sources, consents).
2. Ingests `--photos` photos, then a manifest of `--ingest-rows` rows naming only them:
   every row is hashed and skipped as already held. That is the rate a rerun of an
   interrupted run goes at, and the floor under any ingest of a manifest.
Peak memory (max RSS) is read after each step: it must not grow with the row count.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vultus import __version__
from vultus.engine import Engine
from vultus.ingest.batches import collect_files
from vultus.ingest.manifest import Manifest

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FOLDER = REPO.parent / "shared" / "faces" / "lfw-a" / "images"
SOURCES = ("bench", "bench-2")


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_manifest(path: Path, photos: list[Path], rows: int) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "source"])
        for i in range(rows):
            writer.writerow([str(photos[i % len(photos)]), SOURCES[i % 2]])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--scan-rows", type=int, default=1_000_000)
    parser.add_argument("--ingest-rows", type=int, default=200_000)
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "manifest.json"
    )
    args = parser.parse_args()
    console = Console()
    files, _ = collect_files([args.folder])
    if not files:
        console.print(f"[red]no photos in {args.folder}[/]: pass --folder")
        raise SystemExit(2)
    photos = files[: args.photos]
    results: list[dict[str, float | int | str]] = []

    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.csv"
        write_manifest(big, photos, args.scan_rows)
        rss_before = max_rss_mb()
        start = time.perf_counter()
        scan = Manifest(big).scan()
        seconds = time.perf_counter() - start
        results.append(
            {
                "step": "check pass (format, sources)",
                "rows": scan.rows,
                "seconds": round(seconds, 2),
                "rows_per_s": round(scan.rows / seconds),
                "max_rss_mb": round(max_rss_mb()),
                "rss_growth_mb": round(max_rss_mb() - rss_before),
            }
        )
        big.unlink()

        with Engine.open(Path(tmp) / "data", workers=1) as engine:
            for name in SOURCES:
                engine.add_source(
                    name,
                    lawful_basis_code="legitimate_interests",
                    special_condition="archiving_research",
                    purpose="benchmark",
                    retention_days=1,
                )
            engine.add(photos, source=SOURCES[0])
            held = Path(tmp) / "held.csv"
            write_manifest(held, photos, args.ingest_rows)
            rss_before = max_rss_mb()
            start = time.perf_counter()
            summaries = engine.add_manifest(held)
            seconds = time.perf_counter() - start
            dups = sum(s.images_duplicate for s in summaries)
            results.append(
                {
                    "step": "ingest, every row already held (both passes)",
                    "rows": dups,
                    "seconds": round(seconds, 2),
                    "rows_per_s": round(dups / seconds),
                    "max_rss_mb": round(max_rss_mb()),
                    "rss_growth_mb": round(max_rss_mb() - rss_before),
                }
            )

    table = Table(title=f"Manifest streaming ({len(photos)} distinct photos, 2 sources)")
    for col in ("step", "rows", "seconds", "rows/s", "max RSS MB", "RSS growth MB"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in r.values()))
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                "vultus": __version__,
                "folder": str(args.folder),
                "photos": len(photos),
                "results": results,
            },
            indent=2,
        )
    )
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
