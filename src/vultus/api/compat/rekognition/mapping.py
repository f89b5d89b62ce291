"""Vultus's answers in Rekognition's terms: boxes as ratios of the photo, the detector's score
and the calibrated decision as percentages, landmarks by name, skip reasons by Rekognition's
codes. What each number means is in docs/compat.md."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from vultus.api.compat import similarity as shared

# The calibrated decision reads 80 (Rekognition's default FaceMatchThreshold), the edge of the
# "possible, check by eye" tier 50: CompreFace's reading of it (compat.similarity), times 100.
MATCH_SIMILARITY = 100 * shared.MATCH
POSSIBLE_SIMILARITY = 100 * shared.POSSIBLE


def similarity(distance: float, match: float, possible: float) -> float:
    """0..100 from a distance and the two calibrated thresholds (see compat.similarity)."""
    return round(100 * shared.similarity(distance, match, possible), 3)


def confidence(det_score: float) -> float:
    """The detector's score as a percentage: a logistic curve, 50 at a score of 0 (the HOG
    detector's own boundary), 98.2 at 1.0 (where Vultus flags a low-quality query)."""
    return round(100.0 / (1.0 + math.exp(-4.0 * det_score)), 4)


def bounding_box(box: Sequence[int], width: int, height: int) -> dict[str, float]:
    left, top, right, bottom = box
    w, h = max(1, width), max(1, height)
    return {
        "Width": (right - left) / w,
        "Height": (bottom - top) / h,
        "Left": left / w,
        "Top": top / h,
    }


def landmarks(points: Sequence[Sequence[float]], width: int, height: int) -> list[dict[str, Any]]:
    """Named landmarks, as ratios. dlib's five points are two corners of each eye and the base
    of the nose; a model pack's five are the eye centres, the nose tip and the mouth corners.
    Left and right are as the photo shows them (eyeLeft: the eye nearer the photo's left)."""
    w, h = max(1, width), max(1, height)
    pts = [(float(p[0]), float(p[1])) for p in points]
    named: list[tuple[str, tuple[float, float]]] = []
    if len(pts) == 5 and _dlib_layout(pts):
        eyes = sorted([_mid(pts[0], pts[1]), _mid(pts[2], pts[3])])
        named = [("eyeLeft", eyes[0]), ("eyeRight", eyes[1]), ("nose", pts[4])]
    elif len(pts) == 5:
        eyes = sorted(pts[0:2])
        mouth = sorted(pts[3:5])
        named = [
            ("eyeLeft", eyes[0]),
            ("eyeRight", eyes[1]),
            ("nose", pts[2]),
            ("mouthLeft", mouth[0]),
            ("mouthRight", mouth[1]),
        ]
    return [{"Type": name, "X": x / w, "Y": y / h} for name, (x, y) in named]


def _mid(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)


def _dlib_layout(pts: list[tuple[float, float]]) -> bool:
    """dlib's points 0-1 and 2-3 are one eye each (close together); ArcFace's 0 and 1 are the
    two eyes (far apart)."""
    eye_a = math.dist(pts[0], pts[1])
    eye_span = math.dist(_mid(pts[0], pts[1]), _mid(pts[2], pts[3]))
    return eye_a < eye_span


def unindexed_reason(reason: str) -> str:
    """Rekognition's code for why a face was not indexed."""
    if reason == "exceeds_max_faces":
        return "EXCEEDS_MAX_FACES"
    if reason.startswith("face_too_small"):
        return "SMALL_BOUNDING_BOX"
    return "LOW_FACE_QUALITY"


def face_detail(
    box: Sequence[int],
    det_score: float,
    points: Sequence[Sequence[float]],
    width: int,
    height: int,
) -> dict[str, Any]:
    return {
        "BoundingBox": bounding_box(box, width, height),
        "Landmarks": landmarks(points, width, height),
        "Confidence": confidence(det_score),
    }
