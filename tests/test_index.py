"""The FAISS vector index, against real FAISS: search quality, deletion, filtering, persistence."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from vultus.errors import ConfigError, VectorIndexError
from vultus.index import FaissIndex, IndexFingerprint, VectorIndex, resolve_factory

DIM = 128
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def _unit(x: F32) -> F32:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_vectors(n: int, seed: int = 0) -> F32:
    return _unit(np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32))


def clustered(n: int, n_queries: int, seed: int = 0) -> tuple[F32, F32]:
    """Face-like templates: ~4 samples per identity around a centre (same-identity cosine ~0.83,
    different ~0 +- 0.2), queries are fresh samples of indexed identities. Same model as
    benchmarks/search.py, smaller."""
    rng = np.random.default_rng(seed)
    scale = (np.arange(1, DIM + 1) ** -0.25).astype(np.float32)
    n_identities = n // 4
    centres = _unit(rng.standard_normal((n_identities, DIM)).astype(np.float32) * scale)
    labels = rng.integers(0, n_identities, n)

    def samples(lab: I64) -> F32:
        noise2 = rng.uniform(0.11, 0.33, lab.size).astype(np.float32)
        noise = rng.standard_normal((lab.size, DIM)).astype(np.float32)
        return _unit(centres[lab] + noise * np.sqrt(noise2 / DIM)[:, None])

    return samples(labels), samples(labels[rng.integers(0, n, n_queries)])


def flat(vectors: F32, ids: I64 | None = None) -> FaissIndex:
    index = FaissIndex.create("Flat", DIM, "dlib-test")
    index.add(np.arange(len(vectors), dtype=np.int64) if ids is None else ids, vectors)
    return index


def ivf(vectors: F32, ids: I64 | None = None, nlist: int = 64) -> FaissIndex:
    index = FaissIndex.create(f"IVF{nlist},Flat", DIM, "dlib-test", nprobe=8)
    index.train_and_add(np.arange(len(vectors), dtype=np.int64) if ids is None else ids, vectors)
    return index


def hnsw(vectors: F32, ids: I64 | None = None) -> FaissIndex:
    index = FaissIndex.create("HNSW32", DIM, "dlib-test")
    index.add(np.arange(len(vectors), dtype=np.int64) if ids is None else ids, vectors)
    return index


BUILDERS = {"flat": flat, "ivf": ivf, "hnsw": hnsw}


@pytest.fixture(params=sorted(BUILDERS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ---------------------------------------------------------------- factories


def test_resolve_factory_auto_rule() -> None:
    assert resolve_factory("auto", 0) == "IDMap2,Flat"
    assert resolve_factory("auto", 99_999) == "IDMap2,Flat"
    assert resolve_factory("auto", 100_000) == "IVF1024,Flat"  # 4*sqrt(1e5) = 1265 -> 1024
    assert resolve_factory("auto", 1_000_000) == "IVF4096,Flat"  # 4000 -> 4096
    assert resolve_factory("auto", 10**12) == "IVF65536,Flat"  # capped
    assert resolve_factory("IVF{auto}_HNSW32,Flat", 1_000_000) == "IVF4096_HNSW32,Flat"
    assert resolve_factory("IVF256,Flat", 1_000_000) == "IVF256,Flat"


def test_create_wraps_in_idmap_only_where_needed() -> None:
    assert FaissIndex.create("Flat", DIM, "m").factory == "IDMap2,Flat"
    assert FaissIndex.create("IDMap,Flat", DIM, "m").factory == "IDMap,Flat"
    assert FaissIndex.create("IVF16,Flat", DIM, "m").factory == "IVF16,Flat"
    index = FaissIndex.create("IVF16_HNSW32,Flat", DIM, "m")
    assert isinstance(index, VectorIndex) and index.nlist == 16


@pytest.mark.parametrize(
    "factory",
    ["IDMap2,IVF16,Flat", "auto", "IVF{auto},Flat", "not a factory"],
)
def test_unusable_factories_are_config_errors(factory: str) -> None:
    with pytest.raises(ConfigError):
        FaissIndex.create(factory, DIM, "m")


# ---------------------------------------------------------------- search


def test_exact_search_returns_the_nearest() -> None:
    data = random_vectors(2000)
    ids = np.arange(2000, dtype=np.int64) * 10 + 7  # not positions: the catalog's ids
    index = flat(data, ids)
    queries = _unit(data[:50] + 0.05 * random_vectors(50, seed=1))
    scores, found = index.search(queries, 5)
    expected = np.argsort(-(queries @ data.T), axis=1)[:, :5]
    assert np.array_equal(found, ids[expected])
    assert found[:, 0].tolist() == ids[:50].tolist()
    assert scores.dtype == np.float32 and np.all(np.diff(scores, axis=1) <= 1e-6)
    # A single 1-d query works too.
    _, one = index.search(queries[0], 1)
    assert one.shape == (1, 1) and one[0, 0] == ids[0]


def test_ivf_recall_against_exact() -> None:
    data, queries = clustered(20_000, 200)
    exact = flat(data)
    true_scores, truth = exact.search(queries, 10)
    factory = resolve_factory("IVF{auto},Flat", len(data))
    assert factory == "IVF512,Flat"
    index = FaissIndex.create(factory, DIM, "dlib-test")
    index.train_and_add(np.arange(len(data), dtype=np.int64), data)

    def recall(found: I64, relevant: npt.NDArray[np.bool_]) -> float:
        hits = sum(
            len(set(f.tolist()) & set(t[r].tolist()))
            for f, t, r in zip(found, truth, relevant, strict=True)
        )
        return hits / max(1, int(relevant.sum()))

    # The faces that matter (same identity, score >= 0.5) are found at the default nprobe...
    index.nprobe = 32
    _, found = index.search(queries, 10)
    matches = true_scores >= 0.5
    assert matches.sum() > 2 * len(queries)
    assert recall(found, matches) >= 0.99
    # ...and the full top 10, whose tail is random faces at ~0.3, with a quarter of the lists.
    index.nprobe = 128
    _, found = index.search(queries, 10)
    assert recall(found, np.ones_like(truth, dtype=bool)) >= 0.95


def test_results_are_padded_when_fewer_than_k(kind: str) -> None:
    index = BUILDERS[kind](random_vectors(3000))
    scores, found = index.search(random_vectors(2, seed=5), 5, allowed=np.array([1, 2, 3]))
    assert found.shape == (2, 5)
    assert set(found[:, :3].ravel().tolist()) == {1, 2, 3}
    assert np.all(found[:, 3:] == -1) and np.all(np.isneginf(scores[:, 3:]))
    empty = FaissIndex.create("Flat", DIM, "m")
    scores, found = empty.search(random_vectors(1), 3)
    assert np.all(found == -1) and np.all(np.isneginf(scores))


def test_filtered_search_returns_only_allowed_ids(kind: str) -> None:
    data = random_vectors(5000)
    index = BUILDERS[kind](data)
    rng = np.random.default_rng(4)
    # Half the faces allowed: queries near allowed faces find them, and nothing else comes back.
    allowed = rng.choice(5000, 2500, replace=False)
    queries = _unit(data[allowed[:20]] + 0.05 * random_vectors(20, seed=3))
    _, found = index.search(queries, 5, allowed=allowed)
    assert np.isin(found, allowed).all()
    assert np.array_equal(found[:, 0], allowed[:20])
    # A tiny filter: the best allowed face is found even though it's far from the query (for IVF
    # that takes probing more lists than nprobe).
    tiny = rng.choice(5000, 7, replace=False)
    queries = random_vectors(20, seed=5)
    _, found = index.search(queries, 5, allowed=tiny)
    assert np.isin(found, tiny).all()
    assert np.array_equal(found[:, 0], tiny[np.argmax(queries @ data[tiny].T, axis=1)])
    # Large ids take the hashed selector instead of a bitmap.
    big = np.arange(5000, dtype=np.int64) + 2**40
    index = BUILDERS[kind](data, big)
    _, found = index.search(data[[0, 2, 9]], 2, allowed=big[[0, 2, 9]])
    assert found[:, 0].tolist() == big[[0, 2, 9]].tolist()
    assert np.isin(found, big[[0, 2, 9]]).all()


# ---------------------------------------------------------------- removal and persistence


def test_remove_is_immediate_and_survives_save_load(kind: str, tmp_path: Path) -> None:
    data = random_vectors(3000)
    ids = np.arange(3000, dtype=np.int64) + 100
    index = BUILDERS[kind](data, ids)
    gone = ids[[0, 5, 17, 2999]]
    assert index.remove(np.concatenate([gone, [10**9]])) == 4  # unknown ids are ignored
    assert index.remove(gone) == 0
    assert len(index) == 2996
    _, found = index.search(data[[0, 5, 17, 2999]], 10)
    assert not np.isin(found, gone).any()
    path = tmp_path / "index.faiss"
    index.save(path)
    loaded = FaissIndex.load(path)
    _, found = loaded.search(data[[0, 5, 17, 2999]], 10)
    assert not np.isin(found, gone).any()
    assert not np.isin(gone, loaded.ids()).any()
    # Every other face is still found as its own nearest.
    _, first = loaded.search(data[1:4], 1)
    assert first[:, 0].tolist() == ids[1:4].tolist()


def test_saved_file_holds_no_bytes_of_removed_vectors(kind: str, tmp_path: Path) -> None:
    data = random_vectors(3000)
    index = BUILDERS[kind](data)
    removed = np.arange(0, 3000, 100)
    index.remove(removed)
    path = tmp_path / "index.faiss"
    index.save(path)
    blob = path.read_bytes()
    # Control: the kept vectors really are stored verbatim, so absence means deletion.
    assert all(data[i].tobytes() in blob for i in (1, 1501, 2999))
    assert not any(data[i].tobytes() in blob for i in removed)


def test_fingerprint_tracks_add_remove_and_survives_save_load(kind: str, tmp_path: Path) -> None:
    empty = FaissIndex.create("Flat", DIM, "dlib-test")
    assert empty.fingerprint() == IndexFingerprint("dlib-test", 0, 0, -1)
    data = random_vectors(3000)
    ids = np.arange(3000, dtype=np.int64) * 3 + 1
    index = BUILDERS[kind](data[:2900], ids[:2900])
    fp = index.fingerprint()
    assert fp == IndexFingerprint("dlib-test", 2900, int(ids[:2900].sum()), int(ids[2899]))
    index.add(ids[2900:], data[2900:])
    added = index.fingerprint()
    assert added == IndexFingerprint("dlib-test", 3000, int(ids.sum()), int(ids[-1]))
    index.remove(ids[-1:])  # removing the maximum moves id_max down
    removed = index.fingerprint()
    assert removed == IndexFingerprint("dlib-test", 2999, int(ids[:-1].sum()), int(ids[-2]))
    assert len({fp, added, removed}) == 3
    assert np.array_equal(index.ids(), ids[:-1])
    index.save(tmp_path / "i.faiss")
    loaded = FaissIndex.load(tmp_path / "i.faiss")
    assert loaded.fingerprint() == removed
    assert (loaded.factory, loaded.dim, loaded.model_id, loaded.nprobe) == (
        index.factory,
        DIM,
        "dlib-test",
        index.nprobe,
    )


def test_fingerprint_sum_is_exact_for_huge_ids() -> None:
    ids = np.array([2**62, 2**62 + 1, 2**62 + 2, 2**62 + 3], dtype=np.int64)
    index = flat(random_vectors(4), ids)
    assert index.fingerprint().id_sum == sum(int(i) for i in ids)


def test_bytes_round_trip_and_private_atomic_save(tmp_path: Path) -> None:
    index = ivf(random_vectors(3000))
    copy = FaissIndex.from_bytes(index.to_bytes())
    queries = random_vectors(5, seed=9)
    assert np.array_equal(copy.search(queries, 5)[1], index.search(queries, 5)[1])
    path = tmp_path / "sub" / "index.faiss"
    index.save(path)
    index.remove(np.arange(10))
    index.save(path)  # overwrite in place
    assert os.listdir(path.parent) == ["index.faiss"]  # no temp file left behind
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(FaissIndex.load(path)) == 2990


# ---------------------------------------------------------------- errors


def test_missing_file_is_index_missing(tmp_path: Path) -> None:
    with pytest.raises(VectorIndexError) as err:
        FaissIndex.load(tmp_path / "nope.faiss")
    assert err.value.code == "index_missing"
    assert "vultus index rebuild" in err.value.message


def test_corrupt_files_are_index_corrupt(tmp_path: Path) -> None:
    good = ivf(random_vectors(3000)).to_bytes()
    flipped = bytearray(good)
    flipped[-5000] ^= 0xFF  # a bit flip deep in the FAISS payload
    variants = {
        "garbage": b"this is not an index",
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "flipped": bytes(flipped),
        "bad_header": good[:12] + b"[" + good[13:],
        "wrong_fingerprint": good.replace(b'"count": 3000', b'"count": 3001', 1),
    }
    for name, blob in variants.items():
        path = tmp_path / f"{name}.faiss"
        path.write_bytes(blob)
        with pytest.raises(VectorIndexError) as err:
            FaissIndex.load(path)
        assert err.value.code == "index_corrupt", name
        assert "vultus index rebuild" in err.value.message and str(path) in err.value.message


def test_wrong_dimension_is_rejected(kind: str) -> None:
    index = BUILDERS[kind](random_vectors(3000))
    wrong = np.ones((2, 512), dtype=np.float32)
    with pytest.raises(VectorIndexError, match="dimension 128"):
        index.add(np.array([1, 2]), wrong)
    with pytest.raises(VectorIndexError, match="dimension 128"):
        index.search(wrong, 3)
    assert len(index) == 3000


def test_bad_ids_are_rejected() -> None:
    index = FaissIndex.create("Flat", DIM, "m")
    with pytest.raises(VectorIndexError):
        index.add(np.array([-1]), random_vectors(1))
    with pytest.raises(VectorIndexError):
        index.add(np.array([1, 2]), random_vectors(1))
    with pytest.raises(VectorIndexError):
        index.add(np.array([0.5]), random_vectors(1))  # type: ignore[arg-type]


def test_adding_an_existing_id_replaces_it(kind: str) -> None:
    data = random_vectors(3000)
    index = BUILDERS[kind](data)
    before = index.fingerprint()
    new = random_vectors(1, seed=42)
    index.add(np.array([7]), new)
    assert len(index) == 3000 and index.fingerprint() == before
    _, found = index.search(new, 1)
    assert found[0, 0] == 7
    _, found = index.search(data[7], 1)
    assert found[0, 0] != 7  # the old vector is gone
    with pytest.raises(VectorIndexError, match="more than once"):
        index.add(np.array([3000, 3000]), random_vectors(2, seed=1))
    assert len(index) == 3000


def test_untrained_ivf_refuses_plain_add() -> None:
    index = FaissIndex.create("IVF64,Flat", DIM, "m")
    with pytest.raises(VectorIndexError, match="train_and_add"):
        index.add(np.arange(10), random_vectors(10))
    with pytest.raises(VectorIndexError, match="at least"):
        index.train_and_add(np.arange(100), random_vectors(100))
    assert len(index) == 0 and not index.is_trained
