"""The ONNX graphs converted from dlib's .dat files, cached in the models folder.

A cached graph is used only if it was built from the very .dat file at hand (its sha256 is in
the graph's metadata) and is intact (damage inside raw weights still parses as protobuf, so the
graph's own digest is checked too); anything else is rebuilt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import onnx
import onnxruntime as ort

from vultus.errors import ModelError
from vultus.pipeline.dlib_serial import GRAPH_HASH_KEY, SOURCE_HASH_KEY, file_sha256, graph_sha256

log = logging.getLogger(__name__)


def _load_cached(path: Path, source_sha256: str) -> bytes | None:
    """The cached model's bytes if it was built from this .dat and is intact, else None."""
    try:
        data = path.read_bytes()
        model = onnx.load_from_string(data)
    except Exception:  # missing, unreadable or not an ONNX file: all mean "rebuild"
        return None
    props = {p.key: p.value for p in model.metadata_props}
    if props.get(SOURCE_HASH_KEY) != source_sha256:
        return None
    if props.get(GRAPH_HASH_KEY) != graph_sha256(model):
        return None
    return data


def load_or_convert(source: Path, model_path: Path, convert: Callable[[Path, Path], Path]) -> bytes:
    """The converted model's bytes, converting `source` into `model_path` first if needed."""
    source_sha256 = file_sha256(source)
    data = _load_cached(model_path, source_sha256)
    if data is None:
        log.info("converting %s to %s", source.name, model_path)
        convert(source, model_path)
        data = _load_cached(model_path, source_sha256)
        if data is None:
            raise ModelError(f"the converted model {model_path} could not be read back")
    return data


def cpu_session(data: bytes, threads: int, what: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"ONNX Runtime cannot load {what}: {exc}") from exc
