"""dlib's face recognition ResNet in int8: the same network as dlib_onnx.py, written as a QDQ
graph that ONNX Runtime runs with its integer kernels at about twice the float speed (1.7-2x
measured on a CPU with AVX2 only; VNNI and AMX do more).

Built from dlib's .dat file at first use, like the float graph, plus activation ranges that
ship with Vultus (`vultus/data/int8_ranges_dlib-resnet-v1.json`, measured once on face chips
aligned by the pipeline, by `benchmarks/int8.py ranges`); nothing is downloaded and nothing is
calibrated at run time. How the graph differs from the float one:

- Each `affine_` layer (dlib's frozen batch norm) is folded into the convolution before it,
  and the input normalisation, (pixel - mean) / 256, into the first convolution, which has no
  padding, so the fold is exact. Chips enter as uint8 and are dequantised with scale 1: the
  input is not rounded at all.
- Weights: int8, symmetric, one scale per output channel; the first convolution's uint8
  around 128, because it sees raw pixels (see `_Emitter.conv`). Biases: int32 at the scale of
  input times weight, as the integer convolution wants them.
- Activations: uint8 per tensor, from the shipped min/max ranges. A ReLU after a convolution
  or a residual sum is absorbed into its output's quantisation (range [0, max], zero point 0
  clamps the negatives), as ONNX Runtime's own quantiser does. Padding and max pooling keep
  their input's scale, so they stay exact.
- The global average pool and the fully connected layer stay in float: they cost nothing,
  and the descriptor keeps full precision in its last step.

Why not `onnxruntime.quantization`: its calibration and override API moved across the ONNX
Runtime versions Vultus supports, and it writes temporary files and runs a calibration pass at
build time. This network is small and regular enough to write in QDQ form directly, the same
way on every version; ONNX Runtime fuses it into QLinearConv, QLinearAdd and
QLinearAveragePool (all 29 convolutions, checked with its profiler).

The ranges are keyed by quantisation point (`conv1` ... `conv29`, `add1` ..., `avgpool1` ...),
not by tensor names, and name the .dat file they were measured on: ranges for another file
are refused.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from vultus.errors import ModelError
from vultus.files import atomic_write
from vultus.pipeline.dlib_onnx import (
    INPUT_NAME,
    IR_VERSION,
    OPSET,
    OUTPUT_NAME,
    AddPrev,
    FullyConnected,
    InputRGB,
    Pool,
    Relu,
    TagOrSkip,
    _check_architecture,
    _GraphBuilder,
    _iter_params,
    _out_len,
    read_dlib_resnet,
)
from vultus.pipeline.dlib_serial import Affine, Conv, file_sha256, finish_model, write_model

RANGES_FORMAT = "vultus-int8-ranges"
RANGES_VERSION = 1
RANGES_KEY = "int8_ranges_sha256"  # metadata of the int8 graph

Range = tuple[float, float]


# ----------------------------------------------------------------------------------------
# The network as folded steps: what gets quantised, and where.


@dataclass(frozen=True)
class _ConvStep:
    conv: Conv  # weights and bias with the affine (and, first, the input) folded in
    relu: bool
    point: str
    on_pixels: bool  # the first convolution: its input is the raw chip


@dataclass(frozen=True)
class _PoolStep:
    pool: Pool
    point: str | None  # None: max pooling keeps its input's scale; global pooling stays float


@dataclass(frozen=True)
class _TagStep:
    tag: int
    skip: bool  # a skip wrapper: continue from the tagged value


@dataclass(frozen=True)
class _AddStep:
    tag: int
    relu: bool
    point: str


@dataclass(frozen=True)
class _FcStep:
    fc: FullyConnected


_Step = _ConvStep | _PoolStep | _TagStep | _AddStep | _FcStep


def _fold_affine(conv: Conv, affine: Affine) -> Conv:
    gamma = affine.gamma.astype(np.float64)
    filters = conv.filters.astype(np.float64) * gamma[:, None, None, None]
    bias = conv.bias.astype(np.float64) * gamma + affine.beta.astype(np.float64)
    return replace(conv, filters=filters.astype(np.float32), bias=bias.astype(np.float32))


def _fold_input(conv: Conv, source: InputRGB) -> Conv:
    """conv((x - mean) / 256) = conv'(x): exact only without padding (padded zeros would
    stand for the mean, not for zero)."""
    if conv.padding != (0, 0):
        raise ModelError("the first convolution is padded: the input cannot be folded into it")
    filters = conv.filters.astype(np.float64) / 256
    mean = np.asarray(source.mean_rgb, np.float64)
    bias = conv.bias.astype(np.float64) - np.einsum("ochw,c->o", filters, mean)
    return replace(conv, filters=filters.astype(np.float32), bias=bias.astype(np.float32))


def folded_steps(dat_path: Path) -> tuple[list[_Step], int]:
    """The network from `dat_path` as steps with every affine folded; and its parameter count."""
    layers = read_dlib_resnet(dat_path)
    source, body = _check_architecture(layers, Path(dat_path).name)
    steps: list[_Step] = []
    counts = {"conv": 0, "add": 0, "avgpool": 0}

    def point(kind: str) -> str:
        counts[kind] += 1
        return f"{kind}{counts[kind]}"

    i = 0
    while i < len(body):
        layer, spec = body[i]
        follows = [type(body[j][0]) for j in range(i + 1, min(i + 3, len(body)))]
        if isinstance(layer, Conv):
            if not follows or follows[0] is not Affine:
                raise ModelError("a con_ layer without the affine_ layer that should follow it")
            affine = body[i + 1][0]
            assert isinstance(affine, Affine)
            conv = _fold_affine(layer, affine)
            first = not steps
            if first:
                conv = _fold_input(conv, source)
            relu = len(follows) > 1 and follows[1] is Relu
            steps.append(_ConvStep(conv, relu, point("conv"), on_pixels=first))
            i += 3 if relu else 2
        elif isinstance(layer, AddPrev):
            relu = bool(follows) and follows[0] is Relu
            steps.append(_AddStep(spec.tag, relu, point("add")))
            i += 2 if relu else 1
        elif isinstance(layer, Pool):
            if layer.size == (0, 0) or layer.kind == "max":
                steps.append(_PoolStep(layer, None))
            else:
                steps.append(_PoolStep(layer, point("avgpool")))
            i += 1
        elif isinstance(layer, TagOrSkip):
            steps.append(_TagStep(spec.tag, skip=spec.kind == "skip"))
            i += 1
        elif isinstance(layer, FullyConnected):
            steps.append(_FcStep(layer))
            i += 1
        else:
            raise ModelError(f"cannot quantise a lone {type(layer).__name__} layer")
    return steps, sum(p.size for p in _iter_params(layers))


def quant_points(steps: list[_Step]) -> list[str]:
    return [s.point for s in steps if isinstance(s, (_ConvStep, _AddStep, _PoolStep)) and s.point]


# ----------------------------------------------------------------------------------------
# Quantisation parameters.


@dataclass(frozen=True)
class QParams:
    scale: float
    zero_point: int  # uint8


def activation_params(low: float, high: float) -> QParams:
    """uint8, asymmetric, over a range widened to hold 0 (so that zero is exact)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ModelError(f"an activation range is not finite: [{low}, {high}]")
    if high == low:
        return QParams(1.0, 0)
    scale = float(np.float32((high - low) / 255))
    return QParams(scale, int(np.clip(round(-low / scale), 0, 255)))


def weight_params(filters: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """int8, symmetric in [-127, 127], one scale per output channel (axis 0)."""
    absmax = np.abs(filters.reshape(len(filters), -1)).max(axis=1).astype(np.float64)
    return np.where(absmax > 0, absmax / 127, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------
# The graph: float (with every quantisation point as an output, to measure the ranges) or QDQ.


@dataclass(frozen=True)
class _Value:
    name: str
    shape: tuple[int, int, int]  # (channels, rows, cols)
    q: QParams | None  # set when the value is the output of a DequantizeLinear


class _Emitter(_GraphBuilder):
    def __init__(self, ranges: dict[str, Range] | None) -> None:
        super().__init__()
        self.ranges = ranges
        self.points: dict[str, str] = {}  # quantisation point -> its tensor

    def scalar(self, hint: str, value: npt.NDArray[np.generic]) -> str:
        """A rank-0 constant: per-tensor scales and zero points must be true scalars for
        ONNX Runtime's integer pooling (`const` keeps arrays at least 1-D)."""
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(value.reshape(()), name))
        return name

    def qdq(self, tensor: str, shape: tuple[int, int, int], q: QParams) -> _Value:
        scale = self.scalar("scale", np.array(q.scale, np.float32))
        zero = self.scalar("zero", np.array(q.zero_point, np.uint8))
        quantised = self.node("QuantizeLinear", [tensor, scale, zero], "q")
        return _Value(self.node("DequantizeLinear", [quantised, scale, zero], "dq"), shape, q)

    def settle(self, tensor: str, shape: tuple[int, int, int], point: str, relu: bool) -> _Value:
        """A quantisation point's value: in the float graph recorded (after its ReLU), in the
        int8 graph quantised to its range (which absorbs the ReLU)."""
        if self.ranges is None:
            if relu:
                tensor = self.node("Relu", [tensor], "relu")
            self.points[point] = tensor
            return _Value(tensor, shape, None)
        if point not in self.ranges:
            raise ModelError(f"the int8 ranges have no entry for {point}")
        low, high = self.ranges[point]
        value = self.qdq(tensor, shape, activation_params(0.0 if relu else low, high))
        self.points[point] = value.name
        return value

    def keep_scale(self, tensor: str, shape: tuple[int, int, int], like: _Value) -> _Value:
        """Padding and max pooling: the output takes the input's quantisation, exactly."""
        if like.q is None:
            return _Value(tensor, shape, None)
        return self.qdq(tensor, shape, like.q)

    def conv(self, x: _Value, step: _ConvStep) -> _Value:
        conv = step.conv
        out_c, in_c, kh, kw = conv.filters.shape
        if in_c != x.shape[0]:
            raise ModelError(f"a con_ layer expects {in_c} channels but receives {x.shape[0]}")
        if x.q is None:
            weights, bias = self.const("W", conv.filters), self.const("B", conv.bias)
        else:
            w_scale = weight_params(conv.filters)
            w_q = np.clip(np.rint(conv.filters / w_scale[:, None, None, None]), -127, 127)
            # On the raw pixels (0..255), int8 weights overflow the int16 pair sums of the
            # u8 x s8 kernels of CPUs without VNNI (AVX2 only): descriptors then moved by L2
            # 0.10 instead of 0.024. uint8 weights around 128 take the u8 x u8 kernel,
            # which widens first, with the same 255 levels.
            w_type, w_zero = (np.uint8, 128) if step.on_pixels else (np.int8, 0)
            b_scale = (np.float64(x.q.scale) * w_scale).astype(np.float32)
            b_q = np.rint(conv.bias.astype(np.float64) / b_scale)
            if np.abs(b_q).max() >= 2**31:
                raise ModelError(f"{step.point}: a bias does not fit int32 at its scale")
            weights = self.node(
                "DequantizeLinear",
                [
                    self.const("Wq", (w_q + w_zero).astype(w_type)),
                    self.const("Ws", w_scale),
                    self.const("Wz", np.full(out_c, w_zero, w_type)),
                ],
                "dqW",
                axis=0,
            )
            bias = self.node(
                "DequantizeLinear",
                [
                    self.const("Bq", b_q.astype(np.int32)),
                    self.const("Bs", b_scale),
                    self.const("Bz", np.zeros(out_c, np.int32)),
                ],
                "dqB",
                axis=0,
            )
        (sy, sx), (py, px) = conv.stride, conv.padding
        out = self.node(
            "Conv",
            [x.name, weights, bias],
            "conv",
            kernel_shape=[kh, kw],
            strides=[sy, sx],
            pads=[py, px, py, px],
        )
        _, h, w = x.shape
        shape = (out_c, _out_len(kh, h, sy, py), _out_len(kw, w, sx, px))
        return self.settle(out, shape, step.point, step.relu)

    def pool(self, x: _Value, step: _PoolStep) -> _Value:
        pool, (c, h, w) = step.pool, x.shape
        if pool.size == (0, 0):
            op = "GlobalMaxPool" if pool.kind == "max" else "GlobalAveragePool"
            return _Value(self.node(op, [x.name], "gpool"), (c, 1, 1), None)
        (kh, kw), (sy, sx), (py, px) = pool.size, pool.stride, pool.padding
        op = "MaxPool" if pool.kind == "max" else "AveragePool"
        out = self.node(
            op, [x.name], "pool", kernel_shape=[kh, kw], strides=[sy, sx], pads=[py, px, py, px]
        )
        shape = (c, _out_len(kh, h, sy, py), _out_len(kw, w, sx, px))
        if step.point is None:
            return self.keep_scale(out, shape, x)
        return self.settle(out, shape, step.point, relu=False)

    def padded(self, value: _Value, shape: tuple[int, int, int]) -> str:
        name = self.pad_to(value, shape)  # type: ignore[arg-type]
        if name == value.name:
            return name
        return self.keep_scale(name, shape, value).name

    def add(self, x: _Value, other: _Value, step: _AddStep) -> _Value:
        shape = (
            max(x.shape[0], other.shape[0]),
            max(x.shape[1], other.shape[1]),
            max(x.shape[2], other.shape[2]),
        )
        out = self.node("Add", [self.padded(x, shape), self.padded(other, shape)], "residual")
        return self.settle(out, shape, step.point, step.relu)

    def fc(self, x: _Value, step: _FcStep) -> _Value:
        inputs, outputs = step.fc.weights.shape
        c, h, w = x.shape
        if inputs != c * h * w:
            raise ModelError(f"an fc_ layer expects {inputs} inputs but receives {c * h * w}")
        flat = self.node("Flatten", [x.name], "flatten", axis=1)
        name = self.node("MatMul", [flat, self.const("fc", step.fc.weights)], "fc")
        if step.fc.bias is not None:
            name = self.node("Add", [name, self.const("fc_bias", step.fc.bias)], "fc_bias")
        return _Value(name, (outputs, 1, 1), None)


def _emit(steps: list[_Step], ranges: dict[str, Range] | None) -> tuple[_Emitter, _Value]:
    g = _Emitter(ranges)
    nchw = g.node("Transpose", [INPUT_NAME], "nchw", perm=[0, 3, 1, 2])
    if ranges is None:
        x = _Value(g.node("Cast", [nchw], "float", to=TensorProto.FLOAT), (3, 150, 150), None)
    else:
        # Pixels are already uint8: dequantised with scale 1 and zero point 0, they are exact.
        scale = g.scalar("scale", np.array(1.0, np.float32))
        zero = g.scalar("zero", np.array(0, np.uint8))
        x = _Value(
            g.node("DequantizeLinear", [nchw, scale, zero], "dq"), (3, 150, 150), QParams(1.0, 0)
        )
    tags: dict[int, _Value] = {}
    for step in steps:
        if isinstance(step, _ConvStep):
            x = g.conv(x, step)
        elif isinstance(step, _PoolStep):
            x = g.pool(x, step)
        elif isinstance(step, _TagStep):
            if step.skip:
                x = tags[step.tag]
            else:
                tags[step.tag] = x
        elif isinstance(step, _AddStep):
            x = g.add(x, tags[step.tag], step)
        else:
            x = g.fc(x, step)
    return g, x


def _model(g: _Emitter, x: _Value, outputs: list[onnx.ValueInfoProto], doc: str) -> onnx.ModelProto:
    g.nodes.append(helper.make_node("Identity", [x.name], [OUTPUT_NAME], name=OUTPUT_NAME))
    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["N", 150, 150, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", x.shape[0]])]
        + outputs,
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="vultus",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    return model


def build_float_points_model(dat_path: Path) -> tuple[onnx.ModelProto, list[str]]:
    """The folded float network with every quantisation point as an extra output (named after
    the point), to measure activation ranges on. Returns the model and the points in order."""
    steps, _ = folded_steps(dat_path)
    g, x = _emit(steps, None)
    points = quant_points(steps)
    outputs = []
    for point in points:
        g.nodes.append(helper.make_node("Identity", [g.points[point]], [point], name=point))
        outputs.append(helper.make_tensor_value_info(point, TensorProto.FLOAT, None))
    return _model(
        g, x, outputs, "dlib's ResNet, affine layers folded, for measuring ranges"
    ), points


# ----------------------------------------------------------------------------------------
# The shipped ranges.


@dataclass(frozen=True)
class Int8Ranges:
    source_sha256: str  # the .dat file they were measured on
    ranges: dict[str, Range]
    measured_on: str
    sha256: str = ""  # of the file it was read from

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RANGES_FORMAT,
            "version": RANGES_VERSION,
            "source_file": "dlib_face_recognition_resnet_model_v1.dat",
            "source_sha256": self.source_sha256,
            "method": "minmax",
            "measured_on": self.measured_on,
            "ranges": {k: [float(lo), float(hi)] for k, (lo, hi) in self.ranges.items()},
        }

    def save(self, path: Path) -> None:
        """One range a line, so that a change reads well in a diff."""
        doc = self.to_json()
        ranges = doc.pop("ranges")
        head = json.dumps(doc, indent=1)[:-2]
        lines = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in ranges.items())
        atomic_write(path, f'{head},\n "ranges": {{\n{lines}\n }}\n}}\n', mode=0o644)

    @classmethod
    def parse(cls, data: bytes, where: str) -> Int8Ranges:
        try:
            doc = json.loads(data)
            if doc.get("format") != RANGES_FORMAT or doc.get("version") != RANGES_VERSION:
                raise ValueError("not a version 1 vultus-int8-ranges file")
            ranges = {str(k): (float(v[0]), float(v[1])) for k, v in doc["ranges"].items()}
            return cls(
                str(doc["source_sha256"]),
                ranges,
                str(doc.get("measured_on", "")),
                hashlib.sha256(data).hexdigest(),
            )
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ModelError(f"{where} is not a valid int8 range table: {exc}") from exc


def build_int8_model(dat_path: Path, ranges: Int8Ranges) -> onnx.ModelProto:
    """The int8 network: uint8 chips (N, 150, 150, 3) in, raw descriptors (N, 128) float32 out,
    like the float graph. Refuses ranges measured on another .dat file."""
    dat_path = Path(dat_path)
    steps, n_params = folded_steps(dat_path)  # first: a file that is not the network says so
    if ranges.source_sha256 != file_sha256(dat_path):
        raise ModelError(
            f"the shipped int8 ranges were measured on another {dat_path.name}; "
            'set embed_precision = "fp32" to use the float network'
        )
    missing = [p for p in quant_points(steps) if p not in ranges.ranges]
    if missing:
        raise ModelError(f"the int8 ranges lack {', '.join(missing[:5])}")
    g, x = _emit(steps, ranges.ranges)
    model = _model(
        g,
        x,
        [],
        "dlib's face recognition ResNet (dlib_face_recognition_resnet_model_v1) in int8 (QDQ), "
        "converted from its .dat file with activation ranges shipped by Vultus. Input: aligned "
        "150x150 RGB chips; output: 128-D descriptors, not normalised.",
    )
    return finish_model(
        model, dat_path, parameters=str(n_params), precision="int8", **{RANGES_KEY: ranges.sha256}
    )


def convert_int8(dat_path: Path, out_path: Path, ranges: Int8Ranges) -> Path:
    """Build and write the int8 graph atomically, so readers never see half a file."""
    return write_model(build_int8_model(dat_path, ranges), out_path)
