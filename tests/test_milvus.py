"""Vultus on a Milvus server, as an operator configures and uses it: the dev photos ingested
into an index on a real Milvus standalone server, search by photo, erasure by selfie, key
rotation, and a reopened engine that finds the index consistent with the catalog."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import PURPOSE, add_test_source
from vultus.engine import Engine
from vultus.errors import ConfigError

pytest.importorskip("pymilvus", reason="the milvus extra (pymilvus) is not installed")

from pymilvus import connections, utility  # noqa: E402

from vultus.config import Settings  # noqa: E402
from vultus.index.milvus_index import MilvusBackend, MilvusIndex, resolve_config  # noqa: E402

KIT_SELFIE = "images/Kit_Harington/Kit_Harington_1.jpeg"


@pytest.fixture
def milvus_dir(
    tmp_path: Path, milvus_uri: str, milvus_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A data directory whose vultus.toml puts the index on the test server, with a key file
    of its own (a key rotation must not change the key other tests' directories use)."""
    monkeypatch.setenv("VULTUS_KEY_FILE", str(tmp_path / "own.key"))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "vultus.toml").write_text(
        f'[index]\nbackend = "milvus"\nuri = "{milvus_uri}"\nprefix = "{milvus_prefix}"\n'
    )
    return data_dir


@pytest.fixture
def engine(milvus_dir: Path, faces_dir: Path) -> Iterator[Engine]:
    """Every dev photo but Kit Harington's selfie, ingested into the Milvus index."""
    photos = [
        p for p in (faces_dir / "dev" / "images").rglob("*.*") if p.name != "Kit_Harington_1.jpeg"
    ]
    with Engine.open(milvus_dir, workers=1) as e:
        add_test_source(e)
        assert e.add(photos, source="test").errors == []
        yield e


def live_collections(uri: str, prefix: str) -> list[str]:
    connections.connect(alias="test-inspect", uri=uri)
    try:
        return [n for n in utility.list_collections(using="test-inspect") if n.startswith(prefix)]
    finally:
        connections.disconnect("test-inspect")


def test_search_erase_and_reopen_on_milvus(
    engine: Engine, faces_dir: Path, milvus_uri: str, milvus_prefix: str
) -> None:
    data_dir = engine.settings.data_dir
    selfie = faces_dir / "dev" / KIT_SELFIE
    rose = faces_dir / "dev" / "images" / "Rose_Leslie" / "Rose_Leslie_1.jpg"
    assert engine.settings.index_backend == "milvus"
    assert engine.index.factory == "FLAT"
    assert len(engine.index) == engine.catalog.counts()["faces_indexed"]
    assert not (data_dir / "index.faiss").exists()  # the templates live on the server only

    found = engine.search(selfie, purpose=PURPOSE)
    kit = [m for m in found.matches if m.is_match]
    assert kit and all("Kit_Harington" in m.image_path for m in kit)
    rose_before = {m.face_id for m in engine.search(rose, purpose=PURPOSE).matches if m.is_match}

    plan = engine.find_person(selfie)
    assert sorted(plan.face_ids) == sorted(m.face_id for m in kit)
    engine.erase(plan, request_ref="R-MILVUS")
    # Gone from the very next search, and nobody else lost a face.
    assert not engine.search(selfie, purpose=PURPOSE).found
    assert {m.face_id for m in engine.search(rose, purpose=PURPOSE).matches if m.is_match} == (
        rose_before
    )

    # The server protects the vectors (disk encryption): rotation re-encrypts the catalog only.
    counts = engine.rotate_keys()
    assert "index" not in counts and counts["templates"] > 0
    engine.close()

    with Engine.open(data_dir, workers=1) as reopened:
        assert reopened.index.fingerprint() == reopened.catalog.fingerprint(reopened.model_id)
        assert not reopened.search(selfie, purpose=PURPOSE).found
        assert {
            m.face_id for m in reopened.search(rose, purpose=PURPOSE).matches if m.is_match
        } == rose_before
        # A rebuild replaces the collection and drops the old one, with whatever it held.
        before = live_collections(milvus_uri, milvus_prefix)
        reopened.rebuild_index()
        after = live_collections(milvus_uri, milvus_prefix)
        assert len(before) == len(after) == 1 and before != after
        assert not reopened.search(selfie, purpose=PURPOSE).found


def test_an_erased_or_restricted_face_is_never_returned_however_soon(
    engine: Engine, faces_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Searches read Milvus without waiting for its time tick, so for a moment after an erasure
    (another process's, or a server slow to apply a delete) the index may still hold the face.
    Here the server never applies the deletes at all: the catalog alone keeps them out."""
    selfie = faces_dir / "dev" / KIT_SELFIE
    rose = faces_dir / "dev" / "images" / "Rose_Leslie" / "Rose_Leslie_1.jpg"
    kit = [m.face_id for m in engine.search(selfie, purpose=PURPOSE).matches if m.is_match]
    roses = [m.face_id for m in engine.search(rose, purpose=PURPOSE).matches if m.is_match]
    assert kit and roses

    monkeypatch.setattr(MilvusIndex, "remove", lambda self, ids: 0)
    engine.erase(engine.find_person(selfie), request_ref="R-LAG")
    engine.restrict(face_ids=roses, reason="accuracy contested")
    assert set(engine.index.held(np.array(kit + roses)).tolist()) == set(kit + roses)

    # The very next searches, of every kind, return neither the erased nor the restricted.
    assert not engine.search(selfie, purpose=PURPOSE).found
    shown = {m.face_id for m in engine.search(rose, purpose=PURPOSE, top_k=50).matches}
    assert not shown & set(roses)
    others = engine.search(rose, purpose=PURPOSE, top_k=50).matches
    for other in others[:3]:
        found = engine.search_face(other.face_id, purpose=PURPOSE, top_k=50).matches
        assert not {m.face_id for m in found} & set(kit + roses)
    # A rights request still reaches the restricted faces, and never the erased ones.
    assert not engine.find_person(selfie).face_ids
    assert set(roses) <= set(engine.find_person(rose).face_ids)


def test_a_second_directory_cannot_take_over_an_index(
    engine: Engine, tmp_path: Path, milvus_uri: str, milvus_prefix: str
) -> None:
    other = tmp_path / "other"
    with (
        Engine.open(
            other,
            workers=1,
            index_backend="milvus",
            index_uri=milvus_uri,
            index_prefix=milvus_prefix,
        ) as intruder,
        pytest.raises(ConfigError, match="give this one its own `prefix`"),
    ):
        intruder.index  # noqa: B018
    assert len(engine.index) == engine.catalog.counts()["faces_indexed"]


def test_configuration_mistakes_are_clear(tmp_path: Path) -> None:
    assert resolve_config("auto", 10) == "FLAT"
    assert resolve_config("auto", 1_000_000) == "IVF_FLAT,nlist=4096"
    assert resolve_config("IVF_FLAT", 20_000) == "IVF_FLAT,nlist=512"
    assert resolve_config("hnsw", 5) == "HNSW,M=16,efConstruction=200"
    for bad, message in [
        ("IDMap2,Flat", "must be one of"),
        ("HNSW,nlist=8", "takes M, efConstruction"),
        ("IVF_FLAT,nlist=many", "must be an integer"),
    ]:
        with pytest.raises(ConfigError, match=message):
            resolve_config(bad, 100)
    with pytest.raises(ConfigError, match="needs the server's address"):
        MilvusBackend(Settings.load(tmp_path, index_backend="milvus"))
    with pytest.raises(ConfigError, match="prefix"):
        MilvusBackend(Settings.load(tmp_path, index_uri="http://x:1", index_prefix="a-b"))
