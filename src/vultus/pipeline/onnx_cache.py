"""The model files Vultus derives from the installed ones, cached in the models folder: the ONNX
graphs built from dlib's .dat files, and dlib's HOG detector in its binary form.

A cached file is used only if it was built from the very inputs at hand (the .dat file, and
for the int8 graph the shipped activation ranges) and is intact; anything else is rebuilt. Both
facts live in a small file beside it, `<file>.json`: the inputs' digest and the file's own
sha256 (damage inside raw weights would still parse as protobuf). So a start-up reads and
hashes a graph but never parses it, and never imports the `onnx` package, which alone takes
0.7 s or more: ONNX Runtime loads the bytes as they are.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort

from vultus.errors import ModelError
from vultus.files import atomic_write
from vultus.pipeline.dlib_serial import file_sha256

log = logging.getLogger(__name__)

# Part of every build key: a change to how graphs are built or checked retires old caches.
CACHE_FORMAT = "vultus-onnx-cache-2"


def _stamp_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".json")


def _load_cached(model_path: Path, key: str) -> bytes | None:
    """The cached graph's bytes if it was built for `key` and is intact, else None."""
    try:
        stamp = json.loads(_stamp_path(model_path).read_text())
        data = model_path.read_bytes()
    except (OSError, ValueError):  # missing or unreadable: rebuild
        return None
    if not isinstance(stamp, dict) or stamp.get("key") != key:
        return None
    if stamp.get("sha256") != hashlib.sha256(data).hexdigest():
        return None
    return data


def load_or_build(model_path: Path, key: str, build: Callable[[Path], object]) -> bytes:
    """The bytes of `model_path` if it was built for `key` and is intact; else `build(path)`
    writes it (atomically), and its stamp is written after it."""
    data = _load_cached(model_path, key)
    if data is None:
        log.info("building %s", model_path)
        build(model_path)
        try:
            data = model_path.read_bytes()
            stamp = {"key": key, "sha256": hashlib.sha256(data).hexdigest()}
            atomic_write(_stamp_path(model_path), json.dumps(stamp) + "\n", mode=0o644)
        except OSError as exc:
            raise ModelError(f"the built model {model_path} could not be kept: {exc}") from exc
    return data


def load_or_convert(
    source: Path,
    model_path: Path,
    convert: Callable[[Path, Path], Path],
    *,
    also: tuple[str, ...] = (),
) -> bytes:
    """The converted graph's bytes, converting `source` into `model_path` first if needed.
    `also`: digests of further inputs of the conversion (the int8 graph's ranges)."""
    key = hashlib.sha256("\n".join((CACHE_FORMAT, file_sha256(source), *also)).encode())
    return load_or_build(model_path, key.hexdigest(), lambda path: convert(source, path))


def cpu_session(data: bytes, threads: int, what: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"ONNX Runtime cannot load {what}: {exc}") from exc
