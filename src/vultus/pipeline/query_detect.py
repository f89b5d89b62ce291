"""Detection for query photos: a search has one photo and one face to find in it, so it can
afford the slow detectors that ingest cannot.

Ingest runs HOG alone (13 ms on a small photo), and in a group selfie HOG found 4 of about 8
faces and missed the nearest, largest one. A query photo is detected by HOG and MMOD together
("thorough", the default for searches; about 0.2 s more at 800 px), and on request by MMOD at
three scales and HOG upsampled as well ("harder", about 2 s): the MMOD pyramid starts at the
photo's own scale, so a face larger than its window is found only on a halved copy, and one
smaller than it only on a doubled copy. Figures for the shared group photos: docs/search.md.

Where detectors overlap, the HOG box is kept: the gallery was detected by HOG, so a face HOG
finds gives the query the same box, landmarks and template as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vultus.pipeline.base import Box, Detection, Detector, RGBImage
from vultus.pipeline.decode import downscale

# How much of the photo a query is detected on; "standard" is the ingest detector as configured.
QUERY_DETECTION = ("standard", "thorough", "harder")
# Two boxes this much overlapping (intersection over the smaller box) are the same face.
SAME_FACE_COVER = 0.5
# A doubled copy is made only of photos whose detection copy is small: faces in a large photo
# are already seen at full resolution, and MMOD's cost grows with the pixels.
DOUBLE_MAX_SIDE = 700


def _cover(a: Box, b: Box) -> float:
    width = min(a.right, b.right) - max(a.left, b.left)
    height = min(a.bottom, b.bottom) - max(a.top, b.top)
    if width <= 0 or height <= 0:
        return 0.0
    smaller = min(a.width * a.height, b.width * b.height)
    return width * height / smaller if smaller else 0.0


def merge(passes: Sequence[Sequence[Detection]]) -> list[Detection]:
    """Every face any pass found, once: a detection overlapping one already kept (from an
    earlier pass, or a better-scored one of its own pass) is the same face."""
    kept: list[Detection] = []
    for found in passes:
        for det in sorted(found, key=lambda d: d.score, reverse=True):
            if all(_cover(det.box, k.box) < SAME_FACE_COVER for k in kept):
                kept.append(det)
    return kept


def _double(image: RGBImage) -> RGBImage:
    return np.ascontiguousarray(np.repeat(np.repeat(image, 2, axis=0), 2, axis=1))


class QueryDetector:
    """HOG first, then MMOD ("thorough"); with `harder`, also HOG upsampled and MMOD on a
    halved and a doubled copy. `hog` should run without its own fallbacks: every pass runs."""

    def __init__(self, hog: Detector, mmod: Detector, *, harder: bool = False) -> None:
        self.hog = hog
        self.mmod = mmod
        self.harder = harder
        self.name = "harder" if harder else "thorough"

    def detect(self, image: RGBImage) -> list[Detection]:
        passes = [self.hog.detect(image), self.mmod.detect(image)]
        if not self.harder:
            return merge(passes)
        height, width = image.shape[:2]
        half, scale = downscale(image, max(1, max(height, width) // 2))
        passes.append([d.scaled(scale) for d in self.mmod.detect(half)])
        if max(height, width) <= DOUBLE_MAX_SIDE:
            passes.append([d.scaled(0.5) for d in self.mmod.detect(_double(image))])
        upsampled = getattr(self.hog, "upsampled", None)
        if upsampled is not None:
            passes.append(upsampled(image))
        return merge(passes)
