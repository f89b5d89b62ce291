"""The one interface every vector index backend implements.

Vectors are L2-normalised templates; scores are inner products (cosine similarity), higher is
closer. Ids are the catalog's face ids (int64). The catalog is the source of truth: an index
can always be thrown away and rebuilt from it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vultus.errors import VectorIndexError
from vultus.vectors import normalise as _normalise

Ids = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]


def normalise(templates: npt.ArrayLike) -> Vectors:
    """Unit-length rows, in the float32 every index stores."""
    return _normalise(templates).astype(np.float32)


@dataclass(frozen=True)
class IndexFingerprint:
    """What the catalog compares against to tell whether an index is stale."""

    model_id: str
    count: int
    id_sum: int
    id_max: int


@dataclass(frozen=True)
class SearchKnob:
    """The one setting that trades speed for recall: IVF's `nprobe` or HNSW's `efSearch`."""

    name: str
    value: int
    maximum: int


def check_ids(ids: Ids) -> Ids:
    """Ids as a contiguous 1-d int64 array; a clear error for anything else."""
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
        raise VectorIndexError(f"ids must be a 1-d integer array, got {arr.dtype} {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size and int(arr.min()) < 0:
        raise VectorIndexError("ids must be non-negative (-1 means 'no result')")
    return arr


class VectorIndex(ABC):
    dim: int
    factory: str  # e.g. "IDMap2,Flat" or "IVF4096,Flat": readable, stored, printed in benchmarks
    model_id: str

    def check_vectors(self, vectors: Vectors) -> Vectors:
        """Vectors as a contiguous (n, dim) float32 array; a clear error for anything else."""
        arr = np.asarray(vectors)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise VectorIndexError(
                f"vectors of shape {np.shape(vectors)} do not fit this index of dimension "
                f"{self.dim} (model {self.model_id}); expected shape (n, {self.dim})"
            )
        if not np.issubdtype(arr.dtype, np.floating):
            raise VectorIndexError(f"vectors must be floating point, not {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise VectorIndexError("vectors contain NaN or infinite values")
        return arr

    @abstractmethod
    def add(self, ids: Ids, vectors: Vectors) -> None: ...

    @abstractmethod
    def remove(self, ids: Ids) -> int:
        """Remove ids; returns how many were present. The vectors' bytes must not survive a save."""

    @abstractmethod
    def search(
        self, queries: Vectors, k: int, allowed: Ids | None = None
    ) -> tuple[npt.NDArray[np.float32], Ids]:
        """Top-k by similarity for each query row: (scores (q, k), ids (q, k)); missing ids are -1.
        `allowed`, when given, restricts results to those ids."""

    @abstractmethod
    def __len__(self) -> int: ...

    def held(self, ids: Ids) -> Ids:
        """Which of these ids the index holds, ascending. Backends answer without listing
        every id when they can."""
        return np.intersect1d(check_ids(ids), self.ids())

    @abstractmethod
    def fingerprint(self) -> IndexFingerprint: ...

    @abstractmethod
    def ids(self) -> Ids:
        """Every id held, ascending."""

    def train_and_add(self, ids: Ids, vectors: Vectors) -> None:
        """Fill an empty index in one go; backends that learn a coarse structure (IVF) train
        on these vectors first."""
        self.add(ids, vectors)

    def search_knob(self) -> SearchKnob | None:
        """The speed/recall setting, or None for an exact index (nothing to tune)."""
        return None

    def set_search_knob(self, value: int) -> None:
        raise VectorIndexError(f"the {self.factory} index has no search setting to tune")

    def is_compressed(self) -> bool:
        """True when the index holds lossy codes, whose scores need exact re-ranking."""
        return False

    def dead(self) -> int:
        """Erased entries still taking room until a compaction (HNSW cannot delete; their
        vectors are already wiped). 0 for indexes that really delete."""
        return 0


class IndexBackend(ABC):
    """Where an index lives and how one is made: an encrypted file in the data directory
    (FAISS) or a server (Milvus). The `IndexKeeper` drives it; nothing else does."""

    name: str

    @abstractmethod
    def resolve(self, spec: str, size: int) -> str:
        """The concrete index configuration for `spec` (e.g. "auto") at `size` vectors."""

    @abstractmethod
    def load(self) -> VectorIndex:
        """The persisted index. Raises VectorIndexError with code "index_missing" when there
        is none, "index_corrupt" when it cannot be read."""

    @abstractmethod
    def create(self, config: str, dim: int, model_id: str) -> VectorIndex:
        """A new, empty index for a concrete configuration from `resolve`; what was persisted
        before stays until `save` replaces it."""

    @abstractmethod
    def save(self, index: VectorIndex) -> None:
        """Persist the index, replacing what was persisted before, atomically."""

    def explain(self, spec: str, size: int) -> str | None:
        """Why `spec` at `size` vectors resolves to another configuration than it names, in
        words for the operator; None when it is built as named."""
        return None

    def close(self) -> None:  # noqa: B027 - optional: only server backends hold anything
        """Release what the backend holds open (a server connection); the index stays."""
