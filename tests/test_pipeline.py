"""The face pipeline on real photos: detection on a downscaled copy maps back to the original,
EXIF orientation is honoured, and faces below the quality gate are kept as skipped, with why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vultus.config import Settings
from vultus.pipeline.analyse import FacePipeline, order_faces
from vultus.pipeline.base import Box, Detection


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> FacePipeline:
    return FacePipeline(Settings.load(tmp_path_factory.mktemp("p")))


@pytest.fixture
def photo(dev_photos: list[tuple[Path, str]]) -> Path:
    return next(p for p, who in dev_photos if who == "Barack_Obama")


def test_boxes_found_on_the_downscaled_copy_map_back_to_the_original(
    pipeline: FacePipeline, photo: Path, tmp_path: Path
) -> None:
    small = pipeline.analyse(photo).faces[0]
    with Image.open(photo) as im:
        big = im.convert("RGB").resize((im.width * 4, im.height * 4), Image.Resampling.BICUBIC)
    assert max(big.size) > pipeline.settings.detect_max_side  # detection had to downscale
    big.save(tmp_path / "big.jpg", quality=95)
    large = pipeline.analyse(tmp_path / "big.jpg").faces[0]
    expected = np.array(small.box.as_list()) * 4
    assert np.abs(np.array(large.box.as_list()) - expected).max() < 0.08 * small.box.width * 4
    # Same person, same template, whatever the resolution.
    assert large.template is not None and small.template is not None
    a, b = (t / np.linalg.norm(t) for t in (large.template, small.template))
    assert float(a @ b) > 0.97


def test_exif_orientation_is_honoured(pipeline: FacePipeline, photo: Path, tmp_path: Path) -> None:
    with Image.open(photo) as im:
        upright = im.convert("RGB")
    # Store the pixels turned on their side, with the EXIF tag that says how to turn them back.
    sideways = upright.transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = 8  # viewers turn it back with a 90-degree counter-clockwise rotation
    sideways.save(tmp_path / "sideways.jpg", exif=exif, quality=95)
    result = pipeline.analyse(tmp_path / "sideways.jpg")
    assert (result.width, result.height) == upright.size
    assert len(result.faces) == 1 and result.faces[0].template is not None


def test_small_faces_are_recorded_as_skipped_with_the_reason(
    pipeline: FacePipeline, photo: Path, tmp_path: Path
) -> None:
    strict = FacePipeline(Settings.load(tmp_path / "d", min_face_px=400))
    result = strict.analyse(photo)
    assert len(result.faces) == 1
    face = result.faces[0]
    assert face.template is None and face.skip_reason is not None
    assert face.skip_reason.startswith("face_too_small")
    assert result.indexable == []
    quality = pipeline.analyse(photo).faces[0].quality
    assert quality.box_size >= 40 and quality.sharpness > 0 and abs(quality.yaw) < 0.5


def test_of_two_near_equal_faces_the_one_nearer_the_centre_is_face_1() -> None:
    # Given a 400×200 photo with an 88×88 face at the left edge and an 88×87 one in the middle,
    # and a smaller one at the right: the middle face is face 1, though a pixel shorter.
    edge = Detection(Box(0, 50, 88, 138), 1.0, "hog")
    middle = Detection(Box(156, 56, 244, 143), 1.0, "hog")
    small = Detection(Box(330, 60, 390, 120), 1.0, "hog")
    ordered, near_equal = order_faces([edge, small, middle], 400, 200)
    assert ordered == [middle, edge, small] and near_equal == 2
    # A clearly larger face stays face 1 wherever it is.
    big = Detection(Box(0, 0, 120, 120), 1.0, "hog")
    ordered, near_equal = order_faces([middle, big], 400, 200)
    assert ordered == [big, middle] and near_equal == 1
    assert order_faces([], 400, 200) == ([], 0)


def test_a_photo_of_two_people_the_same_size_says_so(
    pipeline: FacePipeline, faces_dir: Path
) -> None:
    extra = faces_dir / "dev" / "extra"
    # two_people.jpg: 176×176 on the left (nearer the centre), 176×177 on the right.
    two = pipeline.analyse(extra / "two_people.jpg")
    assert two.near_equal == 2
    first, second = (f.box for f in two.faces)
    assert first.left < second.left and first.height <= second.height
    # A group whose largest face is clear names no tie.
    assert pipeline.analyse(extra / "selfie-many-people.jpg").near_equal == 1
