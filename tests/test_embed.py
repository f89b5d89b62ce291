"""The dlib ResNet embedders: the ONNX conversion against dlib itself, the int8 graph against
the float one, batching, the model cache, and the errors for files that are not the network."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

import dlib
import numpy as np
import numpy.typing as npt
import onnx
import pytest
from PIL import Image

from vultus.errors import ConfigError, ModelError
from vultus.pipeline.dlib_int8 import Int8Ranges, build_int8_model
from vultus.pipeline.dlib_onnx import (
    INPUT_NAME,
    OUTPUT_NAME,
    Conv,
    InputRGB,
    LossMetric,
    build_onnx_model,
    read_dlib_resnet,
)
from vultus.pipeline.dlib_serial import SOURCE_HASH_KEY
from vultus.pipeline.embed import (
    INT8_FILENAME,
    INT8_RANGES,
    ONNX_FILENAME,
    DlibEmbedder,
    OnnxDlibEmbedder,
    make_embedder,
)
from vultus.pipeline.models import landmarks_5_model, mmod_detector_model, recognition_model

REPO_ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5  # per descriptor component; float32 summation order is all that differs
# int8 against float32, L2 between unit templates of the same face. On all of lfw-a (6,260
# faces) the int8 graph measured mean 0.023, p99 0.032, max 0.081; same-person distances at the
# FMR 1e-3 threshold are about 0.38.
INT8_MEAN_BOUND = 0.035
INT8_MAX_BOUND = 0.1


def faces_dir() -> Path | None:
    """The shared test photos: $VULTUS_TEST_FACES, else ../shared/faces next to the repo."""
    env = os.environ.get("VULTUS_TEST_FACES")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "faces"
    return path if (path / "dev" / "labels.csv").is_file() else None


def random_chips(n: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, (n, 150, 150, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models")
    OnnxDlibEmbedder(path, precision="fp32")
    OnnxDlibEmbedder(path, precision="int8")
    return path


@pytest.fixture(scope="module")
def onnx_embedder(models_dir: Path) -> OnnxDlibEmbedder:
    return OnnxDlibEmbedder(models_dir, precision="fp32")


@pytest.fixture(scope="module")
def int8_embedder(models_dir: Path) -> OnnxDlibEmbedder:
    return OnnxDlibEmbedder(models_dir)


@pytest.fixture(scope="module")
def dev_chips() -> npt.NDArray[np.uint8]:
    """One chip per dev photo, cut the way dlib's own examples do it."""
    root = faces_dir()
    if root is None:
        pytest.skip(
            "shared face photos not found: set VULTUS_TEST_FACES or provide ../shared/faces"
        )
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(landmarks_5_model()))
    with open(root / "dev" / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    chips = []
    for row in rows:
        with Image.open(root / "dev" / row["path"]) as im:
            image = np.asarray(im.convert("RGB"))
        boxes = detector(image, 0) or detector(image, 1)
        if not boxes:
            continue
        box = max(boxes, key=lambda b: b.area())
        chips.append(dlib.get_face_chip(image, predictor(image, box), size=150, padding=0.25))
    assert len(chips) >= len(rows) // 2, "the detector should find most dev faces"
    return np.stack(chips)


# --- the file format ---------------------------------------------------------------------


def test_reader_finds_the_documented_network() -> None:
    layers = read_dlib_resnet(recognition_model())
    source, loss = layers[0], layers[-1]
    assert isinstance(source, InputRGB) and (source.rows, source.cols) == (150, 150)
    assert source.mean_rgb == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    assert isinstance(loss, LossMetric) and loss.margin == pytest.approx(0.04)
    convs = [layer for layer in layers if isinstance(layer, Conv)]
    assert len(convs) == 29
    assert convs[0].filters.shape == (32, 3, 7, 7) and convs[0].padding == (0, 0)


def test_graph_takes_raw_chips_with_dynamic_batch() -> None:
    model = build_onnx_model(recognition_model())
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == (INPUT_NAME, OUTPUT_NAME)
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["N", 150, 150, 3]
    assert sum(n.op_type == "Conv" for n in model.graph.node) == 29
    assert any(n.op_type == "Pad" for n in model.graph.node), "residual zero-padding is missing"
    props = {p.key: p.value for p in model.metadata_props}
    assert len(props[SOURCE_HASH_KEY]) == 64


# --- fidelity and batching -----------------------------------------------------------------


@pytest.mark.slow
def test_onnx_matches_dlib_on_dev_photos(
    dev_chips: npt.NDArray[np.uint8], onnx_embedder: OnnxDlibEmbedder
) -> None:
    reference = DlibEmbedder().embed(dev_chips)
    ours = onnx_embedder.embed(dev_chips)
    assert ours.shape == reference.shape == (len(dev_chips), 128)
    assert ours.dtype == np.float32
    worst = float(np.abs(ours - reference).max())
    assert worst <= TOLERANCE, f"max abs difference {worst:.2e} over {len(dev_chips)} faces"


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_batch_equals_single(precision: str, models_dir: Path) -> None:
    embedder = OnnxDlibEmbedder(models_dir, precision=precision)
    chips = random_chips(70)  # more than one internal batch of 64
    batch = embedder.embed(chips)
    singles = np.concatenate([embedder.embed(chips[i : i + 1]) for i in range(len(chips))])
    np.testing.assert_array_equal(batch, singles)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_empty_and_malformed_input(precision: str, models_dir: Path) -> None:
    embedder = OnnxDlibEmbedder(models_dir, precision=precision)
    assert embedder.embed(np.empty((0, 150, 150, 3), np.uint8)).shape == (0, 128)
    with pytest.raises(ValueError, match="uint8"):
        embedder.embed(np.zeros((1, 112, 112, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        embedder.embed(np.zeros((1, 150, 150, 3), np.float32))


# --- int8 ----------------------------------------------------------------------------------


def test_int8_templates_stay_close_to_the_float_ones_on_dev_photos(
    dev_chips: npt.NDArray[np.uint8],
    onnx_embedder: OnnxDlibEmbedder,
    int8_embedder: OnnxDlibEmbedder,
) -> None:
    unit = [
        t / np.linalg.norm(t, axis=1, keepdims=True)
        for t in (
            onnx_embedder.embed(dev_chips),
            int8_embedder.embed(dev_chips),
        )
    ]
    apart = np.linalg.norm(unit[0] - unit[1], axis=1)
    assert apart.mean() <= INT8_MEAN_BOUND, f"mean L2 {apart.mean():.4f}"
    assert apart.max() <= INT8_MAX_BOUND, f"max L2 {apart.max():.4f}"


def test_int8_graph_runs_integer_convolutions_on_uint8_chips(models_dir: Path) -> None:
    model = onnx.load(models_dir / INT8_FILENAME)
    (inp,) = model.graph.input
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    weights = {i.name: i for i in model.graph.initializer}
    conv_weights = [
        weights[d.input[0]]
        for n in model.graph.node
        if n.op_type == "Conv"
        for d in model.graph.node
        if d.output[0] == n.input[1]
    ]
    assert len(conv_weights) == 29
    # The first convolution sees raw pixels: uint8 weights (no int16 overflow without VNNI).
    assert conv_weights[0].data_type == onnx.TensorProto.UINT8
    assert {w.data_type for w in conv_weights[1:]} == {onnx.TensorProto.INT8}
    props = {p.key: p.value for p in model.metadata_props}
    assert props["precision"] == "int8" and len(props[SOURCE_HASH_KEY]) == 64


def _shipped_ranges() -> Int8Ranges:
    from importlib import resources

    data = resources.files("vultus.data").joinpath(INT8_RANGES).read_bytes()
    return Int8Ranges.parse(data, INT8_RANGES)


def test_ranges_for_another_network_file_or_incomplete_are_refused() -> None:
    ranges = _shipped_ranges()
    other = Int8Ranges("0" * 64, ranges.ranges, "elsewhere")
    with pytest.raises(ModelError, match=r"another dlib_face_recognition_resnet_model_v1.dat"):
        build_int8_model(recognition_model(), other)
    partial = Int8Ranges(ranges.source_sha256, dict(list(ranges.ranges.items())[:-1]), "")
    with pytest.raises(ModelError, match="lack"):
        build_int8_model(recognition_model(), partial)
    with pytest.raises(ModelError, match="not a valid int8 range table"):
        Int8Ranges.parse(b'{"format": "something else"}', "x.json")


def test_int8_and_fp32_graphs_are_cached_apart(models_dir: Path, tmp_path: Path) -> None:
    OnnxDlibEmbedder(tmp_path)
    assert (tmp_path / INT8_FILENAME).exists() and not (tmp_path / ONNX_FILENAME).exists()
    OnnxDlibEmbedder(tmp_path, precision="fp32")
    assert (tmp_path / ONNX_FILENAME).read_bytes() == (models_dir / ONNX_FILENAME).read_bytes()
    assert (tmp_path / INT8_FILENAME).read_bytes() == (models_dir / INT8_FILENAME).read_bytes()


# --- the model cache -----------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_cache_is_reused(precision: str, tmp_path: Path) -> None:
    OnnxDlibEmbedder(tmp_path, precision=precision)
    cached = tmp_path / (ONNX_FILENAME if precision == "fp32" else INT8_FILENAME)
    before = cached.stat()
    OnnxDlibEmbedder(tmp_path, precision=precision)
    after = cached.stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the weights: still valid protobuf
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def _other_source(path: Path) -> None:
    model = onnx.load(path)
    for prop in model.metadata_props:
        if prop.key == SOURCE_HASH_KEY:
            prop.value = "0" * 64
    onnx.save(model, path)


@pytest.mark.parametrize("damage", [_flip_middle_byte, _truncate, _other_source])
def test_cache_is_rebuilt_when_stale_or_damaged(
    damage: Callable[[Path], None], models_dir: Path, tmp_path: Path
) -> None:
    good = (models_dir / ONNX_FILENAME).read_bytes()
    cached = tmp_path / ONNX_FILENAME
    cached.write_bytes(good)
    damage(cached)
    assert cached.read_bytes() != good
    embedder = OnnxDlibEmbedder(tmp_path, precision="fp32")
    assert cached.read_bytes() == good  # the conversion is deterministic
    assert embedder.embed(random_chips(1)).shape == (1, 128)


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_file",
    [
        pytest.param(lambda tmp: landmarks_5_model(), id="shape-predictor"),
        pytest.param(lambda tmp: mmod_detector_model(), id="other-dlib-network"),
        pytest.param(lambda tmp: _write(tmp / "noise.dat", os.urandom(4096)), id="random-bytes"),
        pytest.param(lambda tmp: _write(tmp / "empty.dat", b""), id="empty"),
        pytest.param(
            lambda tmp: _write(tmp / "cut.dat", recognition_model().read_bytes()[:100_000]),
            id="truncated",
        ),
    ],
)
def test_not_the_network_raises_model_error(
    make_file: Callable[[Path], Path], tmp_path: Path
) -> None:
    bad = make_file(tmp_path)
    with pytest.raises(ModelError, match=r"not dlib's face recognition ResNet") as info:
        build_onnx_model(bad)
    assert bad.name in str(info.value)
    models = tmp_path / "models"
    for precision in ("fp32", "int8"):
        with pytest.raises(ModelError, match=r"not dlib's face recognition ResNet"):
            OnnxDlibEmbedder(models, dat_path=bad, precision=precision)
    assert not (models / ONNX_FILENAME).exists() and not (models / INT8_FILENAME).exists()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_make_embedder(models_dir: Path) -> None:
    embedder = make_embedder("onnx", models_dir)
    assert isinstance(embedder, OnnxDlibEmbedder) and embedder.precision == "int8"
    assert (embedder.model_id, embedder.dim, embedder.chip_size) == ("dlib-resnet-v1", 128, 150)
    fp32 = make_embedder("onnx", models_dir, precision="fp32")
    assert isinstance(fp32, OnnxDlibEmbedder) and fp32.precision == "fp32"
    # One model, three ways to compute it: the templates share a catalog.
    assert DlibEmbedder.model_id == embedder.model_id == fp32.model_id


def test_unknown_engine_or_precision_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'torch'.*onnx, dlib"):
        make_embedder("torch", tmp_path)
    with pytest.raises(ConfigError, match=r"embed_precision 'int4'.*int8, fp32"):
        make_embedder("onnx", tmp_path, precision="int4")
