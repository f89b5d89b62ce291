"""Tiny ONNX graphs with the signatures of InsightFace's packs, built by the tests with
`onnx.helper`: nothing is downloaded.

- `scrfd_graph`: input 1x3xHxW, nine outputs (scores, box distances, keypoints for strides 8,
  16 and 32). Its outputs are constants (plus 0 x the input's mean, so the input is used): it
  "finds" the faces it was built with, in blob pixels, whatever the image.
- `arcface_graph`: Nx3x112x112 -> Nx512, a randomly initialised conv + dense layer: the same
  chip always gives the same template, different chips give different ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STRIDES = (8, 16, 32)
ANCHORS = 2
OPSET = 17


@dataclass(frozen=True)
class FakeFace:
    """A face as the detector should report it, in blob (letterboxed input) pixels."""

    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    keypoints: tuple[tuple[float, float], ...]  # 5 x (x, y)
    stride: int = 16
    anchor: int = 0


def plausible_face(box: tuple[float, float, float, float], score: float = 0.9) -> FakeFace:
    """Keypoints where a frontal face has them inside `box`."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    rel = ((0.33, 0.42), (0.67, 0.42), (0.5, 0.6), (0.37, 0.78), (0.63, 0.78))
    return FakeFace(score, box, tuple((x1 + rx * w, y1 + ry * h) for rx, ry in rel))


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def scrfd_graph(
    path: Path,
    faces: list[FakeFace],
    *,
    size: tuple[int, int] = (640, 640),
    keypoints: bool = True,
    batched: bool = True,
    shapes: bool = True,
) -> Path:
    rows = {s: (size[0] // s) * (size[1] // s) * ANCHORS for s in STRIDES}
    scores = {s: np.zeros((rows[s], 1), np.float32) for s in STRIDES}
    boxes = {s: np.zeros((rows[s], 4), np.float32) for s in STRIDES}
    kps = {s: np.zeros((rows[s], 10), np.float32) for s in STRIDES}
    cols = size[1] // 16
    for face in faces:
        s = face.stride
        cols = size[1] // s
        x1, y1, x2, y2 = face.box
        col, row = int(((x1 + x2) / 2) // s), int(((y1 + y2) / 2) // s)
        cx, cy = col * s, row * s
        i = (row * cols + col) * ANCHORS + face.anchor
        scores[s][i] = face.score
        boxes[s][i] = np.array([cx - x1, cy - y1, x2 - cx, y2 - cy]) / s
        kps[s][i] = (np.array(face.keypoints) - [cx, cy]).reshape(-1) / s
    nodes = [
        helper.make_node("ReduceMean", ["input.1"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
    ]
    inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    outputs = []
    groups = [("score", scores), ("bbox", boxes)] + ([("kps", kps)] if keypoints else [])
    for label, values in groups:
        for s in STRIDES:
            data = values[s][None] if batched else values[s]
            name = f"{label}_{s}"
            inits.append(numpy_helper.from_array(data, f"{name}_const"))
            nodes.append(helper.make_node("Add", [f"{name}_const", "nothing"], [name]))
            # Some exporters leave every output dimension symbolic.
            shape = data.shape if shapes else [f"{name}_{i}" for i in range(data.ndim)]
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    image = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, *size])
    return _save(helper.make_graph(nodes, "scrfd", [image], outputs, inits), path)


def arcface_graph(path: Path, *, size: int = 112, dim: int = 512, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    stride = 8
    side = size // stride
    conv = rng.normal(0, 0.1, (8, 3, stride, stride)).astype(np.float32)
    dense = rng.normal(0, 0.05, (8 * side * side, dim)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input.1", "conv_w"], ["c"], strides=[stride, stride]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "dense_w"], ["683"]),
    ]
    inits = [numpy_helper.from_array(conv, "conv_w"), numpy_helper.from_array(dense, "dense_w")]
    image = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, size, size])
    out = helper.make_tensor_value_info("683", TensorProto.FLOAT, ["N", dim])
    return _save(helper.make_graph(nodes, "arcface", [image], [out], inits), path)


def other_graph(path: Path) -> Path:
    """Like InsightFace's genderage.onnx: 1x3x96x96 -> 1x3. Not part of what Vultus uses."""
    nodes = [
        helper.make_node("ReduceMean", ["data"], ["m"], axes=[2, 3], keepdims=0),
    ]
    image = helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 96, 96])
    out = helper.make_tensor_value_info("m", TensorProto.FLOAT, [1, 3])
    return _save(helper.make_graph(nodes, "genderage", [image], [out], []), path)


# Where the end-to-end detector puts its one face, in blob pixels: inside the letterboxed
# image for every dev photo (the widest is 2:1, so the image fills at least 640x320).
E2E_FACE = plausible_face((40.0, 30.0, 280.0, 300.0))


def make_pack(folder: Path, *, seed: int = 0, faces: list[FakeFace] | None = None) -> Path:
    """A complete pack named as buffalo_l names its files, plus one graph Vultus ignores."""
    scrfd_graph(folder / "det_10g.onnx", faces if faces is not None else [E2E_FACE])
    arcface_graph(folder / "w600k_r50.onnx", seed=seed)
    other_graph(folder / "genderage.onnx")
    return folder
