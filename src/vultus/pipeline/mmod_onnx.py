"""Rebuild dlib's MMOD CNN face detector (mmod_human_face_detector.dat) as an ONNX graph, by
reading dlib's own serialisation of the network (primitives in dlib_serial.py).

The network, from dlib's dnn_mmod_face_detection_ex.cpp (outermost first):

    downsampler = relu<affine<con5d<32, relu<affine<con5d<32, relu<affine<con5d<16,SUBNET>>>>>>>>>
    rcon5       = relu<affine<con5<45,SUBNET>>>
    net_type    = loss_mmod<con<1,9,9,1,1, rcon5<rcon5<rcon5<downsampler<
                  input_rgb_image_pyramid<pyramid_down<6>>>>>>>>

(con5d: 5x5 stride 2 without padding; con5: 5x5 stride 1 padding 2.) The graph covers the
convolutions only: it maps dlib's input tensor, the tiled image pyramid of
(pixel - mean) / 256 planes, to the score map. Building that pyramid and decoding the score map
into boxes (the loss layer's `to_label`) is the detector's job (mmod.py); the values it needs,
the input means and padding, the detection window and the NMS thresholds, are in the model's
metadata, so the cached ONNX file is all the detector reads.

The file holds the loss first: `loss_mmod_`, then its `mmod_options` (version 1 in the shipped
file: one detector window's width and height, then loss_per_false_alarm, loss_per_missed_target,
truth_match_iou_threshold, overlaps_nms and overlaps_ignore as (iou, percent covered) pairs).
Then come the add_layer versions from the output down, the input layer, and each layer's details
from the input up, as dlib_onnx.py describes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NoReturn

import onnx
from onnx import TensorProto, helper, numpy_helper

from vultus.errors import ModelError
from vultus.pipeline.dlib_serial import (
    Affine,
    Conv,
    DlibReader,
    default_padding,
    finish_model,
    read_affine,
    read_bn_as_affine,
    read_conv,
    read_file,
    skip_training_state,
    write_model,
)

INPUT_NAME = "pyramid"
OUTPUT_NAME = "scores"
DECODE_KEY = "mmod_decode"  # JSON of MmodDecode
OPSET = 17
IR_VERSION = 8
_EXPECTED = "dlib's MMOD face detector (mmod_human_face_detector)"


@dataclass(frozen=True)
class MmodDecode:
    """What turns dlib's score map back into boxes: everything of the network but its weights."""

    mean_rgb: tuple[float, float, float]
    pyramid_down: int  # N of pyramid_down<N>: each level is (N-1)/N of the one above
    pyramid_padding: int
    pyramid_outer_padding: int
    window: tuple[int, int]  # (width, height) of the detection window, in pyramid pixels
    # A score at output (x, y) is a window centred on input point (x, y) * stride + offset.
    stride: int
    offset: int
    nms_iou: float
    nms_covered: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MmodDecode:
        raw = json.loads(text)
        return cls(
            mean_rgb=tuple(raw["mean_rgb"]),
            pyramid_down=int(raw["pyramid_down"]),
            pyramid_padding=int(raw["pyramid_padding"]),
            pyramid_outer_padding=int(raw["pyramid_outer_padding"]),
            window=tuple(raw["window"]),
            stride=int(raw["stride"]),
            offset=int(raw["offset"]),
            nms_iou=float(raw["nms_iou"]),
            nms_covered=float(raw["nms_covered"]),
        )


@dataclass(frozen=True, eq=False)
class MmodNetwork:
    decode: MmodDecode
    layers: list[Conv | Affine | None]  # None: relu


# (kind, filters, size, stride) from the input up: downsampler, three rcon5, the final con.
_SPEC: list[tuple[str, int, int, int]] = [
    *[
        step
        for filters in (16, 32, 32)
        for step in (("con", filters, 5, 2), ("affine", 0, 0, 0), ("relu", 0, 0, 0))
    ],
    *[
        step
        for _ in range(3)
        for step in (("con", 45, 5, 1), ("affine", 0, 0, 0), ("relu", 0, 0, 0))
    ],
    ("con", 1, 9, 1),
]


def _fail(name: str, why: str) -> NoReturn:
    raise ModelError(f"{name} is not {_EXPECTED}: {why}")


def read_mmod(dat_path: Path) -> MmodNetwork:
    """Parse mmod_human_face_detector.dat; raises ModelError on any other file."""
    dat_path = Path(dat_path)
    r = DlibReader(read_file(dat_path), dat_path.name, _EXPECTED)
    if r.integer() != 1 or r.peek_text() != "loss_mmod_":
        r.fail("it does not start with dlib's loss_mmod layer")
    r.text()
    options_version = r.integer()
    if options_version != 1:
        # Later versions (several windows with labels, bounding box regression) are not what
        # the shipped face detector uses.
        r.fail(f"mmod_options version {options_version}; only version 1 is supported")
    window = (r.integer(), r.integer())
    for _ in range(3):  # loss per false alarm, per missed target, truth match IoU: training only
        r.real()
    nms_iou, nms_covered = r.real(), r.real()
    r.real(), r.real()  # overlaps_ignore: training only

    versions: list[int] = []
    while r.peek_text() is None:
        versions.append(r.integer())
    if not versions or versions[-1] not in (2, 3) or any(v != 2 for v in versions[:-1]):
        r.fail("unexpected layer wrapper versions")
    name = r.text()
    if name not in ("input_rgb_image_pyramid", "input_rgb_image_pyramid2"):
        r.fail(f"the input layer is {name!r}, not input_rgb_image_pyramid")
    mean = (r.real(), r.real(), r.real())
    # dlib's defaults for files written before the padding was stored (input.h).
    padding, outer_padding = (r.integer(), r.integer()) if name.endswith("2") else (10, 11)

    layers: list[Conv | Affine | None] = []
    for index in range(len(versions)):
        kind = r.text()
        if kind == "con_4":
            layers.append(read_conv(r))
        elif kind == "affine_":
            layers.append(read_affine(r))
        elif kind == "bn_con2":  # the shipped file holds batch norm layers as trained
            layers.append(read_bn_as_affine(r))
        elif kind == "relu_":
            layers.append(None)
        else:
            r.fail(f"unsupported layer {kind!r}")
        skip_training_state(r)
        if index == 0 and versions[-1] == 3:  # the first add_layer's sample expansion factor
            r.integer()
    if not r.at_end:
        r.fail("unexpected bytes after the last layer")
    _check_architecture(layers, dat_path.name)

    stride, offset = 1, 0
    for layer in reversed(layers):  # dlib's con_::map_output_to_input, from the output down
        if isinstance(layer, Conv):
            size = layer.filters.shape[2]
            offset = offset * layer.stride[0] - layer.padding[0] + size // 2
            stride *= layer.stride[0]
    decode = MmodDecode(
        mean_rgb=mean,
        pyramid_down=6,
        pyramid_padding=padding,
        pyramid_outer_padding=outer_padding,
        window=window,
        stride=stride,
        offset=offset,
        nms_iou=nms_iou,
        nms_covered=nms_covered,
    )
    return MmodNetwork(decode=decode, layers=layers)


def _check_architecture(layers: list[Conv | Affine | None], name: str) -> None:
    if len(layers) != len(_SPEC):
        _fail(name, f"it has {len(layers)} layers, expected {len(_SPEC)}")
    channels = 3
    for index, (layer, (kind, filters, size, stride)) in enumerate(
        zip(layers, _SPEC, strict=True), start=1
    ):
        if kind == "con":
            pad = default_padding(size, stride)
            if not (
                isinstance(layer, Conv)
                and layer.filters.shape == (filters, channels, size, size)
                and layer.stride == (stride, stride)
                and layer.padding == (pad, pad)
            ):
                _fail(name, f"layer {index} is not con({filters}, {size}x{size}, stride {stride})")
            channels = filters
        elif kind == "affine":
            if not isinstance(layer, Affine) or layer.gamma.size != channels:
                _fail(name, f"layer {index} is not affine({channels})")
        elif layer is not None:
            _fail(name, f"layer {index} is not relu")


def build_onnx_model(dat_path: Path) -> onnx.ModelProto:
    """The network as an ONNX model: dlib's input tensor (N, 3, H, W) float32 in, the score map
    (N, 1, H', W') out. Metadata: the source's sha256, the graph's, and the decode values."""
    dat_path = Path(dat_path)
    net = read_mmod(dat_path)
    nodes: list[onnx.NodeProto] = []
    weights: list[TensorProto] = []
    x = INPUT_NAME
    for index, layer in enumerate(net.layers):
        out = f"l{index}"
        if isinstance(layer, Conv):
            (sy, sx), (py, px) = layer.stride, layer.padding
            w, b = f"{out}_W", f"{out}_B"
            weights += [
                numpy_helper.from_array(layer.filters, w),
                numpy_helper.from_array(layer.bias, b),
            ]
            nodes.append(
                helper.make_node(
                    "Conv",
                    [x, w, b],
                    [out],
                    name=out,
                    kernel_shape=list(layer.filters.shape[2:]),
                    strides=[sy, sx],
                    pads=[py, px, py, px],
                )
            )
        elif isinstance(layer, Affine):
            c = layer.gamma.size
            g, b, scaled = f"{out}_gamma", f"{out}_beta", f"{out}_scaled"
            weights += [
                numpy_helper.from_array(layer.gamma.reshape(1, c, 1, 1), g),
                numpy_helper.from_array(layer.beta.reshape(1, c, 1, 1), b),
            ]
            nodes.append(helper.make_node("Mul", [x, g], [scaled], name=scaled))
            nodes.append(helper.make_node("Add", [scaled, b], [out], name=out))
        else:
            nodes.append(helper.make_node("Relu", [x], [out], name=out))
        x = out
    nodes.append(helper.make_node("Identity", [x], [OUTPUT_NAME], name=OUTPUT_NAME))
    graph = helper.make_graph(
        nodes,
        "mmod_human_face_detector",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 1, "h", "w"])],
        initializer=weights,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="vultus",
        doc_string="dlib's MMOD CNN face detector (mmod_human_face_detector), converted from "
        "its .dat file. Input: dlib's tiled image pyramid tensor; output: the detection scores.",
    )
    model.ir_version = IR_VERSION
    return finish_model(model, dat_path, **{DECODE_KEY: net.decode.to_json()})


def convert(dat_path: Path, out_path: Path) -> Path:
    """Convert and write the ONNX file atomically, so readers never see half a file."""
    return write_model(build_onnx_model(dat_path), out_path)


def decode_values(model: onnx.ModelProto) -> MmodDecode:
    props = {p.key: p.value for p in model.metadata_props}
    if DECODE_KEY not in props:
        raise ModelError("the ONNX model has no MMOD decode values; it was not built by vultus")
    return MmodDecode.from_json(props[DECODE_KEY])
