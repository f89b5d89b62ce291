"""dlib's ResNet in int8 against float32: the activation ranges Vultus ships, and the accuracy
that int8 keeps on lfw-a.

    python benchmarks/int8.py ranges     # measure the ranges; write them to src/vultus/data/
    python benchmarks/int8.py accuracy   # TAR on lfw-a, float32 vs int8 vs mixed; JSON

`ranges` aligns 300 lfw-a photos with the Vultus pipeline (HOG, 5 points, dlib's chip; the
largest face of each, photos spread evenly over labels.csv), adds each chip's mirror image (the
default model embeds both), runs the float network with every quantisation point as an output
and keeps each point's minimum and maximum (MinMax). It is run once, when the network or the
graph's quantisation points change; the result ships as
`src/vultus/data/int8_ranges_dlib-resnet-v1.json`.

`accuracy` aligns every lfw-a photo once (cached under benchmarks/results/), embeds the chips
with both precisions, plain and mirror-averaged, and reports TAR at FMR 1e-2, 1e-3, 1e-4 over
all pairs (as `vultus eval` does), the same with int8 queries against float32 templates (an
existing catalog searched after the upgrade), 10-fold pair accuracy, and how far apart the two
precisions put the same face (L2 between unit templates: mean, p99, max).

Needs ../shared/faces/lfw-a (or $VULTUS_TEST_FACES/lfw-a).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

from vultus.accuracy.calibration import encode_labels, pairwise_distances, select_per_identity
from vultus.accuracy.datasets import read_pairs
from vultus.accuracy.evaluation import evaluate
from vultus.config import Settings
from vultus.pipeline.analyse import FacePipeline
from vultus.pipeline.augment import MirrorAveraged
from vultus.pipeline.dlib_int8 import Int8Ranges, build_float_points_model
from vultus.pipeline.dlib_serial import file_sha256
from vultus.pipeline.embed import INT8_RANGES, OnnxDlibEmbedder
from vultus.pipeline.models import recognition_model
from vultus.vectors import normalise

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results"
RANGES_OUT = REPO_ROOT / "src" / "vultus" / "data" / INT8_RANGES
CALIBRATION_PHOTOS = 300
FARS = (1e-2, 1e-3, 1e-4)

Chips = npt.NDArray[np.uint8]


def lfw_a() -> Path:
    env = os.environ.get("VULTUS_TEST_FACES")
    root = (Path(env) if env else REPO_ROOT.parent / "shared" / "faces") / "lfw-a"
    if not (root / "labels.csv").is_file():
        sys.exit(f"lfw-a not found at {root}: set VULTUS_TEST_FACES")
    return root


def align(root: Path, rows: list[dict[str, str]]) -> dict[str, Any]:
    """The largest usable face's chip of each photo, aligned as ingest aligns it. Float32:
    the ranges must not depend on themselves."""
    with tempfile.TemporaryDirectory() as data_dir:
        pipeline = FacePipeline(Settings.load(data_dir, embed_precision="fp32"))
        chips, paths, labels, scores = [], [], [], []
        for i, row in enumerate(rows, 1):
            faces = pipeline.analyse(root / row["path"], keep_chips=True).indexable
            if faces and faces[0].chip is not None:
                chips.append(faces[0].chip)
                paths.append(row["path"])
                labels.append(row["identity"])
                scores.append(faces[0].quality.det_score)
            if i % 500 == 0:
                print(f"  aligned {i:,} of {len(rows):,} photos", flush=True)
    return {
        "chips": np.stack(chips),
        "paths": np.array(paths),
        "labels": np.array(labels),
        "scores": np.array(scores, np.float64),
    }


def read_rows(root: Path) -> list[dict[str, str]]:
    with open(root / "labels.csv", newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------------------
# ranges


def measure_ranges(chips: Chips) -> dict[str, tuple[float, float]]:
    model, points = build_float_points_model(recognition_model())
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    low = dict.fromkeys(points, np.inf)
    high = dict.fromkeys(points, -np.inf)
    for i in range(0, len(chips), 32):
        outputs = session.run(points, {"chips": np.ascontiguousarray(chips[i : i + 32])})
        for point, out in zip(points, outputs, strict=True):
            low[point] = min(low[point], float(out.min()))
            high[point] = max(high[point], float(out.max()))
    return {p: (low[p], high[p]) for p in points}


def cmd_ranges(args: argparse.Namespace) -> int:
    root = lfw_a()
    rows = read_rows(root)
    step = len(rows) // CALIBRATION_PHOTOS
    picked = rows[::step][:CALIBRATION_PHOTOS]
    print(f"aligning {len(picked)} lfw-a photos (every {step}th of labels.csv)")
    chips = align(root, picked)["chips"]
    both = np.concatenate([chips, chips[:, :, ::-1]])
    ranges = Int8Ranges(
        source_sha256=file_sha256(recognition_model()),
        ranges=measure_ranges(both),
        measured_on=(
            f"{len(chips)} lfw-a photos (every {step}th row of labels.csv, the largest face "
            "aligned by the Vultus pipeline) and their mirror images; MinMax"
        ),
    )
    ranges.save(args.out)
    print(f"wrote {len(ranges.ranges)} ranges to {args.out}")
    return 0


# ----------------------------------------------------------------------------------------
# accuracy


def cross_tar(
    queries: npt.NDArray[np.float64], gallery: npt.NDArray[np.float64], codes: npt.NDArray[Any]
) -> list[dict[str, Any]]:
    """TAR at each FAR over all pairs i < j (at most 10 photos per identity, as `vultus eval`),
    with template i from `queries` and j from `gallery`: int8 queries against the float32
    templates of a catalog made before the upgrade."""
    keep = select_per_identity(codes, 10)
    q, g, c = queries[keep], gallery[keep], codes[keep]
    _, counts = np.unique(c, return_counts=True)
    n_pairs = len(keep) * (len(keep) - 1) // 2
    n_imp = n_pairs - int(np.sum(counts * (counts - 1) // 2))
    need = int(max(FARS) * n_imp) + 1
    genuine, smallest = [], np.zeros(0)
    rows = max(1, 4_000_000 // len(keep))
    for start in range(0, len(keep) - 1, rows):
        stop = min(start + rows, len(keep))
        d = pairwise_distances(q[start:stop], g[start:])
        upper = np.arange(start, len(keep))[None, :] > np.arange(start, stop)[:, None]
        same = c[start:stop, None] == c[None, start:]
        genuine.append(d[upper & same])
        smallest = np.concatenate([smallest, d[upper & ~same]])
        if len(smallest) > need:
            smallest = np.partition(smallest, need - 1)[:need]
    gen, imp = np.concatenate(genuine), np.sort(smallest)
    points = []
    for far in FARS:
        t = float(imp[int(far * n_imp) - 1])
        points.append({"far": far, "threshold": t, "tar": float(np.mean(gen <= t))})
    return points


def tar_points(report: Any) -> list[dict[str, Any]]:
    return [
        {"far": p.far, "threshold": p.threshold, "tar": p.tar} for p in report.verification.points
    ]


def embed_all(
    chips: Chips, threads: int, cache: Path
) -> tuple[dict[str, npt.NDArray[np.float64]], dict[str, float]]:
    """Unit templates of every chip in both precisions, plain and mirror-averaged (cached:
    delete the file after changing the graph or the ranges)."""
    if cache.is_file():
        print(f"templates from {cache}")
        stored = dict(np.load(cache))
        seconds = {k.removeprefix("seconds:"): float(v) for k, v in stored.items() if ":" in k}
        return {k: v for k, v in stored.items() if ":" not in k}, seconds
    templates: dict[str, npt.NDArray[np.float64]] = {}
    timing: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as models:
        for precision in ("fp32", "int8"):
            plain = OnnxDlibEmbedder(Path(models), threads=threads, precision=precision)
            for mirror in (False, True):
                embedder = MirrorAveraged(plain) if mirror else plain
                name = f"{precision}{'+mirror' if mirror else ''}"
                start = time.perf_counter()
                out = np.concatenate(
                    [embedder.embed(chips[i : i + 64]) for i in range(0, len(chips), 64)]
                )
                timing[name] = time.perf_counter() - start
                templates[name] = normalise(out.astype(np.float64))
                print(f"  embedded {len(chips):,} chips, {name}: {timing[name]:.1f} s")
    arrays: dict[str, Any] = {
        **templates,
        **{f"seconds:{k}": np.array(v) for k, v in timing.items()},
    }
    np.savez(cache, **arrays)
    return templates, timing


def cmd_accuracy(args: argparse.Namespace) -> int:
    root = lfw_a()
    cache = args.chips
    if cache.is_file():
        data = dict(np.load(cache))
        print(f"chips from {cache}")
    else:
        print("aligning every lfw-a photo (once; cached)")
        data = align(root, read_rows(root))
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **data)
    chips, labels = data["chips"], [str(x) for x in data["labels"]]
    paths = [str(p) for p in data["paths"]]
    where = {p: i for i, p in enumerate(paths)}
    pairs = [
        (where[a], where[b], same, fold)
        for a, b, same, fold in read_pairs(root / "pairs.csv")
        if a in where and b in where
    ]
    codes = encode_labels(labels)

    templates, timing = embed_all(chips, args.threads, args.templates)
    results: dict[str, Any] = {}
    for name, x in templates.items():
        report = evaluate(x, labels, pairs=pairs, quality=data["scores"])
        assert report.pair_accuracy is not None
        results[name] = {
            "tar": tar_points(report),
            "pair_accuracy": report.pair_accuracy.accuracy_mean,
            "rank1": report.identification.rank1 if report.identification else None,
        }
    for mirror in ("", "+mirror"):
        results[f"int8 vs fp32 gallery{mirror}"] = {
            "tar": cross_tar(templates[f"int8{mirror}"], templates[f"fp32{mirror}"], codes)
        }
    distances = {}
    for mirror in ("", "+mirror"):
        d = np.linalg.norm(templates[f"int8{mirror}"] - templates[f"fp32{mirror}"], axis=1)
        distances[f"plain{mirror}" if not mirror else "mirror"] = {
            "mean": float(d.mean()),
            "p99": float(np.percentile(d, 99)),
            "max": float(d.max()),
        }

    table = Table(title=f"lfw-a: {len(chips):,} faces, {len(pairs):,} official pairs")
    for column in ("templates", *(f"TAR@{f:g} (dist)" for f in FARS), "pair acc.", "rank-1"):
        table.add_column(column, justify="left" if column == "templates" else "right")
    for name, r in results.items():
        table.add_row(
            name,
            *(f"{p['tar']:.2%} ({p['threshold']:.3f})" for p in r["tar"]),
            f"{r['pair_accuracy']:.2%}" if "pair_accuracy" in r else "",
            f"{r['rank1']:.2%}" if r.get("rank1") is not None else "",
        )
    console = Console()
    console.print(table)
    for name, d in distances.items():
        console.print(
            f"int8 vs fp32, same face, {name}: L2 mean {d['mean']:.4f}, p99 {d['p99']:.4f}, "
            f"max {d['max']:.4f}"
        )

    report_json = {
        "benchmark": "int8",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "onnxruntime": ort.__version__,
        "faces": len(chips),
        "pairs": len(pairs),
        "embed_seconds": timing,
        "results": results,
        "template_distance": distances,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report_json, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ranges = sub.add_parser("ranges", help="measure the activation ranges and write them")
    ranges.add_argument("--out", type=Path, default=RANGES_OUT)
    accuracy = sub.add_parser("accuracy", help="TAR on lfw-a, float32 against int8")
    accuracy.add_argument("--out", type=Path, default=RESULTS / "int8.json")
    accuracy.add_argument("--chips", type=Path, default=RESULTS / "lfw-a_chips.npz")
    accuracy.add_argument(
        "--templates", type=Path, default=RESULTS / "lfw-a_templates.npz", help="cache"
    )
    accuracy.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    return cmd_ranges(args) if args.command == "ranges" else cmd_accuracy(args)


if __name__ == "__main__":
    sys.exit(main())
