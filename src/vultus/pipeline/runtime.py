"""ONNX Runtime sessions for model packs: the one place that picks execution providers.

CUDA first when the installed onnxruntime offers it (the `onnxruntime-gpu` wheel), else CPU.
The model code never knows which one runs it.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from vultus.errors import ModelError

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def providers() -> list[str]:
    return [CUDA, CPU] if CUDA in ort.get_available_providers() else [CPU]


def session(path: Path, *, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers())
    except Exception as exc:  # ORT raises its own untyped errors for any bad graph
        raise ModelError(f"ONNX Runtime cannot load {path}: {exc}") from exc
