"""dlib's MMOD face detector rebuilt as an ONNX graph finds the same faces as dlib itself, and
Vultus can use it as its detector or as the fallback where HOG finds nothing."""

from __future__ import annotations

from pathlib import Path

import dlib
import numpy as np
import pytest
from PIL import Image

from vultus.config import Settings
from vultus.errors import ConfigError, ModelError
from vultus.pipeline.analyse import FacePipeline
from vultus.pipeline.base import Box
from vultus.pipeline.decode import downscale
from vultus.pipeline.detect import HogDetector, make_detector
from vultus.pipeline.mmod import ONNX_FILENAME, MmodOnnxDetector
from vultus.pipeline.mmod_onnx import read_mmod
from vultus.pipeline.models import mmod_detector_model, recognition_model
from vultus.pipeline.tracking import iou

# dlib's CNN is slow (seconds per photo at 800 px): compare on copies no larger than this.
COMPARE_MAX_SIDE = 360
SCORE_TOLERANCE = 1e-3  # float32 summation order and the frozen batch norm are all that differ
MIN_IOU = 0.8


def _mmod_file() -> Path:
    try:
        return mmod_detector_model()
    except ModelError as exc:
        pytest.skip(f"mmod_human_face_detector.dat is absent: {exc}")


@pytest.fixture(scope="module")
def detector(models_dir: Path) -> MmodOnnxDetector:
    _mmod_file()
    return MmodOnnxDetector(models_dir)


def _load(path: Path, max_side: int) -> np.ndarray:
    with Image.open(path) as im:
        small, _ = downscale(np.asarray(im.convert("RGB")), max_side)
    return np.ascontiguousarray(small)


def test_finds_the_same_faces_as_dlib_with_the_same_scores(
    detector: MmodOnnxDetector, faces_dir: Path
) -> None:
    """Given every dev and extra photo, the ONNX detector returns dlib's boxes and scores."""
    reference = dlib.cnn_face_detection_model_v1(str(_mmod_file()))
    photos = sorted((faces_dir / "dev" / "images").glob("*/*")) + sorted(
        (faces_dir / "dev" / "extra").glob("*.jpg")
    )
    assert len(photos) > 50
    compared = 0
    for path in photos:
        image = _load(path, COMPARE_MAX_SIDE)
        height, width = image.shape[:2]
        expected = [
            (
                Box(
                    max(0, h.rect.left()),
                    max(0, h.rect.top()),
                    min(width, h.rect.right() + 1),
                    min(height, h.rect.bottom() + 1),
                ),
                h.confidence,
            )
            for h in reference(image, 0)
        ]
        found = detector.detect(image)
        assert len(found) == len(expected), path.name
        for box, score in expected:
            best = max(found, key=lambda d: iou(d.box, box))
            assert iou(best.box, box) >= MIN_IOU, path.name
            assert abs(best.score - score) <= SCORE_TOLERANCE, path.name
            assert best.detector == "mmod"
        compared += len(expected)
    assert compared >= 50  # the dev photos are portraits: nearly all hold a face dlib finds


def test_finds_several_faces_in_a_group_photo(detector: MmodOnnxDetector, faces_dir: Path) -> None:
    image = _load(faces_dir / "dev" / "extra" / "selfie-many-people.jpg", 800)
    faces = detector.detect(image)
    assert len(faces) >= 4
    assert all(f.score > 0 for f in faces)
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)


def test_tiny_and_blank_images_have_no_faces(detector: MmodOnnxDetector) -> None:
    assert detector.detect(np.zeros((5, 5, 3), np.uint8)) == []
    assert detector.detect(np.full((300, 400, 3), 128, np.uint8)) == []


def test_the_converted_graph_is_reused_and_rebuilt_when_damaged(
    tmp_path: Path, faces_dir: Path
) -> None:
    _mmod_file()
    first = MmodOnnxDetector(tmp_path)
    cached = tmp_path / ONNX_FILENAME
    built = cached.stat().st_mtime_ns
    MmodOnnxDetector(tmp_path)
    assert cached.stat().st_mtime_ns == built
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the weights: still valid protobuf
    cached.write_bytes(bytes(data))
    again = MmodOnnxDetector(tmp_path)
    image = _load(faces_dir / "dev" / "extra" / "couple.jpg", 400)
    assert again.detect(image) == first.detect(image)


def test_another_model_file_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not dlib's MMOD face detector"):
        read_mmod(recognition_model())
    with pytest.raises(ModelError, match="not dlib's MMOD face detector"):
        MmodOnnxDetector(tmp_path, dat_path=recognition_model())


def test_the_network_is_read_from_the_file() -> None:
    net = read_mmod(_mmod_file())
    assert net.decode.window == (80, 80)
    assert (net.decode.stride, net.decode.offset) == (8, 14)
    assert (net.decode.pyramid_padding, net.decode.pyramid_outer_padding) == (10, 11)
    assert 0 < net.decode.nms_iou < 1


def test_a_pipeline_set_to_mmod_records_faces_found_by_mmod(
    tmp_path: Path, dev_photos: list[tuple[Path, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VULTUS_CACHE", str(tmp_path / "cache"))
    settings = Settings(data_dir=tmp_path, detector="mmod")
    pipeline = FacePipeline(settings)
    photo = next(p for p, _ in dev_photos if Image.open(p).size != (150, 150))
    analysed = pipeline.analyse(photo)
    assert analysed.faces
    assert {f.detector for f in analysed.faces} == {"mmod"}
    assert analysed.indexable[0].model_id == FacePipeline(Settings(data_dir=tmp_path)).model_id


def test_hog_falls_back_to_mmod_where_hog_finds_nothing(
    models_dir: Path, detector: MmodOnnxDetector, faces_dir: Path
) -> None:
    """A face HOG misses even upsampled (turned away from the camera) is found by the
    fallback; a face HOG finds never reaches it."""
    hard = _load(faces_dir / "lfw-a" / "images" / "Abdoulaye_Wade" / "Abdoulaye_Wade_0003.jpg", 800)
    easy = _load(faces_dir / "dev" / "extra" / "couple.jpg", 800)
    plain = make_detector("hog", models_dir)
    with_fallback = make_detector("hog", models_dir, cnn_fallback=True)
    assert isinstance(with_fallback, HogDetector)
    assert plain.detect(hard) == []
    assert [d.detector for d in with_fallback.detect(hard)] == ["mmod"]
    assert with_fallback.detect(hard) == detector.detect(hard)
    assert {d.detector for d in with_fallback.detect(easy)} == {"hog"}


def test_an_unknown_detector_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'yolo'.*hog, mmod"):
        make_detector("yolo", tmp_path)
