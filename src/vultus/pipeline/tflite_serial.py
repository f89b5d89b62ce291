"""Reading a TensorFlow Lite model (a FlatBuffer, tensorflow/lite/schema/schema.fbs) into plain
Python records, for converters to ONNX (blazeface_onnx.py). Only bytes in: no TensorFlow, no
FlatBuffers runtime, no generated schema code.

A FlatBuffer table starts with a signed offset back to its vtable, whose uint16 entries give
each field's offset inside the table (0: absent, the schema's default applies). Tables, vectors
and strings are referenced by uint32 offsets relative to where the reference is stored; a
vector is its uint32 length followed by its elements. The schema's field numbers used here:

    Model:        1 operator_codes, 2 subgraphs, 4 buffers
    OperatorCode: 0 deprecated_builtin_code (int8), 3 builtin_code (int32)
    SubGraph:     0 tensors, 1 inputs, 2 outputs, 3 operators
    Tensor:       0 shape, 1 type, 2 buffer, 3 name
    Operator:     0 opcode_index, 1 inputs, 2 outputs, 3 builtin_options_type, 4 builtin_options
    Buffer:       0 data
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vultus.errors import ModelError

# TensorType values (schema.fbs) and the NumPy types of their bytes.
_DTYPES: dict[int, type[np.generic]] = {
    0: np.float32,
    1: np.float16,
    2: np.int32,
    3: np.uint8,
    4: np.int64,
    9: np.int8,
}


@dataclass(frozen=True, eq=False)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: type[np.generic]
    data: npt.NDArray[np.generic] | None  # the constant's values, None for activations


@dataclass(frozen=True, eq=False)
class Operator:
    code: int  # the BuiltinOperator number
    inputs: tuple[int, ...]  # tensor indices; -1 for an omitted optional input
    outputs: tuple[int, ...]
    options: Table | None  # the builtin options table, read with `option`


@dataclass(frozen=True, eq=False)
class Graph:
    tensors: list[Tensor]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    operators: list[Operator]


class Table:
    """One FlatBuffer table: fields by number, scalars with their schema default."""

    def __init__(self, buf: bytes, pos: int, what: str) -> None:
        self._buf, self._pos, self._what = buf, pos, what
        vtable = pos - self._unpack("<i", pos)
        self._vt_size = self._unpack("<H", vtable)
        self._vtable = vtable

    def _unpack(self, fmt: str, at: int) -> int:
        try:
            return int(struct.unpack_from(fmt, self._buf, at)[0])
        except struct.error as exc:
            raise ModelError(f"{self._what} is not a TensorFlow Lite model (cut short)") from exc

    def _field(self, number: int) -> int:
        slot = 4 + 2 * number
        if slot >= self._vt_size:
            return 0
        offset = self._unpack("<H", self._vtable + slot)
        return self._pos + offset if offset else 0

    def scalar(self, number: int, fmt: str, default: int = 0) -> int:
        at = self._field(number)
        return self._unpack(fmt, at) if at else default

    def _target(self, number: int) -> int:
        at = self._field(number)
        return at + self._unpack("<I", at) if at else 0

    def table(self, number: int) -> Table | None:
        at = self._target(number)
        return Table(self._buf, at, self._what) if at else None

    def tables(self, number: int) -> list[Table]:
        at = self._target(number)
        if not at:
            return []
        count = self._unpack("<I", at)
        refs = [at + 4 + 4 * i for i in range(count)]
        return [Table(self._buf, ref + self._unpack("<I", ref), self._what) for ref in refs]

    def array(self, number: int, dtype: type[np.generic]) -> npt.NDArray[np.generic]:
        at = self._target(number)
        if not at:
            return np.zeros(0, dtype)
        count = self._unpack("<I", at)
        if at + 4 + count * np.dtype(dtype).itemsize > len(self._buf):
            raise ModelError(f"{self._what} is not a TensorFlow Lite model (a vector overruns it)")
        return np.frombuffer(self._buf, dtype, count, at + 4)

    def text(self, number: int) -> str:
        return bytes(self.array(number, np.uint8)).decode("utf-8", "replace")


def option(options: Table | None, number: int, fmt: str, default: int = 0) -> int:
    """A scalar field of an operator's builtin options (its schema default when absent)."""
    return options.scalar(number, fmt, default) if options is not None else default


def read_model(path: Path) -> Graph:
    """The first subgraph of the .tflite file at `path`: its tensors (constants with their
    values) and its operators in execution order."""
    try:
        buf = Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from exc
    what = str(path)
    # The file identifier "TFL3" follows the root offset.
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelError(f"{what} is not a TensorFlow Lite model (no TFL3 identifier)")
    model = Table(buf, struct.unpack_from("<I", buf, 0)[0], what)
    codes = [
        max(c.scalar(0, "<b"), c.scalar(3, "<i")) for c in model.tables(1)
    ]  # old files keep the code in the deprecated int8 field only
    buffers = model.tables(4)
    subgraphs = model.tables(2)
    if not subgraphs:
        raise ModelError(f"{what} holds no graph")
    sub = subgraphs[0]
    tensors: list[Tensor] = []
    for t in sub.tables(0):
        kind = t.scalar(1, "<b")
        dtype = _DTYPES.get(kind)
        name = t.text(3)
        if dtype is None:
            raise ModelError(f"{what}: tensor {name!r} has an unsupported type ({kind})")
        shape = tuple(int(v) for v in t.array(0, np.int32))
        index = t.scalar(2, "<I")
        raw = buffers[index].array(0, np.uint8) if 0 < index < len(buffers) else None
        data = None
        if raw is not None and raw.size:
            data = np.frombuffer(raw.tobytes(), dtype).reshape(shape)
        tensors.append(Tensor(name, shape, dtype, data))
    operators = [
        Operator(
            code=codes[op.scalar(0, "<I")],
            inputs=tuple(int(v) for v in op.array(1, np.int32)),
            outputs=tuple(int(v) for v in op.array(2, np.int32)),
            options=op.table(4),
        )
        for op in sub.tables(3)
    ]
    return Graph(
        tensors=tensors,
        inputs=tuple(int(v) for v in sub.array(1, np.int32)),
        outputs=tuple(int(v) for v in sub.array(2, np.int32)),
        operators=operators,
    )
