"""ArcFace: align a face on the standard 112x112 five-point template, embed it in ONNX Runtime.

The alignment is the similarity transform (rotation, uniform scale, translation) that best
maps the detector's five keypoints onto the template, found by Umeyama's least-squares method
and applied with Pillow: the recognizer was trained on chips made exactly this way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

from vultus.errors import ModelError
from vultus.pipeline import runtime
from vultus.pipeline.base import Detection, RGBImage, Templates
from vultus.pipeline.packs import REC_DIM, REC_SIZE, RecognizerSpec

# Left eye, right eye, nose tip, left and right mouth corners (image left/right), in pixels
# of the 112x112 chip: InsightFace's `arcface_dst`.
TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
MAX_BATCH = 64  # bounds peak memory: activations grow linearly with the batch

Landmarks = npt.NDArray[np.float32]  # (5, 2)


def umeyama(src: npt.NDArray[np.float64], dst: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The 2x3 similarity transform that maps `src` points onto `dst` in least squares
    (Umeyama 1991, with the reflection guard)."""
    n = len(src)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / n
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    variance = (s**2).sum() / n
    scale = float(np.trace(np.diag(sigma) @ sign) / variance) if variance > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - scale * rotation @ mu_s
    return matrix


def warp(image: Image.Image, matrix: npt.NDArray[np.float64], size: int) -> npt.NDArray[np.uint8]:
    """Apply a 2x3 transform (image pixels -> chip pixels) with Pillow, like OpenCV's
    warpAffine. Pillow wants the inverse (chip -> image) and samples pixel centres at +0.5,
    where landmarks put them at integer coordinates: hence the half-pixel shifts."""
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(full)
    shift = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    unshift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    pillow = unshift @ inverse @ shift
    coefficients = tuple(float(v) for v in pillow[:2].reshape(-1))
    chip = image.transform(
        (size, size), Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR
    )
    return np.asarray(chip, dtype=np.uint8)


class ArcFaceAligner:
    """Chips from the detector's own keypoints: no separate landmark model."""

    layout = "arcface5"

    def align(
        self, image: RGBImage, detections: Sequence[Detection]
    ) -> tuple[list[Landmarks], npt.NDArray[np.uint8]]:
        chips = np.empty((len(detections), REC_SIZE, REC_SIZE, 3), np.uint8)
        points: list[Landmarks] = []
        if not detections:
            return points, chips
        picture = Image.fromarray(image)  # once per image, not per face
        for i, det in enumerate(detections):
            if det.landmarks is None or len(det.landmarks) != len(TEMPLATE):
                raise ModelError(
                    f"the {det.detector} detector gave no five keypoints; ArcFace alignment "
                    "needs them"
                )
            src = np.asarray(det.landmarks, dtype=np.float64)
            chips[i] = warp(picture, umeyama(src, TEMPLATE), REC_SIZE)
            points.append(src.astype(np.float32))
        return points, chips


class ArcFaceEmbedder:
    """An ArcFace recognizer from a model pack: (x - 127.5) / 127.5 (unless the graph
    normalises inside), RGB, NCHW, batched; the 512-d output comes back L2-normalised."""

    dim = REC_DIM
    chip_size = REC_SIZE

    def __init__(self, spec: RecognizerSpec, model_id: str, *, threads: int = 1) -> None:
        self.spec = spec
        self.model_id = model_id
        self._session = runtime.session(spec.path, threads=threads)
        self._batch = MAX_BATCH if spec.dynamic_batch else 1

    def embed(self, chips: npt.NDArray[np.uint8]) -> Templates:
        chips = np.asarray(chips)
        if chips.dtype != np.uint8 or chips.shape[1:] != (REC_SIZE, REC_SIZE, 3):
            raise ValueError(
                f"chips must be uint8 of shape (n, {REC_SIZE}, {REC_SIZE}, 3); "
                f"got {chips.dtype} {chips.shape}"
            )
        if len(chips) == 0:
            return np.empty((0, REC_DIM), np.float32)
        parts = []
        for start in range(0, len(chips), self._batch):
            batch = chips[start : start + self._batch].astype(np.float32)
            scaled = (batch - self.spec.mean) / self.spec.std
            blob = np.ascontiguousarray(scaled.transpose(0, 3, 1, 2))
            out = self._session.run([self.spec.output_name], {self.spec.input_name: blob})[0]
            parts.append(np.asarray(out, np.float32).reshape(len(batch), REC_DIM))
        templates = np.concatenate(parts)
        norms = np.linalg.norm(templates, axis=1, keepdims=True)
        return (templates / np.maximum(norms, 1e-12)).astype(np.float32)
