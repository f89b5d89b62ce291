"""The one façade the CLI, the REST API and the web UI call: `Engine.add / search / verify /
delete ...`. It owns the catalog, the pipeline and the vector index, and keeps the index a
faithful derivative of the catalog."""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
from PIL import Image as PILImage

from vultus.auth import KeyStore
from vultus.calibration import Calibration, calibration_for
from vultus.catalog import Catalog, FaceRecord, NewImage, catalog_exists, open_catalog
from vultus.catalog.models import RightsRequest, Source, Subject
from vultus.catalog.store import SUPPRESSION_AAD, ImageSummary
from vultus.clustering import Proposal, default_max_distance, discover
from vultus.config import Settings
from vultus.errors import (
    ConfigError,
    DecodeError,
    ManifestError,
    NoFaceError,
    NotFoundError,
    PurposeError,
    SourceError,
)
from vultus.files import atomic_write
from vultus.index import VectorIndex
from vultus.index.backends import open_backend
from vultus.index.base import normalise
from vultus.index.keeper import IndexKeeper
from vultus.index.tune import TuneResult
from vultus.ingest import (
    Analyser,
    BadItem,
    DryRunTotals,
    IngestSummary,
    Item,
    PendingBatches,
    Progress,
    Work,
    chunked,
    collect_items,
    drop_suppressed,
    fetch,
    item_error,
)
from vultus.manifest import Manifest
from vultus.pipeline.analyse import AnalysedFace, AnalysedImage, FacePipeline
from vultus.pipeline.decode import decode_image
from vultus.reembed import Reembedder, ReembedProgress, ReembedSummary
from vultus.rights import audit as actions
from vultus.rights.audit import AuditLog, face_hash
from vultus.rights.crypto import (
    KeyRing,
    check_canary,
    load_keyring,
    make_canary,
)
from vultus.rights.erasure import ErasurePlan
from vultus.rights.facade import RightsFacade
from vultus.search import QueryFace, SearchResult, Verification, rank
from vultus.storage import local_path, read_location
from vultus.suppression import EarlierModels, entries_by_model

log = logging.getLogger(__name__)

# Objects in a bucket downloaded at once: enough to hide the round trips, few enough to hold.
FETCH_THREADS = 8
CONFIG_KEY = "settings"
# Settings that say how this process runs, not what is processed: not audited as changes
# (and catalog_url may hold a password).
CREDENTIALS = re.compile(r"//[^/@\s]+@")
RUNTIME_SETTINGS = {"data_dir", "workers", "batch_size", "key_file", "catalog_url"}
# Audit actions of the catalog's own housekeeping (the rights actions live in rights.audit).
DELETE = "delete"
SUBJECT = "subject"
DISCOVERY = "discovery"
CANARY_KEY = "key_check"
# Where uploads are kept: a stored copy that erasure may blur, named by content.
UPLOADS_DIR = "images"
MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
}
SUFFIXES = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "GIF": ".gif",
}

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def _locked(method: F) -> F:
    """Run the method holding the engine's lock (see `Engine.lock`)."""

    @functools.wraps(method)
    def wrapper(self: Engine, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return cast(F, wrapper)


def _each_locked(items: Iterable[T], lock: threading.RLock) -> Iterator[T]:
    """Produce each item holding the lock, release it in between: in-process analysis takes
    the lock per image, so a search can run between two images of a long ingest."""
    it = iter(items)
    while True:
        with lock:
            try:
                item = next(it)
            except StopIteration:
                return
        yield item


class Engine(RightsFacade):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        new = not catalog_exists(settings.catalog_url)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # A new data directory may create the master key; an existing one must be given its own.
        self.keyring: KeyRing = load_keyring(
            settings.data_dir, key_file=settings.key_file, create=new
        )
        self.catalog: Catalog = open_catalog(settings.catalog_url, self.keyring)
        self._check_key()
        # Through lambdas: a key rotation swaps self.keyring, and the log must follow it.
        self.audit = AuditLog(
            self.catalog,
            signer=lambda data: self.keyring.sign(data),
            verifier=lambda data, sig: self.keyring.verify(data, sig),
        )
        self.keys = KeyStore(self.catalog, self.audit)
        self._pipeline: FacePipeline | None = None
        self._calibration: Calibration | None = None
        # One thread at a time in the in-process pipeline (dlib and ONNX Runtime objects are
        # not thread-safe) and in the in-memory index (a FAISS add racing a search corrupts
        # results). A server calls the engine from many threads; the CLI from one, for free.
        # Reentrant: locked methods call each other (access -> find_person -> index).
        self.lock = threading.RLock()
        self.indexes = IndexKeeper(
            self.catalog,
            open_backend(settings, lambda: self.keyring),
            spec=settings.index_factory,
            rerank=settings.index_rerank,
            model_id=lambda: self.model_id,
            dim=lambda: self.pipeline.embedder.dim,
            lock=self.lock,
        )
        # An erasure killed after its commit left file work to do: finish it before anything.
        self.finish_pending_erasure()
        self._audit_config_change()

    def _audit_config_change(self) -> None:
        """Configuration changes are audited: the settings that decide what is processed and
        how (purposes, thresholds, retention rules...) are compared with those last seen."""
        current = {
            # A server address may carry credentials (https://user:secret@host): never logged.
            k: CREDENTIALS.sub("//***@", str(v))
            for k, v in dataclasses.asdict(self.settings).items()
            if k not in RUNTIME_SETTINGS
        }
        stored = self.catalog.get_meta(CONFIG_KEY)
        previous = json.loads(stored) if stored else None
        if previous == current:
            return
        changed = {
            k: {"from": (previous or {}).get(k), "to": v}
            for k, v in current.items()
            if (previous or {}).get(k) != v
        }
        self.catalog.set_meta(CONFIG_KEY, json.dumps(current, sort_keys=True))
        self.audit.append(
            actions.CONFIG,
            details={"change": "settings" if previous else "first_open", "settings": changed},
        )

    @classmethod
    def open(cls, data_dir: Path | str | None = None, **overrides: Any) -> Engine:
        return cls(Settings.load(data_dir, **overrides))

    def close(self) -> None:
        self.indexes.close()
        self.catalog.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_key(self) -> None:
        """Refuse a wrong key before anything is read or written: a canary sealed under the
        catalog's key must open."""
        stored = self.catalog.get_meta(CANARY_KEY)
        if stored is None:
            self.catalog.set_meta(CANARY_KEY, base64.b64encode(make_canary(self.keyring)).decode())
        else:
            check_canary(self.keyring, base64.b64decode(stored))

    # -- lazily built parts ------------------------------------------------------------------
    @property
    def pipeline(self) -> FacePipeline:
        with self.lock:
            if self._pipeline is None:
                # One thread: measured here, a second ONNX Runtime thread makes a single face
                # twice as slow (6.9 -> 14.8 ms), and a server runs requests side by side anyway.
                self._pipeline = FacePipeline(self.settings, embed_threads=1)
            return self._pipeline

    @property
    def model_id(self) -> str:
        return self.catalog.get_meta("model_id") or self.pipeline.model_id

    @property
    def calibration(self) -> Calibration:
        if self._calibration is None:
            self._calibration = calibration_for(self.model_id, self.settings.data_dir)
        return self._calibration

    @property
    def index(self) -> VectorIndex:
        return self.indexes.index

    # -- sources -----------------------------------------------------------------------------
    def add_source(self, name: str, *, actor: str | None = None, **fields: Any) -> Source:
        source = self.catalog.add_source(name, **fields)
        self.audit.append(
            actions.CONFIG,
            actor=actor,
            details={
                "change": "source_added",
                "source": name,
                **{k: v for k, v in fields.items() if k != "notes"},
            },
        )
        return source

    def sources(self) -> list[tuple[Source, int, int]]:
        return self.catalog.list_sources()

    # -- ingest ------------------------------------------------------------------------------
    def add(
        self,
        paths: Sequence[Path | str],
        *,
        source: str,
        dry_run: bool = False,
        on_progress: Callable[[Progress], None] | None = None,
        consent: int | None = None,
        actor: str | None = None,
    ) -> IngestSummary:
        """Ingest files, folders and `s3://bucket/prefix/` listings under a named source.
        Idempotent and resumable. Faces of people on the suppression list are dropped before
        anything is written.

        Safe beside searches in other threads: analysis runs in worker processes (or, with one
        worker, in this process one image at a time under the lock), and the lock is held only
        for each batch's catalog and index writes."""
        src = self.catalog.get_source(source)
        if consent is not None:
            self.consent_source_check(consent, source)
        items, total = collect_items(
            paths, source=source, consent=consent, endpoint_url=self.settings.s3_endpoint_url
        )
        return self._ingest(
            items, [src], total=total, dry_run=dry_run, on_progress=on_progress, actor=actor
        )[0]

    def add_manifest(
        self,
        manifest: Path | str,
        *,
        source: str | None = None,
        dry_run: bool = False,
        on_progress: Callable[[Progress], None] | None = None,
        consent: int | None = None,
        actor: str | None = None,
    ) -> list[IngestSummary]:
        """Ingest the images a manifest lists (see `vultus.manifest`), each under its row's
        source (`source` and `consent` fill empty cells): one ingest run, and one summary, per
        source. The whole manifest is checked first: one that cannot be read, or that names
        an unregistered source, is refused before any work. Bad rows are recorded as errors
        with their line numbers; the other rows go on."""
        reader = Manifest(manifest, default_source=source, default_consent=consent)
        scan = reader.scan()
        names = sorted(scan.sources | ({source} if source else set()))
        if not names:
            raise ManifestError(f"{reader.path}: no row of it could be read")
        sources, unknown = [], []
        for name in names:
            try:
                sources.append(self.catalog.get_source(name))
            except SourceError:
                unknown.append(name)
        if unknown:
            raise SourceError(
                f"{reader.path} names source(s) not registered: {', '.join(unknown)}. Register "
                "them first with `vultus sources add NAME --basis ... --purpose ...`",
                code="source_unknown",
            )
        for name, consent_id in sorted(scan.consents):
            self.consent_source_check(consent_id, name)
        if source:  # errors that name no source are recorded in the default source's run
            sources.sort(key=lambda s: s.name != source)
        return self._ingest(
            iter(reader),
            sources,
            total=scan.rows,
            dry_run=dry_run,
            on_progress=on_progress,
            actor=actor,
            origin=str(reader.path),
        )

    def _ingest(
        self,
        items: Iterable[Item | BadItem],
        sources: list[Source],
        *,
        total: int | None,
        dry_run: bool,
        on_progress: Callable[[Progress], None] | None,
        actor: str | None,
        origin: str | None = None,
    ) -> list[IngestSummary]:
        """The one ingest loop: one run per source; items hashed and checked against the
        catalog in chunks before any work; new ones analysed; each batch written per source
        (and consent) in one transaction. Errors that name no source go to the first's run."""
        suppression = self._load_suppression()
        earlier = self._earlier_suppression()
        progress = Progress(files_total=total)
        if not dry_run:
            self.catalog.check_model(self.pipeline.model_id)
            self.index  # noqa: B018 - open (and reconcile) the index before writing to it
        by_name = {s.name: s for s in sources}
        runs = {s.name: None if dry_run else self.catalog.start_run(s.id) for s in sources}
        totals = {s.name: DryRunTotals() for s in sources}
        seen = dict.fromkeys(by_name, 0)
        pending = PendingBatches()
        # Worker processes cost seconds to start: not worth it for one file (an upload).
        one_file = total is not None and total <= 1
        settings = dataclasses.replace(self.settings, workers=1) if one_file else self.settings

        def flush() -> None:
            for (name, consent), group in pending.take():
                self._flush(
                    runs[name],
                    by_name[name],
                    group.images,
                    group.errors,
                    group.duplicates,
                    totals=totals[name],
                    suppression=suppression,
                    earlier=earlier,
                    consent=consent,
                )

        def report() -> None:
            if on_progress:
                on_progress(progress)

        try:
            with (
                Analyser(settings, lambda: self.pipeline) as analyser,
                ThreadPoolExecutor(FETCH_THREADS) as fetcher,
            ):
                for chunk in chunked(items):
                    good: list[Item] = []
                    for item in chunk:
                        name = item.source if item.source in by_name else sources[0].name
                        seen[name] += 1
                        if isinstance(item, BadItem):
                            progress.files_done += 1
                            pending.group(name, None).errors.append(item_error(item, origin))
                        else:
                            good.append(item)
                    fetched = fetch(good, pool=fetcher, endpoint_url=self.settings.s3_endpoint_url)
                    known = self.catalog.known_hashes(sha for _, sha, _, _ in fetched if sha)
                    todo: list[tuple[Item, Work]] = []
                    for item, sha, data, exc in fetched:
                        group = pending.group(item.source, item.consent)
                        if exc is not None:
                            progress.files_done += 1
                            failure = (item.location, exc.code, exc.message)
                            group.errors.append(item_error(item, origin, failure))
                        elif sha is not None and sha in known:
                            progress.files_done += 1
                            group.duplicates += 1
                        else:
                            todo.append((item, Work(item.location, data)))
                    results = analyser.map([work for _, work in todo])
                    if settings.workers <= 1:
                        results = _each_locked(results, self.lock)
                    for (item, _), (_, image, error) in zip(todo, results, strict=True):
                        progress.files_done += 1
                        group = pending.group(item.source, item.consent)
                        if error is not None:
                            group.errors.append(item_error(item, origin, error))
                        elif image is not None:
                            group.images.append(image)
                            progress.faces_indexed += sum(
                                f.template is not None for f in image.faces
                            )
                            progress.images_added += 1
                        if pending.images >= self.settings.batch_size:
                            flush()
                        report()
                    flush()
                    report()
        except BaseException:
            if not dry_run:
                for run_id in runs.values():
                    if run_id is not None:
                        self.catalog.finish_run(run_id, status="interrupted")
                self.save_index()
            raise
        if dry_run:
            return [totals[s.name].summary(s.name, seen[s.name], progress.elapsed) for s in sources]
        for run_id in runs.values():
            if run_id is not None:
                self.catalog.finish_run(run_id)
        with self.lock:
            self.indexes.maybe_upgrade()
            self.save_index()
        return [
            self._run_summary(runs[s.name], s, seen[s.name], progress.elapsed, actor)
            for s in sources
        ]

    def _run_summary(
        self, run_id: int | None, src: Source, files: int, seconds: float, actor: str | None
    ) -> IngestSummary:
        """An ingest run's summary, from the catalog's counters; audited."""
        assert run_id is not None
        run, errs = self.catalog.get_run(run_id)
        self.audit.append(
            actions.INGEST,
            actor=actor,
            details={
                "run": run_id,
                "source": src.name,
                "images_added": run.images_added,
                "faces_indexed": run.faces_indexed,
                "faces_suppressed": run.faces_suppressed,
                "errors": run.errors,
            },
        )
        return IngestSummary(
            run_id=run_id,
            source=src.name,
            files_seen=files,
            images_added=run.images_added,
            images_duplicate=run.images_duplicate,
            images_no_face=run.images_no_face,
            faces_indexed=run.faces_indexed,
            faces_skipped=run.faces_skipped,
            faces_suppressed=run.faces_suppressed,
            skip_reasons=self.catalog.skip_reasons(run_id),
            errors=[(e.path, e.code, e.message) for e in errs],
            seconds=seconds,
        )

    @_locked
    def _flush(
        self,
        run_id: int | None,
        source: Source,
        batch: list[NewImage],
        errors: list[tuple[str, str, str]],
        duplicates: int,
        *,
        totals: DryRunTotals,
        suppression: tuple[npt.NDArray[np.float32], float] | None,
        earlier: EarlierModels,
        consent: int | None,
    ) -> None:
        batch, suppressed = drop_suppressed(batch, suppression)
        batch, more = earlier.drop(batch)
        suppressed += more
        if run_id is None:
            totals.add(batch, errors, duplicates, suppressed)
            return
        if not (batch or errors or duplicates or suppressed):
            return
        added = self.catalog.write_batch(
            run_id,
            source,
            batch,
            duplicates=duplicates,
            suppressed=suppressed,
            errors=errors,
            consent_id=consent,
        )
        if added:
            ids = np.array([fid for fid, _ in added], dtype=np.int64)
            self.index.add(ids, normalise(np.stack([t for _, t in added])))

    def _load_suppression(self) -> tuple[npt.NDArray[np.float32], float] | None:
        """The suppression list, decrypted into memory for one ingest run, with the distance
        under which a new face counts as one of those people."""
        blobs = entries_by_model(self.catalog).get(self.model_id, [])
        if not blobs:
            return None
        matrix = normalise(
            np.stack([self.catalog.open_template(b, SUPPRESSION_AAD) for b in blobs])
        )
        # Per new face, the chance of wrongly refusing a stranger stays at suppression_fmr
        # however long the list grows.
        threshold = self.calibration.threshold_for(
            self.settings.suppression_fmr, gallery_size=len(blobs)
        )
        return matrix, float(threshold)

    def _earlier_suppression(self) -> EarlierModels:
        """Suppression entries of models used before a `reembed`: see vultus.suppression."""
        return EarlierModels(
            self.catalog,
            self.model_id,
            pipeline_for=lambda model: FacePipeline(
                dataclasses.replace(self.settings, model=model)
            ),
            calibration_for=lambda model_id: calibration_for(model_id, self.settings.data_dir),
            fmr=self.settings.suppression_fmr,
            endpoint_url=self.settings.s3_endpoint_url,
        )

    def _check_query_model(self) -> None:
        """A query photo must be embedded by the catalog's model: another model's template,
        compared with the index or the catalog's calibration, would mean nothing."""
        if self.catalog.get_meta("model_id") is not None:
            self.catalog.check_model(self.pipeline.model_id)

    # -- migrating to another face model ----------------------------------------------------
    def reembed(
        self,
        model: str,
        *,
        on_progress: Callable[[ReembedProgress], None] | None = None,
        actor: str | None = None,
    ) -> ReembedSummary:
        """Migrate the catalog to another face model (see vultus.reembed): resumable, and
        searches use the old model until the swap; then the index is rebuilt for the new one."""
        started = time.monotonic()
        worker = Reembedder(
            self.catalog, self.settings, model, current_model_id=self.model_id, lock=self.lock
        )
        worker.stage(on_progress)
        summary = worker.swap(started)
        with self.lock:
            self.settings = dataclasses.replace(self.settings, model=model)
            self._pipeline = worker.pipeline
            self._calibration = None
            self.indexes.rebuild()
        self.audit.append(
            "reembed", actor=actor, details={"model": model, **dataclasses.asdict(summary)}
        )
        return summary

    # -- the vector index, derived from the catalog -----------------------------------------
    @_locked
    def rebuild_index(self, factory: str | None = None) -> VectorIndex:
        """Recreate the index from the catalog's templates, with `factory` or the setting."""
        return self.indexes.rebuild(factory)

    @_locked
    def tune_index(
        self, target_recall: float = 0.95, *, sample: int = 1000, actor: str | None = None
    ) -> TuneResult:
        """Pick nprobe/efSearch for `target_recall` (recall@10 against exact search on a sample
        of catalog templates); the choice is stored in the index and audited."""
        result = self.indexes.tune(target_recall, sample)
        self.audit.append(
            actions.CONFIG,
            actor=actor,
            details={"change": "index_tune", **dataclasses.asdict(result)},
        )
        return result

    @_locked
    def compact_index(self) -> VectorIndex:
        """Rebuild the index without the entries of erased faces (HNSW's tombstones)."""
        return self.indexes.compact()

    @_locked
    def save_index(self) -> None:
        self.indexes.save()

    # -- search and verify -------------------------------------------------------------------
    @_locked
    def analyse(self, photo: Path | bytes) -> AnalysedImage:
        return self.pipeline.analyse(photo)

    def check_purpose(self, purpose: str | None) -> str:
        """Every search states a purpose from the configured list (purpose limitation)."""
        allowed = ", ".join(repr(p) for p in self.settings.purposes)
        if not purpose or not purpose.strip():
            raise PurposeError(f"a search must state its purpose, one of: {allowed}")
        if purpose not in self.settings.purposes:
            raise PurposeError(
                f"{purpose!r} is not a configured purpose; use one of: {allowed} "
                "(the list is the `purposes` setting)",
                code="purpose_unknown",
            )
        return purpose

    @_locked
    def search(
        self,
        photo: Path | bytes,
        *,
        purpose: str,
        case_ref: str | None = None,
        top_k: int = 10,
        face: int = 1,
        fmr: float | None = None,
        margin: float | None = None,
        actor: str | None = None,
    ) -> SearchResult:
        """Search with one face of a photo: by default the largest (faces are numbered from 1,
        largest first). Refused without a purpose; written to the audit log."""
        self.check_purpose(purpose)
        self._check_query_model()
        analysed = self.pipeline.analyse(photo)
        chosen = _pick_face(analysed, face, photo)
        assert chosen.template is not None
        result = self._search(chosen.template, top_k=top_k, fmr=fmr, margin=margin)
        faces = [_query_face(i, f) for i, f in enumerate(analysed.faces, start=1)]
        result.query = faces[face - 1]
        result.faces_seen = len(faces)
        result.other_faces = [f for f in faces if f.number != face]
        self._audit_search(result, chosen.template, "photo", purpose, case_ref, actor)
        return result

    @_locked
    def search_face(
        self,
        face_id: int,
        *,
        purpose: str,
        case_ref: str | None = None,
        top_k: int = 10,
        fmr: float | None = None,
        margin: float | None = None,
        actor: str | None = None,
    ) -> SearchResult:
        """Where else does the person of this catalogued face appear?"""
        self.check_purpose(purpose)
        template = self.catalog.templates_of([face_id]).get(face_id)
        if template is None:
            raise NotFoundError(f"no indexed face with id {face_id}")
        result = self._search(template, top_k=top_k, fmr=fmr, margin=margin, exclude={face_id})
        self._audit_search(result, template, f"face:{face_id}", purpose, case_ref, actor)
        return result

    @_locked
    def search_subject(
        self,
        name: str,
        *,
        purpose: str,
        case_ref: str | None = None,
        top_k: int = 10,
        fmr: float | None = None,
        margin: float | None = None,
        actor: str | None = None,
    ) -> SearchResult:
        """Search with the fused template of all the faces linked to a subject."""
        self.check_purpose(purpose)
        face_ids = self.catalog.subject_face_ids(name)
        if not face_ids:
            raise NotFoundError(f"subject {name!r} has no indexed faces linked to it")
        templates = normalise(np.stack(list(self.catalog.templates_of(face_ids).values())))
        fused = templates.mean(axis=0)
        result = self._search(fused, top_k=top_k, fmr=fmr, margin=margin)
        self._audit_search(result, fused, f"subject:{name}", purpose, case_ref, actor)
        return result

    def _search(
        self,
        template: npt.NDArray[np.float32],
        *,
        top_k: int = 10,
        fmr: float | None = None,
        margin: float | None = None,
        exclude: set[int] | None = None,
    ) -> SearchResult:
        exclude = exclude or set()
        query = normalise(np.asarray(template, dtype=np.float32)[None, :])
        index = self.index
        scores, ids = index.search(query, top_k + len(exclude))
        records = self.catalog.face_records([i for i in ids[0].tolist() if i >= 0])
        try:
            calibration: Calibration | None = self.calibration
            uncalibrated = None
        except ConfigError as exc:
            if exc.code != "uncalibrated":
                raise
            calibration, uncalibrated = None, exc.message  # rank all the same: no decision
        return rank(
            scores[0],
            ids[0],
            records,
            calibration,
            uncalibrated=uncalibrated,
            gallery_size=len(index),
            fmr_target=fmr or self.settings.search_fmr,
            exclude=exclude,
            top_k=top_k,
            margin=self.settings.search_margin if margin is None else margin,
        )

    def _audit_search(
        self,
        result: SearchResult,
        template: npt.NDArray[np.float32],
        query: str,
        purpose: str,
        case_ref: str | None,
        actor: str | None,
    ) -> None:
        self.audit.append(
            actions.SEARCH,
            actor=actor,
            purpose=purpose,
            case_ref=case_ref,
            query_hash=face_hash(template),
            result_ids=[m.face_id for m in result.matches],
            details={"query": query, "found": result.found, "gallery_size": result.gallery_size},
        )

    @_locked
    def verify(
        self,
        a: Path | bytes,
        b: Path | bytes,
        *,
        purpose: str,
        case_ref: str | None = None,
        fmr: float = 1e-3,
        actor: str | None = None,
    ) -> Verification:
        """1:1: are the largest faces of two photos the same person, at a false-match rate?"""
        self.check_purpose(purpose)
        self._check_query_model()
        ta = _pick_face(self.pipeline.analyse(a), 1, a).template
        tb = _pick_face(self.pipeline.analyse(b), 1, b).template
        assert ta is not None and tb is not None
        result = self.compare(ta, tb, fmr=fmr)
        self.audit.append(
            "verify",
            actor=actor,
            purpose=purpose,
            case_ref=case_ref,
            query_hash=face_hash(ta),
            details={"other_hash": face_hash(tb), "same_person": result.same_person},
        )
        return result

    def compare(
        self, a: npt.NDArray[np.float32], b: npt.NDArray[np.float32], *, fmr: float
    ) -> Verification:
        qa, qb = normalise(np.stack([a, b]))
        similarity = float(np.dot(qa, qb))
        dist = float(np.sqrt(max(0.0, 2.0 - 2.0 * similarity)))
        threshold = self.calibration.threshold_for(fmr, gallery_size=1)
        return Verification(
            distance=round(dist, 4),
            similarity=round(similarity, 4),
            fmr=float(self.calibration.fmr_at(dist)),
            fmr_target=fmr,
            threshold=float(threshold),
            same_person=dist <= threshold,
        )

    # -- faces, images, subjects -------------------------------------------------------------
    def face(self, face_id: int) -> FaceRecord:
        record = self.catalog.face_records([face_id]).get(face_id)
        if record is None:
            raise NotFoundError(f"no face with id {face_id}")
        return record

    def view_face(self, face_id: int, *, actor: str | None = None) -> FaceRecord:
        """A face's record, shown to someone: audited as a view."""
        record = self.face(face_id)
        self.audit.append(actions.VIEW, actor=actor, result_ids=[face_id])
        return record

    @_locked
    def delete_faces(self, face_ids: Sequence[int], *, actor: str | None = None) -> int:
        """Remove faces from the catalog, then from the index. If the process dies in between,
        the next open sees the index disagree with the catalog and removes them there too."""
        ids = [int(i) for i in face_ids]
        deleted = self.catalog.delete_faces(ids)
        self.index.remove(np.array(ids, dtype=np.int64))
        self.save_index()
        self.audit.append(DELETE, actor=actor, result_ids=ids, details={"faces": deleted})
        return deleted

    @_locked
    def delete_image(self, image_id: int, *, actor: str | None = None) -> int:
        ids = self.catalog.delete_image(image_id)
        if ids:
            self.index.remove(np.array(ids, dtype=np.int64))
            self.save_index()
        self.audit.append(DELETE, actor=actor, result_ids=ids, details={"image": image_id})
        return len(ids)

    def create_subject(
        self, name: str, face_ids: Sequence[int] = (), *, actor: str | None = None
    ) -> Subject:
        # Check the faces first: a refused request must not leave an empty subject behind.
        missing = set(face_ids) - set(self.catalog.face_records(list(face_ids)))
        if missing:
            raise NotFoundError(f"no face with id {', '.join(map(str, sorted(missing)))}")
        subject = self.catalog.create_subject(name)
        if face_ids:
            self.catalog.link_faces(name, face_ids)
        self._audit_subject("created", actor, subject=name, faces=list(face_ids))
        return subject

    def link_faces(self, subject: str, face_ids: Sequence[int], *, actor: str | None = None) -> int:
        n = self.catalog.link_faces(subject, face_ids)
        self._audit_subject("linked", actor, subject=subject, faces=list(face_ids))
        return n

    @_locked
    def discover_people(
        self, *, max_distance: float | None = None, min_faces: int = 3, actor: str | None = None
    ) -> list[Proposal]:
        """Propose people among the indexed faces not yet tied to a subject, for a person to
        review. Nothing is linked: a wrong merge would attach a name to a stranger's face."""
        linked = self.catalog.linked_face_ids()
        chunks = [
            (ids[keep], templates[keep])
            for ids, templates in self.catalog.iter_templates()
            if (keep := ~np.isin(ids, list(linked))).any()
        ]
        if not chunks:
            return []
        ids = np.concatenate([i for i, _ in chunks])
        templates = np.concatenate([t for _, t in chunks])
        distance = (
            max_distance
            if max_distance is not None
            else default_max_distance(len(ids), self.calibration)
        )
        proposals = discover(ids, templates, max_distance=distance, min_faces=min_faces)
        self.audit.append(
            DISCOVERY,
            actor=actor,
            details={
                "max_distance": distance,
                "min_faces": min_faces,
                "faces": len(ids),
                "proposals": len(proposals),
            },
        )
        return proposals

    def _audit_subject(self, event: str, actor: str | None, **details: Any) -> None:
        # Naming a person, or tying a face to a name, is processing a DPO must be able to trace.
        self.audit.append(SUBJECT, actor=actor, details={"event": event, **details})

    def subjects(self) -> list[tuple[Subject, int]]:
        return self.catalog.list_subjects()

    def subject(self, name: str) -> Subject:
        return self.catalog.get_subject(name)

    def rename_subject(self, old: str, new: str, *, actor: str | None = None) -> Subject:
        subject = self.catalog.rename_subject(old, new)
        self._audit_subject("renamed", actor, subject=new, previous=old)
        return subject

    def merge_subjects(self, into: str, other: str, *, actor: str | None = None) -> int:
        """Move every face of `other` to `into` and remove `other`; returns faces moved."""
        moved = self.catalog.merge_subjects(into, other)
        self._audit_subject("merged", actor, subject=into, merged=other, faces=moved)
        return moved

    def unlink_faces(self, face_ids: Sequence[int], *, actor: str | None = None) -> int:
        n = self.catalog.unlink_faces(face_ids)
        self._audit_subject("unlinked", actor, faces=list(face_ids))
        return n

    def subject_faces(self, name: str) -> list[FaceRecord]:
        return self.catalog.subject_faces(name)

    def list_faces(
        self,
        *,
        image_id: int | None = None,
        subject: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> list[FaceRecord]:
        return self.catalog.list_faces(
            image_id=image_id, subject=subject, offset=offset, limit=limit
        )

    def list_images(
        self, *, source: str | None = None, offset: int = 0, limit: int = 50
    ) -> list[ImageSummary]:
        return self.catalog.list_images(source=source, offset=offset, limit=limit)

    def image(self, image_id: int) -> tuple[ImageSummary, list[FaceRecord]]:
        return self.catalog.image_summary(image_id), self.catalog.faces_of_image(image_id)

    def image_file(self, image_id: int, *, actor: str | None = None) -> tuple[Path, str]:
        """The image's local file and media type. Showing a photo discloses the faces in it,
        so it is audited as a view naming them (an access package lists who viewed). Images
        in a bucket have no local file: show those, and any other, with `image_data`."""
        summary, faces = self.image(image_id)
        path = local_path(summary.path)
        if path is None:
            raise SourceError(
                f"image {image_id} lies in object storage at {summary.path}, not in a local file",
                code="not_a_local_file",
            )
        if not path.is_file():
            raise NotFoundError(
                f"the file of image {image_id} is no longer at {path}", code="file_missing"
            )
        self._audit_view(image_id, faces, actor)
        return path, MEDIA_TYPES.get(summary.format, "application/octet-stream")

    def image_data(self, image_id: int, *, actor: str | None = None) -> tuple[bytes, str]:
        """The image's bytes and media type, wherever it lies (a local file or an object in a
        bucket), to show it; audited as a view like `image_file`."""
        summary, faces = self.image(image_id)
        try:
            data = read_location(summary.path, endpoint_url=self.settings.s3_endpoint_url)
        except SourceError as exc:
            if exc.code in ("file_not_found", "object_not_found"):
                raise NotFoundError(
                    f"the file of image {image_id} is no longer at {summary.path}",
                    code="file_missing",
                ) from None
            raise
        self._audit_view(image_id, faces, actor)
        return data, MEDIA_TYPES.get(summary.format, "application/octet-stream")

    def _audit_view(self, image_id: int, faces: list[FaceRecord], actor: str | None) -> None:
        self.audit.append(
            actions.VIEW,
            actor=actor,
            result_ids=[f.face_id for f in faces],
            details={"image": image_id},
        )

    def thumbnail(self, image_id: int, *, max_side: int = 256, actor: str | None = None) -> bytes:
        """A JPEG no larger than `max_side`, upright; audited as a view like `image_file`."""
        data, _ = self.image_data(image_id, actor=actor)
        return _thumbnail_jpeg(data, max_side, max_pixels=self.settings.max_pixels)

    def upload(
        self, data: bytes, filename: str, *, source: str, actor: str | None = None
    ) -> tuple[IngestSummary, int | None]:
        """Keep an uploaded photo as `data_dir/images/<sha256><ext>` (a stored copy, which an
        erasure blurs) and ingest it. The decoder checks it first, so a bad upload writes
        nothing. Returns the summary and the image's id (None when every face in it was
        suppressed)."""
        self.catalog.get_source(source)
        try:
            decoded = decode_image(data, max_pixels=self.settings.max_pixels)
        except DecodeError as exc:
            raise DecodeError(f"{filename}: {exc.message}", code=exc.code) from None
        folder = self.settings.data_dir / UPLOADS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{decoded.sha256}{SUFFIXES.get(decoded.format, '.img')}"
        written = not path.exists()
        if written:
            atomic_write(path, data)
        try:
            summary = self.add([path], source=source, actor=actor)
        except BaseException:
            if written:
                path.unlink(missing_ok=True)
            raise
        image = self.catalog.image_by_sha256(decoded.sha256)
        if written and (image is None or Path(image.path) != path):
            path.unlink(missing_ok=True)  # held already under another path, or suppressed
        return summary, image.id if image is not None else None

    def register(
        self, path: Path | str, *, source: str, actor: str | None = None
    ) -> tuple[IngestSummary, int | None]:
        """Ingest one photo where it lies on this machine, checked by the decoder first.
        Returns the summary and the image's id (None when every face was suppressed)."""
        self.catalog.get_source(source)
        file = Path(path).expanduser()
        if file.is_dir():
            raise SourceError(
                f"{file} is a folder: ingest folders with `vultus add` or an ingest job",
                code="path_is_folder",
            )
        decoded = decode_image(file, max_pixels=self.settings.max_pixels)
        summary = self.add([file], source=source, actor=actor)
        image = self.catalog.image_by_sha256(decoded.sha256)
        return summary, image.id if image is not None else None

    def request(self, ref: str) -> RightsRequest:
        for request in self.requests(open_only=False):
            if request.ref == ref:
                return request
        raise NotFoundError(f"no request {ref}")

    # The rights methods run the pipeline and change the index too: the same lock guards them.
    @_locked
    def find_person(self, selfie: Path | bytes, *, fmr: float | None = None) -> ErasurePlan:
        self._check_query_model()
        return RightsFacade.find_person(self, selfie, fmr=fmr)

    access = _locked(RightsFacade.access)
    erase = _locked(RightsFacade.erase)
    restrict = _locked(RightsFacade.restrict)
    object_to_processing = _locked(RightsFacade.object_to_processing)
    retention_run = _locked(RightsFacade.retention_run)
    withdraw_consent = _locked(RightsFacade.withdraw_consent)
    rotate_keys = _locked(RightsFacade.rotate_keys)

    @_locked
    def status(self) -> dict[str, Any]:
        counts: dict[str, Any] = dict(self.catalog.counts())
        counts["model"] = self.catalog.get_meta("model_id")
        counts["data_dir"] = str(self.settings.data_dir)
        if counts["model"]:
            index = self.index
            counts["index_factory"] = index.factory
            counts["index_size"] = len(index)
        return counts


def _thumbnail_jpeg(photo: Path | bytes, max_side: int, *, max_pixels: int) -> bytes:
    image = PILImage.fromarray(decode_image(photo, max_pixels=max_pixels).rgb)
    image.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _pick_face(analysed: AnalysedImage, number: int, photo: Path | bytes) -> AnalysedFace:
    name = str(photo) if isinstance(photo, Path | str) else "the uploaded photo"
    if not analysed.faces:
        raise NoFaceError(f"no face found in {name}")
    if not 1 <= number <= len(analysed.faces):
        raise NoFaceError(
            f"{name} has {len(analysed.faces)} face(s); face {number} does not exist",
            code="face_out_of_range",
        )
    chosen = analysed.faces[number - 1]
    if chosen.template is None:
        raise NoFaceError(
            f"face {number} in {name} cannot be used: {chosen.skip_reason}", code="face_unusable"
        )
    return chosen


def _query_face(number: int, face: AnalysedFace) -> QueryFace:
    return QueryFace(
        number=number,
        box=(face.box.left, face.box.top, face.box.right, face.box.bottom),
        det_score=face.quality.det_score,
        box_size=face.quality.box_size,
    )
