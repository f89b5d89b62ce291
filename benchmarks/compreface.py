"""What the CompreFace-compatible API costs over the native one, per request, on the same server.

    python benchmarks/compreface.py [--faces ../shared/faces] [--rounds 5]
                                    [--out benchmarks/results/compreface.json]

Pairs, run interleaved in each round so that the machine's load falls on both alike:
- adding a photo: native `POST /v1/images` against CompreFace's `POST /recognition/faces`
  (which analyses the photo once more before keeping it, to refuse a photo without a face
  before anything is written, then links the face to a subject);
- searching with a photo: native `POST /v1/search` against CompreFace's
  `POST /recognition/recognize` (one search per face, subjects and similarities).
Each request goes through the whole app in-process (FastAPI's test client), on the shared dev
photos: one identity's photos are added, the others' searched for. Prints medians, their ratio
and the load average.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table

from vultus import __version__
from vultus.api import create_app
from vultus.engine import Engine

REPO = Path(__file__).resolve().parent.parent
PURPOSE = "archive research"


def _timed(client: TestClient, *args: Any, **kwargs: Any) -> float:
    start = time.perf_counter()
    answer = client.post(*args, **kwargs)
    elapsed = (time.perf_counter() - start) * 1000
    assert answer.status_code in (200, 201), answer.text
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "faces")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "compreface.json"
    )
    args = parser.parse_args()
    labels = args.faces / "dev" / "labels.csv"
    if not labels.exists():
        sys.exit(f"no dev photos at {args.faces}: pass --faces")
    with labels.open(newline="") as fh:
        rows = [(args.faces / "dev" / r["path"], r["identity"]) for r in csv.DictReader(fh)]
    firsts: dict[str, Path] = {}
    for path, who in rows:
        firsts.setdefault(who, path)
    people = list(firsts.items())

    times: dict[str, list[float]] = {
        k: [] for k in ("upload", "add_example", "search", "recognize")
    }
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir(mode=0o700)
        (data_dir / "vultus.toml").write_text('controller = "Benchmark"\n')
        with Engine.open(data_dir, workers=1, requests_per_minute=1_000_000) as engine:
            engine.add_source(
                "bench",
                lawful_basis_code="legitimate_interests",
                special_condition="archiving_research",
                purpose="benchmark",
                retention_days=30,
            )
            _, key = engine.keys.create(
                "bench", ["operator", "investigator"], purpose=PURPOSE, source="bench"
            )
            client = TestClient(create_app(engine=engine))
            headers = {"x-api-key": key}
            queries = [p for p, _ in rows if p not in set(firsts.values())]
            for n in range(args.rounds):
                (_, a), (who_b, b) = (
                    people[(2 * n) % len(people)],
                    people[(2 * n + 1) % len(people)],
                )
                times["upload"].append(
                    _timed(
                        client,
                        "/v1/images",
                        data={"source": "bench"},
                        files={"file": a.read_bytes()},
                        headers=headers,
                    )
                )
                times["add_example"].append(
                    _timed(
                        client,
                        f"/api/v1/recognition/faces?subject={who_b}",
                        files={"file": b.read_bytes()},
                        headers=headers,
                    )
                )
                query = queries[n % len(queries)].read_bytes()
                times["search"].append(
                    _timed(
                        client,
                        "/v1/search",
                        data={"purpose": PURPOSE},
                        files={"photo": query},
                        headers=headers,
                    )
                )
                times["recognize"].append(
                    _timed(
                        client,
                        "/api/v1/recognition/recognize",
                        files={"file": query},
                        headers=headers,
                    )
                )
    load = os.getloadavg()
    medians = {k: statistics.median(v) for k, v in times.items()}
    table = Table(
        title=f"CompreFace API against native, median ms of {args.rounds} (load {load[0]:.2f})"
    )
    for col in ("what", "native ms", "CompreFace ms", "ratio"):
        table.add_column(col)
    pairs = [("add a photo", "upload", "add_example"), ("search a photo", "search", "recognize")]
    for label, native, compat in pairs:
        table.add_row(
            label,
            f"{medians[native]:.0f}",
            f"{medians[compat]:.0f}",
            f"{medians[compat] / medians[native]:.2f}",
        )
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "compreface",
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "version": __version__,
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "load_average": load,
                "rounds": args.rounds,
                "median_ms": medians,
                "ratios": {label: medians[c] / medians[n] for label, n, c in pairs},
                "samples_ms": times,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
