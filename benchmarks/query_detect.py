"""Query photo detection: faces found and seconds per photo for each way a search's photo is
detected (pipeline/query_detect.py): "standard" (the ingest detector, HOG), "thorough" (HOG and
MMOD merged, the default for searches) and "harder" (the UI's "look harder": MMOD at three
scales and HOG upsampled as well), on the shared group photos (dev/extra).

Each photo is analysed by every mode in turn, round after round (interleaved, so that a busy
machine weighs on each mode alike); the time is the median over rounds of the whole analysis
(decode, detect, align, embed), the way `Engine.search` runs it.

    python benchmarks/query_detect.py [--rounds 3] [--out benchmarks/results/query_detect.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from vultus.config import Settings
from vultus.pipeline.analyse import FacePipeline
from vultus.pipeline.query_detect import QUERY_DETECTION

REPO_ROOT = Path(__file__).resolve().parents[1]


def faces_dir() -> Path:
    env = os.environ.get("VULTUS_TEST_FACES")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "faces"
    if not (path / "dev" / "extra").is_dir():
        sys.exit(f"shared face photos not found at {path}: set VULTUS_TEST_FACES")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "query_detect.json"
    )
    args = parser.parse_args()
    photos = sorted((faces_dir() / "dev" / "extra").glob("*.jpg"))
    pipeline = FacePipeline(Settings())
    for mode in QUERY_DETECTION:  # build every model before timing
        pipeline.analyse(photos[0], detection=mode)
    seconds: dict[tuple[str, str], list[float]] = {}
    found: dict[tuple[str, str], tuple[int, int]] = {}
    for _ in range(args.rounds):
        for photo in photos:
            for mode in QUERY_DETECTION:
                start = time.perf_counter()
                analysed = pipeline.analyse(photo, detection=mode)
                seconds.setdefault((photo.name, mode), []).append(time.perf_counter() - start)
                found[photo.name, mode] = (len(analysed.faces), len(analysed.indexable))
    load = os.getloadavg()
    table = Table(title=f"Faces found in query photos (load average {load[0]:.1f})")
    table.add_column("photo")
    for mode in QUERY_DETECTION:
        table.add_column(f"{mode}: faces (usable), s", justify="right")
    rows: list[dict[str, Any]] = []
    for photo in photos:
        row: dict[str, Any] = {"photo": photo.name}
        cells = []
        for mode in QUERY_DETECTION:
            faces, usable = found[photo.name, mode]
            median = statistics.median(seconds[photo.name, mode])
            row[mode] = {"faces": faces, "usable": usable, "seconds": round(median, 3)}
            cells.append(f"{faces} ({usable}), {median:.2f}")
        rows.append(row)
        table.add_row(photo.name, *cells)
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "load_average": load,
                "rounds": args.rounds,
                "photos": rows,
            },
            indent=2,
        )
    )
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
