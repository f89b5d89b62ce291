"""Ingest runs: opening and closing a run, and writing its analysed images, faces, video tracks,
counters and errors in one transaction per batch; then reading a run back. This is the catalog's
write path for new photos, apart from the reading and rights code in `store` so that what ingest
does to the database can be read in one place (the bulk inserts it relies on are in `bulk`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from vultus.catalog.bulk import allocate_ids, insert_rows
from vultus.catalog.models import (
    Face,
    FaceTrack,
    Image,
    IngestError,
    IngestRun,
    Source,
)
from vultus.catalog.records import NewImage
from vultus.clock import now
from vultus.errors import NotFoundError

# The AAD a video track's crop is sealed under: written here, read by `Catalog.track_crop` and
# re-keyed by key rotation (both import it from `store`, which imports it from here).
TRACK_CROP_AAD = b"face_tracks.crop"


class IngestRunQueries:
    """Mixed into `Catalog`: ingest runs and what they write."""

    if TYPE_CHECKING:

        def session(self) -> Session: ...

        def seal(self, template: npt.NDArray[np.float32], aad: bytes = ...) -> bytes: ...

        def seal_bytes(self, data: bytes, aad: bytes) -> bytes: ...

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
