"""The one place that talks SQL: the `Catalog`. Everything above it uses these methods; subjects
and jobs live in their own modules (mixed in), records in `records`, opening in `connect`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    BigInteger,
    CursorResult,
    Engine,
    any_,
    bindparam,
    delete,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, joinedload, sessionmaker

from vultus import lawful_basis
from vultus.catalog import postgresql
from vultus.catalog.bulk import allocate_ids, insert_rows
from vultus.catalog.changes import ChangeQueries
from vultus.catalog.collections import CollectionQueries
from vultus.catalog.jobs import JobQueries
from vultus.catalog.models import (
    Face,
    FaceTrack,
    Image,
    IngestError,
    IngestRun,
    Meta,
    Source,
    Subject,
    Suppression,
)
from vultus.catalog.people import PersonDecisionQueries
from vultus.catalog.records import (
    ErasedFaces,
    FaceRecord,
    ImageSummary,
    NewImage,
    face_record_of,
    face_record_of_row,
    face_records_query,
    image_summary_of,
    summaries_query,
)
from vultus.catalog.subjects import SubjectQueries
from vultus.clock import now
from vultus.crypto import KeyRing
from vultus.errors import ConfigError, ModelMismatchError, NotFoundError, SourceError
from vultus.index.base import IndexFingerprint

TEMPLATE_DTYPE = np.float32
TEMPLATE_AAD = b"faces.template"
TRACK_CROP_AAD = b"face_tracks.crop"
SUPPRESSION_AAD = b"suppression.template"

# What the vector index holds: usable templates that no restriction (Art. 18/21) hides.
SEARCHABLE = (Face.status == "indexed") & Face.restricted.is_(False)

# `Catalog.templates_of`, in each dialect: the ids travel as one parameter (a JSON array on
# SQLite, an array on PostgreSQL), so the text is the same whatever their number.


class Catalog(SubjectQueries, PersonDecisionQueries, JobQueries, ChangeQueries, CollectionQueries):
    def __init__(self, engine: Engine, keyring: KeyRing | None = None) -> None:
        self.engine = engine
        self.keyring = keyring
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # -- templates are encrypted at rest (AES-256-GCM); only the catalog seals and opens them --
    def seal(self, template: npt.NDArray[np.float32], aad: bytes = TEMPLATE_AAD) -> bytes:
        if self.keyring is None:
            raise ConfigError("this catalog was opened without a key; templates cannot be stored")
        raw = np.ascontiguousarray(template, dtype=TEMPLATE_DTYPE).tobytes()
        return self.keyring.encrypt(raw, aad)

    def open_template(self, blob: bytes, aad: bytes = TEMPLATE_AAD) -> npt.NDArray[np.float32]:
        if self.keyring is None:
            raise ConfigError("this catalog was opened without a key; templates cannot be read")
        return np.frombuffer(bytes(self.keyring.decrypt(blob, aad)), dtype=TEMPLATE_DTYPE)

    def seal_bytes(self, data: bytes, aad: bytes) -> bytes:
        if self.keyring is None:
            raise ConfigError("this catalog was opened without a key; faces cannot be stored")
        return self.keyring.encrypt(data, aad)

    def track_crop(self, face_id: int) -> tuple[bytes, tuple[int, int, int, int]] | None:
        """A face track's best-frame crop (JPEG) and the region of the frame it shows; None
        for a photo's face."""
        with self.session() as s:
            track = s.get(FaceTrack, face_id)
            if track is None:
                return None
            if self.keyring is None:
                raise ConfigError("this catalog was opened without a key; crops cannot be read")
            left, top, right, bottom = track.crop_box
            return bytes(self.keyring.decrypt(track.crop, TRACK_CROP_AAD)), (
                left,
                top,
                right,
                bottom,
            )

    def track_boxes(self, face_ids: Sequence[int]) -> dict[int, list[list[float]]]:
        """Face tracks' sampled boxes, [[t, left, top, right, bottom], ...], by face id."""
        with self.session() as s:
            rows = s.execute(
                select(FaceTrack.face_id, FaceTrack.boxes).where(
                    FaceTrack.face_id.in_(list(face_ids))
                )
            ).all()
        return {face_id: boxes for face_id, boxes in rows}

    def session(self) -> Session:
        return self._sessions()

    def close(self) -> None:
        self.engine.dispose()

    # -- meta and model identity -------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self.session() as s:
            row = s.get(Meta, key)
            return row.value if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.session() as s, s.begin():
            s.merge(Meta(key=key, value=value))

    def check_model(self, model_id: str) -> None:
        """Templates of one model only: mixing models makes distances meaningless."""
        current = self.get_meta("model_id")
        if current is None:
            self.set_meta("model_id", model_id)
        elif current != model_id:
            raise ModelMismatchError(
                f"this catalog holds templates of model {current!r}, but the pipeline uses "
                f'{model_id!r}. Use the same model as before (the `model` setting: "dlib" makes '
                'dlib-resnet-v1-flip templates, "dlib-plain" dlib-resnet-v1), or migrate the '
                "catalog to the new one with `vultus reembed --model MODEL`.",
            )

    # -- sources -----------------------------------------------------------------------------
    def add_source(
        self,
        name: str,
        *,
        lawful_basis_code: str,
        special_condition: str,
        purpose: str,
        retention_days: int,
        kind: str = "folder",
        legal_reference: str | None = None,
        notes: str | None = None,
        originals_deletable: bool = False,
    ) -> Source:
        lawful_basis.check(lawful_basis_code, special_condition, legal_reference)
        if kind not in lawful_basis.SOURCE_KINDS:
            raise SourceError(
                f"unknown source kind {kind!r}; choose one of: "
                + ", ".join(lawful_basis.SOURCE_KINDS)
            )
        if retention_days <= 0:
            raise SourceError("retention must be a positive number of days")
        if not purpose.strip():
            raise SourceError("a source needs a stated purpose")
        with self.session() as s, s.begin():
            if s.scalar(select(Source).where(Source.name == name)) is not None:
                raise SourceError(f"a source named {name!r} already exists", code="source_exists")
            source = Source(
                name=name,
                kind=kind,
                lawful_basis=lawful_basis_code,
                special_condition=special_condition,
                legal_reference=legal_reference,
                purpose=purpose,
                retention_days=retention_days,
                notes=notes,
                created_at=now(),
                originals_deletable=originals_deletable,
            )
            s.add(source)
        return source

    def get_source(self, name: str) -> Source:
        with self.session() as s:
            source = s.scalar(select(Source).where(Source.name == name))
        if source is None:
            raise SourceError(
                f"no source named {name!r}: create it first with `vultus sources add {name} "
                "--basis ... --condition ... --purpose ... --retention-days ...`",
                code="source_unknown",
            )
        return source

    def list_sources(self) -> list[tuple[Source, int, int]]:
        """Each source with its image and indexed-face counts."""
        with self.session() as s:
            images = dict(
                s.execute(select(Image.source_id, func.count()).group_by(Image.source_id)).all()
            )
            faces = dict(
                s.execute(
                    select(Image.source_id, func.count())
                    .join(Face, Face.image_id == Image.id)
                    .where(Face.status == "indexed")
                    .group_by(Image.source_id)
                ).all()
            )
            sources = list(s.scalars(select(Source).order_by(Source.name)))
        return [(src, images.get(src.id, 0), faces.get(src.id, 0)) for src in sources]

    # -- ingest ------------------------------------------------------------------------------
    def start_run(self, source_id: int, owner: str | None = None) -> int:
        with self.session() as s, s.begin():
            run = IngestRun(
                source_id=source_id,
                owner=owner,
                started_at=now(),
                status="running",
                images_added=0,
                images_duplicate=0,
                images_no_face=0,
                faces_indexed=0,
                faces_skipped=0,
                errors=0,
                faces_suppressed=0,
            )
            s.add(run)
        return run.id

    def finish_run(
        self,
        run_id: int,
        status: str = "finished",
        *,
        in_transaction: Callable[[Session, IngestRun], None] | None = None,
    ) -> IngestRun | None:
        """Close a running run, with what must commit with it (its audit entry). None when it
        was closed already: two processes closing an abandoned run audit it once."""
        with self.session() as s, s.begin():
            # One conditional write decides, on SQLite and PostgreSQL alike, who closes it.
            result = s.execute(
                update(IngestRun)
                .where(IngestRun.id == run_id, IngestRun.status == "running")
                .values(status=status, finished_at=now())
            )
            run = s.get(IngestRun, run_id)
            if run is None:
                raise NotFoundError(f"no ingest run {run_id}")
            if not cast("CursorResult[Any]", result).rowcount:
                return None
            if in_transaction is not None:
                in_transaction(s, run)
        return run

    def running_runs(self) -> list[IngestRun]:
        """Ingest runs not finished, oldest first: live ones, and those of processes that died."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(IngestRun).where(IngestRun.status == "running").order_by(IngestRun.id)
                )
            )

    def known_hashes(self, hashes: Iterable[str]) -> set[str]:
        wanted = list(set(hashes))
        found: set[str] = set()
        for i in range(0, len(wanted), 500):
            with self.session() as s:
                found.update(
                    s.scalars(select(Image.sha256).where(Image.sha256.in_(wanted[i : i + 500])))
                )
        return found

    def write_batch(
        self,
        run_id: int,
        source: Source,
        images: Sequence[NewImage],
        *,
        duplicates: int = 0,
        suppressed: int = 0,
        errors: Sequence[tuple[str, str, str]] = (),
        consent_id: int | None = None,
    ) -> list[tuple[int, npt.NDArray[np.float32]]]:
        """Write a batch of analysed images, the run's counters and its errors in ONE transaction,
        so a killed ingest leaves whole images or nothing. Returns (face id, template) pairs to
        add to the vector index. Images already present (same sha256) are skipped. Rows go in
        as bulk inserts (`vultus.catalog.bulk`): ORM objects held ingest to ~500 faces/s."""
        stamp = now()
        retain_until = stamp + timedelta(days=source.retention_days)
        counts = {"added": 0, "dup": duplicates, "noface": 0, "indexed": 0, "skipped": 0}
        with self.session() as s, s.begin():
            present = set(
                s.scalars(select(Image.sha256).where(Image.sha256.in_([i.sha256 for i in images])))
            )
            fresh: list[NewImage] = []
            for item in images:
                if item.sha256 in present:
                    counts["dup"] += 1
                    continue
                present.add(item.sha256)
                fresh.append(item)
                usable = sum(1 for f in item.faces if f.template is not None)
                counts["added"] += 1
                counts["noface"] += 0 if usable else 1
                counts["indexed"] += usable
                counts["skipped"] += len(item.faces) - usable
            # Written first: it takes SQLite's write lock before `allocate_ids` reads.
            s.execute(
                update(IngestRun)
                .where(IngestRun.id == run_id)
                .values(
                    images_added=IngestRun.images_added + counts["added"],
                    images_duplicate=IngestRun.images_duplicate + counts["dup"],
                    images_no_face=IngestRun.images_no_face + counts["noface"],
                    faces_indexed=IngestRun.faces_indexed + counts["indexed"],
                    faces_skipped=IngestRun.faces_skipped + counts["skipped"],
                    errors=IngestRun.errors + len(errors),
                    faces_suppressed=IngestRun.faces_suppressed + suppressed,
                )
            )
            image_ids = allocate_ids(s, Image, len(fresh))
            insert_rows(
                s,
                Image,
                [
                    {
                        "id": image_id,
                        "sha256": item.sha256,
                        "path": item.path,
                        "size_bytes": item.size_bytes,
                        "width": item.width,
                        "height": item.height,
                        "format": item.format,
                        "source_id": source.id,
                        "added_at": stamp,
                        "retain_until": retain_until,
                        "status": "indexed"
                        if any(f.template is not None for f in item.faces)
                        else "no_faces",
                        "ingest_run_id": run_id,
                        "consent_id": consent_id,
                        "original_name": None,
                        "external_id": None,
                        "kind": item.kind,
                        "duration_s": item.duration_s,
                    }
                    for image_id, item in zip(image_ids, fresh, strict=True)
                ],
            )
            new_faces = [
                (image_id, nf)
                for image_id, item in zip(image_ids, fresh, strict=True)
                for nf in item.faces
            ]
            face_ids = allocate_ids(s, Face, len(new_faces))
            insert_rows(
                s,
                Face,
                [
                    {
                        "id": face_id,
                        "image_id": image_id,
                        "left": nf.box[0],
                        "top": nf.box[1],
                        "right": nf.box[2],
                        "bottom": nf.box[3],
                        "landmarks": nf.landmarks,
                        "detector": nf.detector,
                        "det_score": nf.det_score,
                        "box_size": nf.box_size,
                        "sharpness": nf.sharpness,
                        "yaw": nf.yaw,
                        "status": "indexed" if nf.template is not None else "skipped",
                        "skip_reason": nf.skip_reason,
                        "model_id": nf.model_id,
                        "template": None if nf.template is None else self.seal(nf.template),
                        "subject_id": None,
                        "restricted": False,
                    }
                    for face_id, (image_id, nf) in zip(face_ids, new_faces, strict=True)
                ],
            )
            insert_rows(
                s,
                FaceTrack,
                [
                    {
                        "face_id": face_id,
                        "start_s": nf.track.start_s,
                        "end_s": nf.track.end_s,
                        "best_s": nf.track.best_s,
                        "detections": nf.track.detections,
                        "boxes": nf.track.boxes,
                        "crop": self.seal_bytes(nf.track.crop, TRACK_CROP_AAD),
                        "crop_box": list(nf.track.crop_box),
                    }
                    for face_id, (_, nf) in zip(face_ids, new_faces, strict=True)
                    if nf.track is not None
                ],
            )
            for path, code, message in errors:
                s.add(IngestError(run_id=run_id, path=path, code=code, message=message))
        return [
            (face_id, nf.template)
            for face_id, (_, nf) in zip(face_ids, new_faces, strict=True)
            if nf.template is not None
        ]

    def get_run(self, run_id: int) -> tuple[IngestRun, list[IngestError]]:
        with self.session() as s:
            run = s.get(IngestRun, run_id)
            if run is None:
                raise NotFoundError(f"no ingest run {run_id}")
            errs = list(
                s.scalars(
                    select(IngestError).where(IngestError.run_id == run_id).order_by(IngestError.id)
                )
            )
        return run, errs

    def skip_reasons(self, run_id: int) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(
                select(Face.skip_reason, func.count())
                .join(Image, Image.id == Face.image_id)
                .where(Image.ingest_run_id == run_id, Face.status == "skipped")
                .group_by(Face.skip_reason)
            ).all()
        out: dict[str, int] = {}
        for reason, n in rows:
            key = (reason or "unknown").split(":")[0]
            out[key] = out.get(key, 0) + n
        return out

    # -- the index's view of the catalog -----------------------------------------------------
    def fingerprint(self, model_id: str) -> IndexFingerprint:
        with self.session() as s:
            count, id_sum, id_max = s.execute(
                select(func.count(Face.id), func.sum(Face.id), func.max(Face.id)).where(SEARCHABLE)
            ).one()
        return IndexFingerprint(model_id, int(count or 0), int(id_sum or 0), int(id_max or 0))

    def indexed_ids(self) -> npt.NDArray[np.int64]:
        with self.session() as s:
            ids = s.scalars(select(Face.id).where(SEARCHABLE).order_by(Face.id))
            return np.fromiter(ids, dtype=np.int64)

    def searchable_among(self, face_ids: Sequence[int]) -> set[int]:
        """Which of these faces the index must hold."""
        found: set[int] = set()
        for i in range(0, len(face_ids), 500):
            with self.session() as s:
                chunk = face_ids[i : i + 500]
                found.update(s.scalars(select(Face.id).where(SEARCHABLE, Face.id.in_(chunk))))
        return found

    def iter_templates(
        self, ids: npt.NDArray[np.int64] | None = None, chunk: int = 20_000, *, after: int = 0
    ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
        """Indexed templates in chunks (all, or those of `ids`, or those of faces after the face
        id `after`), so that a rebuild of millions never holds them twice."""
        if ids is not None:
            for i in range(0, len(ids), chunk):
                with self.session() as s:
                    rows = s.execute(
                        select(Face.id, Face.template).where(
                            SEARCHABLE, Face.id.in_(ids[i : i + chunk].tolist())
                        )
                    ).all()
                if rows:
                    yield self._unpack(rows)
            return
        last = after
        while True:
            with self.session() as s:
                rows = s.execute(
                    select(Face.id, Face.template)
                    .where(SEARCHABLE, Face.id > last)
                    .order_by(Face.id)
                    .limit(chunk)
                ).all()
            if not rows:
                return
            out = self._unpack(rows)
            last = int(out[0][-1])
            yield out

    def _unpack(self, rows: Sequence[Any]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        # Indexed faces always carry a template (the write path guarantees it).
        return ids, np.stack([self.open_template(cast(bytes, r[1])) for r in rows])

    def templates_of(self, face_ids: Sequence[int]) -> dict[int, npt.NDArray[np.float32]]:
        """The templates of these faces (those that have one), opened. Every search on a
        compressed index re-ranks its candidates with this (`vultus.index.rerank`)."""
        rows = self._by_ids(self._templates_by_ids, face_ids)
        return {int(fid): self.open_template(bytes(blob)) for fid, blob in rows}

    def _by_ids(self, statement: Any, face_ids: Sequence[int]) -> Sequence[Any]:
        """Rows of `statement` (built with `_among_ids`) for these ids, read on a plain
        connection. The search path reads this way: a statement whose text never changes
        whatever the number of ids, so nothing is compiled per call, and no ORM session, whose
        bookkeeping cost more than the reads (0.16 ms a candidate through the ORM query this
        replaced; benchmarks/engine_search.py)."""
        ids = [int(i) for i in face_ids]
        if not ids:
            return []
        bound = ids if self.engine.dialect.name == "postgresql" else json.dumps(ids)
        with self.engine.connect() as conn:
            return conn.execute(statement, {"ids": bound}).all()

    def _among_ids(self, column: Any) -> Any:
        """`column` among the ids `_by_ids` binds: one array (PostgreSQL) or one JSON text."""
        if self.engine.dialect.name == "postgresql":
            return column == any_(bindparam("ids", type_=ARRAY(BigInteger)))
        listed: Any = select(literal_column("value")).select_from(func.json_each(bindparam("ids")))
        return column.in_(listed)

    @cached_property
    def _templates_by_ids(self) -> Any:
        return select(Face.id, Face.template).where(
            self._among_ids(Face.id), Face.template.is_not(None)
        )

    @cached_property
    def _records_by_ids(self) -> Any:
        return face_records_query().where(self._among_ids(Face.id))

    def linked_face_ids(self) -> set[int]:
        """Faces already tied to a named subject."""
        with self.session() as s:
            return set(s.scalars(select(Face.id).where(Face.subject_id.is_not(None))))

    # -- reading faces -----------------------------------------------------------------------
    def face_records(self, face_ids: Sequence[int]) -> dict[int, FaceRecord]:
        rows = self._by_ids(self._records_by_ids, face_ids)
        return {row[0]: face_record_of_row(row) for row in rows}

    def faces_of_image(self, image_id: int) -> list[FaceRecord]:
        with self.session() as s:
            faces = s.scalars(
                select(Face)
                .where(Face.image_id == image_id)
                .options(joinedload(Face.image).joinedload(Image.source), joinedload(Face.subject))
                .order_by(Face.id)
            ).all()
            return [face_record_of(f) for f in faces]

    # -- reading images ----------------------------------------------------------------------
    def list_images(
        self,
        *,
        source: str | None = None,
        external_id: str | None = None,
        offset: int = 0,
        limit: int = 50,
        newest_first: bool = False,
        added_from: datetime | None = None,
        added_until: datetime | None = None,
        subject: str | None = None,
        name: str | None = None,
    ) -> list[ImageSummary]:
        """Images in the order they were added (or newest first), with their source and face
        counts; `added_from` inclusive, `added_until` exclusive; `subject`: photos with a face
        linked to that person; `name`: part of the file's name or path, any case."""
        source_id = self.get_source(source).id if source is not None else None
        order = Image.id.desc() if newest_first else Image.id
        with self.session() as s:
            q = summaries_query().order_by(order).offset(max(0, offset)).limit(max(0, limit))
            if source_id is not None:
                q = q.where(Image.source_id == source_id)
            if external_id is not None:
                q = q.where(Image.external_id == external_id)
            if added_from is not None:
                q = q.where(Image.added_at >= added_from)
            if added_until is not None:
                q = q.where(Image.added_at < added_until)
            if subject is not None:
                linked = (
                    select(Face.image_id)
                    .join(Subject, Subject.id == Face.subject_id)
                    .where(Subject.name == subject)
                )
                q = q.where(Image.id.in_(linked))
            if name:
                escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                pattern = f"%{escaped}%"
                q = q.where(
                    Image.original_name.ilike(pattern, escape="\\")
                    | Image.path.ilike(pattern, escape="\\")
                )
            rows = s.execute(q).all()
        return [image_summary_of(*row) for row in rows]

    def name_image(
        self, image_id: int, *, original_name: str | None, external_id: str | None
    ) -> ImageSummary:
        """Record what an upload is called: the file name it was sent with and the integrator's
        id for it, each only where none is held yet (a photo sent twice keeps its first name).
        An external id other than the one held is refused: one photo, one id."""
        with self.session() as s, s.begin():
            for column, value in (
                (Image.original_name, original_name),
                (Image.external_id, external_id),
            ):
                if value:
                    s.execute(
                        update(Image)
                        .where(Image.id == image_id, column.is_(None))
                        .values({column.key: value})
                    )
        summary = self.image_summary(image_id)
        if external_id and summary.external_id != external_id:
            raise external_id_conflict(summary, external_id)
        return summary

    def image_summary(self, image_id: int) -> ImageSummary:
        with self.session() as s:
            row = s.execute(summaries_query().where(Image.id == image_id)).first()
        if row is None:
            raise NotFoundError(f"no image with id {image_id}")
        return image_summary_of(*row)

    def image_by_sha256(self, sha256: str) -> ImageSummary | None:
        with self.session() as s:
            row = s.execute(summaries_query().where(Image.sha256 == sha256)).first()
        return image_summary_of(*row) if row is not None else None

    def list_faces(
        self,
        *,
        image_id: int | None = None,
        subject: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> list[FaceRecord]:
        subject_id = self.get_subject(subject).id if subject is not None else None
        with self.session() as s:
            q = (
                select(Face)
                .options(joinedload(Face.image).joinedload(Image.source), joinedload(Face.subject))
                .order_by(Face.id)
                .offset(max(0, offset))
                .limit(max(0, limit))
            )
            if image_id is not None:
                q = q.where(Face.image_id == image_id)
            if subject_id is not None:
                q = q.where(Face.subject_id == subject_id)
            return [face_record_of(f) for f in s.scalars(q).unique()]

    def counts(self) -> dict[str, int]:
        with self.session() as s:
            return {
                "sources": s.scalar(select(func.count(Source.id))) or 0,
                "images": s.scalar(select(func.count(Image.id))) or 0,
                "faces_indexed": s.scalar(
                    select(func.count(Face.id)).where(Face.status == "indexed")
                )
                or 0,
                "faces_skipped": s.scalar(
                    select(func.count(Face.id)).where(Face.status == "skipped")
                )
                or 0,
                "subjects": s.scalar(select(func.count(Subject.id))) or 0,
            }

    def count_restricted(self) -> int:
        with self.session() as s:
            return (
                s.scalar(
                    select(func.count(Face.id)).where(
                        Face.status == "indexed", Face.restricted.is_(True)
                    )
                )
                or 0
            )

    def newest_face_id(self) -> int:
        """The largest face id: faces catalogued later have larger ones."""
        with self.session() as s:
            return int(s.scalar(select(func.max(Face.id))) or 0)

    def restricted_faces(self, *, limit: int = 500) -> list[FaceRecord]:
        with self.session() as s:
            faces = s.scalars(
                select(Face)
                .where(Face.status == "indexed", Face.restricted.is_(True))
                .options(joinedload(Face.image).joinedload(Image.source), joinedload(Face.subject))
                .order_by(Face.id)
                .limit(limit)
            ).unique()
            return [face_record_of(f) for f in faces]

    def restricted_templates(self) -> list[tuple[int, npt.NDArray[np.float32]]]:
        """Restricted faces are out of the index but still held: rights requests must see them."""
        with self.session() as s:
            rows = s.execute(
                select(Face.id, Face.template)
                .where(Face.status == "indexed", Face.restricted.is_(True))
                .order_by(Face.id)
            ).all()
        return [(fid, self.open_template(blob)) for fid, blob in rows if blob is not None]

    def set_restricted(self, face_ids: Sequence[int], restricted: bool) -> list[int]:
        """Flag faces; returns the ids whose flag changed (for the index)."""
        with self.session() as s, s.begin():
            changed = list(
                s.scalars(
                    select(Face.id)
                    .where(Face.id.in_(list(face_ids)), Face.restricted.is_(not restricted))
                    .order_by(Face.id)
                )
            )
            s.execute(update(Face).where(Face.id.in_(changed)).values(restricted=restricted))
        return changed

    def restrict_subject(self, name: str, restricted: bool) -> list[int]:
        subject = self.get_subject(name)
        with self.session() as s, s.begin():
            s.execute(update(Subject).where(Subject.id == subject.id).values(restricted=restricted))
            ids = list(
                s.scalars(select(Face.id).where(Face.subject_id == subject.id).order_by(Face.id))
            )
        return self.set_restricted(ids, restricted)

    def expired_images(self, at: datetime) -> list[tuple[int, str, datetime, list[int]]]:
        """(image id, path, retain_until, face ids) of every image past its retention."""
        with self.session() as s:
            images = s.execute(
                select(Image.id, Image.path, Image.retain_until)
                .where(Image.retain_until < at)
                .order_by(Image.id)
            ).all()
            out = []
            for image_id, path, until in images:
                ids = list(
                    s.scalars(select(Face.id).where(Face.image_id == image_id).order_by(Face.id))
                )
                out.append((image_id, path, until, ids))
        return out

    def image_faces(self, image_ids: Sequence[int]) -> dict[int, list[int]]:
        with self.session() as s:
            rows = s.execute(
                select(Face.image_id, Face.id)
                .where(Face.image_id.in_(list(image_ids)))
                .order_by(Face.id)
            ).all()
        out: dict[int, list[int]] = {i: [] for i in image_ids}
        for image_id, face_id in rows:
            out[image_id].append(face_id)
        return out

    # -- deletion ----------------------------------------------------------------------------
    def erase_faces(
        self,
        face_ids: Sequence[int],
        *,
        suppression: tuple[bytes, str] | None = None,
        request_ref: str | None = None,
        in_transaction: Callable[[Session, ErasedFaces], None] | None = None,
    ) -> ErasedFaces:
        """The catalog half of an erasure, in ONE transaction: the faces go, images left with
        no face go, images with other people stay (minus the erased faces), an optional
        suppression entry (sealed template, model id) is added, recording the request that
        made it, and `in_transaction` writes what must commit with it (the audit entry, the
        receipt's content, pending file work)."""
        ids = list(face_ids)
        with self.session() as s, s.begin():
            rows = s.execute(
                select(
                    Face.id,
                    Face.image_id,
                    Face.left,
                    Face.top,
                    Face.right,
                    Face.bottom,
                    FaceTrack.boxes,
                )
                .outerjoin(FaceTrack, FaceTrack.face_id == Face.id)
                .where(Face.id.in_(ids))
                .order_by(Face.id)
            ).all()
            boxes: dict[int, list[list[int]]] = {}
            for _, image_id, left, top, right, bottom, timed in rows:
                # A face track's boxes over its span, [t, left, top, right, bottom] each: a
                # stored copy of the video is blurred wherever the person was seen.
                spans = cast(list[list[int]], timed) if timed else [[left, top, right, bottom]]
                boxes.setdefault(image_id, []).extend(spans)
            s.execute(delete(Face).where(Face.id.in_(ids)))
            removed: list[tuple[int, str, str]] = []
            kept: list[tuple[int, str, list[list[int]]]] = []
            sources: dict[int, tuple[str, bool]] = {}
            for image_id, erased_boxes in boxes.items():
                image = s.get(Image, image_id)
                assert image is not None
                sources[image_id] = (image.source.name, bool(image.source.originals_deletable))
                remaining = s.scalar(select(func.count(Face.id)).where(Face.image_id == image_id))
                if remaining:
                    kept.append((image_id, image.path, erased_boxes))
                else:
                    removed.append((image_id, image.path, image.sha256))
                    s.delete(image)
            if suppression is not None:
                s.add(
                    Suppression(
                        template=suppression[0],
                        model_id=suppression[1],
                        purpose="suppress",
                        created_at=now(),
                        request_ref=request_ref,
                    )
                )
            erased = ErasedFaces([r[0] for r in rows], removed, kept, boxes, sources)
            if in_transaction is not None:
                in_transaction(s, erased)
        return erased

    def scrub(self) -> None:
        """After an erasure: fold the WAL back into the database and truncate it, then rebuild
        the file, so no page anywhere still holds the erased rows (secure_delete zeroes the
        freed space; the WAL would otherwise keep old page images until it is recycled).
        PostgreSQL has no such guarantee: see `postgresql.scrub`."""
        if self.engine.dialect.name == "postgresql":
            postgresql.scrub(self.engine)
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM")
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def delete_faces(self, face_ids: Sequence[int]) -> int:
        """Delete faces and any image left with no face. Returns faces deleted."""
        ids = list(face_ids)
        with self.session() as s, s.begin():
            found = s.execute(select(Face.id, Face.image_id).where(Face.id.in_(ids))).all()
            image_ids = {image_id for _, image_id in found}
            s.execute(delete(Face).where(Face.id.in_(ids)))
            for image_id in image_ids:
                left = s.scalar(select(func.count(Face.id)).where(Face.image_id == image_id))
                if not left:
                    s.execute(delete(Image).where(Image.id == image_id))
        return len(found)

    def delete_image(self, image_id: int) -> list[int]:
        """Delete an image and its faces; returns the deleted face ids (for the index)."""
        with self.session() as s, s.begin():
            if s.get(Image, image_id) is None:
                raise NotFoundError(f"no image with id {image_id}")
            ids = list(
                s.scalars(select(Face.id).where(Face.image_id == image_id).order_by(Face.id))
            )
            s.execute(delete(Face).where(Face.image_id == image_id))
            s.execute(delete(Image).where(Image.id == image_id))
        return ids


def external_id_conflict(held: ImageSummary, wanted: str) -> ConfigError:
    return ConfigError(
        f"this photo is already held as image {held.id} with external id "
        f"{held.external_id!r}; it cannot also be {wanted!r}",
        code="external_id_conflict",
    )
