"""Model packs: an InsightFace-format folder (SCRFD + ArcFace .onnx) is validated, decoded,
aligned and used end to end, and never mixed with another model's templates. The graphs are
tiny ones built by the tests (tests/onnx_packs.py): nothing is downloaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import PURPOSE, add_test_source
from onnx_packs import (
    FakeFace,
    arcface_graph,
    make_pack,
    other_graph,
    plausible_face,
    scrfd_graph,
)
from vultus.accuracy.calibration import calibration_path, fit_calibration
from vultus.engine import Engine
from vultus.errors import ConfigError, ModelError, ModelMismatchError
from vultus.pipeline import runtime
from vultus.pipeline.arcface import TEMPLATE, ArcFaceAligner
from vultus.pipeline.base import Box, Detection
from vultus.pipeline.packs import load_pack, pack_folder
from vultus.pipeline.scrfd import ScrfdDetector


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pack(tmp_path_factory.mktemp("buffalo_tiny"))


# -- validation ---------------------------------------------------------------------------------
def test_a_pack_is_found_by_signature_not_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "pack"
    scrfd_graph(folder / "a.onnx", [])
    arcface_graph(folder / "b.onnx")
    other_graph(folder / "c.onnx")  # like genderage.onnx: ignored
    loaded = load_pack(folder)
    assert loaded.detector.path.name == "a.onnx"
    assert loaded.recognizer.path.name == "b.onnx"
    assert loaded.detector.run_size == (640, 640)
    assert loaded.model_id.startswith("pack-")


def test_two_recognizers_never_share_a_model_id(tmp_path: Path) -> None:
    one = load_pack(make_pack(tmp_path / "one", seed=1))
    two = load_pack(make_pack(tmp_path / "two", seed=2))
    assert one.model_id != two.model_id
    assert load_pack(tmp_path / "one").model_id == one.model_id


def _det(folder: Path, **kw: bool) -> None:
    scrfd_graph(folder / "det_10g.onnx", [], **kw)


def _rec(folder: Path, name: str = "w600k_r50.onnx", **kw: int) -> None:
    arcface_graph(folder / name, **kw)


@pytest.mark.parametrize(
    ("build", "code", "words"),
    [
        (lambda f: (_det(f), _rec(f, size=128)), "model_input", "Nx3x112x112"),
        (lambda f: (_det(f), _rec(f, dim=256)), "model_output", "512-d"),
        (lambda f: (_det(f, keypoints=False), _rec(f)), "model_output", "no keypoint outputs"),
        (
            lambda f: (_det(f), _rec(f), (f / "extra.onnx").write_bytes(b"not a graph")),
            "model_invalid",
            "extra.onnx is not an ONNX file",
        ),
        (
            lambda f: (_det(f), _rec(f), _rec(f, "glint.onnx", seed=5)),
            "model_ambiguous",
            "2 recognizers (glint.onnx, w600k_r50.onnx)",
        ),
    ],
    ids=["input-size", "output-dim", "no-keypoints", "not-onnx", "two-recognizers"],
)
def test_wrong_graphs_are_refused_with_what_is_wrong(
    tmp_path: Path, build: Callable[[Path], object], code: str, words: str
) -> None:
    build(tmp_path)
    with pytest.raises(ModelError) as err:
        load_pack(tmp_path)
    assert err.value.code == code
    assert words in err.value.message


def test_a_folder_without_a_recognizer_or_at_all_is_refused(tmp_path: Path) -> None:
    scrfd_graph(tmp_path / "det.onnx", [])
    with pytest.raises(ModelError, match="has no ArcFace recognizer"):
        load_pack(tmp_path)
    with pytest.raises(ModelError, match="no model pack folder"):
        load_pack(tmp_path / "missing")


def test_a_pack_name_resolves_under_the_data_directory(tmp_path: Path) -> None:
    assert pack_folder("dlib", tmp_path) is None
    assert pack_folder("buffalo_l", tmp_path) == tmp_path / "packs" / "buffalo_l"
    assert pack_folder(str(tmp_path / "x"), tmp_path) == tmp_path / "x"


def test_cuda_comes_first_only_where_onnxruntime_has_it() -> None:
    import onnxruntime as ort

    chosen = runtime.providers()
    assert chosen[-1] == "CPUExecutionProvider"
    assert ("CUDAExecutionProvider" in chosen) == (
        "CUDAExecutionProvider" in ort.get_available_providers()
    )


# -- SCRFD decoding -----------------------------------------------------------------------------
def test_scrfd_decoding_returns_the_engineered_faces_in_image_pixels(tmp_path: Path) -> None:
    big = plausible_face((100.0, 80.0, 260.0, 280.0), score=0.92)
    # The same face seen again, weaker, by a neighbouring anchor: NMS must drop it.
    echo = FakeFace(0.81, (104.0, 84.0, 262.0, 284.0), big.keypoints, anchor=1)
    small = FakeFace(
        0.7, (400.0, 300.0, 464.0, 380.0), plausible_face((400, 300, 464, 380)).keypoints, stride=32
    )
    faint = plausible_face((500.0, 100.0, 560.0, 170.0), score=0.3)  # under the threshold
    spec = load_pack(make_pack(tmp_path / "p", faces=[big, echo, small, faint])).detector
    image = np.random.default_rng(0).integers(0, 255, (960, 1280, 3), dtype=np.uint8)
    found = ScrfdDetector(spec).detect(image)  # 1280x960 letterboxes at scale 0.5
    assert [round(d.score, 2) for d in found] == [0.92, 0.7]
    for det, face in zip(found, [big, small], strict=True):
        assert det.box == Box(*(round(v * 2) for v in face.box))
        assert det.landmarks is not None
        np.testing.assert_allclose(det.landmarks, np.array(face.keypoints) * 2, atol=1e-3)
        assert det.detector == "scrfd"


def test_a_detector_without_output_shapes_is_read_in_insightface_order(tmp_path: Path) -> None:
    face = plausible_face((100.0, 80.0, 260.0, 280.0))
    scrfd_graph(tmp_path / "det.onnx", [face], shapes=False, batched=False)
    arcface_graph(tmp_path / "rec.onnx")
    spec = load_pack(tmp_path).detector
    assert spec.scores == ("score_8", "score_16", "score_32")
    assert spec.keypoints == ("kps_8", "kps_16", "kps_32")
    found = ScrfdDetector(spec).detect(np.zeros((640, 640, 3), np.uint8))
    assert [d.box for d in found] == [Box(100, 80, 260, 280)]


# -- ArcFace alignment ----------------------------------------------------------------------------
def test_the_chip_puts_known_landmarks_on_the_arcface_template() -> None:
    angle, scale, shift = np.deg2rad(17.0), 2.6, np.array([140.0, 95.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = TEMPLATE @ (scale * rotation).T + shift  # where the face's landmarks lie
    canvas = Image.new("RGB", (500, 450))
    draw = ImageDraw.Draw(canvas)
    for x, y in points:
        draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=(255, 255, 255))
    landmarks = tuple((float(x), float(y)) for x, y in points)
    detection = Detection(Box(100, 100, 400, 400), 0.9, "scrfd", landmarks)
    pts, chips = ArcFaceAligner().align(np.asarray(canvas), [detection])
    assert chips.shape == (1, 112, 112, 3)
    np.testing.assert_allclose(pts[0], points, atol=1e-4)
    grey = chips[0].astype(np.float64).mean(axis=2)
    ys, xs = np.mgrid[:112, :112]
    for tx, ty in TEMPLATE:
        near = (np.hypot(xs - tx, ys - ty) < 4.5) * grey
        centre = (float((near * xs).sum() / near.sum()), float((near * ys).sum() / near.sum()))
        assert np.hypot(centre[0] - tx, centre[1] - ty) < 0.5
        assert grey[round(ty), round(tx)] > 200  # the dot is there, not beside it


# -- end to end -----------------------------------------------------------------------------------
@pytest.fixture
def pack_engine(pack: Path, tmp_path: Path) -> Engine:
    engine = Engine.open(tmp_path / "data", workers=1, model=str(pack))
    add_test_source(engine)
    return engine


def test_an_engine_with_a_pack_ingests_and_searches_end_to_end(
    pack: Path, pack_engine: Engine, gallery_split: tuple[list[Path], list]
) -> None:
    photos = gallery_split[0]
    with pack_engine as engine:
        summary = engine.add(photos, source="test")
        assert summary.errors == []
        assert summary.faces_indexed == len(photos)
        assert engine.status()["model"] == engine.pipeline.model_id
        assert engine.pipeline.embedder.dim == 512
        assert engine.catalog.get_meta("model_id") == load_pack(pack).model_id
        # Each photo finds itself first, at distance 0: its template was stored and indexed.
        for photo in photos[:3]:
            result = engine.search(photo, purpose=PURPOSE, top_k=3)
            assert Path(result.matches[0].image_path) == photo
            assert result.matches[0].distance < 1e-3
            # No calibration for this model: ranked, but no match decided, and the way out named.
            assert not result.found
            assert "vultus calibrate" in result.decision
            assert all(m.fmr == 1.0 for m in result.matches)
        with pytest.raises(ConfigError) as err:
            engine.verify(photos[0], photos[1], purpose=PURPOSE)
        assert err.value.code == "uncalibrated"
        assert "vultus calibrate" in err.value.message


def test_a_calibration_fitted_in_the_data_directory_brings_decisions_back(
    pack: Path, pack_engine: Engine, dev_photos: list[tuple[Path, str]]
) -> None:
    with pack_engine as engine:
        data = embed_labelled_photos(engine, dev_photos)
        fit_calibration(data[0], data[1], model_id=engine.pipeline.model_id, source="dev").save(
            calibration_path(engine.settings.data_dir, engine.pipeline.model_id)
        )
        engine.add([dev_photos[0][0]], source="test")
        result = engine.search(dev_photos[0][0], purpose=PURPOSE)
        assert result.uncalibrated is None
        assert result.found  # the photo itself, at distance 0, is a match at any rate
        assert result.matches[0].fmr < 1.0


def embed_labelled_photos(
    engine: Engine, photos: list[tuple[Path, str]]
) -> tuple[np.ndarray, list[str]]:
    templates, labels = [], []
    for path, who in photos:
        for face in engine.pipeline.analyse(path).indexable[:1]:
            templates.append(face.template)
            labels.append(who)
    return np.stack(templates), labels


def test_a_dlib_catalog_refuses_a_pack_and_names_reembed(
    pack: Path, tmp_path: Path, gallery_split: tuple[list[Path], list]
) -> None:
    photo = gallery_split[0][0]
    with Engine.open(tmp_path / "data", workers=1) as engine:
        add_test_source(engine)
        engine.add([photo], source="test")
    with Engine.open(tmp_path / "data", workers=1, model=str(pack)) as engine:
        with pytest.raises(ModelMismatchError, match="vultus reembed"):
            engine.add([gallery_split[0][1]], source="test")
        with pytest.raises(ModelMismatchError, match="vultus reembed"):
            engine.search(photo, purpose=PURPOSE)
        assert engine.catalog.counts()["faces_indexed"] == 1
