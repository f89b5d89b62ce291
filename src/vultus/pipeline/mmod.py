"""dlib's MMOD CNN face detector run by ONNX Runtime: the same boxes and scores as
`dlib.cnn_face_detection_model_v1(...)(image, 0)`, several times faster than dlib's own CPU code.

What dlib does around the network, reproduced here (dlib/dnn/input.h, loss.h,
image_transforms/image_pyramid.h):

1. The input layer tiles an image pyramid into one tensor: level 0 is (pixel - mean) / 256 per
   plane; each further level is the previous one shrunk by 5/6 (pyramid_down<6>) with bilinear
   interpolation, in float, down to 5 rows. The levels run down a column with `padding` between
   them, the smaller ones doubling back up a second column; `outer_padding` surrounds it all.
   The padding is 0 in tensor space, that is, the mean colour.
2. The network gives one score per position of a stride-8 grid over that tensor.
3. The loss layer turns every score above 0 into the 80x80 window centred there, maps the window
   back from the pyramid level its centre lies in to the image, sorts by score and drops every
   box that overlaps a better one (dlib's test_box_overlap on rounded boxes).

Running the pyramid levels one by one would differ from dlib near the edges of each level: the
convolutions see the padding and the neighbouring tiles. Tiling as dlib does is what makes the
scores agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx

from vultus.errors import ConfigError
from vultus.pipeline.base import Box, Detection, RGBImage
from vultus.pipeline.mmod_onnx import INPUT_NAME, OUTPUT_NAME, MmodDecode, convert, decode_values
from vultus.pipeline.models import mmod_detector_model
from vultus.pipeline.onnx_cache import cpu_session, load_or_convert

ONNX_FILENAME = "mmod_human_face_detector.onnx"
_MIN_LEVEL_ROWS = 5  # dlib stops the pyramid below 5 rows
# Three unpadded 5x5 stride-2 convolutions need 29 rows and columns to give any output.
_MIN_TENSOR_SIDE = 29


@dataclass(frozen=True)
class _Rect:
    """dlib's rectangle: inclusive integer corners."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left + 1

    @property
    def height(self) -> int:
        return self.bottom - self.top + 1

    @property
    def area(self) -> int:
        return max(0, self.width) * max(0, self.height)

    def intersect(self, other: _Rect) -> _Rect:
        return _Rect(
            max(self.left, other.left),
            max(self.top, other.top),
            min(self.right, other.right),
            min(self.bottom, other.bottom),
        )

    def is_empty(self) -> bool:
        return self.left > self.right or self.top > self.bottom

    def distance(self, x: float, y: float) -> float:
        dx = max(self.left - x, 0.0, x - self.right)
        dy = max(self.top - y, 0.0, y - self.bottom)
        return math.hypot(dx, dy)


def pyramid_layout(
    rows: int, cols: int, down: int, padding: int, outer_padding: int
) -> tuple[list[_Rect], int, int]:
    """Where each pyramid level sits in the tiled tensor, and the tensor's rows and columns:
    dlib's impl::compute_tiled_image_pyramid_details, step for step."""
    rate = (down - 1.0) / down
    sizes = [(rows, cols)]
    while True:
        rows, cols = math.floor(rate * rows), math.floor(rate * cols)
        if rows * cols == 0 or rows < _MIN_LEVEL_ROWS:
            break
        sizes.append((rows, cols))
    first_rows, width = sizes[0]

    total_height = sum(r + padding for r, _ in sizes) - 2 * padding
    height, prev_width = 0, 0
    for r, c in sizes:
        # Go down the first column until the next level fits beside the previous one and the
        # first column holds about half the height: the rest doubles back up a second column.
        if c <= width - prev_width - padding and (height - first_rows) * 2 >= (
            total_height - first_rows
        ):
            break
        height += r + padding
        prev_width = c
    height -= padding

    rects: list[_Rect] = []
    y = outer_padding
    i = 0
    while y < height + outer_padding and i < len(sizes):
        r, c = sizes[i]
        rects.append(_Rect(outer_padding, y, outer_padding + c - 1, y + r - 1))
        y += r + padding
        i += 1
    y -= padding
    while i < len(sizes):
        r, c = sizes[i]
        rect = _Rect(outer_padding + width - c, y - r, outer_padding + width - 1, y - 1)
        if not rects[0].intersect(rect).is_empty():
            break  # dlib drops the levels that would overlap the image itself
        rects.append(rect)
        y -= r + padding
        i += 1
    return rects, height + 2 * outer_padding, width + 2 * outer_padding


def _resize_bilinear(src: npt.NDArray[np.float32], rows: int, cols: int) -> npt.NDArray[np.float32]:
    """dlib's resize_image with bilinear interpolation on float planes (C, H, W): the corners
    map onto the corners, and the right and bottom neighbours clamp to the last pixel. Done as
    two 1-D passes (the same weights, about 15 times faster than four 2-D gathers)."""
    in_rows, in_cols = src.shape[1:]
    y = np.arange(rows) * ((in_rows - 1) / max(rows - 1, 1))
    x = np.arange(cols) * ((in_cols - 1) / max(cols - 1, 1))
    top = np.floor(y).astype(np.intp)
    left = np.floor(x).astype(np.intp)
    bottom = np.minimum(top + 1, in_rows - 1)
    right = np.minimum(left + 1, in_cols - 1)
    tb = (y - top).astype(np.float32)[:, None]
    lr = (x - left).astype(np.float32)
    vertical = src[:, top] * (1 - tb) + src[:, bottom] * tb
    return vertical[:, :, left] * (1 - lr) + vertical[:, :, right] * lr


def pyramid_tensor(
    image: RGBImage, decode: MmodDecode
) -> tuple[npt.NDArray[np.float32], list[_Rect]]:
    """dlib's input tensor (1, 3, H, W) for one RGB image, and where each level sits in it."""
    rows, cols = image.shape[:2]
    rects, total_rows, total_cols = pyramid_layout(
        rows, cols, decode.pyramid_down, decode.pyramid_padding, decode.pyramid_outer_padding
    )
    tensor = np.zeros((3, total_rows, total_cols), np.float32)
    mean = np.asarray(decode.mean_rgb, np.float32).reshape(3, 1, 1)
    planes = np.moveaxis(image, 2, 0).astype(np.float32)
    first = rects[0]
    tensor[:, first.top : first.bottom + 1, first.left : first.right + 1] = (planes - mean) / 256
    for above, rect in zip(rects, rects[1:], strict=False):
        src = tensor[:, above.top : above.bottom + 1, above.left : above.right + 1]
        tensor[:, rect.top : rect.bottom + 1, rect.left : rect.right + 1] = _resize_bilinear(
            src, rect.height, rect.width
        )
    return tensor[None], rects


def _round(value: float) -> int:
    return math.floor(value + 0.5)  # dlib's drectangle -> rectangle conversion


def _overlaps(a: _Rect, b: _Rect, iou: float, covered: float) -> bool:
    """dlib's test_box_overlap."""
    inner = a.intersect(b).area
    if inner == 0:
        return False
    union = _Rect(
        min(a.left, b.left), min(a.top, b.top), max(a.right, b.right), max(a.bottom, b.bottom)
    )
    return inner / union.area > iou or inner / a.area > covered or inner / b.area > covered


def decode_scores(
    scores: npt.NDArray[np.float32],
    rects: list[_Rect],
    decode: MmodDecode,
    threshold: float = 0.0,
) -> list[tuple[_Rect, float]]:
    """The loss layer's to_label: boxes in image pixels, best first, after NMS."""
    rows, cols = np.nonzero(scores > threshold)
    width, height = decode.window
    half_w, half_h = (width - 1) / 2, (height - 1) / 2
    up = decode.pyramid_down / (decode.pyramid_down - 1.0)
    found: list[tuple[float, _Rect]] = []
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        px, py = c * decode.stride + decode.offset, r * decode.stride + decode.offset
        # The level whose tile holds the window's centre (the first one that contains it, else
        # the nearest): dlib's nearest_rect.
        level = next((i for i, t in enumerate(rects) if t.distance(px, py) == 0), None)
        if level is None:
            level = min(range(len(rects)), key=lambda i: (rects[i].distance(px, py), i))
        origin = rects[level]
        corners = [
            px - half_w - origin.left,
            py - half_h - origin.top,
            px + half_w - origin.left,
            py + half_h - origin.top,
        ]
        for _ in range(level):  # pyramid_down<N>::point_up, once per level
            corners = [v * up + 0.3 for v in corners]
        box = _Rect(*(_round(v) for v in corners))
        found.append((float(scores[r, c]), box))
    found.sort(key=lambda item: item[0], reverse=True)
    kept: list[tuple[_Rect, float]] = []
    for score, box in found:
        if any(_overlaps(k, box, decode.nms_iou, decode.nms_covered) for k, _ in kept):
            continue
        kept.append((box, score))
    return kept


class MmodOnnxDetector:
    """dlib's MMOD face detector in ONNX Runtime. The converted graph is cached in
    `models_dir` like the recogniser's, rebuilt whenever it is missing, damaged or stale."""

    name = "mmod"

    def __init__(
        self,
        models_dir: Path,
        threads: int = 1,
        *,
        threshold: float = 0.0,
        dat_path: Path | None = None,
    ) -> None:
        if threads < 1:
            raise ConfigError(f"detector threads must be at least 1, got {threads}")
        source = Path(dat_path) if dat_path is not None else mmod_detector_model()
        self.model_path = Path(models_dir) / ONNX_FILENAME
        data = load_or_convert(source, self.model_path, convert)
        self.decode = decode_values(onnx.load_from_string(data))
        self.threshold = threshold
        self._session = cpu_session(data, threads, self.model_path)

    def scores(self, image: RGBImage) -> tuple[npt.NDArray[np.float32], list[_Rect]]:
        """The raw score map (rows, cols) and the pyramid layout it was computed on."""
        tensor, rects = pyramid_tensor(np.asarray(image, dtype=np.uint8), self.decode)
        if min(tensor.shape[2:]) < _MIN_TENSOR_SIDE:
            return np.zeros((0, 0), np.float32), rects
        out = self._session.run([OUTPUT_NAME], {INPUT_NAME: tensor})[0]
        return out[0, 0], rects

    def detect(self, image: RGBImage) -> list[Detection]:
        height, width = image.shape[:2]
        if min(height, width) < 1:
            return []
        scores, rects = self.scores(image)
        found = []
        for rect, score in decode_scores(scores, rects, self.decode, self.threshold):
            box = Box(
                max(0, rect.left),
                max(0, rect.top),
                min(width, rect.right + 1),
                min(height, rect.bottom + 1),
            )
            if box.width > 0 and box.height > 0:
                found.append(Detection(box, score, self.name))
        return found
