"""The small interfaces every face model sits behind, and the records they pass along.

A detector finds boxes in an RGB image; an aligner turns a box into landmarks and a face chip;
an embedder turns a batch of chips into templates. The runtime (ONNX Runtime, dlib) is a detail
of each implementation, never of the code that calls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

RGBImage = npt.NDArray[np.uint8]  # (height, width, 3), C-contiguous
Templates = npt.NDArray[np.float32]  # (n, dim)


@dataclass(frozen=True)
class Box:
    """A face box in pixel coordinates of the original image; right and bottom are exclusive."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def size(self) -> int:
        """The shorter side: what the quality gate compares with `min_face_px`."""
        return min(self.width, self.height)

    def scaled(self, factor: float) -> Box:
        return Box(
            round(self.left * factor),
            round(self.top * factor),
            round(self.right * factor),
            round(self.bottom * factor),
        )

    def as_list(self) -> list[int]:
        return [self.left, self.top, self.right, self.bottom]


@dataclass(frozen=True)
class Detection:
    box: Box
    score: float
    # Which pass found it: "hog", "hog-upsampled", "mmod", "blazeface", "blazeface-framed", "scrfd"
    detector: str
    # Five (x, y) keypoints from detectors that give them (SCRFD); None for dlib's detectors,
    # whose faces are landmarked by the aligner.
    landmarks: tuple[tuple[float, float], ...] | None = None

    def scaled(self, factor: float) -> Detection:
        points = (
            tuple((x * factor, y * factor) for x, y in self.landmarks)
            if self.landmarks is not None
            else None
        )
        return Detection(self.box.scaled(factor), self.score, self.detector, points)


class Detector(Protocol):
    name: str

    def detect(self, image: RGBImage) -> list[Detection]: ...


Landmarks = npt.NDArray[np.float32]  # (5, 2) x, y in original image pixels


class Aligner(Protocol):
    """Turns detections into landmarks and chips. `layout` names the landmarks' order:
    "dlib5" (two corners per eye, nose base) or "arcface5" (eyes, nose tip, mouth corners)."""

    layout: str

    def align(
        self, image: RGBImage, detections: Sequence[Detection]
    ) -> tuple[list[Landmarks], npt.NDArray[np.uint8]]: ...


class Embedder(Protocol):
    """Turns aligned chips into templates. `model_id` names the model and any post-processing;
    templates with different ids never share an index."""

    model_id: str
    dim: int
    chip_size: int

    def embed(self, chips: npt.NDArray[np.uint8]) -> Templates:
        """chips: (n, chip_size, chip_size, 3) uint8 RGB. Returns (n, dim) float32."""
        ...
