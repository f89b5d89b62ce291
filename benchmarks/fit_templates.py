"""Fit the synthetic-template generator of benchmarks/search.py to real dlib descriptors.

    python benchmarks/fit_templates.py --people 120 --per-person 4

Embeds a few hundred lfw-a photos (people with at least `--per-person` photos) with the Vultus
pipeline, then stores in benchmarks/template_model.npz: the mean of the unit descriptors, the
between-identity covariance (of identity centres) and the within-identity covariance (of each
photo's offset from its identity's centre). Only these statistics are stored, no descriptor.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from vultus.config import Settings
from vultus.pipeline.analyse import FacePipeline

HERE = Path(__file__).resolve().parent
OUT = HERE / "template_model.npz"


def faces_dir() -> Path:
    env = os.environ.get("VULTUS_TEST_FACES")
    return Path(env) if env else HERE.parent.parent / "shared" / "faces"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=120)
    parser.add_argument("--per-person", type=int, default=4)
    args = parser.parse_args()
    root = faces_dir() / "lfw-a"
    by_person: dict[str, list[str]] = defaultdict(list)
    with open(root / "labels.csv") as fh:
        for row in csv.DictReader(fh):
            by_person[row["identity"]].append(row["path"])
    people = sorted(p for p, paths in by_person.items() if len(paths) >= args.per_person)
    rng = np.random.default_rng(0)
    chosen = rng.choice(people, size=min(args.people, len(people)), replace=False)
    pipeline = FacePipeline(Settings.load(Path("/tmp/vultus-fit-unused")))
    templates, labels = [], []
    t0 = time.perf_counter()
    for who, person in enumerate(chosen):
        paths = [root / p for p in sorted(by_person[person])[: args.per_person]]
        for result in pipeline.analyse_many(paths):
            if isinstance(result, Exception) or not result.faces:
                continue
            face = max(result.faces, key=lambda f: f.box.width * f.box.height)
            if face.template is None:
                continue
            templates.append(face.template / np.linalg.norm(face.template))
            labels.append(who)
    x = np.asarray(templates, dtype=np.float64)
    y = np.asarray(labels)
    keep = np.isin(y, np.flatnonzero(np.bincount(y) >= 2))
    x, y = x[keep], y[keep]
    centres = np.stack([x[y == i].mean(axis=0) for i in np.unique(y)])
    within = x - centres[np.searchsorted(np.unique(y), y)]
    n_per = np.bincount(y)[np.unique(y)]
    # Each centre estimate carries within-identity noise / n; remove it so that generated
    # identities are not spread wider than real ones.
    between = np.cov(centres.T) - np.cov(within.T, ddof=len(centres)) * float(np.mean(1 / n_per))
    w = np.cov(within.T, ddof=len(centres))
    np.savez(
        OUT,
        mean=x.mean(axis=0).astype(np.float32),
        between=between.astype(np.float32),
        within=w.astype(np.float32),
        photos=len(x),
        identities=len(centres),
    )
    print(f"{len(x)} photos of {len(centres)} people in {time.perf_counter() - t0:.0f} s -> {OUT}")


if __name__ == "__main__":
    main()
