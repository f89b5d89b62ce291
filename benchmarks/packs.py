"""Model-pack overheads and `vultus reembed` throughput, with tiny generated graphs.

The tiny SCRFD and ArcFace graphs (tests/onnx_packs.py) cost next to nothing, so what this
measures is Vultus's own work around a real pack: letterboxing and SCRFD decoding per image,
ArcFace alignment (Umeyama + Pillow warp) per face, and the re-embedding machinery (staging,
IoU matching, the swap transaction, the index rebuild) per image. Add the real models' own
inference time to these numbers.

    python benchmarks/packs.py [--out benchmarks/results/packs.json]
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

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from onnx_packs import make_pack, plausible_face  # noqa: E402
from vultus.engine import Engine  # noqa: E402
from vultus.pipeline.arcface import TEMPLATE, umeyama, warp  # noqa: E402
from vultus.pipeline.packs import load_pack  # noqa: E402
from vultus.pipeline.scrfd import ScrfdDetector, decode, letterbox  # noqa: E402


def faces_dir() -> Path | None:
    env = os.environ.get("VULTUS_TEST_FACES")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "faces"
    return path if (path / "dev" / "labels.csv").is_file() else None


def per_call_ms(fn: object, reps: int) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - start) / reps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "packs.json"
    )
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        faces = [plausible_face((100.0 + 60 * i, 80.0, 150.0 + 60 * i, 140.0)) for i in range(5)]
        pack = make_pack(Path(tmp) / "pack", faces=faces)
        spec = load_pack(pack).detector
        detector = ScrfdDetector(spec)
        image = np.random.default_rng(0).integers(0, 255, (600, 800, 3), dtype=np.uint8)
        blob, _ = letterbox(image, spec.run_size)
        names = [*spec.scores, *spec.boxes, *spec.keypoints]
        outputs = dict(
            zip(names, detector._session.run(names, {spec.input_name: blob}), strict=True)
        )
        rows.append(
            {
                "step": "letterbox 800x600 -> 640x640",
                "unit": "image",
                "ms": per_call_ms(lambda: letterbox(image, spec.run_size), 50),
            }
        )
        rows.append(
            {
                "step": "SCRFD decode + NMS (5 faces)",
                "unit": "image",
                "ms": per_call_ms(lambda: decode(outputs, spec), 200),
            }
        )
        points = TEMPLATE * 2.5 + [200.0, 150.0]
        picture = Image.fromarray(image)
        rows.append(
            {
                "step": "ArcFace alignment (Umeyama + Pillow warp)",
                "unit": "face",
                "ms": per_call_ms(lambda: warp(picture, umeyama(points, TEMPLATE), 112), 500),
            }
        )
        root = faces_dir()
        if root is not None:
            with (root / "dev" / "labels.csv").open(newline="") as fh:
                photos = [root / "dev" / r["path"] for r in csv.DictReader(fh)]
            data = Path(tmp) / "data"
            with Engine.open(data, workers=1) as engine:
                engine.add_source(
                    "bench",
                    lawful_basis_code="legitimate_interests",
                    special_condition="archiving_research",
                    purpose="benchmark",
                    retention_days=30,
                )
                engine.add(photos, source="bench")
                make_pack(data / "packs" / "tiny", faces=[plausible_face((43, 43, 576, 576))])
                start = time.perf_counter()
                summary = engine.reembed("tiny")
                seconds = time.perf_counter() - start
            rows.append(
                {
                    "step": f"reembed dlib -> tiny pack ({summary.images} images)",
                    "unit": "image",
                    "ms": seconds / max(1, summary.images) * 1000,
                }
            )
    report = {
        "benchmark": "packs",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "note": "shared 2-core machine, loaded by other work: pessimistic",
        },
        "results": rows,
    }
    table = Table(title="Model-pack overheads (tiny graphs: Vultus's own work only)")
    table.add_column("step")
    table.add_column("per")
    table.add_column("ms", justify="right")
    for r in rows:
        table.add_row(str(r["step"]), str(r["unit"]), f"{float(r['ms']):.2f}")  # type: ignore[arg-type]
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
