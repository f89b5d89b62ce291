"""The FAISS backend of `VectorIndex`.

Three index shapes are supported, because each can make a removed face's template unreadable
(data protection: it must not survive the next save):

* exact: `IDMap2,Flat` (any flat-codes index under an `IDMap`/`IDMap2`), used for small catalogs;
* IVF: `IVF{nlist},Flat` or compressed `IVF{nlist},PQ32` (optionally `OPQ32,...` or an HNSW coarse
  quantizer, `IVF{nlist}_HNSW32,Flat`); FAISS really removes their vectors;
* HNSW: `HNSW32` (wrapped in `IDMap2`). FAISS cannot remove from an HNSW graph, so a removal
  overwrites the vector's stored bytes with zeros in place and sets its id to -1 in the id map:
  the node stays in the graph as a tombstone that every search filters out
  (`IDSelectorRange(0, ...)` never admits -1), and no erased template is left in RAM or in the
  saved file. `dead()` counts tombstones; the keeper rebuilds (compacts) the index past a fraction.

IVF indexes keep the catalog's ids natively and are never wrapped in an IDMap: `IndexIVF.remove_ids`
does not renumber its internal ids, so an `IDMap` on top of it maps results to the wrong faces after
the first removal.

The object keeps a sorted copy of the ids it holds (8 bytes per face). That is what makes the
fingerprint exact and cheap (the sum is updated per batch, the maximum read off the end), what
detects duplicate ids without scanning the index, and what `ids()` returns.

Not thread-safe for writers: FAISS allows concurrent searches, but `add`/`remove` must not run
alongside anything else; callers serialise them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from vultus.errors import ConfigError, VectorIndexError
from vultus.files import atomic_write
from vultus.index.base import (
    Ids,
    IndexFingerprint,
    SearchKnob,
    VectorIndex,
    Vectors,
    check_ids,
)

# Below this many vectors exact search is fast enough (~13 ms at 100k, 128-d) and needs no
# training, so "auto" stays exact; above it IVF is worth its approximation.
AUTO_FLAT_BELOW = 100_000
# FAISS's own guidance is nlist between 4*sqrt(n) and 16*sqrt(n); the low end keeps k-means
# training (cost ~ sample * nlist) affordable on small machines. Capped where training stops being
# practical on a CPU.
MAX_NLIST = 65_536
# FAISS warns that k-means is unreliable below 39 training points per centroid; refuse below that.
MIN_TRAIN_POINTS_PER_LIST = 39
# Training sample: 64 points per list (262k rows at 1M vectors). k-means time is linear in the
# sample and FAISS would take up to 256 per list, 4x the build time for a small gain: on the
# benchmark's 100k set, same-identity recall at nprobe 32 went 0.991 (64/list) -> 0.996 (all rows),
# while nprobe 64 reaches 0.998 either way.
TRAIN_POINTS_PER_LIST = 64
TRAIN_SEED = 0
# Product quantizers learn 256 centroids per sub-vector and FAISS wants 39 points for each, which
# a small nlist's sample would not give.
MIN_CODEBOOK_TRAIN = 256 * MIN_TRAIN_POINTS_PER_LIST
# HNSW's beam width at search time; FAISS's default of 16 is below k for many searches.
DEFAULT_EF_SEARCH = 64
MAX_EF_SEARCH = 4096
# Every id but -1, the id a removed HNSW node is given.
_LIVE_IDS = (0, 2**63 - 1)

# faiss-cpu 1.15 ships with distance_compute_blas_threshold = 128000, so a batch of up to 128k
# queries against a flat index (and IVF's flat quantizer) takes the one-query-at-a-time path:
# 500 queries over 200k vectors took 11.5 s that way against 1.8 s through BLAS on our 2-core box.
# 20 is FAISS's long-standing default; single queries are unaffected (they stay below it).
faiss.cvar.distance_compute_blas_threshold = min(faiss.cvar.distance_compute_blas_threshold, 20)

FORMAT_NAME = "vultus-faiss-index"
FORMAT_VERSION = 1
_MAGIC = b"VULTUSIX"
_HEADER_LEN = struct.Struct("<I")
_REBUILD_HINT = "Run `vultus index rebuild` to rebuild it from the catalog."


def nlist_for(n: int) -> int:
    """IVF list count for n vectors: 4*sqrt(n) rounded to the nearest power of two (in log scale),
    at least 1 and at most MAX_NLIST. 1M vectors -> 4096, 100k -> 1024, 20k -> 512."""
    target = 4.0 * math.sqrt(max(n, 1))
    return int(min(MAX_NLIST, 2 ** max(0, round(math.log2(target)))))


def resolve_factory(factory: str, n: int) -> str:
    """Turn a configured factory into a concrete one for an index expected to hold n vectors.

    "auto": exact (`IDMap2,Flat`) below AUTO_FLAT_BELOW vectors, else `IVF{nlist_for(n)},Flat`.
    Any other string has each `{auto}` replaced by `nlist_for(n)`, e.g. `IVF{auto}_HNSW32,Flat`.
    """
    factory = factory.strip()
    if factory.lower() == "auto":
        return "IDMap2,Flat" if n < AUTO_FLAT_BELOW else f"IVF{nlist_for(n)},Flat"
    factory = factory.replace("{auto}", str(nlist_for(n)))
    # A configuration that learns from the data (IVF lists, PQ codebooks) cannot start empty:
    # stay exact until there are enough faces to train it; the keeper then upgrades.
    return factory if n >= train_minimum(factory) else "IDMap2,Flat"


def explain_factory(factory: str, n: int) -> str | None:
    """Why `resolve_factory(factory, n)` builds another index than `factory` names, or None.

    >>> explain_factory("IVF4096,Flat", 500)  # doctest: +ELLIPSIS
    'IVF4096,Flat must be trained on at least 159,744 faces (39 per IVF list) and there are 500...
    """
    spec = factory.strip()
    resolved = resolve_factory(spec, n)
    if spec.lower() == "auto":
        return None
    concrete = spec.replace("{auto}", str(nlist_for(n)))
    if resolved == concrete:
        return None
    need = train_minimum(concrete)
    why = "39 per IVF list" if re.search(r"IVF\d+", concrete) else "one per PQ centroid"
    return (
        f"{concrete} must be trained on at least {need:,} faces ({why}) and there are {n:,}, "
        f"so the index is exact ({resolved}): at this size exact search is also fast. Rebuild "
        f"with --factory {concrete!r} once there are {need:,} faces, or set index_factory to it "
        "and the index moves to it by itself then."
    )


def train_minimum(factory: str) -> int:
    """Vectors needed to train a factory: 39 per IVF list, and at least one per PQ centroid."""
    lists = re.search(r"IVF(\d+)", factory)
    pq = re.search(r"PQ\d+(?:x(\d+))?", factory)
    needed = MIN_TRAIN_POINTS_PER_LIST * int(lists.group(1)) if lists else 0
    if pq:
        needed = max(needed, 2 ** int(pq.group(1) or 8))
    return needed


def _exact_sum(ids: Ids) -> int:
    # int64 sums can overflow for large ids; summing 32-bit halves in uint64 is exact for any batch
    # under 2**32 ids and stays vectorised.
    if ids.size == 0:
        return 0
    u = ids.astype(np.uint64, copy=False)
    hi = int(np.sum(u >> np.uint64(32), dtype=np.uint64))
    lo = int(np.sum(u & np.uint64(0xFFFFFFFF), dtype=np.uint64))
    return (hi << 32) + lo


def _core(index: Any) -> Any:
    # PCA/OPQ pre-transforms only rotate vectors; what matters for ids and deletion is beneath.
    index = faiss.downcast_index(index)
    while isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    return index


def _shape_problem(index: Any) -> str | None:
    """Why this FAISS index can't back a VectorIndex, or None when it can."""
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        return "it does not use the inner-product metric"
    top = faiss.downcast_index(index)
    if isinstance(top, faiss.IndexIDMap | faiss.IndexIDMap2):
        inner = _core(top.index)
        if isinstance(inner, faiss.IndexIVF):
            return "an IDMap over IVF returns wrong ids after a removal; drop the IDMap prefix"
        if isinstance(inner, faiss.IndexHNSW):
            if not isinstance(faiss.downcast_index(inner.storage), faiss.IndexFlatCodes):
                return "its HNSW storage cannot be wiped in place"
            return None
        if not isinstance(inner, faiss.IndexFlatCodes):
            return f"{type(inner).__name__} cannot remove vectors"
        return None
    if isinstance(_core(top), faiss.IndexIVF):
        return None
    return f"{type(_core(top)).__name__} has no id map and cannot remove vectors"


def _hnsw_of(index: Any) -> Any:
    top = faiss.downcast_index(index)
    if isinstance(top, faiss.IndexIDMap | faiss.IndexIDMap2):
        inner = faiss.downcast_index(top.index)
        if isinstance(inner, faiss.IndexHNSW):
            return inner
    return None


def _lossy(index: Any) -> bool:
    """Whether the index stores compressed codes rather than the float32 vectors."""
    top = faiss.downcast_index(index)
    if isinstance(top, faiss.IndexIDMap | faiss.IndexIDMap2):
        top = faiss.downcast_index(top.index)
    if isinstance(top, faiss.IndexPreTransform):
        return True
    if isinstance(top, faiss.IndexHNSW):
        top = faiss.downcast_index(top.storage)
    return not isinstance(top, faiss.IndexFlat | faiss.IndexIVFFlat)


def _corrupt(source: str, reason: str) -> VectorIndexError:
    return VectorIndexError(
        f"The vector index {source} is unreadable or corrupt ({reason}). {_REBUILD_HINT}",
        code="index_corrupt",
    )


class FaissIndex(VectorIndex):
    def __init__(self, index: Any, factory: str, dim: int, model_id: str, nprobe: int) -> None:
        # Use create() or load(); this only wires up an already-checked FAISS index. Keep the very
        # object FAISS returned: it owns the C++ index, a downcast proxy of it does not.
        self._index: Any = index
        self.factory = factory
        self.dim = dim
        self.model_id = model_id
        core = _core(self._index)
        self._ivf: Any = core if isinstance(core, faiss.IndexIVF) else None
        self._hnsw: Any = _hnsw_of(self._index)
        self._ids: Ids = np.empty(0, dtype=np.int64)
        self._id_sum = 0
        self._dead = 0
        self._nprobe = 1
        self.nprobe = nprobe
        self._ef_search = DEFAULT_EF_SEARCH

    # ----------------------------------------------------------------- construction

    @classmethod
    def create(cls, factory: str, dim: int, model_id: str, nprobe: int = 32) -> FaissIndex:
        """An empty index. `factory` is a concrete FAISS factory string (see resolve_factory);
        anything but IVF or an explicit IDMap gets wrapped in IDMap2 so ids are the catalog's."""
        if dim <= 0:
            raise ConfigError(f"vector index dimension must be positive, not {dim}")
        if nprobe <= 0:
            raise ConfigError(f"index nprobe must be positive, not {nprobe}")
        requested = factory = factory.strip()
        if factory.lower() == "auto" or "{auto}" in factory:
            raise ConfigError(
                f"index factory {factory!r} must be resolved with resolve_factory() first"
            )
        try:
            index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
            if not factory.startswith("IDMap") and not isinstance(_core(index), faiss.IndexIVF):
                factory = f"IDMap2,{factory}"
                index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise ConfigError(f"invalid FAISS index factory {requested!r}: {exc}") from exc
        problem = _shape_problem(index)
        if problem is not None:
            raise ConfigError(f"index factory {requested!r} is not usable: {problem}")
        core: Any = _core(index)
        if isinstance(core, faiss.IndexIVFPQ):
            # Polysemous training (on by default) only serves Hamming-filtered search, which
            # Vultus does not use, and took minutes on 10k vectors on our 2-core machine.
            core.do_polysemous_training = False  # type: ignore[attr-defined]
        return cls(index, factory, dim, model_id, nprobe)

    # ----------------------------------------------------------------- properties

    @property
    def nprobe(self) -> int:
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if value <= 0:
            raise ConfigError(f"index nprobe must be positive, not {value}")
        self._nprobe = int(value)
        if self._ivf is not None:
            self._ivf.nprobe = min(self._nprobe, self._ivf.nlist)
            quantizer = faiss.downcast_index(self._ivf.quantizer)
            if isinstance(quantizer, faiss.IndexHNSW):
                # The HNSW quantizer must return nprobe good lists; a beam narrower than that
                # loses the lists the flat quantizer would have found.
                quantizer.hnsw.efSearch = max(64, 2 * self._nprobe)

    @property
    def ef_search(self) -> int:
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if value <= 0:
            raise ConfigError(f"index efSearch must be positive, not {value}")
        self._ef_search = int(value)

    def search_knob(self) -> SearchKnob | None:
        if self._ivf is not None:
            return SearchKnob("nprobe", self._nprobe, int(self._ivf.nlist))
        if self._hnsw is not None:
            return SearchKnob("efSearch", self._ef_search, MAX_EF_SEARCH)
        return None

    def set_search_knob(self, value: int) -> None:
        if self._ivf is not None:
            self.nprobe = value
        elif self._hnsw is not None:
            self.ef_search = value
        else:
            super().set_search_knob(value)

    def is_compressed(self) -> bool:
        return _lossy(self._index)

    def dead(self) -> int:
        return self._dead

    @property
    def nlist(self) -> int | None:
        return None if self._ivf is None else int(self._ivf.nlist)

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    def __len__(self) -> int:
        return int(self._ids.size)

    def fingerprint(self) -> IndexFingerprint:
        id_max = int(self._ids[-1]) if self._ids.size else -1
        return IndexFingerprint(self.model_id, int(self._ids.size), self._id_sum, id_max)

    def ids(self) -> Ids:
        """Every id held, ascending (a copy)."""
        return self._ids.copy()

    def held(self, ids: Ids) -> Ids:
        wanted = np.unique(check_ids(ids))
        return wanted[self._present(wanted)]

    def __contains__(self, face_id: object) -> bool:
        if not isinstance(face_id, int | np.integer) or self._ids.size == 0:
            return False
        pos = int(np.searchsorted(self._ids, face_id))
        return pos < self._ids.size and int(self._ids[pos]) == int(face_id)

    # ----------------------------------------------------------------- writing

    def train(self, vectors: Vectors) -> None:
        """Train an IVF index's coarse quantizer on a random sample of up to
        TRAIN_POINTS_PER_LIST * nlist of these vectors. A no-op for exact or trained indexes."""
        if self._index.is_trained:
            return
        vectors = self.check_vectors(vectors)
        nlist = int(self._ivf.nlist)
        needed = MIN_TRAIN_POINTS_PER_LIST * nlist
        if vectors.shape[0] < needed:
            raise VectorIndexError(
                f"{self.factory} needs at least {needed} vectors to train "
                f"({MIN_TRAIN_POINTS_PER_LIST} per list), got {vectors.shape[0]}; use fewer lists "
                "or the exact index (factory 'auto' picks one that fits)"
            )
        size = min(vectors.shape[0], max(TRAIN_POINTS_PER_LIST * nlist, MIN_CODEBOOK_TRAIN))
        if size < vectors.shape[0]:
            rng = np.random.default_rng(TRAIN_SEED)
            # Sorted rows read memory in order; the sample itself is uniform.
            rows = np.sort(rng.choice(vectors.shape[0], size=size, replace=False))
            vectors = vectors[rows]
        self._index.train(vectors)

    def train_and_add(self, ids: Ids, vectors: Vectors) -> None:
        """Bulk build: train on a sample of `vectors` when the index needs it, then add them all."""
        self.train(vectors)
        self.add(ids, vectors)

    def add(self, ids: Ids, vectors: Vectors) -> None:
        """Add vectors under the catalog's ids.

        An id already in the index is replaced (its old vector removed first), so replaying an add
        after a crash is harmless and re-enrolling a face needs no separate remove. The same id
        twice within one call is an error: which vector should win is ambiguous.
        An untrained IVF index refuses adds: call train_and_add (or train) with a real sample.
        """
        ids = check_ids(ids)
        vectors = self.check_vectors(vectors)
        if ids.shape[0] != vectors.shape[0]:
            raise VectorIndexError(f"{ids.shape[0]} ids for {vectors.shape[0]} vectors")
        if ids.size == 0:
            return
        if not self._index.is_trained:
            raise VectorIndexError(
                f"the {self.factory} index is not trained yet; build it with train_and_add()"
            )
        new = np.sort(ids)
        if new.size > 1 and bool(np.any(new[1:] == new[:-1])):
            dup = new[1:][new[1:] == new[:-1]][:5].tolist()
            raise VectorIndexError(f"the same id appears more than once in one add: {dup}")
        present = self._present(new)
        if present.any():
            self._remove_held(new[present])
        self._index.add_with_ids(vectors, ids)
        self._ids = np.insert(self._ids, np.searchsorted(self._ids, new), new)
        self._id_sum += _exact_sum(new)

    def remove(self, ids: Ids) -> int:
        """Remove these ids (unknown ones are ignored); returns how many were held.
        FAISS compacts its storage, so the removed vectors are gone from the next save."""
        ids = np.unique(check_ids(ids))
        held = ids[self._present(ids)]
        if held.size:
            self._remove_held(held)
        return int(held.size)

    def _remove_held(self, held: Ids) -> None:
        # `held` is sorted, unique and known to be in the index.
        if self._hnsw is not None:
            removed = self._wipe(held)
        else:
            removed = int(self._index.remove_ids(faiss.IDSelectorBatch(held)))
        positions = np.searchsorted(self._ids, held)
        self._ids = np.delete(self._ids, positions)
        self._id_sum -= _exact_sum(held)
        if removed != held.size:
            raise VectorIndexError(
                f"the vector index removed {removed} vectors where {held.size} were expected; "
                f"it is inconsistent. {_REBUILD_HINT}"
            )

    def _wipe(self, held: Ids) -> int:
        """HNSW's removal: zero the nodes' stored codes and give them id -1, in place (the
        numpy views below write straight into FAISS's own buffers)."""
        top: Any = faiss.downcast_index(self._index)
        id_map = top.id_map
        ids = faiss.rev_swig_ptr(id_map.data(), id_map.size())
        positions = np.flatnonzero(np.isin(ids, held))
        storage: Any = faiss.downcast_index(self._hnsw.storage)
        code_size = int(storage.code_size)
        codes = faiss.rev_swig_ptr(storage.codes.data(), storage.codes.size())
        rows = codes.reshape(-1, code_size)
        rows[positions] = 0
        ids[positions] = -1
        self._dead += int(positions.size)
        return int(positions.size)

    def _present(self, sorted_ids: Ids) -> npt.NDArray[np.bool_]:
        if self._ids.size == 0:
            return np.zeros(sorted_ids.shape, dtype=bool)
        pos = np.searchsorted(self._ids, sorted_ids)
        found = np.zeros(sorted_ids.shape, dtype=bool)
        inside = pos < self._ids.size
        found[inside] = self._ids[pos[inside]] == sorted_ids[inside]
        return found

    # ----------------------------------------------------------------- searching

    def search(
        self, queries: Vectors, k: int, allowed: Ids | None = None
    ) -> tuple[npt.NDArray[np.float32], Ids]:
        """Top-k inner products per query row (a single 1-d query is accepted too).

        Missing results are id -1 with score -inf. FAISS uses its OpenMP threads here: callers
        serving one query at a time get lower latency with `faiss.omp_set_num_threads(1)`.
        """
        queries = self.check_vectors(queries)
        if k <= 0:
            raise VectorIndexError(f"k must be positive, not {k}")
        nq = queries.shape[0]
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        result = np.full((nq, k), -1, dtype=np.int64)
        if nq == 0 or len(self) == 0:
            return scores, result
        params: Any = None
        selector: Any = None
        n_allowed = len(self)
        if allowed is not None:
            allowed_ids = np.unique(check_ids(allowed))
            if allowed_ids.size == 0:
                return scores, result
            n_allowed = int(allowed_ids.size)
            # The locals keep the selector (and its bitmap) alive during the search.
            selector, _keepalive = self._selector(allowed_ids)
        elif self._dead:
            # Allowed ids hold no -1, so only an unfiltered search must hide the tombstones.
            selector = faiss.IDSelectorRange(*_LIVE_IDS)
        if self._ivf is not None:
            params = faiss.SearchParametersIVF()
            params.nprobe = self._filtered_nprobe(n_allowed)
        elif self._hnsw is not None:
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            # Like nprobe for IVF: a filter keeping a fraction f needs a beam ~1/f as wide.
            fraction = min(1.0, n_allowed / max(1, len(self)))
            params.efSearch = int(min(MAX_EF_SEARCH, max(k, math.ceil(self._ef_search / fraction))))
        elif selector is not None:
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
        try:
            found_scores, found_ids = self._index.search(queries, k, params=params)
        except RuntimeError as exc:
            raise VectorIndexError(f"vector search failed: {exc}") from exc
        missing = found_ids < 0
        found_scores[missing] = -np.inf
        found_ids[missing] = -1
        return found_scores.astype(np.float32, copy=False), found_ids.astype(np.int64, copy=False)

    def _filtered_nprobe(self, n_allowed: int) -> int:
        # A filter that keeps a fraction f of the faces leaves ~f of the candidates in each probed
        # list, and the nearest allowed faces lie further out; probing nprobe/f lists keeps the
        # number of allowed candidates, and so recall, about that of an unfiltered search. Small
        # filters end up scanning every list, which costs only a membership test per vector.
        fraction = min(1.0, n_allowed / max(1, len(self)))
        return int(min(self._ivf.nlist, math.ceil(self._nprobe / fraction)))

    @staticmethod
    def _selector(allowed: Ids) -> tuple[Any, Any]:
        """A FAISS id selector for sorted unique non-negative ids, plus what must stay alive
        while it is used (FAISS keeps a raw pointer into the bitmap)."""
        bitmap_bytes = int(allowed[-1]) // 8 + 1
        # A bitmap is the fastest membership test but costs max_id/8 bytes per search; use it
        # while that's small in absolute terms or next to the id list, else a hashed batch.
        if bitmap_bytes <= max(1 << 20, 8 * allowed.nbytes):
            bits = np.zeros(bitmap_bytes * 8, dtype=bool)
            bits[allowed] = True
            bitmap = np.packbits(bits, bitorder="little")  # FAISS reads bit (id & 7) of byte id>>3
            # n is the bitmap's length in bytes, not bits.
            return faiss.IDSelectorBitmap(bitmap.size, faiss.swig_ptr(bitmap)), bitmap
        return faiss.IDSelectorBatch(allowed), None

    # ----------------------------------------------------------------- persistence

    def to_bytes(self) -> bytes:
        """The whole index file: magic, header length, JSON header, FAISS index bytes."""
        payload = faiss.serialize_index(self._index)  # uint8 numpy array
        fp = self.fingerprint()
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "factory": self.factory,
            "dim": self.dim,
            "metric": "inner_product",
            "model_id": self.model_id,
            "nprobe": self._nprobe,
            "ef_search": self._ef_search,
            "fingerprint": {"count": fp.count, "id_sum": fp.id_sum, "id_max": fp.id_max},
            "faiss_version": faiss.__version__,
            "payload_bytes": int(payload.size),
            "payload_sha256": hashlib.sha256(payload.data).hexdigest(),
        }
        head = json.dumps(header, sort_keys=True).encode()
        prefix = _MAGIC + _HEADER_LEN.pack(len(head)) + head
        # Assemble in one preallocated buffer so a large index is held at most twice at a time.
        out = bytearray(len(prefix) + payload.size)
        out[: len(prefix)] = prefix
        out[len(prefix) :] = payload.data
        del payload
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, source: str = "data") -> FaissIndex:
        """Inverse of to_bytes(). Anything wrong raises VectorIndexError code 'index_corrupt'."""
        view = memoryview(data).cast("B")
        fixed = len(_MAGIC) + _HEADER_LEN.size
        if len(view) < fixed or bytes(view[: len(_MAGIC)]) != _MAGIC:
            raise _corrupt(source, "not a Vultus index file")
        (head_len,) = _HEADER_LEN.unpack(view[len(_MAGIC) : fixed])
        if fixed + head_len > len(view):
            raise _corrupt(source, "truncated header")
        try:
            header = json.loads(bytes(view[fixed : fixed + head_len]))
            if header.get("format") != FORMAT_NAME:
                raise ValueError("unknown format")
            version = int(header["version"])
            if version != FORMAT_VERSION:
                raise ValueError(f"format version {version}, this Vultus reads {FORMAT_VERSION}")
            factory, dim = str(header["factory"]), int(header["dim"])
            model_id, nprobe = str(header["model_id"]), int(header["nprobe"])
            fp = header["fingerprint"]
            count, id_sum, id_max = int(fp["count"]), int(fp["id_sum"]), int(fp["id_max"])
            payload_bytes, digest = int(header["payload_bytes"]), str(header["payload_sha256"])
        except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
            raise _corrupt(source, f"bad header: {exc}") from exc
        payload = np.frombuffer(view, dtype=np.uint8, offset=fixed + head_len)
        if payload.size != payload_bytes:
            raise _corrupt(source, f"index data is {payload.size} bytes, expected {payload_bytes}")
        if hashlib.sha256(payload.data).hexdigest() != digest:
            raise _corrupt(source, "checksum mismatch")
        try:
            index = faiss.deserialize_index(payload)
        except RuntimeError as exc:
            raise _corrupt(source, f"FAISS could not read it: {exc}") from exc
        problem = _shape_problem(index)
        if problem is not None:
            raise _corrupt(source, f"unsupported index: {problem}")
        if index.d != dim:
            raise _corrupt(source, f"index dimension {index.d}, header says {dim}")
        loaded = cls(index, factory, dim, model_id, nprobe)
        loaded._ef_search = int(header.get("ef_search", DEFAULT_EF_SEARCH))
        held = loaded._held_ids()
        loaded._dead = int(np.count_nonzero(held < 0))
        held = np.sort(held[held >= 0])
        loaded._ids = held
        loaded._id_sum = _exact_sum(held)
        actual = loaded.fingerprint()
        if (actual.count, actual.id_sum, actual.id_max) != (count, id_sum, id_max) or (
            held.size > 1 and bool(np.any(held[1:] == held[:-1]))
        ):
            raise _corrupt(source, "its contents do not match its recorded fingerprint")
        return loaded

    def _held_ids(self) -> Ids:
        # Only used on load: reads the ids back out of FAISS's own structures.
        if self._ivf is None:
            return faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)
        invlists = self._ivf.invlists
        parts = []
        for list_no in range(self._ivf.nlist):
            size = invlists.list_size(list_no)
            if size:
                ptr = invlists.get_ids(list_no)
                parts.append(faiss.rev_swig_ptr(ptr, size).copy())
                invlists.release_ids(list_no, ptr)
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def save(self, path: Path) -> None:
        """Write the index to `path` atomically: a private temp file in the same directory,
        fsynced, then renamed over the old file, so a crash leaves the old or the new index."""
        path = Path(path)
        try:
            atomic_write(path, self.to_bytes())  # 0600: templates are biometric data
        except OSError as exc:
            raise VectorIndexError(
                f"could not save the vector index to {path}: {exc}", code="index_save_failed"
            ) from exc

    @classmethod
    def load(cls, path: Path) -> FaissIndex:
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise VectorIndexError(
                f"There is no vector index at {path}. {_REBUILD_HINT}", code="index_missing"
            ) from exc
        except OSError as exc:
            raise _corrupt(str(path), f"cannot read it: {exc}") from exc
        return cls.from_bytes(data, source=str(path))
