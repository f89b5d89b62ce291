"""Pick the search setting (IVF's nprobe, HNSW's efSearch) that reaches a target recall.

Recall is measured, not guessed: sample queries are searched exactly (a blocked scan over the
catalog's templates) and through the real index at doubling settings; the smallest setting whose
recall@k reaches the target wins. Latency is timed one query at a time on one FAISS thread, the
way a search is served.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import faiss
import numpy as np

from vultus.errors import VectorIndexError
from vultus.index.base import Ids, VectorIndex, Vectors, normalise

# Single queries timed per setting for its p50: enough for a stable median, cheap at 1M.
LATENCY_QUERIES = 50


@dataclass(frozen=True)
class TunePoint:
    value: int
    recall: float
    p50_ms: float


@dataclass
class TuneResult:
    knob: str
    previous: int
    chosen: int
    target_recall: float
    reached: bool
    sample: int
    k: int
    points: list[TunePoint] = field(default_factory=list)


def exact_neighbours(queries: Vectors, chunks: Iterable[tuple[Ids, Vectors]], k: int) -> Ids:
    """The true top-k ids of each query over all (ids, vectors) chunks, merged chunk by chunk
    so the gallery is never held whole."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(queries), k), -1, dtype=np.int64)
    for ids, vectors in chunks:
        s = queries @ normalise(vectors).T
        take = min(k, s.shape[1])
        top = np.argpartition(-s, take - 1, axis=1)[:, :take]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, np.asarray(ids, dtype=np.int64)[top]], axis=1)
        order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s = np.take_along_axis(cand_s, order, axis=1)
        best_i = np.take_along_axis(cand_i, order, axis=1)
    return best_i


def recall_at_k(found: Ids, truth: Ids) -> float:
    hits = sum(
        len(set(f[f >= 0].tolist()) & set(t[t >= 0].tolist()))
        for f, t in zip(found, truth, strict=True)
    )
    return hits / max(1, int((truth >= 0).sum()))


def candidates(start: int, maximum: int) -> list[int]:
    """Doubling settings from `start` up to `maximum`, which is always tried last."""
    values, v = [], max(1, start)
    while v < maximum:
        values.append(v)
        v *= 2
    return [*values, maximum]


def tune(
    index: VectorIndex, queries: Vectors, truth: Ids, target_recall: float, k: int = 10
) -> TuneResult:
    """Try settings on `index` from small to large and leave it set to the smallest one that
    reaches `target_recall` (or the largest tried, when none does)."""
    knob = index.search_knob()
    if knob is None:
        raise VectorIndexError(
            f"the {index.factory} index is exact: it has no search setting to tune",
            code="index_exact",
        )
    if not 0.0 < target_recall <= 1.0:
        raise VectorIndexError(f"target recall must be in (0, 1], not {target_recall}")
    start = 1 if knob.name == "nprobe" else max(16, k)
    result = TuneResult(knob.name, knob.value, knob.value, target_recall, False, len(queries), k)
    threads = faiss.omp_get_max_threads()
    try:
        for value in candidates(start, knob.maximum):
            index.set_search_knob(value)
            faiss.omp_set_num_threads(threads)
            _, found = index.search(queries, k)
            faiss.omp_set_num_threads(1)
            times = []
            for q in queries[:LATENCY_QUERIES]:
                t0 = time.perf_counter()
                index.search(q[None, :], k)
                times.append(time.perf_counter() - t0)
            point = TunePoint(value, recall_at_k(found, truth), float(np.median(times) * 1e3))
            result.points.append(point)
            result.chosen = value
            if point.recall >= target_recall:
                result.reached = True
                break
    finally:
        faiss.omp_set_num_threads(threads)
    return result
