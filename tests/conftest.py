"""Shared fixtures: the shared face photos (skipped with a reason where absent) and engines
over real data directories in temporary folders."""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vultus.engine import Engine

# Real servers for the tests, started once per session: tests/postgres.py, tests/milvus_server.py
pytest_plugins = ["postgres", "milvus_server"]

REPO = Path(__file__).resolve().parent.parent
PURPOSE = "archive research"
# The controller the test data directories name, as an operator sets it in vultus.toml: the
# portal, access packages and reports refuse to name nobody.
CONTROLLER = "ACME Archive (dpo@acme.example)"


def name_controller(data_dir: Path, controller: str = CONTROLLER) -> Path:
    """Write `controller` into the data directory's vultus.toml, as an operator would."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "vultus.toml").write_text(f"controller = {controller!r}\n")
    return data_dir


@pytest.fixture(scope="session", autouse=True)
def _private_key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests never touch the user's real master key in ~/.config/vultus."""
    key_file = tmp_path_factory.mktemp("keys") / "master.key"
    old = os.environ.get("VULTUS_KEY_FILE")
    os.environ["VULTUS_KEY_FILE"] = str(key_file)
    os.environ.pop("VULTUS_KEY", None)
    yield
    if old is None:
        os.environ.pop("VULTUS_KEY_FILE", None)
    else:
        os.environ["VULTUS_KEY_FILE"] = old


def shared_faces() -> Path | None:
    env = os.environ.get("VULTUS_TEST_FACES")
    path = Path(env) if env else REPO.parent / "shared" / "faces"
    return path if (path / "dev" / "labels.csv").exists() else None


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    path = shared_faces()
    if path is None:
        pytest.skip(
            "shared face photos not found: set VULTUS_TEST_FACES or put them at ../shared/faces"
        )
    return path


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty models folder for one test module, where converted models are written once."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def dev_photos(faces_dir: Path) -> list[tuple[Path, str]]:
    """(photo, identity) for every dev photo, in labels.csv order."""
    with (faces_dir / "dev" / "labels.csv").open(newline="") as fh:
        return [(faces_dir / "dev" / r["path"], r["identity"]) for r in csv.DictReader(fh)]


@pytest.fixture(scope="session")
def gallery_split(dev_photos: list[tuple[Path, str]]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Gallery: each identity's first photo. Probes: the remaining photos, with identities."""
    first: dict[str, Path] = {}
    probes: list[tuple[Path, str]] = []
    for path, who in dev_photos:
        if who in first:
            probes.append((path, who))
        else:
            first[who] = path
    return list(first.values()), probes


def add_test_source(engine: Engine, name: str = "test") -> None:
    engine.add_source(
        name,
        lawful_basis_code="legitimate_interests",
        special_condition="archiving_research",
        purpose="automated tests",
        retention_days=30,
    )


@pytest.fixture(scope="session")
def gallery_dir(
    tmp_path_factory: pytest.TempPathFactory, gallery_split: tuple[list[Path], list]
) -> Path:
    """A data directory holding each dev identity's first photo, ingested once per session."""
    data_dir = name_controller(tmp_path_factory.mktemp("gallery"))
    with Engine.open(data_dir, workers=1) as engine:
        add_test_source(engine)
        summary = engine.add(gallery_split[0], source="test")
        assert summary.errors == []
    return data_dir


@pytest.fixture
def gallery(gallery_dir: Path, tmp_path: Path) -> Iterator[Engine]:
    """A private copy of the session gallery, for tests that change it."""
    copy = tmp_path / "data"
    shutil.copytree(gallery_dir, copy)
    with Engine.open(copy, workers=1) as engine:
        yield engine


@pytest.fixture
def empty_engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine.open(name_controller(tmp_path / "data"), workers=1) as engine:
        add_test_source(engine)
        yield engine


HARD_TO_FIND = "Katy_Perry"


def hard_to_find(data_dir: Path, faces_dir: Path) -> Path:
    """A data directory where finding Katy Perry from her selfie (her first photo) takes a
    reviewer and expansion: every identity's first photo and her three others, the controller
    named. As for a weak model at a large gallery, no distance passes the match decision
    (`rights_fmr` 1e-12); the possible tier reaches two of her photos from the selfie, and the
    third only from another photo of hers."""
    dev = faces_dir / "dev" / "images"
    hers = sorted((dev / HARD_TO_FIND).iterdir())
    firsts = [sorted(folder.iterdir())[0] for folder in sorted(dev.iterdir())]
    name_controller(data_dir)
    with Engine.open(data_dir, workers=1) as engine:
        add_test_source(engine)
        assert engine.add(sorted({*firsts, *hers[1:]} - {hers[0]}), source="test").errors == []
        unit = [_unit(engine.pipeline.analyse(p).indexable[0].template) for p in hers]

        def dist(a: int, b: int) -> float:
            return float(np.sqrt(max(0.0, 2.0 - 2.0 * float(unit[a] @ unit[b]))))

        near, far = max(dist(0, 1), dist(0, 2)), dist(0, 3)
        edge = (near + far) / 2
        assert near < edge < far and min(dist(1, 3), dist(2, 3)) < edge, "the photos changed"
        pair_fmr = float(engine.calibration.fmr_at(edge))
    with (data_dir / "vultus.toml").open("a") as fh:
        fh.write(f"rights_fmr = 1e-12\npossible_fmr = {pair_fmr!r}\n")
    return data_dir


def _unit(x: object) -> np.ndarray:
    v = np.asarray(x, dtype=np.float64)
    return v / np.linalg.norm(v)
