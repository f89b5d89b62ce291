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

Ids = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class IndexFingerprint:
    """What the catalog compares against to tell whether an index is stale."""

    model_id: str
    count: int
    id_sum: int
    id_max: int


class VectorIndex(ABC):
    dim: int
    factory: str  # e.g. "IDMap2,Flat" or "IVF4096,Flat": readable, stored, printed in benchmarks
    model_id: str

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

    @abstractmethod
    def fingerprint(self) -> IndexFingerprint: ...
