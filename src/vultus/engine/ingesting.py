"""Ingest: files, folders, buckets and manifests into the catalog and the index, each image
checked against the suppression list; and the migration of a catalog to another model."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete
from sqlalchemy.orm import Session

from vultus import audit as actions
from vultus.accuracy.calibration import calibration_for
from vultus.catalog import NewImage
from vultus.catalog.models import IngestRun, Meta, Source
from vultus.engine.locking import RunClaim, each_locked, locked
from vultus.engine.parts import EngineParts
from vultus.errors import (
    ConsentRequiredError,
    ManifestError,
    SourceError,
)
from vultus.ingest.batches import (
    Analyser,
    BadItem,
    IngestSummary,
    Item,
    PendingBatches,
    Progress,
    RunNotes,
    Work,
    chunked,
    collect_items,
    drop_suppressed,
    fetch,
    item_error,
)
from vultus.ingest.dry_run import count_items
from vultus.ingest.manifest import Manifest
from vultus.ingest.reembed import (
    SWAPPED_KEY,
    Reembedder,
    ReembedProgress,
    ReembedSummary,
    unaudited_swap,
)
from vultus.ingest.videos import ingest_video, is_video_work
from vultus.lawful_basis import rests_on_consent
from vultus.pipeline.analyse import FacePipeline
from vultus.pipeline.footage import VideoProgress
from vultus.pipeline.tracking import TrackRules
from vultus.rights.suppression import (
    EarlierModels,
    decrypt_list,
    entries_by_model,
    remember_model_setting,
)

log = logging.getLogger(__name__)

# Objects in a bucket downloaded at once: enough to hide the round trips, few enough to hold.
FETCH_THREADS = 8
# Suppressed photos named in an ingest's audit entry: enough to check a wrong refusal, few
# enough to keep one entry small (the summary names them all).
AUDITED_PHOTOS = 100
# Within one video, two detections are the same face at these false-match rates: lenient
# where the boxes overlap (the position already says much), strict where they do not.
VIDEO_LINK_FMR = 1e-2
VIDEO_RELINK_FMR = 1e-3


class Ingesting(EngineParts):
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
        roots: Sequence[Path] | None = None,
    ) -> IngestSummary:
        """Ingest files, folders and `s3://bucket/prefix/` listings under a named source.
        Idempotent and resumable. Faces of people on the suppression list are dropped before
        anything is written. With `roots` (a client of the server named the paths), files
        that resolve outside them are skipped with a reason (see vultus.ingest.roots).

        Safe beside searches in other threads: analysis runs in worker processes (or, with one
        worker, in this process one image at a time under the lock), and the lock is held only
        for each batch's catalog and index writes."""
        src = self.catalog.get_source(source)
        items, total = collect_items(
            paths,
            source=source,
            consent=consent,
            endpoint_url=self.settings.s3_endpoint_url,
            roots=roots,
        )
        return self._ingest(
            items,
            [src],
            consents={(source, consent)},
            total=total,
            dry_run=dry_run,
            on_progress=on_progress,
            actor=actor,
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
        """Ingest the images a manifest lists (see `vultus.ingest.manifest`), each under its row's
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
        if source:  # errors that name no source are recorded in the default source's run
            sources.sort(key=lambda s: s.name != source)
        unconsented = {
            name: (lines, scan.no_consent_count[name]) for name, lines in scan.no_consent.items()
        }
        return self._ingest(
            iter(reader),
            sources,
            consents={*scan.consents, *((name, None) for name in unconsented)},
            unconsented=unconsented,
            total=scan.rows,
            dry_run=dry_run,
            on_progress=on_progress,
            actor=actor,
            origin=str(reader.path),
        )

    def check_consent(self, source: str, consent: int | None) -> None:
        """Refuse now what an ingest under `source` with `consent` would refuse: for callers
        that queue the work (an ingest job), so that the refusal comes before the queue."""
        self._admit([self.catalog.get_source(source)], {(source, consent)})

    def _admit(
        self,
        sources: list[Source],
        consents: set[tuple[str, int | None]],
        *,
        unconsented: dict[str, tuple[list[int], int]] | None = None,
        origin: str | None = None,
    ) -> None:
        """The one rule on consent, for every way in (files, folders, buckets, manifest rows,
        uploads, jobs), checked before any work: photos under a source that rests on consent
        (Art. 6(1)(a) or Art. 9(2)(a)) enter only with the consent record they rest on, and a
        consent record only for its own source, and only while it is not withdrawn.
        `consents`: the (source, consent id or None) pairs the photos come with;
        `unconsented`: a manifest's rows without a consent, per source (lines, how many)."""
        by_name = {s.name: s for s in sources}
        for name, consent in sorted(consents, key=lambda pair: (pair[0], pair[1] or 0)):
            if consent is not None:
                self.consent_source_check(consent, name)
                continue
            src = by_name[name]
            if not rests_on_consent(src.lawful_basis, src.special_condition):
                continue
            lines, count = (unconsented or {}).get(name, ([], 0))
            what = (
                f"{origin}: {count:,} row(s) of source {name!r} name no consent record (line "
                f"{', '.join(map(str, lines))}{' ...' if count > len(lines) else ''}); fill "
                "their `consent` column or give --consent ID"
                if count
                else f"photos added under source {name!r} without a consent record; give "
                "--consent ID"
            )
            raise ConsentRequiredError(
                f"{what}. The source rests on consent ({src.lawful_basis} / "
                f"{src.special_condition}): each photo needs the consent record of the person "
                f"in it (record one with `vultus consent add {name} PERSON --notice-version V`)"
            )

    def _ingest(
        self,
        items: Iterable[Item | BadItem],
        sources: list[Source],
        *,
        consents: set[tuple[str, int | None]],
        unconsented: dict[str, tuple[list[int], int]] | None = None,
        total: int | None,
        dry_run: bool,
        on_progress: Callable[[Progress], None] | None,
        actor: str | None,
        origin: str | None = None,
    ) -> list[IngestSummary]:
        """The one ingest loop: consent checked (`_admit`) before any work; one run per
        source; items hashed and checked against the catalog in chunks before any work; new
        ones analysed; each batch written per source (and consent) in one transaction. Errors
        that name no source go to the first's run.

        Its runs are claimed by a lock file while they are open; runs that an earlier
        process left open when it died are closed and audited first."""
        self._admit(sources, consents, unconsented=unconsented, origin=origin)
        if dry_run:  # counted from files and headers: no model loaded, nothing written
            return count_items(
                items,
                [s.name for s in sources],
                known_hashes=self.catalog.known_hashes,
                max_pixels=self.settings.max_pixels,
                endpoint_url=self.settings.s3_endpoint_url,
                on_progress=on_progress,
                total=total,
                origin=origin,
            )
        claim = RunClaim(self.settings.data_dir)
        try:
            self.close_abandoned_runs()
            return self._ingest_runs(
                items,
                sources,
                total=total,
                on_progress=on_progress,
                actor=actor,
                origin=origin,
                owner=claim.token,
            )
        finally:
            claim.release()

    def close_abandoned_runs(self) -> list[int]:
        """Close, as "interrupted", the ingest runs whose process died before closing them, and
        audit what they committed. Returns their ids."""
        sqlite = self.catalog.engine.dialect.name == "sqlite"
        closed = []
        for run in self.catalog.running_runs():
            if run.owner is None:
                # From before runs had owners. On PostgreSQL it may be another machine's.
                if not sqlite:
                    continue
            elif not RunClaim.abandoned(self.settings.data_dir, run.owner):
                continue
            if self._close_run(run.id, "interrupted", None, abandoned=True) is not None:
                closed.append(run.id)
            if run.owner is not None:
                RunClaim.forget(self.settings.data_dir, run.owner)
        if closed:
            log.warning("closed ingest runs left open by a stopped process: %s", closed)
        return closed

    def _close_run(
        self,
        run_id: int,
        status: str,
        actor: str | None,
        *,
        abandoned: bool = False,
        suppressed_photos: Sequence[str] = (),
        multi_frame: Sequence[tuple[str, int]] = (),
    ) -> IngestRun | None:
        """Close a run and audit what it committed, in one transaction, with the photos in
        which faces were refused as suppressed (the first AUDITED_PHOTOS of them)."""

        def audit(session: Session, run: IngestRun) -> None:
            source = session.get(Source, run.source_id)
            details: dict[str, Any] = {
                "run": run.id,
                "source": source.name if source is not None else None,
                "images_added": run.images_added,
                "faces_indexed": run.faces_indexed,
                "faces_suppressed": run.faces_suppressed,
                "errors": run.errors,
            }
            if suppressed_photos:
                details["suppressed_photos"] = list(suppressed_photos[:AUDITED_PHOTOS])
                details["suppressed_photos_total"] = len(suppressed_photos)
            if multi_frame:  # only their first frame is in the catalog
                details["multi_frame_photos"] = [p for p, _ in multi_frame[:AUDITED_PHOTOS]]
                details["multi_frame_photos_total"] = len(multi_frame)
            if status != "finished":
                details["status"] = status
            if abandoned:
                details["closed_by_a_later_run"] = True
            self.audit.append(actions.INGEST, actor=actor, details=details, session=session)

        return self.catalog.finish_run(run_id, status, in_transaction=audit)

    def _ingest_runs(
        self,
        items: Iterable[Item | BadItem],
        sources: list[Source],
        *,
        total: int | None,
        on_progress: Callable[[Progress], None] | None,
        actor: str | None,
        origin: str | None,
        owner: str | None,
    ) -> list[IngestSummary]:
        # The suppression list, read once: this model's entries compared directly, earlier
        # models' through their own pipelines (after a `reembed`).
        by_model = entries_by_model(self.catalog)
        blobs = by_model.get(self.model_id)
        suppression = (
            decrypt_list(self.catalog, blobs, self.calibration, self.settings.suppression_fmr)
            if blobs
            else None
        )
        earlier = self._earlier_suppression(by_model)
        progress = Progress(files_total=total)
        self.catalog.check_model(self.pipeline.model_id)
        self.index  # noqa: B018 - open (and reconcile) the index before writing to it
        by_name = {s.name: s for s in sources}
        runs = {s.name: self.catalog.start_run(s.id, owner=owner) for s in sources}
        notes = {s.name: RunNotes() for s in sources}
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
                    notes=notes[name],
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
                    videos: list[tuple[Item, Work]] = []
                    for item, sha, data, exc in fetched:
                        group = pending.group(item.source, item.consent)
                        if exc is not None:
                            progress.files_done += 1
                            failure = (item.location, exc.code, exc.message)
                            group.errors.append(item_error(item, origin, failure))
                        elif sha is not None and sha in known:
                            progress.files_done += 1
                            group.duplicates += 1
                        elif is_video_work(item.location, data):
                            videos.append((item, Work(item.location, data)))
                        else:
                            todo.append((item, Work(item.location, data)))
                    results = analyser.map([work for _, work in todo])
                    if settings.workers <= 1:
                        results = each_locked(results, self.lock)
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
                    for item, work in videos:
                        self._ingest_video(item, work, pending, progress, report, origin)
                        flush()  # each video committed with all its tracks as soon as done
                        report()
        except BaseException:
            for run_id in runs.values():
                self._close_run(run_id, "interrupted", actor)
            self.save_index()
            raise
        for name, run_id in runs.items():
            self._close_run(
                run_id,
                "finished",
                actor,
                suppressed_photos=notes[name].suppressed_photos,
                multi_frame=notes[name].multi_frame,
            )
        with self.lock:
            self.indexes.maybe_upgrade()
            self.save_index()
        return [
            self._run_summary(
                runs[s.name],
                s,
                seen[s.name],
                progress.elapsed,
                notes=notes[s.name],
            )
            for s in sources
        ]

    def _ingest_video(
        self,
        item: Item,
        work: Work,
        pending: PendingBatches,
        progress: Progress,
        report: Callable[[], None],
        origin: str | None,
    ) -> None:
        """Analyse one video in this process (its frames are the batch: one file gives
        workers nothing to share), the lock held per batch of frames so that searches run
        between them, with progress through the file."""

        def on_video(step: VideoProgress) -> None:
            progress.video = step
            report()

        image, errors = ingest_video(
            self.pipeline,
            work.location,
            work.data,
            rules=self.track_rules(),
            every_s=self.settings.video_sample_s,
            cut_threshold=self.settings.video_cut_threshold,
            on_progress=on_video,
            guard=lambda: self.lock,
        )
        progress.files_done += 1
        progress.video = None
        group = pending.group(item.source, item.consent)
        group.errors.extend(item_error(item, origin, error) for error in errors)
        if image is not None:
            group.images.append(image)
            progress.images_added += 1
            progress.faces_indexed += sum(f.template is not None for f in image.faces)

    def track_rules(self) -> TrackRules:
        """When two detections in a video are the same face (see vultus.pipeline.tracking):
        with overlapping boxes, within the distance of a 1-in-100 false match; without, of a
        1-in-1,000 one (this model's calibration)."""
        cal = self.calibration
        return TrackRules(
            link_distance=float(cal.threshold_for(VIDEO_LINK_FMR)),
            relink_distance=float(cal.threshold_for(VIDEO_RELINK_FMR)),
            max_gap_s=self.settings.video_track_gap_s,
        )

    def _run_summary(
        self,
        run_id: int,
        src: Source,
        files: int,
        seconds: float,
        *,
        notes: RunNotes,
    ) -> IngestSummary:
        """An ingest run's summary, from the catalog's counters."""
        run, errs = self.catalog.get_run(run_id)
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
            suppressed_photos=list(notes.suppressed_photos),
            multi_frame=list(notes.multi_frame),
        )

    @locked
    def _flush(
        self,
        run_id: int,
        source: Source,
        batch: list[NewImage],
        errors: list[tuple[str, str, str]],
        duplicates: int,
        *,
        notes: RunNotes,
        suppression: tuple[npt.NDArray[np.float32], float] | None,
        earlier: EarlierModels,
        consent: int | None,
    ) -> None:
        offered = batch
        batch, suppressed = drop_suppressed(batch, suppression)
        batch, more = earlier.drop(batch)
        suppressed += more
        notes.note(offered, batch, suppressed)
        if not (batch or errors or duplicates or suppressed):
            return
        self.catalog.write_batch(
            run_id,
            source,
            batch,
            duplicates=duplicates,
            suppressed=suppressed,
            errors=errors,
            consent_id=consent,
        )
        # The new faces reach the index the way every process's changes do: from the catalog's
        # change feed, so that one path keeps all processes' indexes right.
        self.indexes.sync()

    def _earlier_suppression(self, by_model: dict[str, list[bytes]]) -> EarlierModels:
        """Suppression entries of models used before a `reembed`: see vultus.rights.suppression."""
        return EarlierModels(
            self.catalog,
            self.model_id,
            pipeline_for=lambda model: FacePipeline(
                dataclasses.replace(self.settings, model=model)
            ),
            calibration_for=lambda model_id: calibration_for(model_id, self.settings.data_dir),
            fmr=self.settings.suppression_fmr,
            endpoint_url=self.settings.s3_endpoint_url,
            entries=by_model,
        )

    # -- migrating to another face model ----------------------------------------------------
    def reembed(
        self,
        model: str,
        *,
        on_progress: Callable[[ReembedProgress], None] | None = None,
        actor: str | None = None,
    ) -> ReembedSummary:
        """Migrate the catalog to another face model (see vultus.ingest.reembed): resumable, and
        searches use the old model until the swap; then the index is rebuilt for the new one
        and the migration audited. A process killed after the swap and before its audit entry
        left the swap recorded: this finishes that one first (and, for the same model, only
        that one)."""
        started = time.monotonic()
        swapped = unaudited_swap(self.catalog)
        if swapped is not None:
            swapped_model, summary = swapped
            self._after_swap(swapped_model, None, summary, actor)
            if swapped_model == model:
                return summary
        worker = Reembedder(
            self.catalog, self.settings, model, current_model_id=self.model_id, lock=self.lock
        )
        worker.stage(on_progress)
        summary = worker.swap(started)
        self._after_swap(model, worker.pipeline, summary, actor)
        return summary

    def _after_swap(
        self,
        model: str,
        pipeline: FacePipeline | None,
        summary: ReembedSummary,
        actor: str | None,
    ) -> None:
        """The new model in use, the index rebuilt from its templates, then the swap audited,
        its record cleared in the same transaction."""
        remember_model_setting(self.catalog, summary.model_id, model)
        with self.lock:
            self.settings = dataclasses.replace(self.settings, model=model)
            self._pipeline = pipeline  # None: built on first use
            self._calibration = None
            self.indexes.rebuild()
        with self.catalog.session() as s, s.begin():
            s.execute(delete(Meta).where(Meta.key == SWAPPED_KEY))
            details = {"model": model, **dataclasses.asdict(summary)}
            self.audit.append("reembed", actor=actor, details=details, session=s)
