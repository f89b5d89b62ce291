"""The photo a rights request keeps: one face, the person's.

A request by selfie needs a photo of the person alone; people send what they have. A photo with
no usable face is refused at once (nothing is stored); a photo with several faces lets the
person choose theirs, and the request keeps a crop of that face with a margin, the other faces
in it painted over, so that the request holds no one else's face. The Engine's `photo_faces`
and `intake_photo` run the detector; this module holds the geometry.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

Box = tuple[int, int, int, int]
# The crop around the chosen face: its box grown by this share of its side on each side, so the
# detector finds the face again with the context it needs (hair, chin, ears).
MARGIN = 0.6
# Tried in turn when a neighbour's face still shows in the crop.
MARGINS = (MARGIN, 0.3)
# A photo sent back to the person to choose a face in: small enough to travel in a form.
WORKING_SIDE = 1280
CROP_QUALITY = 92


@dataclass(frozen=True)
class PhotoFace:
    number: int  # 1 is the largest usable face
    box: Box


@dataclass(frozen=True)
class PhotoFaces:
    """The usable faces of a photo, largest first, in the upright photo's pixels."""

    width: int
    height: int
    faces: list[PhotoFace]
    unusable: int  # faces seen but too small, blurred or turned away to be used

    def face(self, number: int) -> PhotoFace | None:
        return next((f for f in self.faces if f.number == number), None)


def crop_face(
    rgb: npt.NDArray[np.uint8], box: Box, others: Sequence[Box], *, margin: float = MARGIN
) -> bytes:
    """A JPEG of the face in `box` grown by `margin` (clamped to the photo), with every box of
    `others` that reaches into it painted over."""
    height, width = rgb.shape[:2]
    left, top, right, bottom = box
    grow = max(right - left, bottom - top) * margin
    crop = (
        max(0, int(left - grow)),
        max(0, int(top - grow)),
        min(width, int(right + grow)),
        min(height, int(bottom + grow)),
    )
    image = Image.fromarray(rgb).crop(crop)
    draw = ImageDraw.Draw(image)
    for o_left, o_top, o_right, o_bottom in others:
        # Painted a little larger than the box: a detector's box is tight around the face.
        pad = max(o_right - o_left, o_bottom - o_top) * 0.15
        shape = [
            o_left - pad - crop[0],
            o_top - pad - crop[1],
            o_right + pad - crop[0],
            o_bottom + pad - crop[1],
        ]
        if shape[2] > 0 and shape[3] > 0 and shape[0] < image.width and shape[1] < image.height:
            draw.rectangle(shape, fill=(128, 128, 128))
    return _jpeg(image, CROP_QUALITY)


def working_copy(rgb: npt.NDArray[np.uint8]) -> bytes:
    """The upright photo, no larger than `WORKING_SIDE`, as a JPEG: what a face is chosen in
    and cropped from when a photo shows several people."""
    image = Image.fromarray(rgb)
    image.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.LANCZOS)
    return _jpeg(image, 90)


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()
