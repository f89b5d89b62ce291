"""Embedders: dlib's face recognition ResNet, run by ONNX Runtime (default) or by dlib itself.

Why two engines: the dlib-bin wheel is built without BLAS and runs its DNN on one thread, so
`compute_face_descriptor` costs about 145 ms per face. The same network converted to ONNX
(see dlib_onnx.py) runs in ONNX Runtime at about 6 ms per face, with descriptors equal to
dlib's within 1e-5 per component. Both engines produce the same templates, so they share one
`model_id`; dlib stays available as the reference to check the conversion against.

ONNX Runtime runs the network in int8 by default (`embed_precision`, see dlib_int8.py): about
twice the float speed (1.7-2x on a CPU with AVX2 only, more with VNNI), with unit templates
0.023 apart from the float ones on average (L2) and the same accuracy on lfw-a. They share the
model id too: on lfw-a both precisions put the distance thresholds at FMR 1e-2 to 1e-4 at the
same values (to three decimals), and int8 queries against float templates keep the same TAR,
so a catalog may hold both and one calibration serves both (docs/models.md has the figures).
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vultus.errors import ConfigError, ModelError
from vultus.pipeline.base import Embedder, Templates
from vultus.pipeline.models import recognition_model
from vultus.pipeline.onnx_cache import cpu_session, load_or_convert

MODEL_ID = "dlib-resnet-v1"
DIM = 128
CHIP_SIZE = 150
ONNX_FILENAME = "dlib_resnet_v1.onnx"
INT8_FILENAME = "dlib_resnet_v1_int8.onnx"
# The activation ranges the int8 graph is built with, in vultus/data (benchmarks/int8.py).
INT8_RANGES = "int8_ranges_dlib-resnet-v1.json"
MAX_BATCH = 64  # bounds peak memory: activations grow linearly with the batch
ENGINES = ("onnx", "dlib")
PRECISIONS = ("int8", "fp32")


def _check_chips(chips: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    chips = np.asarray(chips)
    if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
        raise ValueError(
            f"chips must be uint8 of shape (n, {CHIP_SIZE}, {CHIP_SIZE}, 3); "
            f"got {chips.dtype} {chips.shape}"
        )
    return np.ascontiguousarray(chips)


def _convert_fp32(dat_path: Path, out_path: Path) -> Path:
    from vultus.pipeline.dlib_onnx import convert  # builds the graph: imports onnx

    return convert(dat_path, out_path)


def _convert_int8(ranges: bytes, dat_path: Path, out_path: Path) -> Path:
    from vultus.pipeline.dlib_int8 import Int8Ranges, convert_int8

    return convert_int8(dat_path, out_path, Int8Ranges.parse(ranges, f"vultus/data/{INT8_RANGES}"))


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(
            f"unknown embed_precision {precision!r}; choose one of: {', '.join(PRECISIONS)}"
        )
    return precision


class OnnxDlibEmbedder:
    """dlib's ResNet in ONNX Runtime, in int8 (the default) or float32. The graph is built
    from dlib's .dat file (and, for int8, the activation ranges Vultus ships), cached in
    `models_dir` and rebuilt whenever it is missing, damaged, or was built from other inputs."""

    model_id = MODEL_ID
    dim = DIM
    chip_size = CHIP_SIZE

    def __init__(
        self,
        models_dir: Path,
        threads: int = 1,
        *,
        precision: str = "int8",
        dat_path: Path | None = None,
    ):
        if threads < 1:
            raise ConfigError(f"embedder threads must be at least 1, got {threads}")
        self.precision = check_precision(precision)
        source = Path(dat_path) if dat_path is not None else recognition_model()
        if precision == "int8":
            self.model_path = Path(models_dir) / INT8_FILENAME
            ranges = resources.files("vultus.data").joinpath(INT8_RANGES).read_bytes()
            data = load_or_convert(
                source,
                self.model_path,
                functools.partial(_convert_int8, ranges),
                also=(hashlib.sha256(ranges).hexdigest(),),
            )
        else:
            self.model_path = Path(models_dir) / ONNX_FILENAME
            data = load_or_convert(source, self.model_path, _convert_fp32)
        self._session = cpu_session(data, threads, self.model_path)
        # From the session, not from dlib_onnx's constants: importing that module means onnx.
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    def embed(self, chips: npt.NDArray[np.uint8]) -> Templates:
        chips = _check_chips(chips)
        if len(chips) == 0:
            return np.empty((0, DIM), np.float32)
        parts = [
            self._session.run([self._output], {self._input: chips[i : i + MAX_BATCH]})[0]
            for i in range(0, len(chips), MAX_BATCH)
        ]
        return np.concatenate(parts).astype(np.float32, copy=False)


class DlibEmbedder:
    """The reference: dlib's own forward pass, single-threaded and slow."""

    model_id = MODEL_ID
    dim = DIM
    chip_size = CHIP_SIZE

    def __init__(self, dat_path: Path | None = None) -> None:
        import dlib  # only this engine needs it at embed time

        source = Path(dat_path) if dat_path is not None else recognition_model()
        try:
            self._net = dlib.face_recognition_model_v1(str(source))
        except RuntimeError as exc:
            raise ModelError(f"dlib cannot load {source}: {exc}") from exc

    def embed(self, chips: npt.NDArray[np.uint8]) -> Templates:
        chips = _check_chips(chips)
        if len(chips) == 0:
            return np.empty((0, DIM), np.float32)
        descriptors = self._net.compute_face_descriptor(list(chips))
        # dlib returns doubles converted from its float32 outputs, so this cast is exact.
        return np.array([np.asarray(d) for d in descriptors], dtype=np.float32)


def make_embedder(
    engine: str, models_dir: Path, *, threads: int = 1, precision: str = "int8"
) -> Embedder:
    """The configured engine. `precision` applies to ONNX Runtime; dlib computes in float."""
    check_precision(precision)
    if engine == "onnx":
        return OnnxDlibEmbedder(models_dir, threads=threads, precision=precision)
    if engine == "dlib":
        return DlibEmbedder()
    raise ConfigError(f"unknown embedding engine {engine!r}; choose one of: {', '.join(ENGINES)}")
