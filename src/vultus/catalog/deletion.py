"""Deletion: erasing faces (the catalog half of a rights erasure, with its suppression entry and
audit in the same transaction), deleting faces and images, and scrubbing the database file
afterwards so no freed page still holds what went. It is apart from `store` because it is the
code that must remove a person's data completely, and is easier to review as one short module."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from vultus.catalog import postgresql
from vultus.catalog.models import Face, FaceTrack, Image, Suppression
from vultus.catalog.records import ErasedFaces
from vultus.clock import now
from vultus.errors import NotFoundError


class DeletionQueries:
    """Mixed into `Catalog`: erasing and deleting faces and images."""

    if TYPE_CHECKING:
        engine: Engine

        def session(self) -> Session: ...

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
