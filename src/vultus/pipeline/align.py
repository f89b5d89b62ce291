"""Alignment: dlib's 5-point landmarks, then a 150x150 chip with dlib's own geometry, which is
what the ResNet descriptor was trained on."""

from __future__ import annotations

from collections.abc import Sequence

import dlib
import numpy as np
import numpy.typing as npt

from vultus.pipeline.base import Box, Detection, Landmarks, RGBImage
from vultus.pipeline.models import landmarks_5_model

CHIP_SIZE = 150
CHIP_PADDING = 0.25


class FivePointAligner:
    layout = "dlib5"

    def __init__(self) -> None:
        self._predictor = dlib.shape_predictor(str(landmarks_5_model()))

    def landmarks(self, image: RGBImage, box: Box) -> dlib.full_object_detection:
        rect = dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1)
        return self._predictor(image, rect)

    def align(
        self, image: RGBImage, detections: Sequence[Detection]
    ) -> tuple[list[Landmarks], npt.NDArray[np.uint8]]:
        """Landmarks per box and the chips as one (n, 150, 150, 3) array, ready to batch."""
        boxes = [d.box for d in detections]
        if not boxes:
            return [], np.empty((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
        shapes = dlib.full_object_detections()
        points: list[Landmarks] = []
        for box in boxes:
            shape = self.landmarks(image, box)
            shapes.append(shape)
            points.append(
                np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32).reshape(-1, 2)
            )
        chips = dlib.get_face_chips(image, shapes, size=CHIP_SIZE, padding=CHIP_PADDING)
        return points, np.stack([np.asarray(c, dtype=np.uint8) for c in chips])
