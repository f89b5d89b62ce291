"""The one place that talks SQL: the `Catalog`. Everything above it uses these methods; subjects,
jobs, ingest runs, deletion and the rest live in their own modules (mixed in), records in
`records`, opening in `connect`."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    BigInteger,
    Engine,
    any_,
    bindparam,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, joinedload, sessionmaker

from vultus import lawful_basis
from vultus.catalog.changes import ChangeQueries
from vultus.catalog.collections import CollectionQueries
from vultus.catalog.deletion import DeletionQueries
from vultus.catalog.ingest_runs import TRACK_CROP_AAD, IngestRunQueries
from vultus.catalog.jobs import JobQueries
from vultus.catalog.models import (
    Face,
    FaceTrack,
    Image,
    Meta,
    Source,
    Subject,
)
from vultus.catalog.people import PersonDecisionQueries
from vultus.catalog.records import (
    FaceRecord,
    ImageSummary,
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
SUPPRESSION_AAD = b"suppression.template"

# What the vector index holds: usable templates that no restriction (Art. 18/21) hides.
SEARCHABLE = (Face.status == "indexed") & Face.restricted.is_(False)


class Catalog(
    SubjectQueries,
    PersonDecisionQueries,
    JobQueries,
    ChangeQueries,
    CollectionQueries,
    IngestRunQueries,
    DeletionQueries,
):
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


def external_id_conflict(held: ImageSummary, wanted: str) -> ConfigError:
    return ConfigError(
        f"this photo is already held as image {held.id} with external id "
        f"{held.external_id!r}; it cannot also be {wanted!r}",
        code="external_id_conflict",
    )
