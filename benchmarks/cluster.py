"""Clustering quality on lfw-a: how pure and how complete `vultus people discover` proposals are.

Runs :func:`vultus.people.clustering.discover` at the calibrated distances for per-pair FMR 1e-3, 1e-4
and 1e-5, and at the default (each face a 1% chance of any stranger within reach), each with
min_faces 1, 2 and 3; scores pairwise and BCubed precision, recall and F1 against the identities
(unassigned faces count as clusters of one).

    python benchmarks/cluster.py --embeddings /tmp/cal/lfwa   # saved by vultus eval
    python benchmarks/cluster.py --labels ../shared/faces/lfw-a/labels.csv
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from vultus.accuracy.calibration import Calibration
from vultus.accuracy.datasets import LabelledTemplates, embed_labelled
from vultus.config import Settings
from vultus.people.clustering import (
    default_max_distance,
    discover,
    labels_from_proposals,
    pairwise_scores,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
PAIR_FMRS = (1e-3, 1e-4, 1e-5)
MIN_FACES = (1, 2, 3)


def load(args: argparse.Namespace) -> LabelledTemplates:
    if args.embeddings is not None:
        return LabelledTemplates.load(args.embeddings)
    with tempfile.TemporaryDirectory() as home:
        return embed_labelled(args.labels, Settings.load(Path(home)))


def versions() -> dict[str, str]:
    found = {}
    for dist in ("vultus", "faiss-cpu", "numpy"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--embeddings", type=Path, help="PREFIX saved by --save-embeddings")
    source.add_argument(
        "--labels",
        type=Path,
        default=REPO_ROOT.parent / "shared" / "faces" / "lfw-a" / "labels.csv",
        help="labels.csv to embed when no --embeddings is given",
    )
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "cluster.json"
    )
    args = parser.parse_args(argv)

    data = load(args)
    calibration = Calibration.default(data.model_id or "dlib-resnet-v1")
    ids = np.arange(len(data.labels), dtype=np.int64)
    distances: list[tuple[str, float]] = [
        (f"pair FMR {fmr:g}", float(calibration.threshold_for(fmr))) for fmr in PAIR_FMRS
    ]
    distances.append(("default (1%/face)", default_max_distance(len(ids), calibration)))

    results: list[dict[str, object]] = []
    for rule, max_distance in distances:
        for min_faces in MIN_FACES:
            start = time.perf_counter()
            proposals = discover(
                ids, data.templates, max_distance=max_distance, min_faces=min_faces
            )
            seconds = time.perf_counter() - start
            predicted = labels_from_proposals(ids, proposals)
            scores = pairwise_scores(data.labels, predicted)
            results.append(
                {
                    "rule": rule,
                    "max_distance": max_distance,
                    "min_faces": min_faces,
                    "clusters": len(proposals),
                    "largest": len(proposals[0]) if proposals else 0,
                    "clustered": int(np.sum(predicted >= 0)),
                    "noise": int(np.sum(predicted < 0)),
                    **{k: round(v, 4) for k, v in scores.items() if not k.startswith("pairs_")},
                    "seconds": round(seconds, 3),
                }
            )

    n_ids = len(set(data.labels))
    report = {
        "benchmark": "cluster",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "versions": versions(),
        "data": {
            "source": str(args.embeddings or args.labels),
            "faces": len(ids),
            "identities": n_ids,
            "model_id": data.model_id,
        },
        "params": {"pair_fmrs": list(PAIR_FMRS), "min_faces": list(MIN_FACES)},
        "results": results,
    }

    table = Table(title=f"Clustering lfw-a ({len(ids)} faces, {n_ids} identities)")
    columns = ("rule", "max d", "min", "clusters", "largest", "clustered", "noise")
    for column in (*columns, "pair P", "pair R", "pair F1", "B³ P", "B³ R", "B³ F1", "s"):
        table.add_column(column, justify="left" if column == "rule" else "right")
    for r in results:
        table.add_row(
            str(r["rule"]),
            f"{r['max_distance']:.3f}",
            str(r["min_faces"]),
            str(r["clusters"]),
            str(r["largest"]),
            str(r["clustered"]),
            str(r["noise"]),
            *(
                f"{r[k]:.3f}"
                for k in (
                    "pairwise_precision",
                    "pairwise_recall",
                    "pairwise_f1",
                    "bcubed_precision",
                    "bcubed_recall",
                    "bcubed_f1",
                )
            ),
            f"{r['seconds']:.2f}",
        )
    Console().print(table)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
