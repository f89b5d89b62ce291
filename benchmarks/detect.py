"""Face detection: speed and found faces for HOG, dlib's MMOD CNN and the same CNN in ONNX Runtime.

Speed: ms per image at 250 px (LFW photos), 800 px and 1 MP (the extra photos, resized), for
Vultus's HOG detector (dlib HOG, with the upsampled retry where it finds nothing), dlib's own
CNN (a few images only: seconds each) and the ONNX MMOD with 1 and 2 threads.
Found faces: on a fixed sample of lfw-a (every k-th photo; a photo counts as found when a box
covers its centre, where LFW puts the labelled face) and the faces found per extra photo.
Identification (optional, --pair-folds N): pair accuracy on the first N folds of lfw-a's pairs
with the full pipeline (largest face, 5-point alignment, ONNX embedding) under each detector.

    python benchmarks/detect.py [--lfw-every 4] [--pair-folds 2] [--out results/detect.json]
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
from typing import Any

import dlib
import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from vultus.accuracy.evaluation import pair_accuracy
from vultus.config import Settings
from vultus.errors import VultusError
from vultus.pipeline.analyse import FacePipeline
from vultus.pipeline.base import Detection, RGBImage
from vultus.pipeline.decode import downscale
from vultus.pipeline.detect import HogDetector
from vultus.pipeline.mmod import MmodOnnxDetector
from vultus.pipeline.models import mmod_detector_model

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEED_IMAGES = 12  # per size, for HOG and ONNX
ONE_MP = 1_000_000

Detect = Callable[[RGBImage], list[Detection]]


def faces_dir() -> Path:
    env = os.environ.get("VULTUS_TEST_FACES")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "faces"
    if not (path / "lfw-a" / "labels.csv").is_file():
        sys.exit(f"shared face photos not found at {path}: set VULTUS_TEST_FACES")
    return path


def load(path: Path) -> RGBImage:
    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def resize_to_pixels(image: RGBImage, pixels: int) -> RGBImage:
    h, w = image.shape[:2]
    f = math.sqrt(pixels / (h * w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def lfw_paths(root: Path) -> list[Path]:
    with open(root / "lfw-a" / "labels.csv", newline="") as f:
        return [root / "lfw-a" / row["path"] for row in csv.DictReader(f)]


def speed_sets(root: Path) -> dict[str, list[RGBImage]]:
    lfw = lfw_paths(root)
    step = max(1, len(lfw) // SPEED_IMAGES)
    extra = [load(p) for p in sorted((root / "dev" / "extra").glob("*.jpg"))]
    return {
        "250 px": [load(p) for p in lfw[::step][:SPEED_IMAGES]],
        "800 px": [np.ascontiguousarray(downscale(im, 800)[0]) for im in extra],
        "1 MP": [resize_to_pixels(im, ONE_MP) for im in extra],
    }


def ms_per_image(detect: Detect, images: list[RGBImage], min_seconds: float) -> tuple[float, int]:
    detect(images[0])  # warm-up: first-call allocations
    calls, start = 0, time.perf_counter()
    while calls < len(images) or time.perf_counter() - start < min_seconds:
        detect(images[calls % len(images)])
        calls += 1
    return 1000 * (time.perf_counter() - start) / calls, calls


def covers_centre(found: list[Detection], image: RGBImage) -> bool:
    cy, cx = image.shape[0] / 2, image.shape[1] / 2
    return any(d.box.left <= cx < d.box.right and d.box.top <= cy < d.box.bottom for d in found)


def pair_effect(root: Path, folds: int, data_dir: Path) -> dict[str, object]:
    """Pair accuracy with HOG and with MMOD on lfw-a pairs of folds < `folds`."""
    with open(root / "lfw-a" / "pairs.csv", newline="") as f:
        pairs = [r for r in csv.DictReader(f) if int(r["fold"]) < folds]
    photos = sorted({r[k] for r in pairs for k in ("path1", "path2")})
    result: dict[str, object] = {"pairs": len(pairs), "photos": len(photos), "folds": folds}
    chosen: dict[str, dict[str, np.ndarray]] = {}
    for name in ("hog", "mmod"):
        pipeline = FacePipeline(Settings(data_dir=data_dir, detector=name))
        templates: dict[str, np.ndarray] = {}
        for rel in photos:
            try:
                usable = pipeline.analyse(root / "lfw-a" / rel).indexable
            except VultusError:
                continue
            if usable:
                t = usable[0].template
                assert t is not None
                templates[rel] = t / np.linalg.norm(t)
        chosen[name] = templates
        kept = [r for r in pairs if r["path1"] in templates and r["path2"] in templates]
        index = {rel: i for i, rel in enumerate(templates)}
        x = np.stack(list(templates.values())).astype(np.float64)
        acc = pair_accuracy(
            x,
            [
                (index[r["path1"]], index[r["path2"]], r["same"] == "1", int(r["fold"]))
                for r in kept
            ],
        )
        result[name] = {
            "photos_without_face": len(photos) - len(templates),
            "pairs_scored": len(kept),
            "accuracy": acc.accuracy_mean,
            "accuracy_std": acc.accuracy_std,
        }
    # The same photo under both detectors: a small distance means the same face, aligned a
    # little differently; a large one means "largest face first" picked another face.
    both = [p for p in chosen["hog"] if p in chosen["mmod"]]
    moved = np.array([np.linalg.norm(chosen["hog"][p] - chosen["mmod"][p]) for p in both])
    result["hog_vs_mmod_template_distance"] = {
        "photos": len(both),
        "median": float(np.median(moved)),
        "p90": float(np.percentile(moved, 90)),
        "another_face_chosen": int(np.sum(moved > 0.25)),
    }
    return result


def versions() -> dict[str, str]:
    found = {}
    for dist in ("onnxruntime", "onnx", "dlib-bin", "numpy"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def speed_section(
    root: Path, hog: HogDetector, mmod: dict[int, MmodOnnxDetector], args: argparse.Namespace
) -> list[dict[str, object]]:
    cnn = dlib.cnn_face_detection_model_v1(str(mmod_detector_model()))
    detectors: dict[str, Detect] = {
        "hog": hog.detect,
        "mmod onnx, 1 thread": mmod[1].detect,
        "mmod onnx, 2 threads": mmod[2].detect,
    }
    speed: list[dict[str, object]] = []
    for size, images in speed_sets(root).items():
        shape = f"{images[0].shape[1]}x{images[0].shape[0]}"
        timed = [(name, *ms_per_image(d, images, args.seconds)) for name, d in detectors.items()]
        few = images[: args.dlib_images]
        timed.append(("dlib cnn", *ms_per_image(lambda im: cnn(im, 0), few, 0.0)))
        for name, ms, calls in timed:
            speed.append(
                {"size": size, "example": shape, "detector": name, "ms": ms, "calls": calls}
            )
    return speed


def lfw_section(
    root: Path, hog: HogDetector, mmod: MmodOnnxDetector, every: int
) -> dict[str, object]:
    sample = lfw_paths(root)[::every]
    counts = {"hog": 0, "mmod": 0, "both": 0, "hog_only": 0, "mmod_only": 0, "neither": 0}
    seconds = {"hog": 0.0, "mmod": 0.0}
    only_mmod: list[str] = []
    for path in sample:
        image = load(path)
        t0 = time.perf_counter()
        by_hog = covers_centre(hog.detect(image), image)
        t1 = time.perf_counter()
        by_mmod = covers_centre(mmod.detect(image), image)
        seconds["hog"] += t1 - t0
        seconds["mmod"] += time.perf_counter() - t1
        counts["hog"] += by_hog
        counts["mmod"] += by_mmod
        counts["both"] += by_hog and by_mmod
        counts["hog_only"] += by_hog and not by_mmod
        counts["mmod_only"] += by_mmod and not by_hog
        counts["neither"] += not (by_hog or by_mmod)
        if by_mmod and not by_hog:
            only_mmod.append(str(path.relative_to(root / "lfw-a")))
    return {
        "photos": len(sample),
        "sample": f"every {every}th photo of labels.csv",
        "found": counts,
        "ms_per_photo": {k: 1000 * v / len(sample) for k, v in seconds.items()},
        "found_only_by_mmod": only_mmod,
    }


def extra_section(root: Path, hog: HogDetector, mmod: MmodOnnxDetector) -> list[dict[str, object]]:
    extra: list[dict[str, object]] = []
    for path in sorted((root / "dev" / "extra").glob("*.jpg")):
        image = np.ascontiguousarray(downscale(load(path), 800)[0])
        extra.append(
            {"photo": path.name, "hog": len(hog.detect(image)), "mmod": len(mmod.detect(image))}
        )
    return extra


def print_tables(report: dict[str, Any], console: Console) -> None:
    if "speed" in report:
        table = Table(title="Detection speed, ms per image (one process)")
        for column in ("size", "example", "detector", "ms/image", "calls"):
            table.add_column(column, justify="left" if column in ("size", "detector") else "right")
        for r in report["speed"]:
            table.add_row(r["size"], r["example"], r["detector"], f"{r['ms']:.0f}", str(r["calls"]))
        console.print(table)
    if "lfw_a" in report:
        lfw = report["lfw_a"]
        n = lfw["photos"]
        rate = Table(title=f"lfw-a, {n} photos ({lfw['sample']}): face at the centre found")
        for column in ("hog", "mmod", "both", "hog only", "mmod only", "neither"):
            rate.add_column(column, justify="right")
        rate.add_row(*(f"{v} ({100 * v / n:.2f}%)" for v in lfw["found"].values()))
        console.print(rate)
    if "extra_800px_faces" in report:
        faces = Table(title="extra photos at 800 px: faces found")
        for column in ("photo", "hog", "mmod"):
            faces.add_column(column, justify="left" if column == "photo" else "right")
        for row in report["extra_800px_faces"]:
            faces.add_row(row["photo"], str(row["hog"]), str(row["mmod"]))
        console.print(faces)
    if "pairs" in report:
        pairs = report["pairs"]
        table = Table(title=f"lfw-a pairs, folds 0-{pairs['folds'] - 1}: {pairs['pairs']} pairs")
        for column in ("detector", "photos without face", "pairs scored", "accuracy"):
            table.add_column(column, justify="left" if column == "detector" else "right")
        for name in ("hog", "mmod"):
            r = pairs[name]
            table.add_row(
                name,
                str(r["photos_without_face"]),
                str(r["pairs_scored"]),
                f"{100 * r['accuracy']:.2f}% ± {100 * r['accuracy_std']:.2f}",
            )
        console.print(table)
        moved = pairs["hog_vs_mmod_template_distance"]
        console.print(
            f"same photo, HOG vs MMOD template distance over {moved['photos']} photos: median "
            f"{moved['median']:.3f}, p90 {moved['p90']:.3f}; another face chosen in "
            f"{moved['another_face_chosen']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "detect.json"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="time per speed measurement")
    parser.add_argument("--dlib-images", type=int, default=2, help="images per dlib CNN size")
    parser.add_argument(
        "--lfw-every", type=int, default=4, help="lfw-a sample: every k-th photo (0: skip)"
    )
    parser.add_argument("--pair-folds", type=int, default=0, help="pair accuracy on N folds")
    parser.add_argument("--skip-speed", action="store_true", help="leave out the speed table")
    args = parser.parse_args(argv)
    root = faces_dir()

    report: dict[str, Any] = {
        "benchmark": "detect",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
        },
        "versions": versions(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        hog = HogDetector()
        mmod = {t: MmodOnnxDetector(Path(tmp), threads=t) for t in (1, 2)}
        if not args.skip_speed:
            report["speed"] = speed_section(root, hog, mmod, args)
        if args.lfw_every > 0:
            report["lfw_a"] = lfw_section(root, hog, mmod[1], args.lfw_every)
            report["extra_800px_faces"] = extra_section(root, hog, mmod[1])
        if args.pair_folds > 0:
            report["pairs"] = pair_effect(root, args.pair_folds, Path(tmp))
    # The machine is shared: the load says how far to trust the timings.
    report["machine"]["load_average_after"] = os.getloadavg()

    print_tables(report, Console())
    print(f"load average after the run: {os.getloadavg()} on {os.cpu_count()} cores")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
