"""Ingest: walk the named paths, skip content already held, analyse new images in worker
processes, and write each batch in one transaction.

Resumable by construction: an image's rows are committed together with its faces, files are
processed in a stable order, and content already in the catalog is skipped by hash before any
work is done. A run killed at any moment is finished by running it again.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import multiprocessing as mp
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from vultus.config import Settings
from vultus.errors import SourceError, VultusError
from vultus.ingest.roots import inside
from vultus.pipeline.analyse import AnalysedFace, AnalysedImage, FacePipeline
from vultus.pipeline.decode import SUPPORTED_SUFFIXES
from vultus.pipeline.footage import VideoProgress
from vultus.pipeline.video import VIDEO_SUFFIXES
from vultus.storage import is_s3, is_uri, list_objects, local_path, read_location

if TYPE_CHECKING:  # the catalog loads SQLAlchemy (half a second): workers never need it
    from vultus.catalog import NewFace, NewImage
    from vultus.catalog.records import NewTrack

# What a folder walk or a bucket listing picks up: photos and videos.
INGEST_SUFFIXES = SUPPORTED_SUFFIXES | VIDEO_SUFFIXES

# Per-process pipeline for pool workers: dlib and ONNX Runtime objects cannot cross processes.
_worker_pipeline: FacePipeline | None = None


@dataclass
class Progress:
    files_total: int | None  # None while a bucket listing is still being read
    files_done: int = 0
    images_added: int = 0
    faces_indexed: int = 0
    started: float = field(default_factory=time.monotonic)
    # The video being analysed, and how far: one file can take hours.
    video: VideoProgress | None = None

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
    # The photos in which faces were refused as suppressed (erased people): named, so that
    # an operator can look at them and check a wrong refusal.
    suppressed_photos: list[str] = field(default_factory=list)
    # Animated images and multi-page files, (location, frames): only their first frame was
    # read. Named, so that an operator who needs the others can split the file and add them.
    multi_frame: list[tuple[str, int]] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.files_seen / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Item:
    """One image to ingest: where it lies (an absolute local path or an `s3://` URI, recorded
    as the image's location), the source it comes under, and its manifest line if any."""

    location: str
    source: str
    consent: int | None = None
    line: int | None = None


@dataclass(frozen=True)
class BadItem:
    """A named image that cannot be ingested, found before any work: recorded as an error."""

    location: str
    source: str | None
    code: str
    message: str
    line: int | None = None


@dataclass(frozen=True)
class Work:
    """What a worker analyses: a local file it reads itself, or bytes already fetched."""

    location: str
    data: bytes | None = None


def collect_items(
    paths: Sequence[Path | str],
    *,
    source: str,
    consent: int | None = None,
    endpoint_url: str | None = None,
    roots: Sequence[Path] | None = None,
) -> tuple[Iterator[Item | BadItem], int | None]:
    """The images named by files, folders, `file://` URIs and `s3://` prefixes, and how many
    there are (None when a bucket is listed: its listing is streamed, page by page)."""
    local: list[Path | str] = []
    prefixes: list[str] = []
    bad: list[BadItem] = []
    for raw in paths:
        text = str(raw)
        if is_s3(text):
            prefixes.append(text)
        elif is_uri(text):
            try:
                local.append(local_path(text) or text)
            except SourceError as exc:
                bad.append(BadItem(text, source, exc.code, exc.message))
        else:
            local.append(raw)
    files, errors = collect_files(local, roots=roots)
    bad.extend(BadItem(path, source, code, message) for path, code, message in errors)

    def stream() -> Iterator[Item | BadItem]:
        yield from bad
        yield from (Item(str(f), source, consent) for f in files)
        for prefix in prefixes:
            try:
                for uri in list_objects(
                    prefix, suffixes=INGEST_SUFFIXES, endpoint_url=endpoint_url
                ):
                    yield Item(uri, source, consent)
            except SourceError as exc:
                yield BadItem(prefix, source, exc.code, exc.message)

    return stream(), None if prefixes else len(files) + len(bad)


# Items hashed and checked against the catalog together, before any analysis work. Fewer for
# objects in a bucket: their bytes are held from the fetch to the analysis.
DEDUPE_CHUNK = 256
REMOTE_CHUNK = 32


def chunked(items: Iterable[Item | BadItem]) -> Iterator[list[Item | BadItem]]:
    chunk: list[Item | BadItem] = []
    remote = 0
    for item in items:
        chunk.append(item)
        remote += isinstance(item, Item) and is_s3(item.location)
        if len(chunk) >= DEDUPE_CHUNK or remote >= REMOTE_CHUNK:
            yield chunk
            chunk, remote = [], 0
    if chunk:
        yield chunk


Fetched = tuple[Item, str | None, bytes | None, SourceError | None]


def fetch(
    items: Sequence[Item], *, pool: Executor, endpoint_url: str | None = None
) -> list[Fetched]:
    """Each item's content hash, for the dedupe check before any work. Objects in a bucket are
    downloaded here, once, several at a time, and their bytes go on to the workers, which so
    need neither credentials nor a second download. Local files are only hashed: the worker
    reads them itself."""

    def one(item: Item) -> Fetched:
        if not is_s3(item.location):
            return item, file_sha256(item.location), None, None
        try:
            data = read_location(item.location, endpoint_url=endpoint_url)
        except SourceError as exc:
            return item, None, None, exc
        return item, hashlib.sha256(data).hexdigest(), data, None

    # Local files inline: a thread per small file costs more than hashing it.
    remote = iter(pool.map(one, [i for i in items if is_s3(i.location)]))
    return [next(remote) if is_s3(i.location) else one(i) for i in items]


def item_error(
    item: Item | BadItem, origin: str | None, error: tuple[str, str, str] | None = None
) -> tuple[str, str, str]:
    """The (location, code, message) recorded for an item that failed; a manifest's rows are
    named by their line, so that a person can find and fix them."""
    if error is None:
        assert isinstance(item, BadItem)
        error = (item.location, item.code, item.message)
    where, code, message = error
    if item.line is None:
        return error
    return (where or f"{origin} line {item.line}", code, f"{origin} line {item.line}: {message}")


@dataclass
class Pending:
    images: list[NewImage] = field(default_factory=list)
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    duplicates: int = 0


class PendingBatches:
    """What waits to be written, per (source, consent): a manifest's rows may name several,
    and each image is written under its own."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, int | None], Pending] = {}

    def group(self, source: str, consent: int | None) -> Pending:
        return self._groups.setdefault((source, consent), Pending())

    @property
    def images(self) -> int:
        return sum(len(g.images) for g in self._groups.values())

    def take(self) -> list[tuple[tuple[str, int | None], Pending]]:
        groups, self._groups = list(self._groups.items()), {}
        return groups


def collect_files(
    paths: Sequence[Path | str], *, roots: Sequence[Path] | None = None
) -> tuple[list[Path], list[tuple[str, str, str]]]:
    """Files named directly are taken whatever their suffix (the decoder judges them); folders
    are walked recursively for image suffixes, without following links to folders. Sorted, so
    reruns process files in the same order. What is not a regular file (a FIFO, whose reading
    would wait forever for a writer; a socket, a device), a symbolic-link loop and a missing
    path are recorded as errors, with the reason, and skipped. With `roots`, so is a file
    whose link leads outside them (checked before it is opened or even looked at)."""
    candidates: list[Path] = []
    errors: list[tuple[str, str, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs.sort()
                candidates.extend(
                    Path(root) / n
                    for n in sorted(names)
                    if Path(n).suffix.lower() in INGEST_SUFFIXES
                )
        else:
            candidates.append(path)
    seen: set[Path] = set()
    unique = []
    for f in candidates:
        if roots is not None and not _resolves_inside(f, roots):
            errors.append(
                (str(f), "outside_roots", f"{f}: a link out of the ingest roots; skipped")
            )
            continue
        problem = _not_a_file(f)
        if problem is not None:
            errors.append(problem)
            continue
        resolved = f.resolve()
        if resolved not in seen:
            seen.add(resolved)
            unique.append(resolved)
    return unique, errors


def _resolves_inside(path: Path, roots: Sequence[Path]) -> bool:
    try:
        return inside(path.resolve(), roots)
    except (OSError, RuntimeError):
        return True  # a loop: _not_a_file names it


def _not_a_file(path: Path) -> tuple[str, str, str] | None:
    """(path, code, message) when `path` cannot be read as an image file, else None."""
    try:
        info = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return str(path), "symlink_loop", f"{path}: a loop of symbolic links; skipped"
        if path.is_symlink():
            return str(path), "file_not_found", f"{path}: a symbolic link to nothing; skipped"
        if isinstance(exc, FileNotFoundError | NotADirectoryError):
            return str(path), "file_not_found", f"{path}: no such file or folder"
        return str(path), "unreadable_file", f"{path}: {exc.strerror or exc}; skipped"
    if stat.S_ISREG(info.st_mode):
        return None
    kind = (
        "a FIFO (named pipe)"
        if stat.S_ISFIFO(info.st_mode)
        else "a socket"
        if stat.S_ISSOCK(info.st_mode)
        else "a device"
        if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
        else "not a regular file"
    )
    return str(path), "not_a_file", f"{path}: {kind}, not an image file; skipped"


def file_sha256(path: Path | str) -> str | None:
    digest = hashlib.sha256()
    try:
        # Non-blocking open, then a check: a FIFO put in place of a file since the folder was
        # walked must not hang the ingest waiting for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None  # the worker reports the reason when it tries to decode
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        except OSError:
            return None
    return digest.hexdigest()


def to_new_image(location: str, analysed: AnalysedImage) -> NewImage:
    from vultus.catalog import NewImage

    return NewImage(
        path=location,
        sha256=analysed.sha256,
        size_bytes=analysed.size_bytes,
        width=analysed.width,
        height=analysed.height,
        format=analysed.format,
        frames=analysed.frames,
        faces=[new_face(f, f.template, f.skip_reason) for f in analysed.faces],
    )


def new_face(
    face: AnalysedFace,
    template: npt.NDArray[np.float32] | None,
    skip_reason: str | None,
    track: NewTrack | None = None,
) -> NewFace:
    """The catalog record of an analysed face, with its template and skip reason: a photo's
    own, or, for a video track whose best frame stands for it, the track's fused ones."""
    from vultus.catalog import NewFace

    return NewFace(
        box=(face.box.left, face.box.top, face.box.right, face.box.bottom),
        landmarks=face.landmarks,
        detector=face.detector,
        det_score=face.quality.det_score,
        box_size=face.quality.box_size,
        sharpness=face.quality.sharpness,
        yaw=face.quality.yaw,
        model_id=face.model_id,
        template=template,
        skip_reason=skip_reason,
        track=track,
    )


AnalyseResult = tuple[str, "NewImage | None", tuple[str, str, str] | None]
# What a worker sends back: the pipeline's record, made a catalog record by the parent.
_Analysed = tuple[str, AnalysedImage | None, tuple[str, str, str] | None]

# Images a worker analyses together, so that their faces are embedded in one batch.
WORKER_CHUNK = 8


def _analyse(pipeline: FacePipeline, works: Sequence[Work]) -> list[_Analysed]:
    try:
        results = pipeline.analyse_many(
            [w.data if w.data is not None else Path(w.location) for w in works]
        )
    except Exception:  # one bad file must never stop a run: retry one by one to isolate it
        if len(works) > 1:
            return [r for w in works for r in _analyse(pipeline, [w])]
        where = works[0].location
        return [(where, None, (where, "internal_error", f"{where}: unexpected failure"))]
    out: list[_Analysed] = []
    for work, result in zip(works, results, strict=True):
        if isinstance(result, VultusError):
            # Fetched bytes have no name of their own: the decoder calls them "the image data".
            message = result.message.replace("the image data", work.location, 1)
            out.append((work.location, None, (work.location, result.code, message)))
        else:
            out.append((work.location, result, None))
    return out


def _to_result(analysed: _Analysed) -> AnalyseResult:
    location, image, error = analysed
    return location, None if image is None else to_new_image(location, image), error


def _init_worker(settings: Settings) -> None:
    global _worker_pipeline
    _worker_pipeline = FacePipeline(settings, embed_threads=1)


def _worker_analyse(works: list[Work]) -> list[_Analysed]:
    assert _worker_pipeline is not None
    return _analyse(_worker_pipeline, works)


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

    def map(self, works: Sequence[Work]) -> Iterator[AnalyseResult]:
        chunks = [list(works[i : i + WORKER_CHUNK]) for i in range(0, len(works), WORKER_CHUNK)]
        if self._pool is None:
            pipeline = self._pipeline()
            return (_to_result(r) for chunk in chunks for r in _analyse(pipeline, chunk))
        imap = self._pool.imap(_worker_analyse, chunks)
        return (_to_result(r) for results in imap for r in results)


class RunNotes:
    """What a run's summary names beside the catalog's counters, which do not hold names: the
    photos with faces refused as suppressed, and those of several frames (only the first
    read)."""

    def __init__(self) -> None:
        self.suppressed_photos: list[str] = []
        self.multi_frame: list[tuple[str, int]] = []

    def note(self, offered: Sequence[NewImage], kept: Sequence[NewImage], suppressed: int) -> None:
        if suppressed:
            self.suppressed_photos.extend(suppressed_locations(offered, kept))
        self.multi_frame.extend((im.path, im.frames) for im in offered if im.frames > 1)


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


def suppressed_locations(before: Sequence[NewImage], after: Sequence[NewImage]) -> list[str]:
    """The photos of `before` that lost faces to the suppression list on the way to `after`."""
    kept = {image.path: len(image.faces) for image in after}
    return [image.path for image in before if kept.get(image.path, -1) < len(image.faces)]


def _unit(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return (v / np.linalg.norm(v)).astype(np.float32)
