"""Labelled photo sets for calibration and evaluation: `labels.csv` (path,identity) with paths
relative to the CSV, and optional `pairs.csv` (path1,path2,same,fold)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vultus.config import Settings
from vultus.errors import ConfigError
from vultus.ingest.batches import Analyser, Work
from vultus.pipeline.analyse import FacePipeline


@dataclass
class LabelledTemplates:
    paths: list[str]  # as written in labels.csv
    labels: list[str]
    templates: npt.NDArray[np.float32]  # (n, dim) raw descriptors of the largest face
    failures: list[tuple[str, str]]  # (path, reason) for photos with no usable face
    model_id: str
    # The detector's confidence for each face (higher is better): the quality the evaluation
    # breaks error rates down by. Empty for templates saved before it was recorded.
    det_scores: list[float] = field(default_factory=list)

    def save(self, prefix: Path) -> None:
        prefix.parent.mkdir(parents=True, exist_ok=True)
        np.save(prefix.with_suffix(".npy"), self.templates)
        meta = {
            "paths": self.paths,
            "labels": self.labels,
            "failures": self.failures,
            "model_id": self.model_id,
            "det_scores": self.det_scores,
        }
        prefix.with_suffix(".json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, prefix: Path) -> LabelledTemplates:
        meta = json.loads(prefix.with_suffix(".json").read_text())
        return cls(
            paths=meta["paths"],
            labels=meta["labels"],
            templates=np.load(prefix.with_suffix(".npy")),
            failures=[tuple(f) for f in meta["failures"]],
            model_id=meta["model_id"],
            det_scores=meta.get("det_scores", []),
        )


def read_labels(labels_csv: Path) -> list[tuple[str, str]]:
    try:
        with labels_csv.open(newline="") as fh:
            rows = [(r["path"], r["identity"]) for r in csv.DictReader(fh)]
    except (OSError, KeyError) as exc:
        raise ConfigError(
            f"{labels_csv}: expected a CSV with columns path,identity ({exc})"
        ) from exc
    if not rows:
        raise ConfigError(f"{labels_csv} lists no photos")
    return rows


def read_pairs(pairs_csv: Path) -> list[tuple[str, str, bool, int]]:
    try:
        with pairs_csv.open(newline="") as fh:
            return [
                (r["path1"], r["path2"], r["same"] in {"1", "true", "True"}, int(r["fold"]))
                for r in csv.DictReader(fh)
            ]
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{pairs_csv}: expected columns path1,path2,same,fold ({exc})") from exc


def embed_labelled(
    labels_csv: Path,
    settings: Settings,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> LabelledTemplates:
    """Embed the largest face of every listed photo, with the same pipeline ingest uses."""
    rows = read_labels(labels_csv)
    root = labels_csv.parent
    paths = [(root / p).resolve() for p, _ in rows]
    kept_paths: list[str] = []
    labels: list[str] = []
    templates: list[npt.NDArray[np.float32]] = []
    det_scores: list[float] = []
    failures: list[tuple[str, str]] = []
    model_id = ""
    with Analyser(settings, lambda: FacePipeline(settings)) as analyser:
        for done, ((rel, identity), (_, image, error)) in enumerate(
            zip(rows, analyser.map([Work(str(p)) for p in paths]), strict=True), start=1
        ):
            usable = [f for f in image.faces if f.template is not None] if image else []
            if usable:
                kept_paths.append(rel)
                labels.append(identity)
                templates.append(usable[0].template)  # type: ignore[arg-type]
                det_scores.append(usable[0].det_score)
                model_id = usable[0].model_id
            else:
                failures.append((rel, error[2] if error else "no usable face"))
            if on_progress:
                on_progress(done, len(rows))
    stacked = np.stack(templates) if templates else np.empty((0, 0), np.float32)
    return LabelledTemplates(kept_paths, labels, stacked, failures, model_id, det_scores)
