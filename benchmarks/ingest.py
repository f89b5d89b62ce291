"""Ingest throughput: images/s and faces/s on a folder, per detector and worker count, and where
the time goes.

    python benchmarks/ingest.py [--folder ../shared/faces/lfw-a/images] [--limit 2000]
                                [--workers 1,2] [--detectors hog,blazeface]
                                [--out benchmarks/results/ingest.json]

Prints a table and writes JSON. Each run ingests into a fresh temporary data directory; the
detectors take turns at each worker count, so a shared machine's load falls on both alike.
The stage profile runs the pipeline single-threaded on a sample and times each stage.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from vultus import __version__
from vultus.config import Settings
from vultus.engine import Engine
from vultus.ingest.batches import collect_files
from vultus.pipeline.analyse import FacePipeline
from vultus.pipeline.decode import decode_image

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FOLDER = REPO.parent / "shared" / "faces" / "lfw-a" / "images"


def run_ingest(files: list[Path], workers: int, detector: str = "hog") -> dict[str, object]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        Engine.open(tmp, workers=workers, detector=detector) as engine,
    ):
        engine.add_source(
            "bench",
            lawful_basis_code="legitimate_interests",
            special_condition="archiving_research",
            purpose="benchmark",
            retention_days=1,
        )
        engine.pipeline  # noqa: B018 - model load is start-up, not throughput
        start = time.perf_counter()
        summary = engine.add(files, source="bench")
        seconds = time.perf_counter() - start
    return {
        "detector": detector,
        "workers": workers,
        "load_average": round(os.getloadavg()[0], 2),
        "images": summary.files_seen,
        "faces": summary.faces_indexed,
        "errors": len(summary.errors),
        "seconds": round(seconds, 2),
        "images_per_s": round(summary.files_seen / seconds, 1),
        "faces_per_s": round(summary.faces_indexed / seconds, 1),
    }


def profile_stages(
    files: list[Path], sample: int, detector: str = "hog", clock: str = "wall"
) -> dict[str, float]:
    """Milliseconds per image for each stage, one process, one thread. `clock = "cpu"` times
    the process's CPU time instead: on a shared, loaded machine it stays near what a quiet
    machine's wall clock shows, where wall time does not."""
    tick = time.process_time if clock == "cpu" else time.perf_counter
    settings = Settings.load(tempfile.mkdtemp(), detector=detector)
    pipe = FacePipeline(settings, embed_threads=1)
    totals = dict.fromkeys(("decode", "detect", "align", "embed"), 0.0)
    for path in files[:sample]:
        t0 = tick()
        image = decode_image(path, max_pixels=settings.max_pixels)
        t1 = tick()
        found = pipe.detect(image)  # downscaled first, unless the detector scales itself
        t2 = tick()
        _, chips = pipe.aligner.align(image.rgb, found)
        t3 = tick()
        if len(chips):
            pipe.embedder.embed(chips)
        t4 = tick()
        for key, dt in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            totals[key] += dt
    n = max(1, min(sample, len(files)))
    return {k: round(1000 * v / n, 2) for k, v in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--limit", type=int, default=2000, help="at most this many files (0: all)")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--detectors", default="hog", help="comma-separated: hog,blazeface,mmod")
    parser.add_argument("--profile-sample", type=int, default=300)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ingest.json")
    args = parser.parse_args()
    console = Console()
    if not args.folder.is_dir():
        console.print(f"[red]{args.folder} not found[/]: pass --folder with photos to ingest")
        raise SystemExit(2)
    files, _ = collect_files([args.folder])
    if args.limit:
        # A spread-out sample rather than the first N, which would be alphabetically clustered.
        idx = np.linspace(0, len(files) - 1, min(args.limit, len(files))).astype(int)
        files = [files[i] for i in sorted(set(idx.tolist()))]

    detectors = args.detectors.split(",")
    runs = [run_ingest(files, int(w), d) for w in args.workers.split(",") for d in detectors]
    stages = {
        f"{d}, {clock}": profile_stages(files, args.profile_sample, d, clock)
        for clock in ("wall", "cpu")
        for d in detectors
    }

    table = Table(title=f"Ingest of {len(files)} photos from {args.folder}")
    keys = ("detector", "workers", "images", "faces", "errors", "seconds", "images_per_s")
    for col in (*keys, "faces_per_s", "load"):
        table.add_column(col.replace("_per_s", "/s"), justify="right")
    for r in runs:
        table.add_row(*(str(r[k]) for k in (*keys, "faces_per_s", "load_average")))
    console.print(table)
    prof = Table(title="Where the time goes (ms per image, 1 process, 1 thread)")
    prof.add_column("detector, clock")
    for key in ("decode", "detect", "align", "embed", "total"):
        prof.add_column(key, justify="right")
    for name, times in stages.items():
        prof.add_row(name, *(f"{v:.1f}" for v in times.values()), f"{sum(times.values()):.1f}")
    console.print(prof)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "load_average_after": os.getloadavg(),
                },
                "vultus": __version__,
                "folder": str(args.folder),
                "runs": runs,
                "stage_ms_per_image": stages,
            },
            indent=2,
        )
    )
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
