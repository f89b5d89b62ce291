"""Mirror test-time augmentation: a face and its mirror image give one template, the model id
says so, and a catalog never mixes plain and mirror-averaged templates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import PURPOSE, add_test_source
from vultus.accuracy.calibration import Calibration, distance
from vultus.config import Settings
from vultus.engine import Engine
from vultus.errors import ModelMismatchError
from vultus.pipeline.analyse import FacePipeline
from vultus.pipeline.augment import MirrorAveraged


@pytest.fixture(scope="module")
def chips(dev_photos: list[tuple[Path, str]], tmp_path_factory: pytest.TempPathFactory):
    settings = Settings.load(tmp_path_factory.mktemp("data"), model="dlib-plain")
    pipeline = FacePipeline(settings)
    faces = [pipeline.analyse(p, keep_chips=True).faces[0] for p, _ in dev_photos[:4]]
    return pipeline, np.stack([f.chip for f in faces])


def test_a_face_and_its_mirror_image_get_the_same_template(chips) -> None:
    pipeline, faces = chips
    mirrored = faces[:, :, ::-1]
    plain = pipeline.embedder
    tta = MirrorAveraged(plain)
    # The plain model sees two different inputs ...
    pairs = zip(plain.embed(faces), plain.embed(mirrored), strict=True)
    assert min(distance(a, b) for a, b in pairs) > 0.02
    # ... the mirror-averaged template is the same for both.
    np.testing.assert_allclose(tta.embed(faces), tta.embed(mirrored), atol=1e-5)
    assert tta.embed(faces[:0]).shape == (0, 128)


def test_the_flip_setting_names_a_different_model_with_its_own_calibration(
    tmp_path: Path,
) -> None:
    on = FacePipeline(Settings.load(tmp_path))
    off = FacePipeline(Settings.load(tmp_path, model="dlib-plain"))
    assert on.model_id == off.model_id + "-flip"
    assert Calibration.default(on.model_id).model_id == on.model_id
    # Better templates: at the same false-match rate the flipped model's threshold is tighter.
    assert Calibration.default(on.model_id).threshold_for(1e-3) < Calibration.default(
        off.model_id
    ).threshold_for(1e-3)


def test_a_catalog_of_flipped_templates_refuses_plain_ones(
    tmp_path: Path, dev_photos: list[tuple[Path, str]]
) -> None:
    data = tmp_path / "data"
    with Engine.open(data, workers=1) as engine:
        add_test_source(engine)
        engine.add([dev_photos[0][0]], source="test")
    with Engine.open(data, workers=1, model="dlib-plain") as engine:
        with pytest.raises(ModelMismatchError, match="reembed"):
            engine.add([dev_photos[1][0]], source="test")
        with pytest.raises(ModelMismatchError):
            engine.search(dev_photos[1][0], purpose=PURPOSE)
