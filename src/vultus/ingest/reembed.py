"""`vultus reembed`: migrate a catalog to another face model, resumably, never mixing models.

1. Stage: every image is analysed again with the new model, in id order, a batch per
   transaction, and its faces are written to `reembed_staging` together with the id of the
   last image done (meta "reembed"). A killed run resumes after that image. Searches, ingest
   and the index keep using the old model meanwhile; images added meanwhile are staged too.
2. Match: a new detection takes over the existing face whose box it overlaps most (IoU of at
   least `MATCH_IOU`), so face ids, subject links and restrictions survive. An existing face
   the new model does not find stays in the catalog, unsearchable ("skipped", reason
   "not_found_by_new_model"); a new detection without a match becomes a new face, unless it
   overlaps a suppressed (erased) person, checked with the model of the suppression entry.
3. Swap, in one transaction: templates replaced, the catalog's model id changed, staging
   cleared. Then the index is rebuilt for the new model.

An image whose file is gone (or no longer decodes) cannot be re-embedded: it stays in the
catalog with its faces, which become unsearchable ("skipped", reason "file_missing_at_reembed");
the summary lists these images.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from vultus.accuracy.calibration import calibration_for
from vultus.catalog import Catalog
from vultus.catalog.models import Face, Image, Meta, StagedFace
from vultus.config import CONFIG_FILE, Settings
from vultus.errors import ConfigError, SourceError, VultusError
from vultus.pipeline.analyse import AnalysedFace, AnalysedImage, FacePipeline
from vultus.pipeline.base import Box
from vultus.pipeline.packs import BUILT_IN_IDS
from vultus.rights.suppression import SUPPRESS_IOU, EarlierModels, iou, remember_model_setting
from vultus.storage import local_path, read_location

STATE_KEY = "reembed"
# Set in the swap's transaction and cleared in its audit entry's: a process killed between the
# two leaves it, and the next `reembed` rebuilds the index and audits the swap.
SWAPPED_KEY = "reembed_swapped"
MATCH_IOU = 0.3
CHUNK = 5_000  # images per query: SQLite bounds the variables of one statement
NOT_FOUND = "not_found_by_new_model"
FILE_MISSING = "file_missing_at_reembed"


@dataclass
class ReembedProgress:
    images_total: int
    images_done: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass
class ReembedSummary:
    model_id: str
    previous_model_id: str
    images: int
    faces_kept: int  # existing faces found again: same id, new template
    faces_new: int  # new detections without an existing face
    faces_not_found: int  # existing faces the new model did not find: kept, unsearchable
    faces_suppressed: int  # new detections of suppressed (erased) people: not added
    faces_file_missing: int  # faces of images whose file is gone: kept, unsearchable
    images_missing: list[tuple[int, str]]  # (image id, path): file gone, faces unsearchable
    seconds: float


@dataclass
class _State:
    model: str  # the `model` setting migrated to
    model_id: str
    previous_model_id: str
    previous_model: str
    last_image: int = 0

    def save(self, catalog_meta: Callable[[str, str], None]) -> None:
        catalog_meta(STATE_KEY, json.dumps(dataclasses.asdict(self)))


def unaudited_swap(catalog: Catalog) -> tuple[str, ReembedSummary] | None:
    """The `model` setting and summary of a swap whose process died before auditing it."""
    stored = catalog.get_meta(SWAPPED_KEY)
    if not stored:
        return None
    data = json.loads(stored)
    fields = dict(data["summary"])
    fields["images_missing"] = [(int(i), str(p)) for i, p in fields["images_missing"]]
    return str(data["model"]), ReembedSummary(**fields)


def pending(catalog: Catalog) -> dict[str, Any] | None:
    """The migration in progress, if any: its target and how far it got."""
    raw = catalog.get_meta(STATE_KEY)
    return dict(json.loads(raw)) if raw else None


class Reembedder:
    """Stages and swaps one migration. Built by the engine, which then installs the new
    pipeline and rebuilds the index."""

    def __init__(
        self,
        catalog: Catalog,
        settings: Settings,
        model: str,
        *,
        current_model_id: str,
        lock: Any,
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.lock = lock
        self.target_settings = dataclasses.replace(settings, model=model, workers=1)
        self.pipeline = FacePipeline(self.target_settings)
        state = pending(catalog)
        if state is not None and state["model_id"] != self.pipeline.model_id:
            raise ConfigError(
                f"a migration to {state['model']!r} ({state['model_id']}) is in progress; "
                f"finish it with `vultus reembed --model {state['model']}`, or cancel it with "
                "`vultus reembed --cancel`",
                code="reembed_in_progress",
            )
        if self.pipeline.model_id == current_model_id and state is None:
            raise ConfigError(
                f"the catalog already holds templates of {current_model_id!r}: nothing to do",
                code="reembed_nothing_to_do",
            )
        if state is None:
            # The setting that made the catalog's templates: the built-in models are known by
            # their ids; otherwise it is the setting in force now (the catalog refuses any other).
            before = BUILT_IN_IDS.get(current_model_id, settings.model)
            self.state = _State(model, self.pipeline.model_id, current_model_id, before)
            remember_model_setting(catalog, current_model_id, before)
            self.state.save(catalog.set_meta)
        else:
            self.state = _State(**state)
        self._earlier: EarlierModels | None = None

    # -- staging ---------------------------------------------------------------------------
    def _suppression(self) -> EarlierModels:
        """Every model's suppression entries, checked with that model's own pipeline."""
        if self._earlier is None:
            self._earlier = EarlierModels(
                self.catalog,
                self.state.model_id,
                pipeline_for=lambda s: FacePipeline(dataclasses.replace(self.settings, model=s)),
                calibration_for=lambda m: calibration_for(m, self.settings.data_dir),
                fmr=self.settings.suppression_fmr,
            )
        return self._earlier

    def _images_after(self, last: int, limit: int) -> list[tuple[int, str, dict[int, Box]]]:
        with self.catalog.session() as s:
            rows = s.execute(
                select(Image.id, Image.path).where(Image.id > last).order_by(Image.id).limit(limit)
            ).all()
            faces = s.execute(
                select(Face.id, Face.image_id, Face.left, Face.top, Face.right, Face.bottom).where(
                    Face.image_id.in_([r[0] for r in rows])
                )
            ).all()
        boxes: dict[int, dict[int, Box]] = {r[0]: {} for r in rows}
        for fid, iid, left, top, right, bottom in faces:
            boxes[iid][fid] = Box(left, top, right, bottom)
        return [(iid, path, boxes[iid]) for iid, path in rows]

    def images_total(self) -> int:
        with self.catalog.session() as s:
            return int(s.scalar(select(func.count(Image.id))) or 0)

    def stage(self, on_progress: Callable[[ReembedProgress], None] | None = None) -> None:
        """Stage every image after the last one done. Each batch commits with its progress."""
        progress = ReembedProgress(self.images_total())
        with self.catalog.session() as s:
            progress.images_done = int(
                s.scalar(select(func.count(Image.id)).where(Image.id <= self.state.last_image)) or 0
            )
        if on_progress:
            on_progress(progress)
        while batch := self._images_after(self.state.last_image, self.settings.batch_size):
            rows = [row for image in self._analyse(batch) for row in image]
            with self.lock, self.catalog.session() as s, s.begin():
                s.add_all(rows)
                self.state.last_image = batch[-1][0]
                s.merge(Meta(key=STATE_KEY, value=json.dumps(dataclasses.asdict(self.state))))
            progress.images_done += len(batch)
            if on_progress:
                on_progress(progress)

    def _analyse(self, batch: list[tuple[int, str, dict[int, Box]]]) -> Iterator[list[StagedFace]]:
        with self.catalog.session() as s:
            videos = set(
                s.scalars(
                    select(Image.id).where(
                        Image.id.in_([iid for iid, _, _ in batch]), Image.kind == "video"
                    )
                )
            )
        readable: list[tuple[int, Path | bytes]] = []
        for iid, location, _ in batch:
            if iid in videos:
                continue
            photo = self._read(location)
            if photo is not None:
                readable.append((iid, photo))
        photos = dict(readable)
        results = self.pipeline.analyse_many(list(photos.values()))
        analysed: dict[int, AnalysedImage | VultusError] = {
            iid: result for (iid, _), result in zip(readable, results, strict=True)
        }
        for iid, _location, old in batch:
            expect = sorted(old)
            if iid in videos:
                yield self._stage_tracks(iid, old, expect)
                continue
            result = analysed.get(iid)
            if result is None or isinstance(result, VultusError):
                yield [self._marker(iid, expect, "file_missing")]
                continue
            yield self._stage_faces(iid, photos[iid], result, old, expect)

    def _read(self, location: str) -> Path | bytes | None:
        """The image where it lies: a file on this machine or an object in a bucket; None
        when it is gone."""
        path = local_path(location)
        if path is not None:
            return path if path.is_file() else None
        try:
            return read_location(location, endpoint_url=self.settings.s3_endpoint_url)
        except SourceError:
            return None

    def _stage_faces(
        self,
        iid: int,
        photo: Path | bytes,
        image: AnalysedImage,
        old: dict[int, Box],
        expect: list[int],
    ) -> list[StagedFace]:
        matched = match_faces([f.box for f in image.faces], old)
        unmatched = [i for i in range(len(image.faces)) if i not in matched]
        suppressed: set[int] = set()
        if unmatched and (earlier := self._suppression()):
            boxes = earlier.suppressed_boxes(photo)
            suppressed = {
                i
                for i in unmatched
                if any(iou(image.faces[i].box, b) >= SUPPRESS_IOU for b in boxes)
            }
        rows = [
            StagedFace(
                image_id=iid,
                face_id=matched.get(i),
                expect_faces=expect,
                kind="suppressed" if i in suppressed else "face",
                face=None if i in suppressed else _face_fields(face),
                template=(
                    self.catalog.seal(face.template)
                    if face.template is not None and i not in suppressed
                    else None
                ),
                model_id=self.state.model_id,
            )
            for i, face in enumerate(image.faces)
        ]
        return rows or [self._marker(iid, expect, "no_face")]

    def _stage_tracks(self, iid: int, old: dict[int, Box], expect: list[int]) -> list[StagedFace]:
        """A video's face tracks, each re-embedded from its best frame's crop (kept at ingest:
        the video itself is not decoded again). The new template is that frame's alone, not a
        fusion over the span; its face is the crop's detection nearest the track's box."""
        kept = {fid: self.catalog.track_crop(fid) for fid in old}
        stills = {fid: k for fid, k in kept.items() if k is not None}
        results = self.pipeline.analyse_many([still for still, _ in stills.values()])
        rows = []
        for (fid, (_, region)), result in zip(stills.items(), results, strict=True):
            if isinstance(result, VultusError):
                continue
            # Crop pixels back to frame pixels: the crop was cut at `region` and shrunk.
            scale = (region[2] - region[0]) / max(1, result.width)
            faces = [_in_frame(f, region[0], region[1], scale) for f in result.faces]
            matched = match_faces([f.box for f in faces], {fid: old[fid]})
            for i, face in enumerate(faces):
                if matched.get(i) != fid:
                    continue  # someone else beside the person in the crop: not a track
                rows.append(
                    StagedFace(
                        image_id=iid,
                        face_id=fid,
                        expect_faces=expect,
                        kind="face",
                        face=_face_fields(face),
                        template=None
                        if face.template is None
                        else self.catalog.seal(face.template),
                        model_id=self.state.model_id,
                    )
                )
        return rows or [self._marker(iid, expect, "no_face")]

    def _marker(self, iid: int, expect: list[int], kind: str) -> StagedFace:
        return StagedFace(
            image_id=iid, expect_faces=expect, kind=kind, model_id=self.state.model_id
        )

    def _staged_images(self) -> Iterator[list[int]]:
        """Ids of the staged images, in chunks: SQLite bounds the variables of one query."""
        last = 0
        while True:
            with self.catalog.session() as s:
                ids = list(
                    s.scalars(
                        select(StagedFace.image_id)
                        .where(StagedFace.image_id > last)
                        .group_by(StagedFace.image_id)
                        .order_by(StagedFace.image_id)
                        .limit(CHUNK)
                    )
                )
            if not ids:
                return
            last = ids[-1]
            yield ids

    def _restage_changed(self) -> int:
        """Images whose faces changed since they were staged (an erasure, a deletion) are
        staged again, so the swap never revives what was removed meanwhile."""
        changed: list[int] = []
        for ids in self._staged_images():
            with self.catalog.session() as s:
                staged = dict(
                    s.execute(
                        select(StagedFace.image_id, StagedFace.expect_faces).where(
                            StagedFace.image_id.in_(ids)
                        )
                    ).all()
                )
                current: dict[int, list[int]] = {iid: [] for iid in ids}
                for fid, iid in s.execute(
                    select(Face.id, Face.image_id).where(Face.image_id.in_(ids))
                ):
                    current[iid].append(fid)
                alive = set(s.scalars(select(Image.id).where(Image.id.in_(ids))))
            gone = [iid for iid in ids if iid not in alive]
            if gone:
                with self.catalog.session() as s, s.begin():
                    s.execute(delete(StagedFace).where(StagedFace.image_id.in_(gone)))
            changed += [i for i in ids if i in alive and sorted(current[i]) != sorted(staged[i])]
        for iid in changed:
            rows = [row for image in self._analyse(self._images_after(iid - 1, 1)) for row in image]
            # One transaction: an image is never left without staged faces.
            with self.lock, self.catalog.session() as s, s.begin():
                s.execute(delete(StagedFace).where(StagedFace.image_id == iid))
                s.add_all(rows)
        return len(changed)

    # -- the swap --------------------------------------------------------------------------
    def swap(self, started: float) -> ReembedSummary:
        """Stage what was added or changed meanwhile, then replace every template in one
        transaction. Holds the engine's lock, so no ingest writes in between."""
        self.stage()
        self._restage_changed()
        # The data directory names the new model first: should the process die before the
        # swap commits, the next open refuses the mismatch, and `reembed` finishes the swap.
        write_model_setting(self.settings.data_dir, self.state.model)
        counts = {"kept": 0, "new": 0, "not_found": 0, "missing": 0, "suppressed": 0}
        missing: list[tuple[int, str]] = []
        images = 0
        with self.lock:
            # Again under the lock, for what an ingest or an erasure changed in between.
            self.stage()
            self._restage_changed()
            with self.catalog.session() as s, s.begin():
                for ids in self._staged_images():
                    images += len(ids)
                    self._swap_chunk(s, ids, counts, missing)
                    s.flush()
                    s.expunge_all()  # bounded memory: the chunk is written, not yet committed
                mixed = s.scalar(
                    select(func.count(Face.id)).where(
                        Face.status == "indexed", Face.model_id != self.state.model_id
                    )
                )
                if mixed:  # a guard: committing this would mix models in one index
                    raise VultusError(
                        f"{mixed} indexed faces were not re-embedded; nothing was changed. "
                        "Run `vultus reembed` again to stage them.",
                        code="reembed_incomplete",
                    )
                summary = ReembedSummary(
                    model_id=self.state.model_id,
                    previous_model_id=self.state.previous_model_id,
                    images=images,
                    faces_kept=counts["kept"],
                    faces_new=counts["new"],
                    faces_not_found=counts["not_found"],
                    faces_suppressed=counts["suppressed"],
                    faces_file_missing=counts["missing"],
                    images_missing=missing,
                    seconds=round(time.monotonic() - started, 3),
                )
                s.execute(delete(StagedFace))
                s.merge(Meta(key="model_id", value=self.state.model_id))
                s.execute(delete(Meta).where(Meta.key == STATE_KEY))
                swapped = {"model": self.state.model, "summary": dataclasses.asdict(summary)}
                s.merge(Meta(key=SWAPPED_KEY, value=json.dumps(swapped)))
        return summary

    def _swap_chunk(
        self,
        s: Session,
        ids: list[int],
        counts: dict[str, int],
        missing: list[tuple[int, str]],
    ) -> None:
        by_image: dict[int, list[StagedFace]] = {}
        staged = s.scalars(
            select(StagedFace).where(StagedFace.image_id.in_(ids)).order_by(StagedFace.id)
        )
        for row in staged:
            by_image.setdefault(row.image_id, []).append(row)
        faces_of: dict[int, dict[int, Face]] = {iid: {} for iid in ids}
        for face in s.scalars(select(Face).where(Face.image_id.in_(ids))):
            faces_of[face.image_id][face.id] = face
        for image in s.scalars(select(Image).where(Image.id.in_(ids))):
            rows, faces = by_image[image.id], faces_of[image.id]
            lost = "missing" if rows[0].kind == "file_missing" else "not_found"
            if lost == "missing":
                missing.append((image.id, image.path))
            taken: set[int] = set()
            for row in rows:
                counts["suppressed"] += row.kind == "suppressed"
                if row.kind != "face" or row.face is None:
                    continue
                if row.face_id is None:
                    face = Face(image_id=image.id, restricted=False)
                    s.add(face)
                    counts["new"] += 1
                elif row.face_id in faces:
                    face = faces[row.face_id]
                    taken.add(face.id)
                    counts["kept"] += 1
                else:
                    continue  # removed since staging; restaging under the lock prevents it
                _apply(face, row)
            for fid, face in faces.items():
                if fid not in taken:
                    counts[lost] += 1
                    face.status = "skipped"
                    face.skip_reason = FILE_MISSING if lost == "missing" else NOT_FOUND
                    face.template, face.model_id = None, None
            indexable = any(r.kind == "face" and r.template is not None for r in rows)
            image.status = "indexed" if indexable else "no_faces"


def cancel(catalog: Catalog) -> int:
    """Drop a migration in progress: its staged faces go, the catalog is untouched."""
    with catalog.session() as s, s.begin():
        n = int(s.scalar(select(func.count(StagedFace.id))) or 0)
        s.execute(delete(StagedFace))
        s.execute(delete(Meta).where(Meta.key == STATE_KEY))
    return n


def match_faces(new: list[Box], old: dict[int, Box]) -> dict[int, int]:
    """new index -> old face id, greedily by the highest IoU, each face used once."""
    pairs = sorted(
        ((iou(box, ob), i, fid) for i, box in enumerate(new) for fid, ob in old.items()),
        reverse=True,
    )
    out: dict[int, int] = {}
    used: set[int] = set()
    for score, i, fid in pairs:
        if score < MATCH_IOU:
            break
        if i not in out and fid not in used:
            out[i] = fid
            used.add(fid)
    return out


def _in_frame(face: AnalysedFace, left: int, top: int, scale: float) -> AnalysedFace:
    """A face found in a crop, in the pixels of the frame the crop was cut from."""
    b = face.box
    box = Box(
        round(left + b.left * scale),
        round(top + b.top * scale),
        round(left + b.right * scale),
        round(top + b.bottom * scale),
    )
    points = [[round(left + x * scale, 1), round(top + y * scale, 1)] for x, y in face.landmarks]
    return dataclasses.replace(face, box=box, landmarks=points)


def _face_fields(face: AnalysedFace) -> dict[str, Any]:
    return {
        "box": face.box.as_list(),
        "landmarks": face.landmarks,
        "detector": face.detector,
        "quality": face.quality.as_dict(),
        "skip_reason": face.skip_reason,
    }


def _apply(face: Face, row: StagedFace) -> None:
    fields: dict[str, Any] = dict(row.face or {})
    face.left, face.top, face.right, face.bottom = (int(v) for v in fields["box"])
    quality: dict[str, Any] = fields["quality"]
    face.landmarks = fields["landmarks"]
    face.detector = str(fields["detector"])
    face.det_score = float(quality["det_score"])
    face.box_size = int(quality["box_size"])
    face.sharpness = float(quality["sharpness"])
    face.yaw = float(quality["yaw"])
    face.template = row.template
    face.status = "indexed" if row.template is not None else "skipped"
    face.skip_reason = fields["skip_reason"]
    face.model_id = row.model_id


def write_model_setting(data_dir: Path, model: str) -> None:
    """Make the data directory's `vultus.toml` name the model its catalog now holds."""
    path = data_dir / CONFIG_FILE
    text = path.read_text() if path.exists() else ""
    line = f"model = {json.dumps(model)}"
    pattern = re.compile(r"^model\s*=.*$", re.MULTILINE)
    top = text.split("\n[", 1)[0]
    if pattern.search(top):
        text = pattern.sub(line, top, count=1) + text[len(top) :]
    else:
        text = f"{line}\n{text}"
    path.write_text(text)
