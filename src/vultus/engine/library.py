"""The library: faces, images, subjects and the media the interfaces show and upload; every view
of a photo is audited."""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from vultus import audit as actions
from vultus.catalog import FaceRecord
from vultus.catalog.models import Subject
from vultus.catalog.records import ImageSummary
from vultus.catalog.store import external_id_conflict
from vultus.engine.locking import locked
from vultus.engine.parts import EngineParts
from vultus.errors import (
    ConfigError,
    DecodeError,
    ForbiddenError,
    NotFoundError,
    SourceError,
)
from vultus.files import atomic_write, private_dir
from vultus.ingest.batches import (
    IngestSummary,
)
from vultus.ingest.roots import confine
from vultus.pipeline.decode import decode_image
from vultus.pipeline.video import VideoReader, is_video, looks_like_video
from vultus.storage import local_path, read_location

# Audit actions of the catalog's own housekeeping (the rights actions live in rights.audit).
DELETE = "delete"
SUBJECT = "subject"
# Where uploads are kept: a stored copy that erasure may blur, named by content.
UPLOADS_DIR = "images"
# What an upload is called by the people who sent it (see Catalog.name_image).
MAX_NAME = 255
MAX_EXTERNAL_ID = 200
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
    "MP4": "video/mp4",
    "WEBM": "video/webm",
    "MKV": "video/x-matroska",
    "AVI": "video/x-msvideo",
}
SUFFIXES = {
    "MP4": ".mp4",
    "WEBM": ".webm",
    "MKV": ".mkv",
    "AVI": ".avi",
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "GIF": ".gif",
}


class Library(EngineParts):
    # -- faces, images, subjects -------------------------------------------------------------
    def face(self, face_id: int) -> FaceRecord:
        record = self.catalog.face_records([face_id]).get(face_id)
        if record is None:
            raise NotFoundError(f"no face with id {face_id}")
        return record

    def view_face(
        self, face_id: int, *, actor: str | None = None, via_search: int | None = None
    ) -> FaceRecord:
        """A face's record, shown to someone: audited as a view. With `via_search`, the view
        must come from that search of `actor`'s, whose results held the face (see
        `search_grant`); the view is audited with the search's id and purpose."""
        grant = self.search_grant(via_search, actor=actor, faces=[face_id])
        record = self.face(face_id)
        self.audit.append(actions.VIEW, actor=actor, result_ids=[face_id], **grant)
        return record

    def search_grant(
        self, search_id: int | None, *, actor: str | None, faces: Sequence[int]
    ) -> dict[str, Any]:
        """What lets a view through that must come from a search (an investigator's): the
        search `search_id` (its audit entry's id) was made by `actor`, and its results held
        one of `faces`. Returns what the view's audit entry records about it (the search, its
        purpose and case); None for `search_id` asks for no search and grants nothing.

        Refused with `ForbiddenError` (`not_in_results`) otherwise: an investigator sees only
        the photos of their own results, for their search's purpose."""
        if search_id is None:
            return {}
        entry = self.audit.entry(search_id)
        if entry is None or entry.action != actions.SEARCH or entry.actor != actor:
            raise ForbiddenError(
                f"search {search_id} is not a search made with this key; a photo or face is "
                "shown only from the results of one's own search",
                code="not_in_results",
            )
        if not set(entry.result_ids) & {int(f) for f in faces}:
            raise ForbiddenError(
                f"the results of search {search_id} do not hold this photo or face",
                code="not_in_results",
            )
        return {
            "purpose": entry.purpose,
            "case_ref": entry.case_ref,
            "details": {"search": entry.id},
        }

    @locked
    def delete_faces(self, face_ids: Sequence[int], *, actor: str | None = None) -> int:
        """Remove faces from the catalog, then from the index. If the process dies in between,
        the next open sees the index disagree with the catalog and removes them there too."""
        ids = [int(i) for i in face_ids]
        deleted = self.catalog.delete_faces(ids)
        self.index.remove(np.array(ids, dtype=np.int64))
        self.save_index()
        self.audit.append(DELETE, actor=actor, result_ids=ids, details={"faces": deleted})
        return deleted

    @locked
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
        """Untie faces from whatever subject they are linked to; returns how many were linked."""
        n = self.catalog.unlink_faces(face_ids)
        self._audit_subject("unlinked", actor, faces=list(face_ids))
        return n

    def delete_subject(self, name: str, *, actor: str | None = None) -> int:
        """Remove a subject's name and links; its faces stay in the catalog, unnamed (deleting
        faces is `delete_faces`). Returns how many faces were unlinked."""
        faces = [f.face_id for f in self.catalog.subject_faces(name)]
        n = self.catalog.delete_subject(name)
        self._audit_subject("deleted", actor, subject=name, faces=faces)
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
        """Photos, oldest first unless `newest_first`; filters as `Catalog.list_images`."""
        return self.catalog.list_images(
            source=source,
            external_id=external_id,
            offset=offset,
            limit=limit,
            newest_first=newest_first,
            added_from=added_from,
            added_until=added_until,
            subject=subject,
            name=name,
        )

    def image(self, image_id: int) -> tuple[ImageSummary, list[FaceRecord]]:
        return self.catalog.image_summary(image_id), self.catalog.faces_of_image(image_id)

    def image_file(
        self, image_id: int, *, actor: str | None = None, via_search: int | None = None
    ) -> tuple[Path, str]:
        """The image's local file and media type. Showing a photo discloses the faces in it,
        so it is audited as a view naming them (an access package lists who viewed). Images
        in a bucket have no local file: show those, and any other, with `image_data`. With
        `via_search`, only an image that search of `actor`'s returned (see `search_grant`)."""
        summary, faces = self.image(image_id)
        grant = self.search_grant(via_search, actor=actor, faces=[f.face_id for f in faces])
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
        self._audit_view(image_id, faces, actor, grant)
        return path, MEDIA_TYPES.get(summary.format, "application/octet-stream")

    def view_page(
        self,
        image_ids: Sequence[int],
        *,
        actor: str | None,
        page: str,
        faces: Sequence[int] | None = None,
        via_search: int | None = None,
    ) -> int | None:
        """One audit entry for a page that shows these photos (a page of the library, a
        photo's faces, a search's results): `faces`, or every face on them, as the page's
        pictures will disclose them. Its id is the `via_view` with which the page's pictures
        are then read without an entry each (a page of 24 photos is one entry, not 24). With
        `via_search`, the page shows that search's results (see `search_grant`), and the
        entry carries its purpose and case. None for a page that shows no photo."""
        ids = sorted({int(i) for i in image_ids})
        if not ids:
            return None
        shown = (
            [int(f) for f in faces]
            if faces is not None
            else [f.face_id for i in ids for f in self.catalog.faces_of_image(i)]
        )
        grant = dict(self.search_grant(via_search, actor=actor, faces=shown))
        details = {"page": page, "images": ids, **grant.pop("details", {})}
        return self.audit.append(
            actions.VIEW, actor=actor, result_ids=shown, details=details, **grant
        ).id

    def image_data(
        self,
        image_id: int,
        *,
        actor: str | None = None,
        via_search: int | None = None,
        via_view: int | None = None,
    ) -> tuple[bytes, str]:
        """The image's bytes and media type, wherever it lies (a local file or an object in a
        bucket), to show it; audited as a view like `image_file`. With `via_search`, only a
        photo that search of `actor`'s returned (see `search_grant`). With `via_view`, a
        picture of a page whose view `actor` has already logged (`view_page`): not logged
        again, and refused for a photo that page did not show."""
        summary, faces = self.image(image_id)
        if via_view is not None:
            self._check_view(via_view, actor, image_id)
            return self._read_image(image_id, summary), MEDIA_TYPES.get(
                summary.format, "application/octet-stream"
            )
        grant = self.search_grant(via_search, actor=actor, faces=[f.face_id for f in faces])
        data = self._read_image(image_id, summary)
        self._audit_view(image_id, faces, actor, grant)
        return data, MEDIA_TYPES.get(summary.format, "application/octet-stream")

    def _read_image(self, image_id: int, summary: ImageSummary) -> bytes:
        try:
            return read_location(summary.path, endpoint_url=self.settings.s3_endpoint_url)
        except SourceError as exc:
            if exc.code in ("file_not_found", "object_not_found"):
                raise NotFoundError(
                    f"the file of image {image_id} is no longer at {summary.path}",
                    code="file_missing",
                ) from None
            raise

    def _audit_view(
        self,
        image_id: int,
        faces: list[FaceRecord],
        actor: str | None,
        grant: dict[str, Any] | None = None,
    ) -> None:
        grant = dict(grant or {})
        details = {"image": image_id, **grant.pop("details", {})}
        self.audit.append(
            actions.VIEW,
            actor=actor,
            result_ids=[f.face_id for f in faces],
            details=details,
            **grant,
        )

    def thumbnail(
        self,
        image_id: int,
        *,
        max_side: int = 256,
        actor: str | None = None,
        via_search: int | None = None,
    ) -> bytes:
        """A JPEG no larger than `max_side`, upright; audited as a view like `image_file`."""
        data, _ = self.image_data(image_id, actor=actor, via_search=via_search)
        return _thumbnail_jpeg(data, max_side, max_pixels=self.settings.max_pixels)

    def upload(
        self,
        data: bytes,
        filename: str | None,
        *,
        source: str,
        consent: int | None = None,
        external_id: str | None = None,
        actor: str | None = None,
    ) -> tuple[IngestSummary, int | None]:
        """Keep an uploaded photo as `data_dir/images/<sha256><ext>` (a stored copy, which an
        erasure blurs) and ingest it, under `consent` where the source rests on consent. The
        decoder checks it first, so a bad upload writes nothing. Returns the summary and the
        image's id (None when every face in it was suppressed).

        Search results and listings name the photo by `filename` as sent (the stored copy is
        named by content) and by `external_id`, the caller's own id for it: a photo already
        held keeps the names it has, and is refused another external id."""
        external_id = check_external_id(external_id)
        self.check_consent(source, consent)
        try:
            decoded = self._check_media(data)
        except DecodeError as exc:
            raise DecodeError(f"{filename or 'the upload'}: {exc.message}", code=exc.code) from None
        held = self.catalog.image_by_sha256(decoded.sha256)
        if held and held.external_id and external_id and held.external_id != external_id:
            raise external_id_conflict(held, external_id)
        folder = private_dir(self.settings.data_dir / UPLOADS_DIR)
        path = folder / f"{decoded.sha256}{SUFFIXES.get(decoded.format, '.img')}"
        written = not path.exists()
        if written:
            atomic_write(path, data)
        try:
            summary = self.add([path], source=source, consent=consent, actor=actor)
        except BaseException:
            if written:
                path.unlink(missing_ok=True)
            raise
        image = self.catalog.image_by_sha256(decoded.sha256)
        if written and (image is None or Path(image.path) != path):
            path.unlink(missing_ok=True)  # held already under another path, or suppressed
        if str(path) in summary.suppressed_photos:  # named as sent: the stored copy is gone
            summary = dataclasses.replace(summary, suppressed_photos=[filename or "the upload"])
        if summary.multi_frame:  # named as sent, not as the stored copy
            frames = summary.multi_frame[0][1]
            summary = dataclasses.replace(summary, multi_frame=[(filename or "the upload", frames)])
        if image is None:
            return summary, None
        self.catalog.name_image(
            image.id, original_name=upload_name(filename), external_id=external_id
        )
        return summary, image.id

    def _check_media(self, media: Path | bytes) -> _Media:
        """A photo or a video checked by its decoder before anything is written: its content
        hash and format, or a `DecodeError` that says why it cannot be used."""
        name = media.name if isinstance(media, Path) else ""
        if is_video(name) or (isinstance(media, bytes) and looks_like_video(media)):
            with VideoReader(media, max_pixels=self.settings.max_pixels) as video:
                return _Media(video.info.sha256, video.info.format)
        decoded = decode_image(media, max_pixels=self.settings.max_pixels)
        return _Media(decoded.sha256, decoded.format)

    def face_still(
        self,
        face_id: int,
        *,
        actor: str | None = None,
        via_search: int | None = None,
        via_view: int | None = None,
    ) -> tuple[bytes, tuple[int, int, int, int]]:
        """A picture showing the face, and the face's box in it: a photo's own file, or a
        face track's best-frame crop (kept at ingest, so a video is not decoded to show one
        face). Audited as a view of the image like `image_data`, `via_view` included."""
        record = self.face(face_id)
        if record.track is None:
            data, _ = self.image_data(
                record.image_id, actor=actor, via_search=via_search, via_view=via_view
            )
            return data, record.box
        _, faces = self.image(record.image_id)
        grant = None
        if via_view is not None:
            self._check_view(via_view, actor, record.image_id)
        else:
            grant = self.search_grant(via_search, actor=actor, faces=[f.face_id for f in faces])
        kept = self.catalog.track_crop(face_id)
        if kept is None:
            raise NotFoundError(f"face {face_id} has no best-frame crop", code="file_missing")
        still, (left, top, right, _) = kept
        with PILImage.open(io.BytesIO(still)) as opened:
            scale = opened.width / max(1, right - left)
        box = tuple(
            round((v - origin) * scale)
            for v, origin in zip(record.box, (left, top, left, top), strict=True)
        )
        if via_view is None:
            self._audit_view(record.image_id, faces, actor, grant)
        return still, (box[0], box[1], box[2], box[3])

    def _check_view(self, via_view: int, actor: str | None, image_id: int) -> None:
        """`via_view` must be a page view `actor` logged that showed `image_id`."""
        entry = self.audit.entry(via_view)
        details: dict[str, Any] = dict(entry.details or {}) if entry is not None else {}
        shown: list[int] = list(details.get("images", []))
        if (
            entry is None
            or entry.action != actions.VIEW
            or entry.actor != actor
            or image_id not in shown
        ):
            raise ForbiddenError(
                f"view {via_view} is not a page of this key's that showed image {image_id}",
                code="not_in_view",
            )

    def register(
        self,
        path: Path | str,
        *,
        source: str,
        consent: int | None = None,
        actor: str | None = None,
    ) -> tuple[IngestSummary, int | None]:
        """Ingest one photo where it lies on the server, named by a client: confined to the
        ingest roots (see vultus.ingest.roots), checked by the decoder first. Returns the
        summary and the image's id (None when every face was suppressed)."""
        self.check_consent(source, consent)
        file = confine(str(path), self.settings.ingest_root_paths)
        if file.is_dir():
            raise SourceError(
                f"{file} is a folder: ingest folders with `vultus add` or an ingest job",
                code="path_is_folder",
            )
        decoded = self._check_media(file)
        summary = self.add([file], source=source, consent=consent, actor=actor)
        image = self.catalog.image_by_sha256(decoded.sha256)
        return summary, image.id if image is not None else None


def upload_name(filename: str | None) -> str | None:
    """The file name a client sent, without any folders it named (a browser may send
    `C:\\fakepath\\a.jpg`) or control characters; None when nothing is left."""
    name = CONTROL.sub("", (filename or "").replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return name[:MAX_NAME] or None


def check_external_id(external_id: str | None) -> str | None:
    """An integrator's id for a photo: 1 to 200 characters, none of them control characters."""
    if external_id is None:
        return None
    if not 1 <= len(external_id) <= MAX_EXTERNAL_ID or CONTROL.search(external_id):
        raise ConfigError(
            f"an external id is 1 to {MAX_EXTERNAL_ID} characters without control characters; "
            f"got {external_id[:40]!r}",
            code="external_id_invalid",
        )
    return external_id


@dataclasses.dataclass(frozen=True)
class _Media:
    sha256: str
    format: str


# A video's thumbnail: its frame at this time, or at half its length when it is shorter.
VIDEO_THUMBNAIL_S = 1.0


def _thumbnail_jpeg(photo: Path | bytes, max_side: int, *, max_pixels: int) -> bytes:
    if isinstance(photo, bytes) and looks_like_video(photo):
        with VideoReader(photo, max_pixels=max_pixels) as video:
            rgb = video.frame_at(min(VIDEO_THUMBNAIL_S, (video.info.duration_s or 0.0) / 2))
    else:
        rgb = decode_image(photo, max_pixels=max_pixels).rgb
    image = PILImage.fromarray(rgb)
    image.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()
