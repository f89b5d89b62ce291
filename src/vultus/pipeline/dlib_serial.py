"""Reading dlib's binary serialisation (dlib/serialize.h, dlib/dnn/*.h), shared by every
converter of a dlib network to ONNX (dlib_onnx.py for the face recogniser, mmod_onnx.py for the
MMOD face detector). Only bytes in: no dlib, no torch.

- Integers use dlib's compact encoding: a control byte (0x80 = negative, low nibble = byte
  count) followed by that many little-endian bytes. Strings are a length then raw bytes. Bools
  are the ASCII characters '1' and '0'. Floats and doubles are a `float_details`: an integer
  mantissa and an integer exponent, value = mantissa * 2**exponent.
- Tensors are a version (2), their four dimensions, then raw little-endian float32 values.
  `alias_tensor`s (the views a layer cuts out of its parameter tensor) store only their shape.
- Every `add_layer` writes its layer's details followed by its training state (bools and
  cached tensors), which inference skips.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import numpy as np
import numpy.typing as npt

from vultus.errors import ModelError
from vultus.files import atomic_write

if TYPE_CHECKING:  # importing onnx costs 0.7 s: only building a graph needs it
    import onnx

FloatArray = npt.NDArray[np.float32]

# Metadata keys of every converted graph: the .dat file's sha256 and the graph's own digest.
SOURCE_HASH_KEY = "source_sha256"
GRAPH_HASH_KEY = "graph_sha256"


@dataclass(frozen=True, eq=False)
class Conv:
    filters: FloatArray  # (out, in, rows, cols)
    bias: FloatArray  # (out,)
    stride: tuple[int, int]  # (y, x)
    padding: tuple[int, int]  # (y, x), both sides


@dataclass(frozen=True, eq=False)
class Affine:
    """A frozen batch norm, per channel: x * gamma + beta."""

    gamma: FloatArray
    beta: FloatArray


_MAX_STRING = 256  # layer names are short; a long "string" means this is not a dlib network
_FLOAT_SPECIALS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}


class DlibReader:
    """A cursor over a dlib file. `expected` names what the file should hold, for errors:
    "x.dat is not <expected>: <why> (at byte n)"."""

    def __init__(self, data: bytes, name: str, expected: str) -> None:
        self._data = data
        self._pos = 0
        self._name = name
        self._expected = expected

    def fail(self, why: str) -> NoReturn:
        raise ModelError(f"{self._name} is not {self._expected}: {why} (at byte {self._pos})")

    @property
    def at_end(self) -> bool:
        return self._pos == len(self._data)

    def _take(self, count: int) -> bytes:
        if count < 0 or self._pos + count > len(self._data):
            self.fail("the file ends too early")
        chunk = self._data[self._pos : self._pos + count]
        self._pos += count
        return chunk

    def integer(self) -> int:
        control = self._take(1)[0]
        # dlib keeps bits 0x70 of the control byte zero; anything else is not its format.
        size = control & 0x0F
        if control & 0x70 or size > 8:
            self.fail(f"invalid integer control byte 0x{control:02x}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        if exponent in _FLOAT_SPECIALS:
            return _FLOAT_SPECIALS[exponent]
        try:
            return math.ldexp(float(mantissa), exponent)
        except OverflowError:
            self.fail("a floating point value out of range")

    def boolean(self) -> bool:
        char = self._take(1)
        if char not in (b"0", b"1"):
            self.fail("an invalid boolean")
        return char == b"1"

    def text(self) -> str:
        length = self.integer()
        if not 0 <= length <= _MAX_STRING:
            self.fail(f"a string of implausible length {length}")
        raw = self._take(length)
        if not all(32 <= b < 127 for b in raw):
            self.fail("a layer name that is not printable text")
        return raw.decode("ascii")

    def peek_text(self) -> str | None:
        """The string at the cursor if there is a plausible one, without consuming it."""
        start = self._pos
        try:
            return self.text()
        except ModelError:
            return None
        finally:
            self._pos = start

    def dims(self, what: str) -> tuple[int, int, int, int]:
        n, k, nr, nc = (self.integer() for _ in range(4))
        if min(n, k, nr, nc) < 0:
            self.fail(f"negative dimensions in {what}")
        return n, k, nr, nc

    def tensor(self, what: str) -> FloatArray:
        version = self.integer()
        if version != 2:
            self.fail(f"{what}: unexpected tensor version {version}")
        shape = self.dims(what)
        count = math.prod(shape)
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias_tensor(self, what: str) -> tuple[int, int, int, int]:
        version = self.integer()
        if version != 1:
            self.fail(f"{what}: unexpected alias_tensor version {version}")
        return self.dims(what)


def default_padding(size: int, stride: int) -> int:
    # dlib's default for con_, max_pool_ and avg_pool_: `stride != 1 ? 0 : size/2`.
    return 0 if stride != 1 else size // 2


def read_conv(r: DlibReader) -> Conv:
    params = r.tensor("con_ parameters").reshape(-1)
    num_filters, rows, cols = r.integer(), r.integer(), r.integer()
    stride = (r.integer(), r.integer())
    padding = (r.integer(), r.integer())
    filters_shape = r.alias_tensor("con_ filters")
    biases_shape = r.alias_tensor("con_ biases")
    for _ in range(4):  # learning rate and weight decay multipliers: training only
        r.real()
    n_weights = math.prod(filters_shape)
    if (
        filters_shape[0] != num_filters
        or filters_shape[2:] != (rows, cols)
        or math.prod(biases_shape) != num_filters
        or params.size != n_weights + num_filters
    ):
        r.fail("a con_ layer whose parameter shapes do not agree")
    return Conv(
        filters=params[:n_weights].reshape(filters_shape),
        bias=params[n_weights:].copy(),
        stride=stride,
        padding=padding,
    )


def read_affine(r: DlibReader) -> Affine:
    params = r.tensor("affine_ parameters").reshape(-1)
    gamma_shape = r.alias_tensor("affine_ gamma")
    beta_shape = r.alias_tensor("affine_ beta")
    mode = r.integer()
    if mode != 0:  # CONV_MODE: one gamma and beta per channel
        r.fail("an affine_ layer in FC mode")
    channels = gamma_shape[1]
    if (
        gamma_shape != (1, channels, 1, 1)
        or beta_shape != gamma_shape
        or params.size != 2 * channels
    ):
        r.fail("an affine_ layer whose parameter shapes do not agree")
    return Affine(gamma=params[:channels].copy(), beta=params[channels:].copy())


def read_bn_as_affine(r: DlibReader) -> Affine:
    """A `bn_con2` layer (batch norm as trained, name already read), frozen into an affine
    layer the way dlib's affine_(const bn_&) does when it loads such a file for inference:
    gamma / sqrt(running_variance + eps), beta - that * running_mean."""
    params = r.tensor("bn_ parameters").reshape(-1)
    gamma_shape = r.alias_tensor("bn_ gamma")
    r.alias_tensor("bn_ beta")
    r.tensor("bn_ means")  # the last training batch's statistics: training only
    r.tensor("bn_ invstds")
    running_means = r.tensor("bn_ running_means").reshape(-1)
    running_variances = r.tensor("bn_ running_variances").reshape(-1)
    r.integer(), r.integer()  # num_updates, running_stats_window_size
    for _ in range(4):  # learning rate and weight decay multipliers
        r.real()
    eps = np.float32(r.real())
    channels = gamma_shape[1]
    sizes = (running_means.size, running_variances.size)
    if params.size != 2 * channels or sizes != (channels, channels):
        r.fail("a bn_ layer whose parameter shapes do not agree")
    gamma = params[:channels] / np.sqrt(running_variances + eps)
    beta = params[channels:] - gamma * running_means
    return Affine(gamma=gamma.astype(np.float32), beta=beta.astype(np.float32))


def skip_training_state(r: DlibReader) -> None:
    # this_layer_setup_called, gradient_input_is_stale, get_output_and_gradient_input_disabled,
    # x_grad, cached_output, and params_grad (grad_final in the first add_layer): training
    # state that inference does not need.
    for _ in range(3):
        r.boolean()
    for what in ("x_grad", "cached_output", "params_grad"):
        r.tensor(what)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def graph_sha256(model: onnx.ModelProto) -> str:
    """A digest of the graph (weights included), kept in its metadata: it tells an intact file
    from a damaged one without the cache's stamp (damage inside raw tensor data still parses as
    valid protobuf)."""
    return hashlib.sha256(model.graph.SerializeToString(deterministic=True)).hexdigest()


def read_file(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read the model file {path}: {exc.strerror}") from exc


def finish_model(model: onnx.ModelProto, dat_path: Path, **props: str) -> onnx.ModelProto:
    """Stamp a graph converted from `dat_path` with its source's hash and its own, so that the
    file says where it came from, then check it: a converter bug must fail here, not at
    inference."""
    import onnx

    onnx.helper.set_model_props(
        model,
        {
            SOURCE_HASH_KEY: file_sha256(dat_path),
            "source_file": dat_path.name,
            **props,
            GRAPH_HASH_KEY: graph_sha256(model),
        },
    )
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"the ONNX graph built from {dat_path.name} is invalid: {exc}") from exc
    return model


def write_model(model: onnx.ModelProto, out_path: Path) -> Path:
    """Write the ONNX file atomically, so readers never see half a file."""
    out_path = Path(out_path)
    try:
        # 0644: the model is derived from public weights, not a secret.
        atomic_write(out_path, model.SerializeToString(), mode=0o644)
    except OSError as exc:
        raise ModelError(f"cannot write the converted model to {out_path}: {exc}") from exc
    return out_path
