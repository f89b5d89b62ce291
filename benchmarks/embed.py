"""Embedding throughput: faces per second for dlib's ResNet in ONNX Runtime, int8 against
float32, and dlib's own engine for reference.

Both precisions run plain and with the mirror test-time augmentation (`+mirror`, the default
model: each face and its mirror image, so twice the work per face) at batch sizes 1 and 16,
with 1 and 2 ONNX Runtime threads. The two precisions are measured interleaved, in short
alternating rounds, so that a busy machine slows both alike: read the ratio, not the absolute
figures, when the load average (printed) is high. dlib (single-threaded) runs a few batches
only, since it is about 25 times slower. Chips are the already-aligned 150x150 crops among the
shared dev photos when present, else random pixels (the network's cost does not depend on the
pixels).

    python benchmarks/embed.py [--out benchmarks/results/embed.json] [--rounds 6]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image
from rich.console import Console
from rich.table import Table

from vultus.pipeline.augment import MirrorAveraged
from vultus.pipeline.base import Embedder
from vultus.pipeline.embed import DlibEmbedder, OnnxDlibEmbedder

REPO_ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZES = (1, 16)
ONNX_THREADS = (1, 2)
PRECISIONS = ("fp32", "int8")

Chips = npt.NDArray[np.uint8]


def faces_dir() -> Path | None:
    env = os.environ.get("VULTUS_TEST_FACES")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "faces"
    return path if (path / "dev" / "labels.csv").is_file() else None


def load_chips() -> tuple[Chips, str]:
    root = faces_dir()
    chips = []
    if root is not None:
        with open(root / "dev" / "labels.csv", newline="") as f:
            for row in csv.DictReader(f):
                with Image.open(root / "dev" / row["path"]) as im:
                    if im.size == (150, 150):
                        chips.append(np.asarray(im.convert("RGB")))
    if chips:
        return np.stack(chips), f"{len(chips)} aligned 150x150 dev photos"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (64, 150, 150, 3), dtype=np.uint8), "64 random chips"


def fill(chips: Chips, batch: int) -> Chips:
    """`batch` chips, repeating the real ones as needed."""
    reps = math.ceil(batch / len(chips))
    return np.ascontiguousarray(np.concatenate([chips] * reps)[:batch])


def measure(
    embed: Callable[[Chips], object], chips: Chips, *, min_seconds: float, min_batches: int
) -> tuple[int, float]:
    """Batches run and seconds taken, after one warm-up call."""
    embed(chips)
    batches, start = 0, time.perf_counter()
    while batches < min_batches or time.perf_counter() - start < min_seconds:
        embed(chips)
        batches += 1
    return batches, time.perf_counter() - start


def interleaved(
    embedders: dict[str, Embedder], chips: Chips, *, rounds: int, seconds: float
) -> dict[str, tuple[int, float]]:
    """Faces embedded and seconds taken by each embedder, over `rounds` alternating rounds of
    about `seconds` each."""
    totals = dict.fromkeys(embedders, (0, 0.0))
    for embedder in embedders.values():
        embedder.embed(chips)  # warm-up
    for _ in range(rounds):
        for name, embedder in embedders.items():
            batches, took = measure(embedder.embed, chips, min_seconds=seconds, min_batches=1)
            faces, total = totals[name]
            totals[name] = (faces + batches * len(chips), total + took)
    return totals


def record(engine: str, threads: int, batch: int, faces: int, seconds: float) -> dict[str, object]:
    return {
        "engine": engine,
        "threads": threads,
        "batch": batch,
        "faces": faces,
        "seconds": round(seconds, 4),
        "faces_per_s": round(faces / seconds, 2),
        "ms_per_face": round(1000 * seconds / faces, 3),
    }


def versions() -> dict[str, str]:
    found = {}
    for dist in ("vultus", "onnxruntime", "onnx", "dlib-bin", "numpy"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "embed.json"
    )
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds per cell")
    parser.add_argument("--seconds", type=float, default=0.25, help="time per round")
    parser.add_argument(
        "--dlib-faces", type=int, default=16, help="faces per dlib measurement (0: skip dlib)"
    )
    args = parser.parse_args(argv)

    chips, chip_source = load_chips()
    load_before = os.getloadavg()
    results: list[dict[str, object]] = []
    rows: list[tuple[int, int, str, float, float]] = []
    with tempfile.TemporaryDirectory() as models_dir:
        for threads in ONNX_THREADS:
            plain = {
                p: OnnxDlibEmbedder(Path(models_dir), threads=threads, precision=p)
                for p in PRECISIONS
            }
            for batch in BATCH_SIZES:
                for mirror in (False, True):
                    suffix = "+mirror" if mirror else ""
                    embedders: dict[str, Embedder] = {
                        f"onnx-{p}{suffix}": MirrorAveraged(e) if mirror else e
                        for p, e in plain.items()
                    }
                    totals = interleaved(
                        embedders, fill(chips, batch), rounds=args.rounds, seconds=args.seconds
                    )
                    for name, (faces, seconds) in totals.items():
                        results.append(record(name, threads, batch, faces, seconds))
                    rate = {n: faces / seconds for n, (faces, seconds) in totals.items()}
                    rows.append(
                        (
                            threads,
                            batch,
                            "mirror" if mirror else "plain",
                            rate[f"onnx-fp32{suffix}"],
                            rate[f"onnx-int8{suffix}"],
                        )
                    )
    if args.dlib_faces > 0:
        dlib = DlibEmbedder()
        for batch in BATCH_SIZES:
            min_batches = max(1, math.ceil(args.dlib_faces / batch))
            batches, seconds = measure(
                dlib.embed, fill(chips, batch), min_seconds=0.0, min_batches=min_batches
            )
            results.append(record("dlib", 1, batch, batches * batch, seconds))
    load_after = os.getloadavg()

    report = {
        "benchmark": "embed",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "versions": versions(),
        "chips": chip_source,
        "results": results,
    }

    console = Console()
    table = Table(title=f"dlib's ResNet in ONNX Runtime, faces/s ({chip_source})")
    for column in ("threads", "batch", "templates", "fp32", "int8", "int8 / fp32"):
        table.add_column(column, justify="right")
    for threads, batch, mode, fp32, int8 in rows:
        table.add_row(
            str(threads), str(batch), mode, f"{fp32:.0f}", f"{int8:.0f}", f"{int8 / fp32:.2f}x"
        )
    console.print(table)
    for r in results:
        if r["engine"] == "dlib":
            console.print(f"dlib itself, batch {r['batch']}: {r['faces_per_s']:.1f} faces/s")
    console.print(
        "load average (1, 5, 15 min): before "
        + ", ".join(f"{x:.2f}" for x in load_before)
        + "; after "
        + ", ".join(f"{x:.2f}" for x in load_after)
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
