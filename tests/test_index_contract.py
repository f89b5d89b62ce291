"""One contract for every vector index backend: insert, search, filtered search, delete,
rebuild from the catalog, recovery after a crash, and one index per model.

Each backend runs through `open_backend` and the `IndexKeeper`, as the engine uses them, over a
real catalog, a real FAISS file or a real Milvus server. To put another backend or index
configuration under the contract, add one line to BACKENDS: (backend name, configuration).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from vultus.catalog import Catalog, NewFace, NewImage, open_catalog
from vultus.config import Settings
from vultus.crypto import KeyRing
from vultus.errors import VectorIndexError
from vultus.index.backends import open_backend
from vultus.index.base import IndexBackend, VectorIndex, normalise
from vultus.index.keeper import IndexKeeper

# (backend, configuration[, catalog]): the catalog is SQLite unless "postgresql" is named.
BACKENDS = [
    pytest.param(("faiss", "IDMap2,Flat"), id="faiss-flat"),
    pytest.param(("faiss", "IVF8,Flat"), id="faiss-ivf"),
    pytest.param(("faiss", "HNSW32"), id="faiss-hnsw"),
    pytest.param(("faiss", "IDMap2,Flat", "postgresql"), id="faiss-flat-postgresql-catalog"),
    pytest.param(("milvus", "FLAT"), id="milvus-flat"),
    pytest.param(("milvus", "IVF_FLAT,nlist=16"), id="milvus-ivf"),
    pytest.param(("milvus", "HNSW,M=16,efConstruction=100"), id="milvus-hnsw"),
]

DIM = 128
MODEL = "test-model-v1"
# Enough faces for IVF to train (39 per list) and for Milvus to build a real index on a
# segment (it searches smaller segments by brute force).
N = 1200

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def unit_vectors(n: int, seed: int, dim: int = DIM) -> F32:
    return normalise(np.random.default_rng(seed).standard_normal((n, dim)))


class Setup:
    """A data directory's catalog and index backend, reopened as a new process would."""

    def __init__(
        self,
        data_dir: Path,
        keyring: KeyRing,
        overrides: dict[str, str],
        spec: str,
        catalog_url: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.keyring = keyring
        url = catalog_url or f"sqlite:///{data_dir / 'catalog.db'}"
        self.catalog: Catalog = open_catalog(url, keyring)
        self.overrides = overrides
        self.spec = spec
        self.backends: list[IndexBackend] = []
        self.ids: I64 = np.empty(0, dtype=np.int64)  # the catalog's face ids, in vector order

    def backend(self) -> IndexBackend:
        settings = Settings.load(self.data_dir, index_factory=self.spec, **self.overrides)
        backend = open_backend(settings, lambda: self.keyring)
        self.backends.append(backend)
        return backend

    def keeper(self, model_id: str = MODEL, dim: int = DIM) -> IndexKeeper:
        return IndexKeeper(
            self.catalog,
            self.backend(),
            spec=self.spec,
            model_id=lambda: model_id,
            dim=lambda: dim,
            lock=threading.RLock(),
        )

    def ingest(self, vectors: F32, tag: str) -> I64:
        """Write faces with these templates to the catalog, as ingest does; their new ids."""
        source = self.catalog.get_source("test")
        run = self.catalog.start_run(source.id)
        images = [
            NewImage(
                path=f"{tag}/{i}.jpg",
                sha256=f"{tag}-{i}",
                size_bytes=1,
                width=100,
                height=100,
                format="JPEG",
                faces=[
                    NewFace(
                        box=(0, 0, 50, 50),
                        landmarks=[],
                        detector="hog",
                        det_score=1.0,
                        box_size=50,
                        sharpness=100.0,
                        yaw=0.0,
                        model_id=MODEL,
                        template=v,
                        skip_reason=None,
                    )
                ],
            )
            for i, v in enumerate(vectors)
        ]
        added = self.catalog.write_batch(run, source, images)
        self.catalog.finish_run(run)
        return np.array([face_id for face_id, _ in added], dtype=np.int64)

    def close(self) -> None:
        for backend in self.backends:
            backend.close()
        self.catalog.close()


@pytest.fixture(scope="module")
def catalog_of_n(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, KeyRing, I64, F32]:
    """A catalog holding N faces, written once and copied into each test's data directory."""
    data_dir = tmp_path_factory.mktemp("catalog")
    s = Setup(data_dir, KeyRing.generate(), {}, "auto")
    vectors = unit_vectors(N, seed=1)
    ids = fill(s, vectors)
    s.close()  # checkpoints the WAL into catalog.db
    return data_dir / "catalog.db", s.keyring, ids, vectors


def fill(s: Setup, vectors: F32) -> I64:
    s.catalog.add_source(
        "test",
        lawful_basis_code="legitimate_interests",
        special_condition="archiving_research",
        purpose="contract tests",
        retention_days=30,
    )
    return s.ingest(vectors, "first")


@pytest.fixture(params=BACKENDS)
def setup(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    catalog_of_n: tuple[Path, KeyRing, I64, F32],
) -> Iterator[Setup]:
    """A data directory with the N faces in its catalog and no index yet."""
    name, spec, *catalog = request.param
    overrides = {"index_backend": name}
    if name == "milvus":
        overrides["index_uri"] = request.getfixturevalue("milvus_uri")
        overrides["index_prefix"] = request.getfixturevalue("milvus_prefix")
    catalog_db, keyring, ids, vectors = catalog_of_n
    (tmp_path / "data").mkdir()
    if catalog == ["postgresql"]:
        url = request.getfixturevalue("postgres_url")
        s = Setup(tmp_path / "data", keyring, overrides, spec, catalog_url=url)
        s.ids = fill(s, vectors)
    else:
        shutil.copy(catalog_db, tmp_path / "data" / "catalog.db")
        s = Setup(tmp_path / "data", keyring, overrides, spec)
        s.ids = ids
    yield s
    s.close()


@pytest.fixture
def built(setup: Setup, catalog_of_n: tuple[Path, KeyRing, I64, F32]) -> tuple[Setup, I64, F32]:
    """N faces in the catalog and an index rebuilt from it."""
    setup.keeper().rebuild()
    return setup, setup.ids, catalog_of_n[3]


def recall(found: I64, truth: I64) -> float:
    """Share of the true top-k found: 1.0 for exact indexes; IVF and HNSW may miss a few."""
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def brute_force(ids: I64, vectors: F32, queries: F32, k: int = 5) -> I64:
    return ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :k]]


def nearest(index: VectorIndex, queries: F32, k: int = 5, allowed: I64 | None = None) -> I64:
    return index.search(queries, k, allowed)[1]


def test_each_face_finds_itself_with_cosine_scores(built: tuple[Setup, I64, F32]) -> None:
    setup, ids, vectors = built
    index = setup.keeper().index  # reopened from what was persisted
    assert len(index) == N
    assert index.model_id == MODEL and index.dim == DIM
    queries = vectors[:50]
    scores, found = index.search(queries, 5)
    assert np.array_equal(found[:, 0], ids[:50])
    # Scores are cosine similarities: the dot products of the unit vectors.
    by_id = dict(zip(ids.tolist(), vectors, strict=True))
    expected = np.array(
        [[float(q @ by_id[int(i)]) for i in row] for q, row in zip(queries, found, strict=True)]
    )
    assert np.allclose(scores, expected, atol=1e-4)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first


def test_results_are_padded_when_fewer_than_k(built: tuple[Setup, I64, F32]) -> None:
    setup, ids, _ = built
    index = setup.keeper().index
    scores, found = index.search(unit_vectors(1, seed=3), 10, allowed=ids[:3])
    assert sorted(found[0, :3].tolist()) == sorted(ids[:3].tolist())
    assert found[0, 3:].tolist() == [-1] * 7
    assert np.all(np.isneginf(scores[0, 3:]))


def test_filtered_search_returns_only_allowed_faces(built: tuple[Setup, I64, F32]) -> None:
    setup, ids, vectors = built
    index = setup.keeper().index
    allowed = ids[::10]
    queries = unit_vectors(20, seed=4)
    found = nearest(index, queries, k=5, allowed=allowed)
    assert set(found.ravel().tolist()) <= set(allowed.tolist())
    truth = allowed[np.argsort(-(queries @ vectors[::10].T), axis=1)[:, :5]]
    assert recall(found, truth) >= 0.9
    # An allowed face finds itself first.
    assert np.array_equal(nearest(index, vectors[:50:10], allowed=allowed)[:, 0], ids[:50:10])
    assert (nearest(index, queries, allowed=np.empty(0, dtype=np.int64)) == -1).all()


def test_deleted_faces_are_gone_from_the_next_search(built: tuple[Setup, I64, F32]) -> None:
    setup, ids, vectors = built
    keeper = setup.keeper()
    index = keeper.index
    gone = ids[:20]
    assert index.remove(np.concatenate([gone, ids[:5]])) == 20  # duplicates counted once
    assert not set(nearest(index, vectors[:20]).ravel().tolist()) & set(gone.tolist())
    assert len(index) == N - 20
    # Absent ids are harmless.
    assert index.remove(gone) == 0
    assert index.remove(np.array([10**12], dtype=np.int64)) == 0
    assert len(index) == N - 20
    keeper.save()
    reopened = setup.backend().load()
    assert not set(nearest(reopened, vectors[:20]).ravel().tolist()) & set(gone.tolist())
    assert np.array_equal(reopened.ids(), np.sort(ids[20:]))


def test_adding_an_existing_id_replaces_its_vector(built: tuple[Setup, I64, F32]) -> None:
    setup, ids, vectors = built
    index = setup.keeper().index
    moved = unit_vectors(1, seed=5)
    index.add(ids[:1], moved)
    assert len(index) == N
    assert nearest(index, moved)[0, 0] == ids[0]
    assert nearest(index, vectors[:1])[0, 0] != ids[0]


def test_rebuild_from_the_catalog_gives_the_same_results(built: tuple[Setup, I64, F32]) -> None:
    setup, ids, vectors = built
    queries = unit_vectors(30, seed=6)
    erased = set(ids[:10].tolist())
    setup.catalog.delete_faces(sorted(erased))
    rebuilt = setup.keeper().rebuild()
    assert rebuilt.fingerprint() == setup.catalog.fingerprint(MODEL)
    reopened = setup.backend().load()
    assert reopened.factory == rebuilt.factory
    found = nearest(reopened, queries)
    assert not set(found.ravel().tolist()) & erased
    assert recall(found, brute_force(ids[10:], vectors[10:], queries)) >= 0.9
    assert np.array_equal(nearest(reopened, vectors[10:60])[:, 0], ids[10:60])


def test_a_killed_rebuild_leaves_the_old_index_live(built: tuple[Setup, I64, F32]) -> None:
    setup, ids, vectors = built
    backend = setup.backend()
    fresh = backend.create(backend.resolve(setup.spec, N), DIM, MODEL)
    fresh.train_and_add(ids[:N], unit_vectors(N, seed=7))  # ... and the process dies here
    live = setup.backend().load()
    assert np.array_equal(live.ids(), np.sort(ids))
    assert np.array_equal(nearest(live, vectors[:10])[:, 0], ids[:10])


def test_reopening_after_a_crash_reconciles_with_the_catalog(
    built: tuple[Setup, I64, F32],
) -> None:
    setup, ids, vectors = built
    # The process died after these catalog commits and before the index was saved: new faces
    # never reached the index, deleted ones never left it.
    new_vectors = unit_vectors(40, seed=8)
    new_ids = setup.ingest(new_vectors, "after-crash")
    setup.catalog.delete_faces(ids[:15].tolist())
    assert setup.backend().load().fingerprint() != setup.catalog.fingerprint(MODEL)

    index = setup.keeper().index
    assert index.fingerprint() == setup.catalog.fingerprint(MODEL)
    assert np.array_equal(index.ids(), setup.catalog.indexed_ids())
    assert np.array_equal(nearest(index, new_vectors)[:, 0], new_ids)
    assert not set(nearest(index, vectors[:15]).ravel().tolist()) & set(ids[:15].tolist())
    # ... and the reconciled index was saved: the next open finds it already consistent.
    assert setup.backend().load().fingerprint() == setup.catalog.fingerprint(MODEL)


def test_each_model_gets_its_own_index(built: tuple[Setup, I64, F32]) -> None:
    setup, ids, _ = built
    backend = setup.backend()
    other = backend.create(backend.resolve("auto", 100), 64, "other-model")
    other_ids = np.arange(100, dtype=np.int64) + 10**6
    other_vectors = unit_vectors(100, seed=9, dim=64)
    other.train_and_add(other_ids, other_vectors)
    backend.save(other)
    loaded = setup.backend().load()
    assert (loaded.model_id, loaded.dim) == ("other-model", 64)
    assert np.array_equal(loaded.ids(), other_ids)
    assert nearest(loaded, other_vectors[:5])[:, 0].tolist() == other_ids[:5].tolist()
    with pytest.raises(VectorIndexError):
        loaded.search(unit_vectors(1, seed=10), 5)  # a 128-d query does not fit a 64-d index
    # The catalog's model wins on the next open: the keeper rebuilds for it.
    index = setup.keeper().index
    assert index.model_id == MODEL
    assert np.array_equal(index.ids(), np.sort(ids))


def test_restricted_faces_never_reach_the_index(setup: Setup) -> None:
    setup.catalog.set_restricted(setup.catalog.indexed_ids().tolist(), True)
    index = setup.keeper().index
    assert len(index) == 0
    assert index.ids().size == 0
    assert (nearest(index, unit_vectors(2, seed=11)) == -1).all()
