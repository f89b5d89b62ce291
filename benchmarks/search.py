"""Vector search benchmark: FaissIndex configurations on synthetic face templates.

    python benchmarks/search.py --sizes 100000,1000000
    python benchmarks/search.py --sizes 1000000 --factories "IVF{auto},Flat" --nprobes 32,64

Data: 128-d unit vectors clustered like real identities. Identity centres are Gaussian with a
gently decaying per-dimension spread (std of dim i ~ i**-alpha/2, alpha 0.5: embedding dimensions
don't all carry equal variance), normalised; each identity has 1 + Poisson(3) samples (mean 4: most
people appear a few times, some once) made of centre + isotropic noise whose energy is drawn per
sample so that same-identity cosines fall in ~0.75-0.9 and different-identity ones in ~0 +- 0.3
(the measured percentiles are printed and stored). Queries are fresh held-out samples of indexed
identities, like a probe photo of someone in the catalog.

The data is generated chunk by chunk straight into one preallocated array (held once); the exact
ground truth is computed by blocked matrix products over it.

Per configuration: build time (train + add, all threads), on-disk size, save/load time, RSS delta
after the build, p50/p99 single-query latency (one FAISS thread, one query per call, through
FaissIndex.search), batch QPS (all queries in one call, all threads), recall@10 against exact
search, "match recall" (recall of the exact top-10 neighbours scoring >= 0.5, i.e. the same-identity
faces a search is for; the rest of the top 10 are strangers at ~0.3), and the time to remove 1000
ids. A Rich table is printed; results merge into benchmarks/results/search.json.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import gc
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

from vultus.index import FaissIndex, resolve_factory

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

DIM = 128
K = 10
MATCH_SCORE = 0.5  # well above any stranger (~0.3 at the 99.9th percentile), below any same face
CHUNK_IDENTITIES = 25_000  # ~100k vectors (~50 MB) generated at a time
TARGET_N = 1_000_000
TARGET_P50_MS = 2.0
TARGET_RECALL = 0.98
DEFAULT_FACTORIES = "Flat;IVF{auto},Flat;IVF{auto}_HNSW32,Flat"
DEFAULT_NPROBES = "16,32,64,128,256"
RESULTS = Path(__file__).resolve().parent / "results" / "search.json"


# ---------------------------------------------------------------- synthetic identities


class Identities:
    """Deterministic synthetic catalog of n templates; any chunk's centres can be regenerated."""

    def __init__(self, n: int, alpha: float, seed: int) -> None:
        self.n, self.seed = n, seed
        rng = np.random.default_rng([seed, 1 << 30])
        counts = 1 + rng.poisson(3.0, size=n)  # more identities than needed; trimmed below
        cum = np.cumsum(counts)
        n_identities = int(np.searchsorted(cum, n)) + 1
        counts = counts[:n_identities]
        counts[-1] -= int(cum[n_identities - 1]) - n
        self.counts = counts
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.scale: F32 = np.asarray(np.arange(1, DIM + 1) ** (-alpha / 2), dtype=np.float32)

    @property
    def n_identities(self) -> int:
        return int(self.counts.size)

    def _rng(self, chunk: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, chunk])

    def _centres(self, rng: np.random.Generator, chunk: int) -> F32:
        # Always the first draw from the chunk's generator, so queries can regenerate it alone.
        first = chunk * CHUNK_IDENTITIES
        m = min(CHUNK_IDENTITIES, self.n_identities - first)
        c = rng.standard_normal((m, DIM), dtype=np.float32) * self.scale
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        return c

    @staticmethod
    def _add_noise(out: F32, rng: np.random.Generator) -> None:
        # Noise energy s2 gives cos(sample, centre) ~ 1/sqrt(1+s2) and, between two samples of one
        # identity, ~1/(1+s2): s2 in [0.11, 0.33] puts same-identity cosines at ~0.75-0.9.
        s2 = np.asarray(rng.uniform(0.11, 0.33, size=out.shape[0]), dtype=np.float32)
        noise = rng.standard_normal(out.shape, dtype=np.float32)
        noise *= np.sqrt(s2 / DIM)[:, None]
        out += noise
        out /= np.linalg.norm(out, axis=1, keepdims=True)

    def fill(self, out: F32) -> npt.NDArray[np.int32]:
        """Write all n templates into `out` (n, DIM); returns each row's identity."""
        labels = np.repeat(np.arange(self.n_identities, dtype=np.int32), self.counts)
        for chunk in range((self.n_identities + CHUNK_IDENTITIES - 1) // CHUNK_IDENTITIES):
            rng = self._rng(chunk)
            centres = self._centres(rng, chunk)
            first = chunk * CHUNK_IDENTITIES
            lo = int(self.starts[first])
            hi = int(self.starts[first + len(centres) - 1] + self.counts[first + len(centres) - 1])
            block = out[lo:hi]
            block[:] = centres[labels[lo:hi] - first]
            self._add_noise(block, rng)
        return labels

    def queries(self, nq: int, seed: int) -> F32:
        """Fresh samples (not in the catalog) of nq random indexed identities."""
        rng = np.random.default_rng([self.seed, seed, 7])
        who = np.sort(rng.choice(self.n_identities, size=nq, replace=nq > self.n_identities))
        out = np.empty((nq, DIM), dtype=np.float32)
        for chunk in np.unique(who // CHUNK_IDENTITIES):
            centres = self._centres(self._rng(int(chunk)), int(chunk))
            mine = who // CHUNK_IDENTITIES == chunk
            out[mine] = centres[who[mine] - int(chunk) * CHUNK_IDENTITIES]
        self._add_noise(out, rng)
        return out[rng.permutation(nq)]


def cosine_stats(data: F32, labels: npt.NDArray[np.int32], seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    first = np.flatnonzero(labels[1:] == labels[:-1])  # row i and i+1 are the same identity
    first = rng.choice(first, size=min(20_000, first.size), replace=False)
    same = np.einsum("ij,ij->i", data[first], data[first + 1])
    a, b = rng.integers(0, len(data), (2, 20_000))
    keep = labels[a] != labels[b]
    diff = np.einsum("ij,ij->i", data[a[keep]], data[b[keep]])
    pct = [1, 5, 50, 95, 99, 99.9]
    return {
        "percentiles": pct,
        "same_identity": np.percentile(same, pct).round(3).tolist(),
        "different_identity": np.percentile(diff, pct).round(3).tolist(),
    }


def exact_top_k(data: F32, ids: I64, queries: F32, k: int) -> tuple[F32, I64]:
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(queries), k), -1, dtype=np.int64)
    for lo in range(0, len(data), 100_000):
        s = queries @ data[lo : lo + 100_000].T
        top = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, ids[lo + top]], axis=1)
        order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s = np.take_along_axis(cand_s, order, axis=1)
        best_i = np.take_along_axis(cand_i, order, axis=1)
    return best_s, best_i


# ---------------------------------------------------------------- measurements


@dataclass
class Row:
    n: int
    alpha: float
    factory: str
    nprobe: int | None
    build_s: float
    disk_mb: float
    rss_mb: float
    save_s: float
    load_s: float
    p50_ms: float
    p99_ms: float
    latency_queries: int
    batch_qps: float
    recall_at_10: float
    match_recall: float
    delete_1000_ms: float | None
    meets_target: bool | None
    date: str


def rss_mb() -> float:
    # Hand freed heap back to the OS first, or the index reuses pages freed earlier and the delta
    # under-counts it.
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def recall(found: I64, truth: I64, relevant: npt.NDArray[np.bool_]) -> float:
    hits = 0
    for f, t, r in zip(found, truth, relevant, strict=True):
        hits += len(set(f.tolist()) & set(t[r].tolist()))
    return hits / max(1, int(relevant.sum()))


def latency(index: FaissIndex, queries: F32, budget_s: float) -> tuple[float, float, int]:
    faiss.omp_set_num_threads(1)
    for q in queries[:5]:
        index.search(q[None, :], K)
    times = []
    start = time.perf_counter()
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None, :], K)
        times.append(time.perf_counter() - t0)
        if len(times) >= 30 and time.perf_counter() - start > budget_s:
            break
    ms = np.array(times) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), len(times)


def batch_qps(index: FaissIndex, queries: F32) -> float:
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    done, start = 0, time.perf_counter()
    while True:
        index.search(queries, K)
        done += len(queries)
        elapsed = time.perf_counter() - start
        if elapsed > 1.0 or done >= 20 * len(queries):
            return done / elapsed


def run_config(
    factory: str,
    nprobes: list[int],
    data: F32,
    ids: I64,
    queries: F32,
    truth: tuple[F32, I64],
    budget_s: float,
    alpha: float,
    console: Console,
) -> list[Row]:
    n = len(data)
    concrete = resolve_factory(factory, n)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    gc.collect()
    rss0 = rss_mb()
    index = FaissIndex.create(concrete, DIM, "synthetic-dlib", nprobe=nprobes[0])
    t0 = time.perf_counter()
    index.train_and_add(ids, data)
    build_s = time.perf_counter() - t0
    gc.collect()
    rss = rss_mb() - rss0
    console.log(f"{index.factory} n={n}: built in {build_s:.1f} s, RSS +{rss:.0f} MB")

    with tempfile.TemporaryDirectory(dir=RESULTS.parent) as tmp:
        path = Path(tmp) / "index.faiss"
        t0 = time.perf_counter()
        index.save(path)
        save_s = time.perf_counter() - t0
        disk_mb = path.stat().st_size / 2**20
        t0 = time.perf_counter()
        loaded = FaissIndex.load(path)
        load_s = time.perf_counter() - t0
        assert loaded.fingerprint() == index.fingerprint()
        del loaded
        gc.collect()

    true_scores, true_ids = truth
    everything = np.ones_like(true_ids, dtype=bool)
    matches = true_scores >= MATCH_SCORE
    rows = []
    for nprobe in nprobes if index.nlist is not None else [None]:
        if nprobe is not None:
            index.nprobe = nprobe
        p50, p99, nlat = latency(index, queries, budget_s)
        qps = batch_qps(index, queries)
        _, found = index.search(queries, K)
        row = Row(
            n=n,
            alpha=alpha,
            factory=index.factory,
            nprobe=nprobe,
            build_s=round(build_s, 2),
            disk_mb=round(disk_mb, 1),
            rss_mb=round(rss, 1),
            save_s=round(save_s, 2),
            load_s=round(load_s, 2),
            p50_ms=round(p50, 3),
            p99_ms=round(p99, 3),
            latency_queries=nlat,
            batch_qps=round(qps, 1),
            recall_at_10=round(recall(found, true_ids, everything), 4),
            match_recall=round(recall(found, true_ids, matches), 4),
            delete_1000_ms=None,
            meets_target=None,
            date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        if n >= TARGET_N:
            row.meets_target = row.p50_ms <= TARGET_P50_MS and row.recall_at_10 >= TARGET_RECALL
        console.log(
            f"  nprobe={nprobe}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, {qps:.0f} QPS, "
            f"recall@10 {row.recall_at_10:.3f}, match recall {row.match_recall:.3f}"
        )
        rows.append(row)

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    doomed = np.random.default_rng(99).choice(ids, size=min(1000, n), replace=False)
    t0 = time.perf_counter()
    removed = index.remove(doomed)
    delete_ms = (time.perf_counter() - t0) * 1e3
    assert removed == len(doomed)
    for row in rows:
        row.delete_1000_ms = round(delete_ms, 1)
    del index
    gc.collect()
    return rows


# ---------------------------------------------------------------- reporting


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gib = float("nan")
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "load_average": list(os.getloadavg()),
    }


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "faiss": faiss.__version__,
        "faiss_compile_options": faiss.get_compile_options(),
    }


def print_table(rows: list[Row], console: Console) -> None:
    table = Table(title="Vector search (128-d, k=10)")
    for col in (
        "n",
        "alpha",
        "factory",
        "nprobe",
        "build s",
        "disk MB",
        "RSS MB",
        "load s",
        "p50 ms",
        "p99 ms",
        "QPS",
        "recall@10",
        "match rec.",
        "del 1k ms",
        "target",
    ):
        if col == "factory":
            table.add_column(col, no_wrap=True, min_width=22)
        else:
            table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r.n:,}",
            f"{r.alpha:g}",
            r.factory,
            "-" if r.nprobe is None else str(r.nprobe),
            f"{r.build_s:.1f}",
            f"{r.disk_mb:.0f}",
            f"{r.rss_mb:.0f}",
            f"{r.load_s:.2f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.batch_qps:,.0f}",
            f"{r.recall_at_10:.3f}",
            f"{r.match_recall:.3f}",
            f"{r.delete_1000_ms:.1f}",
            {None: "", True: "yes", False: "no"}[r.meets_target],
        )
    console.print(table)


def write_json(rows: list[Row], params: dict[str, Any], data_stats: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous: dict[str, Any] = {}
    if RESULTS.exists():
        try:
            previous = json.loads(RESULTS.read_text())
        except json.JSONDecodeError:
            previous = {}
    fresh = [asdict(r) for r in rows]

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["n"], r.get("alpha"), r["factory"], r["nprobe"] or 0)

    replaced = {key(r) for r in fresh}
    kept = [r for r in previous.get("results", []) if key(r) not in replaced]
    merged = sorted(kept + fresh, key=key)
    stats = dict(previous.get("data", {}))
    stats.update(data_stats)
    target = {
        "n": TARGET_N,
        "p50_ms_at_most": TARGET_P50_MS,
        "recall_at_10_at_least": TARGET_RECALL,
        "met_by": [
            {k: r.get(k) for k in ("n", "alpha", "factory", "nprobe", "p50_ms", "recall_at_10")}
            for r in merged
            if r.get("meets_target")
        ],
    }
    out = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "params": params,
        "data": stats,
        "target": target,
        "results": merged,
    }
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated catalog sizes")
    parser.add_argument(
        "--factories",
        default=DEFAULT_FACTORIES,
        help="semicolon-separated FAISS factories; {auto} = nlist for the size, Flat = exact",
    )
    parser.add_argument("--nprobes", default=DEFAULT_NPROBES, help="nprobe values for IVF")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--alpha", type=float, default=0.5, help="spread decay across dimensions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--latency-budget", type=float, default=10.0, help="max seconds of single queries per row"
    )
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    factories = [f.strip() for f in args.factories.split(";") if f.strip()]
    nprobes = [int(p) for p in args.nprobes.split(",") if p.strip()]

    console = Console(width=None if sys.stdout.isatty() else 200)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    data_stats: dict[str, Any] = {}
    for n in sizes:
        gen = Identities(n, args.alpha, args.seed)
        t0 = time.perf_counter()
        data = np.empty((n, DIM), dtype=np.float32)
        labels = gen.fill(data)
        ids = np.arange(1, n + 1, dtype=np.int64)  # catalog face ids start at 1
        queries = gen.queries(args.queries, seed=1)
        stats = cosine_stats(data, labels, args.seed)
        stats["identities"] = gen.n_identities
        del labels
        console.log(
            f"n={n:,}: {gen.n_identities:,} identities generated in "
            f"{time.perf_counter() - t0:.1f} s; cosine percentiles {stats['percentiles']}: "
            f"same {stats['same_identity']}, different {stats['different_identity']}"
        )
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        t0 = time.perf_counter()
        truth = exact_top_k(data, ids, queries, K)
        console.log(f"exact ground truth in {time.perf_counter() - t0:.1f} s")
        data_stats[f"n={n},alpha={args.alpha}"] = stats
        for factory in factories:
            rows += run_config(
                factory,
                nprobes,
                data,
                ids,
                queries,
                truth,
                args.latency_budget,
                args.alpha,
                console,
            )
        del data
        gc.collect()

    print_table(rows, console)
    params = {
        "dim": DIM,
        "k": K,
        "queries": args.queries,
        "seed": args.seed,
        "samples_per_identity": "1 + Poisson(3)",
        "match_score": MATCH_SCORE,
        "omp_threads_single_query": 1,
        "omp_threads_batch_and_build": os.cpu_count(),
    }
    write_json(rows, params, data_stats)
    met = [r for r in rows if r.meets_target]
    if any(r.n >= TARGET_N for r in rows):
        if met:
            best = min(met, key=lambda r: r.p50_ms)
            console.print(
                f"Target (n >= {TARGET_N:,}: p50 <= {TARGET_P50_MS} ms, recall@10 >= "
                f"{TARGET_RECALL}) met by {best.factory} nprobe={best.nprobe} "
                f"(p50 {best.p50_ms:.2f} ms, recall@10 {best.recall_at_10:.3f})"
            )
        else:
            console.print("Target not met by any configuration measured.")
    console.print(f"Results written to {RESULTS}")


if __name__ == "__main__":
    main()
