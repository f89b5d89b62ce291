"""Rebuild dlib's face recognition ResNet (dlib_face_recognition_resnet_model_v1.dat) as an ONNX
graph, by reading dlib's own serialisation of the network. No dlib, no torch: only bytes in,
`onnx.helper` out.

How dlib writes a network (dlib/dnn/core.h, layers.h, tensor.h, serialize.h):

- Integers, floats, strings and tensors: see dlib_serial.py, shared with the MMOD detector.
- `add_loss_layer` writes its version, the loss, then the network under it. Every wrapper
  (`add_layer`, `add_tag_layer`, `add_skip_layer`) writes its version and then the wrapper
  below it *before* its own details. So the file holds every wrapper's version from the output
  down to the input, then the input layer, then the layer details from the input back up to
  the output, each `add_layer` followed by its training state (bools and cached tensors).
- Tag and skip wrappers write only their version, 1, and `add_prev_` writes only its name: the
  tag ids that wire the residual connections are template arguments and are not in the file.
  The topology therefore comes from the network's C++ definition (dlib's
  dnn_face_recognition_ex.cpp), checked layer by layer against what the file holds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from vultus.errors import ModelError
from vultus.pipeline.dlib_serial import (
    Affine,
    Conv,
    DlibReader,
    FloatArray,
    default_padding,
    finish_model,
    read_affine,
    read_conv,
    read_file,
    skip_training_state,
    write_model,
)

INPUT_NAME = "chips"
OUTPUT_NAME = "descriptors"
OPSET = 17
IR_VERSION = 8  # the lowest IR that carries opset 17, so older ONNX Runtimes load the file too


# ----------------------------------------------------------------------------------------
# The layers as read from the file, in order from the input to the loss.


@dataclass(frozen=True, eq=False)
class InputRGB:
    """input_rgb_image_sized: planes R, G, B, each (pixel - mean) / 256."""

    mean_rgb: tuple[float, float, float]
    rows: int
    cols: int


@dataclass(frozen=True, eq=False)
class Relu:
    pass


@dataclass(frozen=True, eq=False)
class Pool:
    kind: str  # "max" or "avg"
    size: tuple[int, int]  # (0, 0): the whole input, as in avg_pool_everything
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True, eq=False)
class AddPrev:
    """Adds the output of a tagged layer; which tag is not recorded in the file."""


@dataclass(frozen=True, eq=False)
class TagOrSkip:
    """A tag or a skip wrapper: dlib serialises both identically, without their id."""


@dataclass(frozen=True, eq=False)
class FullyConnected:
    weights: FloatArray  # (inputs, outputs): dlib computes x @ W
    bias: FloatArray | None


@dataclass(frozen=True, eq=False)
class LossMetric:
    margin: float
    distance_threshold: float


Layer = InputRGB | Conv | Affine | Relu | Pool | AddPrev | TagOrSkip | FullyConnected | LossMetric


# ----------------------------------------------------------------------------------------
# Reading the file (the primitives are in dlib_serial.py).

_EXPECTED = "dlib's face recognition ResNet (dlib_face_recognition_resnet_model_v1)"


def _read_input(r: DlibReader) -> InputRGB:
    name = r.text()
    if name != "input_rgb_image_sized":
        r.fail(f"the input layer is {name!r}, not input_rgb_image_sized")
    mean = (r.real(), r.real(), r.real())
    return InputRGB(mean_rgb=mean, rows=r.integer(), cols=r.integer())


def _read_pool(r: DlibReader, kind: str) -> Pool:
    size = (r.integer(), r.integer())
    stride = (r.integer(), r.integer())
    padding = (r.integer(), r.integer())
    return Pool(kind=kind, size=size, stride=stride, padding=padding)


def _read_fc(r: DlibReader) -> FullyConnected:
    outputs, inputs = r.integer(), r.integer()
    params = r.tensor("fc_ parameters").reshape(-1)
    weights_shape = r.alias_tensor("fc_ weights")
    r.alias_tensor("fc_ biases")
    bias_mode = r.integer()  # 0: FC_HAS_BIAS, 1: FC_NO_BIAS
    for _ in range(4):
        r.real()
    expected = inputs * outputs + (outputs if bias_mode == 0 else 0)
    if bias_mode not in (0, 1) or weights_shape[:2] != (inputs, outputs) or params.size != expected:
        r.fail("an fc_ layer whose parameter shapes do not agree")
    weights = params[: inputs * outputs].reshape(inputs, outputs)
    bias = params[inputs * outputs :].copy() if bias_mode == 0 else None
    return FullyConnected(weights=weights, bias=bias)


def _read_details(r: DlibReader) -> Layer:
    name = r.text()
    if name == "con_4":
        return read_conv(r)
    if name == "affine_":
        return read_affine(r)
    if name == "relu_":
        return Relu()
    if name == "max_pool_2":
        return _read_pool(r, "max")
    if name == "avg_pool_2":
        return _read_pool(r, "avg")
    if name == "add_prev_":
        return AddPrev()
    if name == "fc_2":
        return _read_fc(r)
    r.fail(f"unsupported layer {name!r}")


def read_dlib_resnet(dat_path: Path) -> list[Layer]:
    """Parse a dlib DNN file into its layers, ordered from the input to the loss.

    Wrappers come out as they are stored: residual wiring appears as `TagOrSkip` and `AddPrev`
    entries whose ids dlib does not record. Raises ModelError on anything else.
    """
    r = DlibReader(read_file(dat_path), Path(dat_path).name, _EXPECTED)

    loss_name = r.peek_text() if r.integer() == 1 else None
    if loss_name is None:
        r.fail("it does not start like a dlib network (a version, then a loss layer name)")
    r.text()
    if loss_name == "loss_metric_2":
        loss = LossMetric(margin=r.real(), distance_threshold=r.real())
    elif loss_name == "loss_metric_":  # older files: the values were hard-coded then
        loss = LossMetric(margin=0.1, distance_threshold=0.75)
    else:
        r.fail(f"its loss layer is {loss_name!r}, not loss_metric")

    # Wrapper versions, from the output down to the input layer.
    wrappers: list[str] = []
    while True:
        version = r.integer()
        following = r.peek_text()
        if following is not None and following.startswith("input"):
            if version not in (2, 3):
                r.fail(f"unexpected version {version} of the first add_layer")
            input_version = version
            break
        if version == 1:
            wrappers.append("tag_or_skip")
        elif version == 2:
            wrappers.append("layer")
        else:
            r.fail(f"unexpected layer wrapper version {version}")

    layers: list[Layer] = [_read_input(r), _read_details(r)]
    skip_training_state(r)
    if input_version == 3:  # the first add_layer's sample expansion factor
        r.integer()
    for wrapper in reversed(wrappers):
        if wrapper == "tag_or_skip":
            layers.append(TagOrSkip())
        else:
            layers.append(_read_details(r))
            skip_training_state(r)
    if not r.at_end:
        r.fail("unexpected bytes after the last layer")
    layers.append(loss)
    return layers


# ----------------------------------------------------------------------------------------
# The network's definition, from dlib's dnn_face_recognition_ex.cpp (outermost first):
#
#   block<N,stride> = affine<con<N,3,3,1,1,relu<affine<con<N,3,3,stride,stride,SUBNET>>>>>
#   ares<N>         = relu<add_prev1<block<N,1,tag1<SUBNET>>>>
#   ares_down<N>    = relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,2,tag1<SUBNET>>>>>>>
#   alevel0 = ares_down<256>           alevel1 = ares<256,ares<256,ares_down<256>>>
#   alevel2 = ares<128,ares<128,ares_down<128>>>
#   alevel3 = ares<64,ares<64,ares<64,ares_down<64>>>>    alevel4 = ares<32,ares<32,ares<32>>>
#   anet = loss_metric<fc_no_bias<128,avg_pool_everything<alevel0<alevel1<alevel2<alevel3<
#          alevel4<max_pool<3,3,2,2,relu<affine<con<32,7,7,2,2,input_rgb_image_sized<150>>>>>>>>>>>>
#
# The lists below run the other way, from the input to the output, as the file's details do.


@dataclass(frozen=True)
class _Spec:
    kind: str  # con, affine, relu, max_pool, avg_pool, tag, skip, add_prev, fc
    filters: int = 0
    size: int = 0
    stride: int = 1
    tag: int = 0

    def describe(self) -> str:
        if self.kind == "con":
            return f"con({self.filters}, {self.size}x{self.size}, stride {self.stride})"
        if self.kind in ("max_pool", "avg_pool"):
            return f"{self.kind}({self.size}x{self.size}, stride {self.stride})"
        if self.kind in ("tag", "skip", "add_prev"):
            return f"{self.kind}{self.tag}"
        if self.kind == "fc":
            return f"fc_no_bias({self.filters})"
        return self.kind


def _block(filters: int, stride: int) -> list[_Spec]:
    return [
        _Spec("con", filters, 3, stride),
        _Spec("affine"),
        _Spec("relu"),
        _Spec("con", filters, 3, 1),
        _Spec("affine"),
    ]


def _ares(filters: int) -> list[_Spec]:
    return [_Spec("tag", tag=1), *_block(filters, 1), _Spec("add_prev", tag=1), _Spec("relu")]


def _ares_down(filters: int) -> list[_Spec]:
    return [
        _Spec("tag", tag=1),
        *_block(filters, 2),
        _Spec("tag", tag=2),
        _Spec("skip", tag=1),
        _Spec("avg_pool", size=2, stride=2),
        _Spec("add_prev", tag=2),
        _Spec("relu"),
    ]


def _resnet_v1_spec() -> list[_Spec]:
    return [
        _Spec("con", 32, 7, 2),
        _Spec("affine"),
        _Spec("relu"),
        _Spec("max_pool", size=3, stride=2),
        *_ares(32) * 3,
        *_ares_down(64),
        *_ares(64) * 3,
        *_ares_down(128),
        *_ares(128) * 2,
        *_ares_down(256),
        *_ares(256) * 2,
        *_ares_down(256),
        _Spec("avg_pool", size=0, stride=1),
        _Spec("fc", filters=128),
    ]


def _describe(layer: Layer) -> str:
    if isinstance(layer, Conv):
        f = layer.filters.shape
        return f"con({f[0]}, {f[2]}x{f[3]}, stride {layer.stride[0]})"
    if isinstance(layer, Pool):
        return f"{layer.kind}_pool({layer.size[0]}x{layer.size[1]}, stride {layer.stride[0]})"
    if isinstance(layer, FullyConnected):
        return f"fc({layer.weights.shape[1]}, bias={layer.bias is not None})"
    return type(layer).__name__


def _matches(layer: Layer, spec: _Spec) -> bool:
    pad = default_padding(spec.size, spec.stride)
    if spec.kind == "con":
        return (
            isinstance(layer, Conv)
            and layer.filters.shape[0] == spec.filters
            and layer.filters.shape[2:] == (spec.size, spec.size)
            and layer.stride == (spec.stride, spec.stride)
            and layer.padding == (pad, pad)
        )
    if spec.kind in ("max_pool", "avg_pool"):
        return (
            isinstance(layer, Pool)
            and f"{layer.kind}_pool" == spec.kind
            and layer.size == (spec.size, spec.size)
            and layer.stride == (spec.stride, spec.stride)
            and layer.padding == (pad, pad)
        )
    if spec.kind == "fc":
        return (
            isinstance(layer, FullyConnected)
            and layer.weights.shape[1] == spec.filters
            and layer.bias is None
        )
    kinds: dict[str, type] = {
        "affine": Affine,
        "relu": Relu,
        "tag": TagOrSkip,
        "skip": TagOrSkip,
        "add_prev": AddPrev,
    }
    return isinstance(layer, kinds[spec.kind])


def _check_architecture(
    layers: list[Layer], name: str
) -> tuple[InputRGB, list[tuple[Layer, _Spec]]]:
    def fail(why: str) -> NoReturn:
        raise ModelError(
            f"{name} is not dlib's face recognition ResNet "
            f"(dlib_face_recognition_resnet_model_v1): {why}"
        )

    first, body = layers[0], layers[1:-1]
    if not isinstance(first, InputRGB) or (first.rows, first.cols) != (150, 150):
        fail("its input is not a 150x150 RGB chip")
    spec = _resnet_v1_spec()
    if len(body) != len(spec):
        fail(f"it has {len(body)} layers, expected {len(spec)}")
    for index, (layer, expected) in enumerate(zip(body, spec, strict=True), start=1):
        if not _matches(layer, expected):
            fail(f"layer {index} is {_describe(layer)}, expected {expected.describe()}")
    return first, list(zip(body, spec, strict=True))


# ----------------------------------------------------------------------------------------
# The ONNX graph.


@dataclass(frozen=True)
class _Value:
    name: str
    shape: tuple[int, int, int]  # (channels, rows, cols); the batch dimension is dynamic


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self._counter = itertools.count()

    def fresh(self, hint: str) -> str:
        return f"n{next(self._counter)}_{hint}"

    def const(self, hint: str, value: npt.NDArray[np.generic]) -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        out = self.fresh(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def pad_to(self, value: _Value, shape: tuple[int, int, int]) -> str:
        """Zero-pad at the end of channels, rows and columns, as dlib's add_prev does."""
        grow = [want - have for want, have in zip(shape, value.shape, strict=True)]
        if not any(grow):
            return value.name
        pads = self.const("pads", np.array([0, 0, 0, 0, 0, *grow], dtype=np.int64))
        return self.node("Pad", [value.name, pads], "pad", mode="constant")


def _out_len(size: int, length: int, stride: int, padding: int) -> int:
    return (length + 2 * padding - size) // stride + 1


def _emit(
    g: _GraphBuilder, x: _Value, layer: Layer, tags: dict[int, _Value], spec: _Spec
) -> _Value:
    c, h, w = x.shape
    if isinstance(layer, Conv):
        out_c, in_c, kh, kw = layer.filters.shape
        if in_c != c:
            raise ModelError(f"a con_ layer expects {in_c} channels but receives {c}")
        (sy, sx), (py, px) = layer.stride, layer.padding
        name = g.node(
            "Conv",
            [x.name, g.const("W", layer.filters), g.const("B", layer.bias)],
            "conv",
            kernel_shape=[kh, kw],
            strides=[sy, sx],
            pads=[py, px, py, px],
        )
        return _Value(name, (out_c, _out_len(kh, h, sy, py), _out_len(kw, w, sx, px)))
    if isinstance(layer, Affine):
        if layer.gamma.size != c:
            raise ModelError(f"an affine_ layer has {layer.gamma.size} channels, input has {c}")
        scaled = g.node("Mul", [x.name, g.const("gamma", layer.gamma.reshape(1, c, 1, 1))], "mul")
        shifted = g.node("Add", [scaled, g.const("beta", layer.beta.reshape(1, c, 1, 1))], "add")
        return _Value(shifted, x.shape)
    if isinstance(layer, Relu):
        return _Value(g.node("Relu", [x.name], "relu"), x.shape)
    if isinstance(layer, Pool):
        if layer.size == (0, 0):
            op = "GlobalMaxPool" if layer.kind == "max" else "GlobalAveragePool"
            return _Value(g.node(op, [x.name], "gpool"), (c, 1, 1))
        (kh, kw), (sy, sx), (py, px) = layer.size, layer.stride, layer.padding
        op = "MaxPool" if layer.kind == "max" else "AveragePool"
        name = g.node(
            op, [x.name], "pool", kernel_shape=[kh, kw], strides=[sy, sx], pads=[py, px, py, px]
        )
        return _Value(name, (c, _out_len(kh, h, sy, py), _out_len(kw, w, sx, px)))
    if isinstance(layer, TagOrSkip):
        if spec.kind == "tag":
            tags[spec.tag] = x
            return x
        return tags[spec.tag]
    if isinstance(layer, AddPrev):
        other = tags[spec.tag]
        shape = (
            max(c, other.shape[0]),
            max(h, other.shape[1]),
            max(w, other.shape[2]),
        )
        name = g.node("Add", [g.pad_to(x, shape), g.pad_to(other, shape)], "residual")
        return _Value(name, shape)
    if isinstance(layer, FullyConnected):
        inputs, outputs = layer.weights.shape
        if inputs != c * h * w:
            raise ModelError(f"an fc_ layer expects {inputs} inputs but receives {c * h * w}")
        flat = g.node("Flatten", [x.name], "flatten", axis=1)
        name = g.node("MatMul", [flat, g.const("fc", layer.weights)], "fc")
        if layer.bias is not None:
            name = g.node("Add", [name, g.const("fc_bias", layer.bias)], "fc_bias")
        return _Value(name, (outputs, 1, 1))
    raise ModelError(f"cannot convert layer {_describe(layer)}")


def _iter_params(layers: list[Layer]) -> Iterator[FloatArray]:
    for layer in layers:
        if isinstance(layer, Conv):
            yield from (layer.filters, layer.bias)
        elif isinstance(layer, Affine):
            yield from (layer.gamma, layer.beta)
        elif isinstance(layer, FullyConnected):
            yield layer.weights
            if layer.bias is not None:
                yield layer.bias


def build_onnx_model(dat_path: Path) -> onnx.ModelProto:
    """The network as an ONNX model: uint8 RGB chips (N, 150, 150, 3) in, raw dlib
    descriptors (N, 128) float32 out. The source file's sha256 is kept in metadata_props."""
    dat_path = Path(dat_path)
    layers = read_dlib_resnet(dat_path)
    source, body = _check_architecture(layers, dat_path.name)

    g = _GraphBuilder()
    # dlib's input layer, done in the graph so callers pass raw chips: planes R, G, B, each
    # (pixel - mean) / 256. Scaling by 1/256 is exact, so this matches dlib bit for bit.
    nchw = g.node("Transpose", [INPUT_NAME], "nchw", perm=[0, 3, 1, 2])
    pixels = g.node("Cast", [nchw], "float", to=TensorProto.FLOAT)
    mean = np.array(source.mean_rgb, dtype=np.float32).reshape(1, 3, 1, 1)
    centred = g.node("Sub", [pixels, g.const("mean_rgb", mean)], "centre")
    scaled = g.node("Mul", [centred, g.const("scale", np.array(1 / 256, np.float32))], "scale")

    x = _Value(scaled, (3, source.rows, source.cols))
    tags: dict[int, _Value] = {}
    for layer, spec in body:
        x = _emit(g, x, layer, tags, spec)
    g.nodes.append(helper.make_node("Identity", [x.name], [OUTPUT_NAME], name=OUTPUT_NAME))

    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["N", 150, 150, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", x.shape[0]])],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="vultus",
        doc_string="dlib's face recognition ResNet (dlib_face_recognition_resnet_model_v1), "
        "converted from its .dat file. Input: aligned 150x150 RGB chips as from "
        "dlib.get_face_chip; output: dlib's 128-D descriptors, not normalised.",
    )
    model.ir_version = IR_VERSION
    n_params = sum(p.size for p in _iter_params(layers))
    return finish_model(model, dat_path, parameters=str(n_params))


def convert(dat_path: Path, out_path: Path) -> Path:
    """Convert and write the ONNX file atomically, so readers never see half a file."""
    return write_model(build_onnx_model(dat_path), out_path)
