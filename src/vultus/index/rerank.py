"""Exact re-ranking for compressed indexes.

A product-quantised index (`IVF4096,PQ32`: 32 bytes a face instead of 512) ranks by approximate
scores: FINDINGS measured recall@10 of 0.68 at 1M. Its shortlist is good, its order is not. So
`RerankedIndex` asks it for `depth * k` candidates, scores them exactly against the catalog's own
templates, and returns the best k. The keeper puts every compressed index behind this wrapper,
so every search path (engine search, rights find-person, tuning) gets the same exact order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from vultus.index.base import Ids, IndexFingerprint, SearchKnob, VectorIndex, Vectors, normalise

# The catalog's lookup: face id -> template (not necessarily unit length), for the ids it holds.
TemplateLookup = Callable[[Sequence[int]], Mapping[int, npt.NDArray[np.float32]]]


class RerankedIndex(VectorIndex):
    def __init__(self, inner: VectorIndex, templates: TemplateLookup, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"re-rank depth must be at least 1, not {depth}")
        self.inner = inner
        self.depth = depth
        self._templates = templates
        self.dim = inner.dim
        self.factory = inner.factory
        self.model_id = inner.model_id

    def search(
        self, queries: Vectors, k: int, allowed: Ids | None = None
    ) -> tuple[npt.NDArray[np.float32], Ids]:
        queries = normalise(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        _, candidates = self.inner.search(queries, k * self.depth, allowed)
        wanted = np.unique(candidates[candidates >= 0])
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        if wanted.size == 0:
            return scores, ids
        found = self._templates(wanted.tolist())
        known = np.fromiter((i for i in wanted.tolist() if i in found), dtype=np.int64)
        if known.size == 0:
            return scores, ids
        vectors = normalise(np.stack([found[int(i)] for i in known]))
        # A candidate the catalog no longer holds (erased since) is dropped, not guessed at.
        rows = np.searchsorted(known, candidates)
        rows = np.minimum(rows, known.size - 1)
        valid = (candidates >= 0) & (known[rows] == candidates)
        exact = np.einsum("qd,qcd->qc", queries, vectors[rows])
        exact[~valid] = -np.inf
        order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        best = np.take_along_axis(exact, order, axis=1)
        best_ids = np.take_along_axis(candidates, order, axis=1)
        best_ids[~np.isfinite(best)] = -1
        n = order.shape[1]
        scores[:, :n], ids[:, :n] = best, best_ids
        return scores, ids

    # Everything else is the inner index's.
    def add(self, ids: Ids, vectors: Vectors) -> None:
        self.inner.add(ids, vectors)

    def train_and_add(self, ids: Ids, vectors: Vectors) -> None:
        self.inner.train_and_add(ids, vectors)

    def remove(self, ids: Ids) -> int:
        return self.inner.remove(ids)

    def __len__(self) -> int:
        return len(self.inner)

    def fingerprint(self) -> IndexFingerprint:
        return self.inner.fingerprint()

    def ids(self) -> Ids:
        return self.inner.ids()

    def search_knob(self) -> SearchKnob | None:
        return self.inner.search_knob()

    def set_search_knob(self, value: int) -> None:
        self.inner.set_search_knob(value)

    def is_compressed(self) -> bool:
        return self.inner.is_compressed()

    def dead(self) -> int:
        return self.inner.dead()
