"""SCRFD face detection in ONNX Runtime, decoded as InsightFace decodes it.

The image is letterboxed into the graph's input (640x640 when the graph takes any size),
normalised with mean 127.5 and std 128. For each stride (8, 16, 32) the graph gives, per
location and per anchor (2), a score, four distances from the anchor centre to the box's
sides and five keypoints as offsets from the centre, all in units of the stride. Boxes over the
score threshold go through non-maximum suppression.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

from vultus.pipeline import runtime
from vultus.pipeline.base import Box, Detection, RGBImage
from vultus.pipeline.packs import ANCHORS, STRIDES, DetectorSpec

SCORE_THRESHOLD = 0.5
NMS_THRESHOLD = 0.4
MEAN, STD = 127.5, 128.0

FloatArray = npt.NDArray[np.float32]


def letterbox(image: RGBImage, size: tuple[int, int]) -> tuple[FloatArray, float]:
    """The image scaled to fit `size` (height, width), pasted top-left on black, as a
    normalised 1x3xHxW blob, and the scale from original to blob pixels."""
    height, width = image.shape[:2]
    scale = min(size[0] / height, size[1] / width)
    new_h, new_w = max(1, int(height * scale)), max(1, int(width * scale))
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))
    # The black border, already normalised; only the image part is computed.
    blob = np.full((1, 3, size[0], size[1]), -MEAN / STD, np.float32)
    blob[0, :, :new_h, :new_w] = (resized.transpose(2, 0, 1).astype(np.float32) - MEAN) / STD
    return blob, new_h / height


def anchor_centres(size: tuple[int, int], stride: int) -> FloatArray:
    """(x, y) of every anchor, row by row, each location repeated once per anchor."""
    rows, cols = size[0] // stride, size[1] // stride
    ys, xs = np.mgrid[:rows, :cols]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, ANCHORS, axis=0)


def nms(boxes: FloatArray, scores: FloatArray, threshold: float) -> list[int]:
    """Indices kept, best score first: greedy suppression by intersection over union."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= threshold]
    return keep


def decode(
    outputs: dict[str, FloatArray],
    spec: DetectorSpec,
    *,
    score_threshold: float = SCORE_THRESHOLD,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Scores (n,), boxes (n, 4: x1 y1 x2 y2) and keypoints (n, 5, 2) in blob pixels, after
    NMS, best first."""
    size = spec.run_size
    all_scores, all_boxes, all_kps = [], [], []
    for i, stride in enumerate(STRIDES):
        scores = outputs[spec.scores[i]].reshape(-1)
        distances = outputs[spec.boxes[i]].reshape(-1, 4) * stride
        offsets = outputs[spec.keypoints[i]].reshape(-1, 5, 2) * stride
        centres = anchor_centres(size, stride)
        hit = np.flatnonzero(scores >= score_threshold)
        c = centres[hit]
        boxes = np.concatenate([c - distances[hit, :2], c + distances[hit, 2:]], axis=1)
        all_scores.append(scores[hit])
        all_boxes.append(boxes)
        all_kps.append(c[:, None, :] + offsets[hit])
    scores = np.concatenate(all_scores).astype(np.float32)
    boxes = np.concatenate(all_boxes).astype(np.float32)
    kps = np.concatenate(all_kps).astype(np.float32)
    keep = nms(boxes, scores, NMS_THRESHOLD) if len(scores) else []
    return scores[keep], boxes[keep], kps[keep]


class ScrfdDetector:
    """An SCRFD graph from a model pack. Its detections carry five keypoints (eyes, nose
    tip, mouth corners), which the ArcFace aligner needs."""

    name = "scrfd"

    def __init__(self, spec: DetectorSpec, *, threads: int = 1) -> None:
        self.spec = spec
        self._session = runtime.session(spec.path, threads=threads)
        self._outputs = [*spec.scores, *spec.boxes, *spec.keypoints]

    def detect(self, image: RGBImage) -> list[Detection]:
        height, width = image.shape[:2]
        blob, scale = letterbox(image, self.spec.run_size)
        values = self._session.run(self._outputs, {self.spec.input_name: blob})
        scores, boxes, kps = decode(dict(zip(self._outputs, values, strict=True)), self.spec)
        found: list[Detection] = []
        for score, box, points in zip(scores, boxes / scale, kps / scale, strict=True):
            clipped = Box(
                max(0, round(float(box[0]))),
                max(0, round(float(box[1]))),
                min(width, round(float(box[2]))),
                min(height, round(float(box[3]))),
            )
            if clipped.width > 0 and clipped.height > 0:
                landmarks = tuple((float(x), float(y)) for x, y in points)
                found.append(Detection(clipped, float(score), self.name, landmarks))
        return found
