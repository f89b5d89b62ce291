"""Ingest: walk the named paths, skip content already held, analyse new images in worker
processes, and write each batch in one transaction.

Resumable by construction: an image's rows are committed together with its faces, files are
processed in a stable order, and content already in the catalog is skipped by hash before any
work is done. A run killed at any moment is finished by running it again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vultus.catalog import NewFace, NewImage
from vultus.config import Settings
from vultus.errors import VultusError
from vultus.pipeline.analyse import AnalysedImage, FacePipeline
from vultus.pipeline.decode import SUPPORTED_SUFFIXES

# Per-process pipeline for pool workers: dlib and ONNX Runtime objects cannot cross processes.
_worker_pipeline: FacePipeline | None = None


@dataclass
class Progress:
    files_total: int
    files_done: int = 0
    images_added: int = 0
    faces_indexed: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return max(1e-9, time.monotonic() - self.started)


@dataclass
class IngestSummary:
    run_id: int | None
    source: str
    files_seen: int
    images_added: int
    images_duplicate: int
    images_no_face: int
    faces_indexed: int
    faces_skipped: int
    faces_suppressed: int
    skip_reasons: dict[str, int]
    errors: list[tuple[str, str, str]]  # (path, code, message)
    seconds: float
    dry_run: bool = False

    @property
    def images_per_second(self) -> float:
        return self.files_seen / self.seconds if self.seconds else 0.0


def collect_files(paths: Sequence[Path | str]) -> tuple[list[Path], list[tuple[str, str, str]]]:
    """Files named directly are taken whatever their suffix (the decoder judges them); folders
    are walked recursively for image suffixes. Sorted, so reruns process files in the same order."""
    files: list[Path] = []
    errors: list[tuple[str, str, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs.sort()
                files.extend(
                    Path(root) / n
                    for n in sorted(names)
                    if Path(n).suffix.lower() in SUPPORTED_SUFFIXES
                )
        elif path.is_file():
            files.append(path)
        else:
            errors.append((str(path), "file_not_found", f"{path}: no such file or folder"))
    seen: set[Path] = set()
    unique = []
    for f in files:
        resolved = f.resolve()
        if resolved not in seen:
            seen.add(resolved)
            unique.append(resolved)
    return unique, errors


def file_sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None  # the worker reports the reason when it tries to decode
    return digest.hexdigest()


def to_new_image(path: Path, analysed: AnalysedImage) -> NewImage:
    return NewImage(
        path=str(path),
        sha256=analysed.sha256,
        size_bytes=analysed.size_bytes,
        width=analysed.width,
        height=analysed.height,
        format=analysed.format,
        faces=[
            NewFace(
                box=(f.box.left, f.box.top, f.box.right, f.box.bottom),
                landmarks=f.landmarks,
                detector=f.detector,
                det_score=f.quality.det_score,
                box_size=f.quality.box_size,
                sharpness=f.quality.sharpness,
                yaw=f.quality.yaw,
                model_id=f.model_id,
                template=f.template,
                skip_reason=f.skip_reason,
            )
            for f in analysed.faces
        ],
    )


AnalyseResult = tuple[Path, NewImage | None, tuple[str, str, str] | None]

# Images a worker analyses together, so that their faces are embedded in one batch.
WORKER_CHUNK = 8


def _analyse(pipeline: FacePipeline, paths: Sequence[Path]) -> list[AnalyseResult]:
    try:
        results = pipeline.analyse_many(list(paths))
    except Exception:  # one bad file must never stop a run: retry one by one to isolate it
        if len(paths) > 1:
            return [r for p in paths for r in _analyse(pipeline, [p])]
        path = paths[0]
        return [(path, None, (str(path), "internal_error", f"{path}: unexpected failure"))]
    out: list[AnalyseResult] = []
    for path, result in zip(paths, results, strict=True):
        if isinstance(result, VultusError):
            out.append((path, None, (str(path), result.code, result.message)))
        else:
            out.append((path, to_new_image(path, result), None))
    return out


def _init_worker(settings: Settings) -> None:
    global _worker_pipeline
    _worker_pipeline = FacePipeline(settings, embed_threads=1)


def _worker_analyse(paths: list[Path]) -> list[AnalyseResult]:
    assert _worker_pipeline is not None
    return _analyse(_worker_pipeline, paths)


class Analyser:
    """Runs the pipeline over files, in worker processes when more than one worker is asked
    for; results come back in input order so that reruns are deterministic."""

    def __init__(self, settings: Settings, pipeline: Callable[[], FacePipeline]) -> None:
        self.settings = settings
        self._pipeline = pipeline
        self._pool: mp.pool.Pool | None = None

    def __enter__(self) -> Analyser:
        if self.settings.workers > 1:
            # forkserver: dlib and ONNX Runtime hold threads that do not survive a plain fork.
            ctx = mp.get_context("forkserver")
            self._pool = ctx.Pool(
                self.settings.workers, initializer=_init_worker, initargs=(self.settings,)
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()

    def map(self, paths: Sequence[Path]) -> Iterator[AnalyseResult]:
        chunks = [list(paths[i : i + WORKER_CHUNK]) for i in range(0, len(paths), WORKER_CHUNK)]
        if self._pool is None:
            pipeline = self._pipeline()
            return (r for chunk in chunks for r in _analyse(pipeline, chunk))
        return (r for results in self._pool.imap(_worker_analyse, chunks) for r in results)


class DryRunTotals:
    """What a dry run would have written, counted without touching the catalog."""

    def __init__(self) -> None:
        self.images = self.no_face = self.indexed = self.skipped = self.duplicates = 0
        self.suppressed = 0
        self.reasons: dict[str, int] = {}
        self.errors: list[tuple[str, str, str]] = []

    def add(
        self,
        batch: list[NewImage],
        errors: list[tuple[str, str, str]],
        dups: int,
        suppressed: int,
    ) -> None:
        self.duplicates += dups
        self.suppressed += suppressed
        self.errors.extend(errors)
        for image in batch:
            self.images += 1
            faces = [f for f in image.faces if f.template is not None]
            self.no_face += 0 if faces else 1
            self.indexed += len(faces)
            for f in image.faces:
                if f.skip_reason:
                    self.skipped += 1
                    key = f.skip_reason.split(":")[0]
                    self.reasons[key] = self.reasons.get(key, 0) + 1

    def summary(self, source: str, files: int, seconds: float) -> IngestSummary:
        return IngestSummary(
            run_id=None,
            source=source,
            files_seen=files,
            images_added=self.images,
            images_duplicate=self.duplicates,
            images_no_face=self.no_face,
            faces_indexed=self.indexed,
            faces_skipped=self.skipped,
            faces_suppressed=self.suppressed,
            skip_reasons=self.reasons,
            errors=self.errors,
            seconds=seconds,
            dry_run=True,
        )


def drop_suppressed(
    batch: list[NewImage], suppression: tuple[npt.NDArray[np.float32], float] | None
) -> tuple[list[NewImage], int]:
    """Drop faces within `threshold` of a suppressed (erased) person, and photos left with
    none; returns what stays and how many faces were dropped."""
    if suppression is None or not batch:
        return batch, 0
    matrix, threshold = suppression
    kept: list[NewImage] = []
    dropped = 0
    for image in batch:
        faces = []
        for face in image.faces:
            if face.template is not None:
                sims = matrix @ _unit(face.template)
                if np.sqrt(max(0.0, 2.0 - 2.0 * float(sims.max()))) <= threshold:
                    dropped += 1
                    continue
            faces.append(face)
        # A photo whose every face was suppressed is not kept at all: nothing about an
        # erased person re-enters, not even the record that a photo of them was seen.
        if image.faces and not faces:
            continue
        kept.append(dataclasses.replace(image, faces=faces))
    return kept, dropped


def _unit(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return (v / np.linalg.norm(v)).astype(np.float32)
