"""Erasure (Art. 17): the plan a DPO reviews, what becomes of each file (stored copies deleted
or blurred, originals deleted, blurred or left in place), and the signed receipt that says so.
The catalog and index halves live in the catalog and the Engine."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import stat
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image, ImageFilter, ImageOps

from vultus.catalog.records import ErasedFaces
from vultus.crypto import KeyRing
from vultus.errors import SourceError
from vultus.files import atomic_file, atomic_write, private_dir
from vultus.pipeline.video import is_video
from vultus.rights.video_blur import blur_video
from vultus.storage import (
    bucket_keeps_versions,
    delete_object,
    is_s3,
    local_path,
    read_location,
    write_object,
)

log = logging.getLogger(__name__)


def is_stored_copy(path: str, data_dir: Path) -> bool:
    """Copies Vultus itself keeps (uploads) live under the data directory; originals in the
    operator's folders are theirs, altered only when asked."""
    try:
        Path(path).resolve().relative_to(data_dir.resolve())
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class PersonMatch:
    """One catalogued face judged to be the person, with the evidence."""

    face_id: int
    image_id: int
    image_path: str
    box: tuple[int, int, int, int]
    distance: float
    fmr: float  # estimated chance that a stranger in this gallery comes this close
    other_faces: int  # faces of other people in the same image, which an erasure keeps
    restricted: bool


@dataclass
class ErasurePlan:
    """What an erasure would remove: shown first, carried out only after confirmation."""

    matches: list[PersonMatch]
    threshold: float
    fmr_target: float
    gallery_size: int
    # The fused template of the person: becomes the suppression entry. Never shown or exported.
    template: Any = field(repr=False, default=None)

    @property
    def face_ids(self) -> list[int]:
        return [m.face_id for m in self.matches]

    @property
    def images_removed(self) -> int:
        return sum(1 for m in self.matches if m.other_faces == 0)

    def without(self, face_ids: set[int]) -> ErasurePlan:
        """The DPO may strike matches they judge not to be the person."""
        kept = [m for m in self.matches if m.face_id not in face_ids]
        return ErasurePlan(kept, self.threshold, self.fmr_target, self.gallery_size, self.template)


@dataclass(frozen=True)
class ErasureReceipt:
    """What an erasure did, exactly: counts and hashes of what left Vultus, and the locations
    of the files it deleted, blurred or left in place (an original outside the data directory
    is the operator's, and is deleted only where its source allows it). Never the image data;
    signed with a key derived from the master key, every field but the signature covered."""

    receipt_id: str
    at: datetime
    request_ref: str | None
    faces_erased: int  # faces and templates removed from the catalog and the index
    images_erased: int  # images removed from the catalog (they held only this person)
    images_kept_with_others: int  # images still catalogued for the other people in them
    copies_blurred: int  # files in which the erased faces were blurred: len(blurred)
    suppression_added: bool
    image_hashes: list[str]  # sha256 of each erased image's content: lets a subject check theirs
    stored_copies_deleted: list[str] = field(default_factory=list)  # uploads in the data dir
    originals_deleted: list[str] = field(default_factory=list)  # sources with originals_deletable
    blurred: list[str] = field(default_factory=list)  # stored copies, and originals when asked
    # Files that may still show the person, each {"location": ..., "reason": ...}.
    left_in_place: list[dict[str, str]] = field(default_factory=list)
    # Collection memberships (AWS Rekognition-compatible API) that went with the faces, each
    # {"collection": name, "face_id": the FaceId its clients knew}.
    collection_memberships: list[dict[str, str]] = field(default_factory=list)
    signature: str = ""

    def payload(self) -> bytes:
        data = asdict(self)
        data.pop("signature")
        # Receipts signed before collections existed hold no such field: leave it out when
        # empty, so their signatures still verify.
        if not data["collection_memberships"]:
            data.pop("collection_memberships")
        return json.dumps(data, sort_keys=True, default=str, separators=(",", ":")).encode()

    def signed(self, keyring: KeyRing) -> ErasureReceipt:
        return ErasureReceipt(**{**asdict(self), "signature": keyring.sign(self.payload())})

    def verify(self, keyring: KeyRing) -> bool:
        return keyring.verify(self.payload(), self.signature)

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ErasureReceipt:
        return cls(**{**data, "at": datetime.fromisoformat(str(data["at"]))})


def receipt_id(face_ids: list[int], at: datetime) -> str:
    digest = hashlib.sha256(f"{sorted(face_ids)}|{at.isoformat()}".encode()).hexdigest()
    return f"E-{at:%Y%m%d}-{digest[:8]}"


def receipt_path(folder: Path, rid: str) -> Path:
    return folder / f"{rid}.json"


def write_receipt(receipt: ErasureReceipt, folder: Path) -> Path:
    private_dir(folder)
    path = receipt_path(folder, receipt.receipt_id)
    atomic_write(path, json.dumps(receipt.to_json(), indent=2))
    return path


def read_receipt(folder: Path, rid: str) -> ErasureReceipt | None:
    path = receipt_path(folder, rid)
    if not path.exists():
        return None
    return ErasureReceipt.from_json(json.loads(path.read_text()))


# -- the files of an erasure -----------------------------------------------------------------
# Decided in the transaction that erases the faces (so a rerun after a crash does the same),
# carried out after it. One entry per image: {"location", "copy": "stored" | "original",
# "action": "delete" | "blur" | "leave", "boxes", "reason" (for "leave")}.
DELETE, BLUR, LEAVE = "delete", "blur", "leave"
STORED, ORIGINAL = "stored", "original"


def plan_files(
    erased: ErasedFaces, *, data_dir: Path, blur_originals: bool
) -> list[dict[str, Any]]:
    """What to do with the file of each image the erasure touched. Stored copies (uploads in
    the data directory) are Vultus's own: deleted when the image held only this person, else
    blurred. Originals are the operator's: deleted only where their source has
    `originals_deletable` and the photo held only this person; blurred with `blur_originals`;
    otherwise left in place, and the receipt says so and why."""
    work: list[dict[str, Any]] = []
    for image_id, location, _ in erased.images_removed:
        boxes = erased.boxes.get(image_id, [])
        source, deletable = erased.sources.get(image_id, ("", False))
        if is_stored_copy(location, data_dir):
            work.append(_entry(location, STORED, DELETE, boxes))
        elif deletable:
            work.append(_entry(location, ORIGINAL, DELETE, boxes))
        elif blur_originals:
            work.append(_entry(location, ORIGINAL, BLUR, boxes))
        else:
            reason = (
                f"an original of source {source!r}, which does not let Vultus delete its "
                "originals (originals_deletable is off): delete or blur it yourself"
            )
            work.append(_entry(location, ORIGINAL, LEAVE, boxes, reason))
    for _, location, boxes in erased.images_kept:
        if is_stored_copy(location, data_dir):
            work.append(_entry(location, STORED, BLUR, boxes))
        elif blur_originals:
            work.append(_entry(location, ORIGINAL, BLUR, boxes))
        else:
            reason = (
                "an original that also shows other people, so it stays; the erased face is "
                "not blurred in it (erase with --blur-originals, or blur it yourself)"
            )
            work.append(_entry(location, ORIGINAL, LEAVE, boxes, reason))
    return work


def _entry(
    location: str, copy: str, action: str, boxes: list[list[int]], reason: str | None = None
) -> dict[str, Any]:
    return {"location": location, "copy": copy, "action": action, "boxes": boxes, "reason": reason}


@dataclass
class FilesDone:
    """What became of the files: the receipt's locations."""

    stored_copies_deleted: list[str] = field(default_factory=list)
    originals_deleted: list[str] = field(default_factory=list)
    blurred: list[str] = field(default_factory=list)
    left_in_place: list[dict[str, str]] = field(default_factory=list)

    def leave(self, location: str, reason: str) -> None:
        self.left_in_place.append({"location": location, "reason": reason})


def carry_out(work: list[dict[str, Any]], *, endpoint_url: str | None) -> FilesDone:
    """Do the planned file work. Safe to run twice (after a crash): a file already deleted
    counts as deleted, a face already blurred is blurred again. Failures never raise: the
    erasure in the catalog and the index is done by then; the file is reported as left."""
    done = FilesDone()
    for item in work:
        location, action = str(item["location"]), item["action"]
        if action == LEAVE:
            if _may_exist(location):  # an original moved or deleted since holds no face
                done.leave(location, str(item["reason"]))
        elif action == DELETE:
            why = delete_location(location, endpoint_url=endpoint_url)
            if why is not None:
                done.leave(location, why)
            elif item["copy"] == STORED:
                done.stored_copies_deleted.append(location)
            else:
                done.originals_deleted.append(location)
        elif blur_location(location, item["boxes"], endpoint_url=endpoint_url):
            done.blurred.append(location)
        elif _may_exist(location):  # a file that is gone holds no face
            done.leave(location, "the erased face could not be blurred in it (see the log)")
    return done


def _may_exist(location: str) -> bool:
    try:
        path = local_path(location)
    except SourceError:
        return True
    return path is None or path.exists()


def delete_location(location: str, *, endpoint_url: str | None) -> str | None:
    """Delete a file or an object; None when it is gone, else why it stays."""
    if not is_s3(location):
        try:
            path = local_path(location)
            assert path is not None
            path.unlink(missing_ok=True)
        except (OSError, SourceError) as exc:
            log.error("could not delete %s: %s", location, exc)
            return f"could not be deleted ({exc}): delete it yourself"
        return None
    try:
        versioned = bucket_keeps_versions(location, endpoint_url=endpoint_url)
    except SourceError as exc:
        return (
            f"could not check whether its bucket keeps object versions ({exc.message}): "
            "delete it yourself"
        )
    if versioned:
        # A delete would only add a delete marker: the photo would stay as an older version
        # while the receipt said it was gone.
        return (
            "its bucket keeps object versions, so deleting it would leave the photo behind as "
            "an older version: remove the object's versions yourself"
        )
    try:
        delete_object(location, endpoint_url=endpoint_url)
    except SourceError as exc:
        if exc.code == "object_not_found":
            return None
        log.error("could not delete %s: %s", location, exc)
        return f"could not be deleted ({exc.message}): delete it yourself"
    return None


def blur_faces(path: Path, boxes: list[list[int]]) -> bool:
    """Blur the given boxes (in EXIF-oriented pixels, as detection saw them) in a stored image,
    in place and atomically. Returns False when the file is gone."""
    try:
        with Image.open(path) as opened:
            image, fmt = _blurred(opened, boxes)
        # The blurred file keeps the mode it had: a stored copy stays private, an original
        # stays as its owner set it.
        mode = stat.S_IMODE(path.stat().st_mode)
    except (FileNotFoundError, OSError):
        return False
    with atomic_file(path, mode=mode) as fh:
        image.save(fh, format=fmt)
    return True


def blur_object(uri: str, boxes: list[list[int]], *, endpoint_url: str | None = None) -> bool:
    """`blur_faces` for an object in a bucket: read, blur, write back under the same key.
    Returns False when the object is gone or cannot be read or written (logged): the erasure
    itself, in the catalog and the index, is done by then and must not be undone by this."""
    try:
        with Image.open(io.BytesIO(read_location(uri, endpoint_url=endpoint_url))) as opened:
            image, fmt = _blurred(opened, boxes)
        out = io.BytesIO()
        image.save(out, format=fmt)
        write_object(uri, out.getvalue(), endpoint_url=endpoint_url)
    except (SourceError, OSError) as exc:
        log.error("could not blur the erased faces in %s: %s", uri, exc)
        return False
    return True


def blur_location(location: str, boxes: list[list[int]], *, endpoint_url: str | None) -> bool:
    if is_video(location):
        if is_s3(location):  # re-encoding a video held in a bucket: not done, and said so
            log.error("videos in a bucket are not blurred: %s", location)
            return False
        return blur_video(Path(location), [list(map(float, b)) for b in boxes])
    if is_s3(location):
        return blur_object(location, boxes, endpoint_url=endpoint_url)
    return blur_faces(Path(location), boxes)


def _blurred(opened: Image.Image, boxes: list[list[int]]) -> tuple[Image.Image, str]:
    fmt = opened.format or "PNG"
    image = ImageOps.exif_transpose(opened).convert("RGB")
    for left, top, right, bottom in boxes:
        # Grow the box: hair and jawline identify a person too.
        grow_x, grow_y = (right - left) // 4, (bottom - top) // 4
        region = (
            max(0, left - grow_x),
            max(0, top - grow_y),
            min(image.width, right + grow_x),
            min(image.height, bottom + grow_y),
        )
        patch = image.crop(region)
        radius = max(8, (region[2] - region[0]) // 6)
        image.paste(patch.filter(ImageFilter.GaussianBlur(radius)), region[:2])
    return image, fmt if fmt in {"JPEG", "PNG", "WEBP", "BMP", "TIFF"} else "PNG"
