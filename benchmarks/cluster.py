"""Clustering quality on lfw-a: how pure and complete `vultus people discover` proposals are,
and what they cost the person who reviews them.

Runs :func:`vultus.people.clustering.discover` at the calibrated distances for per-pair FMR
1e-3, 1e-4 and 1e-5, and at the default (each face a 1% chance of any stranger within reach),
each with min_faces 2, 3 and 4 (faces a proposal holds at least, the face itself included);
scores pairwise and BCubed precision, recall and F1 against the identities (unassigned faces
count as clusters of one). Review effort: a reviewer looks at every face of every proposal;
a person is found when a proposal's faces are mostly theirs (each person counted once); effort
is faces looked at per person found; "fix" counts the faces a reviewer must set apart (not the
proposal's majority). The "after review" rows run discovery again once those faces are set
apart, as the web UI records them: what a reviewer decided must hold.

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
from collections import Counter
from importlib import metadata
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from vultus.accuracy.calibration import Calibration
from vultus.accuracy.datasets import LabelledTemplates, embed_labelled
from vultus.config import Settings
from vultus.people.clustering import (
    Proposal,
    default_max_distance,
    discover,
    labels_from_proposals,
    pairwise_scores,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
PAIR_FMRS = (1e-3, 1e-4, 1e-5)
MIN_FACES = (2, 3, 4)


def load(args: argparse.Namespace) -> LabelledTemplates:
    if args.embeddings is not None:
        return LabelledTemplates.load(args.embeddings)
    with tempfile.TemporaryDirectory() as home:
        return embed_labelled(args.labels, Settings.load(Path(home)))


def review_effort(labels: list[str], proposals: list[Proposal]) -> dict[str, float]:
    """What reviewing the proposals costs: faces looked at, people found, faces to set apart.
    `labels` is indexed by face id (the benchmark's ids are 0..n-1)."""
    found: set[str] = set()
    looked = fix = 0
    for p in proposals:
        who = [labels[i] for i in p.face_ids]
        top, n = Counter(who).most_common(1)[0]
        looked += len(who)
        fix += len(who) - n
        found.add(top)
    counts = Counter(labels)
    return {
        "faces_looked_at": looked,
        "people_found": len(found),
        "people_findable": sum(1 for c in counts.values() if c >= 2),
        "faces_per_person": round(looked / len(found), 2) if found else 0.0,
        "faces_to_fix": fix,
    }


def set_apart(labels: list[str], proposals: list[Proposal]) -> dict[int, list[int]]:
    """A reviewer's decisions: each face not of its proposal's majority is set apart from it."""
    apart: dict[int, list[int]] = {}
    for p in proposals:
        top = Counter(labels[i] for i in p.face_ids).most_common(1)[0][0]
        for i in p.face_ids:
            if labels[i] != top:
                apart.setdefault(i, []).extend(f for f in p.face_ids if f != i)
    return apart


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
        "--quick", action="store_true", help="only the default distance (a few seconds a row)"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "cluster.json"
    )
    args = parser.parse_args(argv)
    load_start = os.getloadavg()

    data = load(args)
    calibration = Calibration.default(data.model_id or "dlib-resnet-v1")
    ids = np.arange(len(data.labels), dtype=np.int64)
    distances: list[tuple[str, float]] = [
        (f"pair FMR {fmr:g}", float(calibration.threshold_for(fmr))) for fmr in PAIR_FMRS
    ]
    distances.append(("default (1%/face)", default_max_distance(len(ids), calibration)))

    results: list[dict[str, object]] = []

    def record(rule: str, max_distance: float, min_faces: int, **kwargs: object) -> list[Proposal]:
        start = time.perf_counter()
        proposals = discover(
            ids, data.templates, max_distance=max_distance, min_faces=min_faces, **kwargs
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
                **review_effort(data.labels, proposals),
                "seconds": round(seconds, 3),
            }
        )
        return proposals

    for rule, max_distance in distances:
        for min_faces in MIN_FACES:
            if args.quick and not rule.startswith("default"):
                continue
            proposals = record(rule, max_distance, min_faces)
            if rule.startswith("default"):
                apart = set_apart(data.labels, proposals)
                record("after review", max_distance, min_faces, apart=apart)

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
            "load_average_start": [round(x, 2) for x in load_start],
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
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
    columns = ("rule", "max d", "min", "clusters", "largest", "clustered")
    scores = ("pair P", "pair R", "B³ P", "B³ R", "B³ F1")
    effort = ("found", "faces/person", "fix", "s")
    for column in (*columns, *scores, *effort):
        table.add_column(column, justify="left" if column == "rule" else "right")
    for r in results:
        table.add_row(
            str(r["rule"]),
            f"{r['max_distance']:.3f}",
            str(r["min_faces"]),
            str(r["clusters"]),
            str(r["largest"]),
            str(r["clustered"]),
            *(
                f"{r[k]:.3f}"
                for k in (
                    "pairwise_precision",
                    "pairwise_recall",
                    "bcubed_precision",
                    "bcubed_recall",
                    "bcubed_f1",
                )
            ),
            f"{r['people_found']}/{r['people_findable']}",
            f"{r['faces_per_person']:.2f}",
            str(r["faces_to_fix"]),
            f"{r['seconds']:.2f}",
        )
    Console(width=200).print(table)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
