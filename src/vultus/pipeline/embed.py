"""Embedders: dlib's face recognition ResNet, run by ONNX Runtime (default) or by dlib itself.

Why two engines: the dlib-bin wheel is built without BLAS and runs its DNN on one thread, so
`compute_face_descriptor` costs about 145 ms per face. The same network converted to ONNX
(see dlib_onnx.py) runs in ONNX Runtime at about 6 ms per face, with descriptors equal to
dlib's within 1e-5 per component. Both engines produce the same templates, so they share one
`model_id`; dlib stays available as the reference to check the conversion against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from vultus.errors import ConfigError, ModelError
from vultus.pipeline.base import Embedder, Templates
from vultus.pipeline.dlib_onnx import INPUT_NAME, OUTPUT_NAME, convert
from vultus.pipeline.models import recognition_model
from vultus.pipeline.onnx_cache import cpu_session, load_or_convert

MODEL_ID = "dlib-resnet-v1"
DIM = 128
CHIP_SIZE = 150
ONNX_FILENAME = "dlib_resnet_v1.onnx"
MAX_BATCH = 64  # bounds peak memory: activations grow linearly with the batch
ENGINES = ("onnx", "dlib")


def _check_chips(chips: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    chips = np.asarray(chips)
    if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
        raise ValueError(
            f"chips must be uint8 of shape (n, {CHIP_SIZE}, {CHIP_SIZE}, 3); "
            f"got {chips.dtype} {chips.shape}"
        )
    return np.ascontiguousarray(chips)


class OnnxDlibEmbedder:
    """dlib's ResNet in ONNX Runtime. The converted graph is cached in `models_dir` and
    rebuilt whenever it is missing, damaged, or was made from a different .dat file."""

    model_id = MODEL_ID
    dim = DIM
    chip_size = CHIP_SIZE

    def __init__(self, models_dir: Path, threads: int = 1, *, dat_path: Path | None = None):
        if threads < 1:
            raise ConfigError(f"embedder threads must be at least 1, got {threads}")
        source = Path(dat_path) if dat_path is not None else recognition_model()
        self.model_path = Path(models_dir) / ONNX_FILENAME
        data = load_or_convert(source, self.model_path, convert)
        self._session = cpu_session(data, threads, self.model_path)

    def embed(self, chips: npt.NDArray[np.uint8]) -> Templates:
        chips = _check_chips(chips)
        if len(chips) == 0:
            return np.empty((0, DIM), np.float32)
        parts = [
            self._session.run([OUTPUT_NAME], {INPUT_NAME: chips[i : i + MAX_BATCH]})[0]
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


def make_embedder(engine: str, models_dir: Path, *, threads: int = 1) -> Embedder:
    if engine == "onnx":
        return OnnxDlibEmbedder(models_dir, threads=threads)
    if engine == "dlib":
        return DlibEmbedder()
    raise ConfigError(f"unknown embedding engine {engine!r}; choose one of: {', '.join(ENGINES)}")
