"""Model packs: a folder holding an SCRFD detector and an ArcFace recognizer as ONNX graphs,
in the layout InsightFace ships (buffalo_l: `det_10g.onnx`, `w600k_r50.onnx`, and other graphs
Vultus does not use).

The files are told apart by their signatures, never by their names: a detector has one image
input and nine outputs (scores, box distances and five keypoints for strides 8, 16 and 32); a
recognizer takes Nx3x112x112 and gives Nx512. Graphs that are neither (InsightFace's landmark
and gender/age models) are ignored. Anything that looks like one but is wrong is refused with a
`ModelError` that names the file and what is wrong with it.

The `model` setting is "dlib" (the default: dlib's ResNet, each face averaged with its mirror
image), "dlib-plain" (without the mirror: half the embedding time, slightly weaker), a path to a
pack folder, or the name of a folder under `DATA_DIR/packs/`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vultus.errors import ConfigError, ModelError

if TYPE_CHECKING:  # importing onnx costs 0.7 s: only reading a pack needs it
    import onnx

log = logging.getLogger(__name__)

DLIB = "dlib"
DLIB_PLAIN = "dlib-plain"
BUILT_IN = (DLIB, DLIB_PLAIN)
# The `model` setting that makes each built-in model id: what a suppression entry of an earlier
# model is checked with after a `reembed`.
BUILT_IN_IDS = {"dlib-resnet-v1-flip": DLIB, "dlib-resnet-v1": DLIB_PLAIN}
PACKS_DIR = "packs"
REC_SIZE = 112
REC_DIM = 512
DET_SIZE = 640  # what a detector with a dynamic input size is run at
STRIDES = (8, 16, 32)
ANCHORS = 2  # per location, as SCRFD is trained
# Output kinds by their last dimension: score, box distances (l, t, r, b), 5 keypoints (x, y).
SCORE, BOX, KPS = 1, 4, 10

Dim = int | None  # None: dynamic (a symbolic or unset dimension)


@dataclass(frozen=True)
class DetectorSpec:
    path: Path
    input_name: str
    # The fixed input (height, width), or None when the graph accepts any size.
    input_size: tuple[int, int] | None
    # Output names per stride, in STRIDES order.
    scores: tuple[str, ...]
    boxes: tuple[str, ...]
    keypoints: tuple[str, ...]

    @property
    def run_size(self) -> tuple[int, int]:
        return self.input_size or (DET_SIZE, DET_SIZE)


@dataclass(frozen=True)
class RecognizerSpec:
    path: Path
    input_name: str
    output_name: str
    dynamic_batch: bool
    # Input scaling: (x - mean) / std. Graphs that open with their own Sub and Mul nodes
    # normalise inside and take raw pixels, as InsightFace's ArcFaceONNX checks.
    mean: float = 127.5
    std: float = 127.5


@dataclass(frozen=True)
class ModelPack:
    folder: Path
    detector: DetectorSpec
    recognizer: RecognizerSpec
    # Names the recognizer's exact bytes: two different recognizers never share a catalog.
    model_id: str


def _dims(value_info: onnx.ValueInfoProto) -> list[Dim]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in shape.dim]


def _last(value_info: onnx.ValueInfoProto) -> Dim:
    dims = _dims(value_info)
    return dims[-1] if dims else None


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    # Old exporters list the weights as inputs too; those have initializers.
    weights = {init.name for init in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in weights]


def _load(path: Path) -> onnx.ModelProto:
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError, or an unreadable file
        raise ModelError(f"{path} is not an ONNX file: {exc}", code="model_invalid") from exc


def _looks_like_recognizer(model: onnx.ModelProto) -> bool:
    inputs, outputs = _graph_inputs(model), list(model.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        return False
    ins, outs = _dims(inputs[0]), _dims(outputs[0])
    return len(outs) == 2 and (ins[-2:] == [REC_SIZE, REC_SIZE] or outs[-1] == REC_DIM)


def _looks_like_detector(model: onnx.ModelProto) -> bool:
    return len(_graph_inputs(model)) == 1 and len(model.graph.output) >= 6


def _recognizer(path: Path, model: onnx.ModelProto) -> RecognizerSpec:
    value = _graph_inputs(model)[0]
    ins, outs = _dims(value), _dims(model.graph.output[0])
    if len(ins) != 4 or ins[1] != 3 or ins[2:] != [REC_SIZE, REC_SIZE]:
        raise ModelError(
            f"{path.name}: a recognizer must take Nx3x{REC_SIZE}x{REC_SIZE} images; "
            f"its input is {_show(ins)}",
            code="model_input",
        )
    if outs[-1] != REC_DIM:
        raise ModelError(
            f"{path.name}: a recognizer must give {REC_DIM}-d templates; its output is "
            f"{_show(outs)}",
            code="model_output",
        )
    first = {node.op_type for node in model.graph.node[:8]}
    inside = {"Sub", "Mul"} <= first
    return RecognizerSpec(
        path,
        value.name,
        model.graph.output[0].name,
        ins[0] != 1,
        mean=0.0 if inside else 127.5,
        std=1.0 if inside else 127.5,
    )


def _detector(path: Path, model: onnx.ModelProto) -> DetectorSpec:
    value = _graph_inputs(model)[0]
    ins = _dims(value)
    if len(ins) != 4 or ins[1] != 3:
        raise ModelError(
            f"{path.name}: a detector must take 1x3xHxW images; its input is {_show(ins)}",
            code="model_input",
        )
    height, width = ins[2], ins[3]
    size = (height, width) if height and width else None
    if size is not None and (height % 32 or width % 32):  # type: ignore[operator]
        raise ModelError(
            f"{path.name}: a detector's input sides must be multiples of 32; it is {_show(ins)}",
            code="model_input",
        )
    groups: dict[int, list[tuple[str, list[Dim]]]] = {SCORE: [], BOX: [], KPS: []}
    outputs = list(model.graph.output)
    if len(outputs) == 3 * len(STRIDES) and all(_last(o) is None for o in outputs):
        # No output sizes recorded: InsightFace's convention, scores, then boxes, then keypoints.
        for i, out in enumerate(outputs):
            groups[(SCORE, BOX, KPS)[i // len(STRIDES)]].append((out.name, [None, None]))
    for out in outputs:
        dims = _dims(out)
        if dims and dims[-1] in groups:
            groups[dims[-1]].append((out.name, dims))
    if len(groups[KPS]) == 0 and len(groups[SCORE]) == len(STRIDES):
        raise ModelError(
            f"{path.name}: this detector has no keypoint outputs; Vultus aligns faces by their "
            "five keypoints, so it needs an SCRFD graph with keypoints (such as det_10g.onnx)",
            code="model_output",
        )
    for kind, label in ((SCORE, "score"), (BOX, "box"), (KPS, "keypoint")):
        if len(groups[kind]) != len(STRIDES):
            raise ModelError(
                f"{path.name}: an SCRFD detector has {len(STRIDES)} {label} outputs (one per "
                f"stride {', '.join(map(str, STRIDES))}); this one has {len(groups[kind])}",
                code="model_output",
            )
    if size is not None:
        # A fixed input fixes the anchor counts: check them, stride by stride.
        for kind in (SCORE, BOX, KPS):
            for stride, (name, dims) in zip(STRIDES, groups[kind], strict=True):
                rows = dims[-2]
                want = (size[0] // stride) * (size[1] // stride) * ANCHORS
                if rows is not None and rows != want:
                    raise ModelError(
                        f"{path.name}: output {name} has {rows} rows; stride {stride} at "
                        f"{size[0]}x{size[1]} with {ANCHORS} anchors needs {want}",
                        code="model_output",
                    )
    return DetectorSpec(
        path,
        value.name,
        size,  # type: ignore[arg-type]
        tuple(n for n, _ in groups[SCORE]),
        tuple(n for n, _ in groups[BOX]),
        tuple(n for n, _ in groups[KPS]),
    )


def _show(dims: list[Dim]) -> str:
    return "x".join("?" if d is None else str(d) for d in dims) or "a scalar"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load_pack(folder: Path) -> ModelPack:
    """Find and check the detector and the recognizer in `folder`."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ModelError(f"no model pack folder at {folder}", code="model_missing")
    detectors: list[DetectorSpec] = []
    recognizers: list[RecognizerSpec] = []
    for path in sorted(folder.glob("*.onnx")):
        model = _load(path)
        if _looks_like_recognizer(model):
            recognizers.append(_recognizer(path, model))
        elif _looks_like_detector(model):
            detectors.append(_detector(path, model))
        else:
            log.info("%s is neither a detector nor a recognizer: not used", path.name)
    for found, label in ((detectors, "detector"), (recognizers, "recognizer")):
        if len(found) > 1:
            names = ", ".join(s.path.name for s in found)
            raise ModelError(
                f"{folder} holds {len(found)} {label}s ({names}); keep exactly one per pack",
                code="model_ambiguous",
            )
    if not detectors or not recognizers:
        missing = "SCRFD detector" if not detectors else "ArcFace recognizer"
        raise ModelError(
            f"{folder} has no {missing} graph; a pack needs an SCRFD detector with keypoints "
            f"and an ArcFace recognizer (Nx3x{REC_SIZE}x{REC_SIZE} -> Nx{REC_DIM})",
            code="model_missing",
        )
    recognizer = recognizers[0]
    return ModelPack(folder, detectors[0], recognizer, f"pack-{file_sha256(recognizer.path)[:12]}")


def pack_folder(model: str, data_dir: Path) -> Path | None:
    """Where the `model` setting's pack lives; None for the built-in dlib models."""
    if model in BUILT_IN:
        return None
    if not model.strip():
        raise ConfigError('the model setting is empty; use "dlib" or a model pack folder')
    path = Path(model).expanduser()
    if path.is_absolute() or "/" in model or model.startswith("."):
        return path
    return data_dir / PACKS_DIR / model
