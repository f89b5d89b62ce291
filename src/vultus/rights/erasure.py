"""Erasure (Art. 17): the plan a DPO reviews, the blurring of stored copies, and the signed
receipt. The catalog and index halves live in the catalog and the Engine."""

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

from vultus.crypto import KeyRing
from vultus.errors import SourceError
from vultus.files import atomic_file, atomic_write, private_dir
from vultus.storage import is_s3, read_location, write_object

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
    """Counts and hashes, never the data; signed with a key derived from the master key."""

    receipt_id: str
    at: datetime
    request_ref: str | None
    faces_erased: int
    images_erased: int
    images_kept_with_others: int
    copies_blurred: int
    suppression_added: bool
    image_hashes: list[str]  # sha256 of each erased image's content: lets a subject check theirs
    signature: str = ""

    def payload(self) -> bytes:
        data = asdict(self)
        data.pop("signature")
        return json.dumps(data, sort_keys=True, default=str, separators=(",", ":")).encode()

    def signed(self, keyring: KeyRing) -> ErasureReceipt:
        return ErasureReceipt(**{**asdict(self), "signature": keyring.sign(self.payload())})

    def verify(self, keyring: KeyRing) -> bool:
        return keyring.verify(self.payload(), self.signature)

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))


def receipt_id(face_ids: list[int], at: datetime) -> str:
    digest = hashlib.sha256(f"{sorted(face_ids)}|{at.isoformat()}".encode()).hexdigest()
    return f"E-{at:%Y%m%d}-{digest[:8]}"


def write_receipt(receipt: ErasureReceipt, folder: Path) -> Path:
    private_dir(folder)
    path = folder / f"{receipt.receipt_id}.json"
    atomic_write(path, json.dumps(receipt.to_json(), indent=2))
    return path


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
