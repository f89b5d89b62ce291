"""Embedding throughput: faces per second for the ONNX and dlib engines of dlib's ResNet.

ONNX Runtime is measured at batch sizes 1, 16 and 64 with 1 and 2 threads, plain and with the
mirror test-time augmentation (`onnx+flip`: each face and its mirror image); dlib (single-threaded)
at the same batch sizes, over a few batches only, since it is about 25 times slower. Chips are
the already-aligned 150x150 crops among the shared dev photos when present, else random pixels
(the network's cost does not depend on the pixels).

    python benchmarks/embed.py [--out benchmarks/results/embed.json]
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
from vultus.pipeline.embed import DlibEmbedder, OnnxDlibEmbedder

REPO_ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZES = (1, 16, 64)
ONNX_THREADS = (1, 2)

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


def record(
    engine: str, threads: int, batch: int, batches: int, seconds: float
) -> dict[str, object]:
    faces = batch * batches
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
    parser.add_argument("--seconds", type=float, default=1.5, help="time per ONNX measurement")
    parser.add_argument(
        "--dlib-faces", type=int, default=16, help="faces per dlib measurement (at least a batch)"
    )
    args = parser.parse_args(argv)

    chips, chip_source = load_chips()
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as models_dir:
        for threads in ONNX_THREADS:
            onnx = OnnxDlibEmbedder(Path(models_dir), threads=threads)
            for batch in BATCH_SIZES:
                batches, seconds = measure(
                    onnx.embed, fill(chips, batch), min_seconds=args.seconds, min_batches=3
                )
                results.append(record("onnx", threads, batch, batches, seconds))
                # Mirror test-time augmentation (model = "dlib", the default): two views per face.
                batches, seconds = measure(
                    MirrorAveraged(onnx).embed,
                    fill(chips, batch),
                    min_seconds=args.seconds,
                    min_batches=3,
                )
                results.append(record("onnx+flip", threads, batch, batches, seconds))
    dlib = DlibEmbedder()
    for batch in BATCH_SIZES:
        min_batches = max(1, math.ceil(args.dlib_faces / batch))
        batches, seconds = measure(
            dlib.embed, fill(chips, batch), min_seconds=0.0, min_batches=min_batches
        )
        results.append(record("dlib", 1, batch, batches, seconds))

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
        },
        "versions": versions(),
        "chips": chip_source,
        "results": results,
    }

    table = Table(title=f"Embedding throughput ({chip_source})")
    for column in ("engine", "threads", "batch", "faces/s", "ms/face", "faces timed"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    for r in results:
        table.add_row(
            str(r["engine"]),
            str(r["threads"]),
            str(r["batch"]),
            f"{r['faces_per_s']:.1f}",
            f"{r['ms_per_face']:.2f}",
            str(r["faces"]),
        )
    Console().print(table)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
