"""Face quality measures recorded with every face, and the gate that keeps poor faces out of
the index. Each face that fails the gate is stored with its reason, so nothing vanishes silently."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from vultus.pipeline.base import Box


@dataclass(frozen=True)
class Quality:
    box_size: int  # shorter side of the box, original pixels
    det_score: float  # detector confidence (HOG margin, or MMOD confidence)
    sharpness: float  # variance of the Laplacian on the grey chip; low means blurred
    yaw: float  # nose offset from the eye midpoint over the eye distance; 0 is frontal

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def sharpness(chip: npt.NDArray[np.uint8]) -> float:
    grey = chip.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = (
        -4 * grey[1:-1, 1:-1] + grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
    )
    return float(lap.var())


def yaw_proxy(landmarks: npt.NDArray[np.float32], layout: str = "dlib5") -> float:
    """dlib's 5-point model gives two corners per eye (points 0-1 and 2-3) and the nose base (4);
    ArcFace's ("arcface5") the eye centres (0, 1), the nose tip (2) and the mouth corners.
    A turned head moves the nose towards one eye; the ratio is a cheap, model-free pose cue."""
    if layout == "arcface5":
        eye_a, eye_b, nose = landmarks[0], landmarks[1], landmarks[2]
    else:
        eye_a, eye_b, nose = landmarks[0:2].mean(axis=0), landmarks[2:4].mean(axis=0), landmarks[4]
    span = float(np.linalg.norm(eye_a - eye_b))
    if span < 1e-6:
        return 0.0
    axis = (eye_b - eye_a) / span
    offset = float(np.dot(nose - (eye_a + eye_b) / 2, axis))
    return offset / span


def measure(
    box: Box,
    det_score: float,
    chip: npt.NDArray[np.uint8],
    landmarks: npt.NDArray[np.float32],
    *,
    layout: str = "dlib5",
) -> Quality:
    return Quality(
        box_size=box.size,
        det_score=round(det_score, 4),
        sharpness=round(sharpness(chip), 2),
        yaw=round(yaw_proxy(landmarks, layout), 4),
    )


def skip_reason(quality: Quality, *, min_face_px: int) -> str | None:
    if quality.box_size < min_face_px:
        return f"face_too_small: {quality.box_size} px < {min_face_px} px"
    return None
