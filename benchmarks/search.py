"""Vector search benchmark: FaissIndex configurations at 1M and 10M synthetic face templates.

    python benchmarks/search.py --sizes 1000000 --factories "Flat;IVF4096,Flat;IVF4096,PQ32;HNSW32"
    OMP_WAIT_POLICY=PASSIVE nice python benchmarks/search.py --sizes 10000000 \\
        --factories "IVF4096,PQ32;IVF4096,Flat" --queries 300

Data: 128-d templates drawn like real dlib descriptors. benchmarks/template_model.npz (made by
benchmarks/fit_templates.py from ~480 lfw-a photos) holds the mean of unit descriptors and the
between- and within-identity covariances; identity centres are mean + N(0, between), photos are
centre + N(0, within), normalised. Each identity has 1 + Poisson(3) photos. Queries are fresh photos
of indexed identities, like a probe photo of someone in the catalog.

Memory: the templates are generated in chunks into a file (the stand-in for the catalog's
template column, read back for exact re-ranking one row per candidate), the exact ground truth is
merged chunk by chunk, and each index is built from chunks read back from that file; no copy of
all n float32 vectors is ever held besides the index itself.

Per configuration and search setting: build time (train + add, all threads), serialized size,
RSS delta after the build, p50/p99 single-query latency (one FAISS thread, through FaissIndex or
the RerankedIndex the engine uses for compressed indexes), batch QPS (all threads), recall@10
against exact search, same-identity recall (share of the query person's own photos, up to 10,
found in the top 10), the cost of removing 1000 ids, whether their float32 bytes are gone from the
saved index (with a control: kept vectors' bytes are found where the index stores floats), and
the memory per face. A table is printed; results merge into benchmarks/results/search.json.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import gc
import json
import mmap
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

from vultus.index import FaissIndex, resolve_factory
from vultus.index.faiss_index import TRAIN_POINTS_PER_LIST
from vultus.index.rerank import RerankedIndex
from vultus.index.tune import exact_neighbours

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

DIM = 128
K = 10
CHUNK_IDENTITIES = 50_000  # ~200k templates (~100 MB) generated at a time
READ_ROWS = 250_000
TARGET = {"n": 10_000_000, "p50_ms": 10.0, "recall_at_10": 0.95, "ram_gib": 24}
BUDGET_BYTES_PER_FACE = 300
HERE = Path(__file__).resolve().parent
MODEL = HERE / "template_model.npz"
RESULTS = HERE / "results" / "search.json"


# ---------------------------------------------------------------- synthetic identities


class Identities:
    """n templates of synthetic people fitted to real dlib descriptors; deterministic by chunk."""

    def __init__(self, n: int, seed: int) -> None:
        model = np.load(MODEL)
        self.mean = model["mean"].astype(np.float32)
        # The between-identity covariance is estimated from ~120 people, so a few of its 128
        # directions are unobserved (eigenvalue ~0 or slightly negative): floor them at the
        # 10th percentile of the observed spread rather than let them collapse.
        self.between = _sqrt_psd(model["between"])
        self.within = _sqrt_psd(model["within"])
        self.n, self.seed = n, seed
        rng = np.random.default_rng([seed, 1 << 30])
        counts = 1 + rng.poisson(3.0, size=n)
        cum = np.cumsum(counts)
        n_identities = int(np.searchsorted(cum, n)) + 1
        counts = counts[:n_identities]
        counts[-1] -= int(cum[n_identities - 1]) - n
        self.counts = counts
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    @property
    def n_identities(self) -> int:
        return int(self.counts.size)

    def _centres(self, chunk: int) -> tuple[F32, np.random.Generator]:
        rng = np.random.default_rng([self.seed, chunk])
        first = chunk * CHUNK_IDENTITIES
        m = min(CHUNK_IDENTITIES, self.n_identities - first)
        z = rng.standard_normal((m, DIM), dtype=np.float32)
        return self.mean + z @ self.between, rng

    def _photos(self, centres: F32, rng: np.random.Generator) -> F32:
        z = rng.standard_normal(centres.shape, dtype=np.float32)
        out = centres + z @ self.within
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out

    def chunks(self) -> Iterator[tuple[int, F32]]:
        """(first row, templates) for every chunk of identities, in row order."""
        for chunk in range((self.n_identities + CHUNK_IDENTITIES - 1) // CHUNK_IDENTITIES):
            centres, rng = self._centres(chunk)
            first = chunk * CHUNK_IDENTITIES
            who = np.repeat(np.arange(len(centres)), self.counts[first : first + len(centres)])
            yield int(self.starts[first]), self._photos(centres[who], rng)

    def queries(self, nq: int, seed: int) -> tuple[F32, I64]:
        """Fresh photos (not in the catalog) of nq random indexed identities, and who they are."""
        rng = np.random.default_rng([self.seed, seed, 7])
        who = np.sort(rng.choice(self.n_identities, size=nq, replace=nq > self.n_identities))
        out = np.empty((nq, DIM), dtype=np.float32)
        for chunk in np.unique(who // CHUNK_IDENTITIES):
            centres, _ = self._centres(int(chunk))
            mine = who // CHUNK_IDENTITIES == chunk
            out[mine] = centres[who[mine] - int(chunk) * CHUNK_IDENTITIES]
        out = self._photos(out, rng)
        order = rng.permutation(nq)
        return out[order], who[order]

    def rows_of(self, identity: int) -> I64:
        """Catalog ids (row + 1) of one identity's photos."""
        lo = int(self.starts[identity])
        return np.arange(lo, lo + int(self.counts[identity]), dtype=np.int64) + 1


def _sqrt_psd(cov: F32) -> F32:
    """A matrix A with A.T @ A = cov (eigenvalues floored), so z @ A ~ N(0, cov)."""
    w, v = np.linalg.eigh(cov.astype(np.float64))
    w = np.maximum(w, np.percentile(w[w > 0], 10))
    return np.asarray((v * np.sqrt(w)).T, dtype=np.float32)


class TemplateFile:
    """The catalog's template column, as a flat float32 file: written once in chunks, read back
    in chunks to build indexes and row by row (pread) to re-rank, as the catalog would."""

    def __init__(self, path: Path, n: int) -> None:
        self.path, self.n = path, n
        self.row_bytes = DIM * 4

    def write(self, chunks: Iterator[tuple[int, F32]]) -> Iterator[tuple[int, F32]]:
        with open(self.path, "wb") as fh:
            for lo, block in chunks:
                fh.write(block.tobytes())
                yield lo, block

    def read(self, lo: int, hi: int) -> F32:
        with open(self.path, "rb") as fh:
            fh.seek(lo * self.row_bytes)
            data = np.fromfile(fh, dtype=np.float32, count=(hi - lo) * DIM)
        return data.reshape(hi - lo, DIM)

    def lookup(self, ids: list[int]) -> dict[int, F32]:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            return {
                i: np.frombuffer(os.pread(fd, self.row_bytes, (i - 1) * self.row_bytes), np.float32)
                for i in ids
            }
        finally:
            os.close(fd)


# ---------------------------------------------------------------- measurements


@dataclass
class Row:
    n: int
    factory: str
    rerank: int | None
    knob: str | None
    value: int | None
    build_s: float
    disk_mb: float
    rss_mb: float
    index_bytes_per_face: float
    rss_bytes_per_face: float
    p50_ms: float
    p99_ms: float
    latency_queries: int
    batch_qps: float
    recall_at_10: float
    same_identity_recall: float
    delete_1000_ms: float | None
    deleted_bytes_gone: bool | None
    control_bytes_found: bool | None
    meets_target: bool | None
    load_average: float
    date: str


def rss_mb() -> float:
    # Hand freed heap back to the OS first, or the index reuses freed pages and the delta
    # under-counts it.
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def recall(found: I64, truth: I64) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def same_identity_recall(found: I64, own: list[I64]) -> float:
    hits = wanted = 0
    for f, rows in zip(found, own, strict=True):
        hits += len(set(f.tolist()) & set(rows.tolist()))
        wanted += min(K, rows.size)
    return hits / max(1, wanted)


def latency(index: Any, queries: F32, budget_s: float) -> tuple[float, float, int]:
    faiss.omp_set_num_threads(1)
    for q in queries[:5]:
        index.search(q[None, :], K)
    times = []
    start = time.perf_counter()
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None, :], K)
        times.append(time.perf_counter() - t0)
        if len(times) >= 50 and time.perf_counter() - start > budget_s:
            break
    ms = np.array(times) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), len(times)


def batch_qps(index: Any, queries: F32, threads: int) -> float:
    faiss.omp_set_num_threads(threads)
    done, start = 0, time.perf_counter()
    while True:
        index.search(queries, K)
        done += len(queries)
        elapsed = time.perf_counter() - start
        if elapsed > 2.0 or done >= 5 * len(queries):
            return done / elapsed


def build(factory: str, store: TemplateFile, threads: int, console: Console) -> FaissIndex:
    n = store.n
    index = FaissIndex.create(resolve_factory(factory, n), DIM, "synthetic-dlib")
    faiss.omp_set_num_threads(threads)
    if index.nlist is not None:
        sample = store.read(0, min(n, TRAIN_POINTS_PER_LIST * index.nlist))
        index.train(sample)
        del sample
    for lo in range(0, n, READ_ROWS):
        hi = min(n, lo + READ_ROWS)
        index.add(np.arange(lo + 1, hi + 1, dtype=np.int64), store.read(lo, hi))
        if lo and lo % (10 * READ_ROWS) == 0:
            console.log(f"  {factory}: {hi:,} added")
    return index


def bytes_check(
    index: FaissIndex, store: TemplateFile, tmp: Path, sample: int
) -> tuple[float, float, bool | None, bool | None]:
    """Remove 1000 ids; time it, save, and look for the removed (and, as a control, kept)
    vectors' float32 bytes in the file. Returns (delete ms, disk MB before, gone, control)."""
    path = tmp / "index.faiss"
    faiss.write_index(index._index, str(path))  # the payload of FaissIndex.save, held once
    disk_mb = path.stat().st_size / 2**20
    rng = np.random.default_rng(99)
    doomed = np.sort(rng.choice(np.arange(1, store.n + 1), size=min(1000, store.n), replace=False))
    t0 = time.perf_counter()
    removed = index.remove(doomed)
    delete_ms = (time.perf_counter() - t0) * 1e3
    assert removed == len(doomed)
    if index.is_compressed():
        return delete_ms, disk_mb, None, None  # only codes are stored, never the floats
    faiss.write_index(index._index, str(path))
    kept = np.setdiff1d(rng.choice(np.arange(1, store.n + 1), size=sample), doomed)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        lookup = store.lookup(doomed[:sample].tolist())
        gone = all(mm.find(v.tobytes()) < 0 for v in lookup.values())
        control = all(mm.find(v.tobytes()) >= 0 for v in store.lookup(kept.tolist()).values())
    path.unlink()
    return delete_ms, disk_mb, gone, control


def run_config(
    factory: str,
    values: list[int],
    reranks: list[int],
    store: TemplateFile,
    queries: F32,
    truth: I64,
    own: list[I64],
    args: argparse.Namespace,
    console: Console,
) -> list[Row]:
    n = store.n
    threads = os.cpu_count() or 1
    gc.collect()
    rss0 = rss_mb()
    t0 = time.perf_counter()
    index = build(factory, store, threads, console)
    build_s = time.perf_counter() - t0
    gc.collect()
    rss = rss_mb() - rss0
    console.log(f"{index.factory} n={n:,}: built in {build_s:.0f} s, RSS +{rss:.0f} MB")
    knob = index.search_knob()
    rows = []
    searchers: list[tuple[Any, int | None]] = [(index, None)]
    if index.is_compressed():
        searchers = [
            (RerankedIndex(index, store.lookup, d), d) if d else (index, None) for d in reranks
        ]
    settings = [(s, d, v) for s, d in searchers for v in (values if knob else [None])]
    for searcher, depth, value in settings:
        if value is not None:
            if value > (knob.maximum if knob else 0):
                continue
            index.set_search_knob(value)
        p50, p99, nlat = latency(searcher, queries, args.latency_budget)
        qps = batch_qps(searcher, queries, threads)
        faiss.omp_set_num_threads(threads)
        _, found = searcher.search(queries, K)
        row = Row(
            n=n,
            factory=index.factory,
            rerank=depth,
            knob=knob.name if knob else None,
            value=value,
            build_s=round(build_s, 1),
            disk_mb=0.0,
            rss_mb=round(rss, 1),
            index_bytes_per_face=0.0,
            rss_bytes_per_face=round(rss * 2**20 / n, 1),
            p50_ms=round(p50, 3),
            p99_ms=round(p99, 3),
            latency_queries=nlat,
            batch_qps=round(qps, 1),
            recall_at_10=round(recall(found, truth), 4),
            same_identity_recall=round(same_identity_recall(found, own), 4),
            delete_1000_ms=None,
            deleted_bytes_gone=None,
            control_bytes_found=None,
            meets_target=None,
            load_average=round(os.getloadavg()[0], 1),
            date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        if n >= TARGET["n"]:
            row.meets_target = (
                row.p50_ms <= TARGET["p50_ms"] and row.recall_at_10 >= TARGET["recall_at_10"]
            )
        console.log(
            f"  {row.knob}={value}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, {qps:.0f} QPS, "
            f"recall@10 {row.recall_at_10:.3f}, same identity {row.same_identity_recall:.3f}"
        )
        rows.append(row)
    with tempfile.TemporaryDirectory(dir=store.path.parent) as tmp:
        delete_ms, disk_mb, gone, control = bytes_check(
            index, store, Path(tmp), 20 if n <= 1_000_000 else 5
        )
    for row in rows:
        row.delete_1000_ms = round(delete_ms, 1)
        row.disk_mb = round(disk_mb, 1)
        row.index_bytes_per_face = round(disk_mb * 2**20 / n + 8, 1)  # + FaissIndex._ids
        row.deleted_bytes_gone, row.control_bytes_found = gone, control
    console.log(f"  delete 1000: {delete_ms:.0f} ms; bytes gone {gone} (control found {control})")
    del index, searchers
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
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average": list(os.getloadavg()),
        "faiss": faiss.__version__,
        "numpy": np.__version__,
    }


def print_table(rows: list[Row], console: Console) -> None:
    table = Table(title="Vector search (128-d dlib-like templates, k=10)")
    cols = "n factory rerank knob build_s disk_MB RSS_MB B/face p50_ms p99_ms QPS recall@10 "
    cols += "same_id del_1k_ms bytes_gone target"
    for col in cols.split():
        table.add_column(col.replace("_", " "), justify="left" if col == "factory" else "right")
    for r in rows:
        table.add_row(
            f"{r.n:,}",
            r.factory,
            "-" if r.rerank is None else f"x{r.rerank}",
            "-" if r.knob is None else f"{r.knob}={r.value}",
            f"{r.build_s:.0f}",
            f"{r.disk_mb:,.0f}",
            f"{r.rss_mb:,.0f}",
            f"{r.index_bytes_per_face:.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.batch_qps:,.0f}",
            f"{r.recall_at_10:.3f}",
            f"{r.same_identity_recall:.3f}",
            "-" if r.delete_1000_ms is None else f"{r.delete_1000_ms:.0f}",
            {None: "n/a", True: "yes", False: "NO"}[r.deleted_bytes_gone],
            {None: "", True: "yes", False: "no"}[r.meets_target],
        )
    console.print(table)


def write_json(rows: list[Row], params: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous: dict[str, Any] = {}
    if RESULTS.exists():
        try:
            previous = json.loads(RESULTS.read_text())
        except json.JSONDecodeError:
            previous = {}

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["n"], r["factory"], r.get("rerank") or 0, r.get("value") or 0)

    fresh = [asdict(r) for r in rows]
    replaced = {key(r) for r in fresh}
    kept = [r for r in previous.get("results", []) if "rerank" in r and key(r) not in replaced]
    out = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "params": params,
        "target": TARGET,
        "budget_bytes_per_face": BUDGET_BYTES_PER_FACE,
        "results": sorted(kept + fresh, key=key),
    }
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1000000"], help="catalog sizes")
    parser.add_argument(
        "--factories",
        default="Flat;IVF4096,Flat;IVF4096,PQ32;HNSW32",
        help="semicolon-separated FAISS factories ({auto} = nlist for the size)",
    )
    parser.add_argument("--nprobes", default="16,32,64,128", help="nprobe values for IVF")
    parser.add_argument("--efs", default="32,64,128", help="efSearch values for HNSW")
    parser.add_argument("--rerank", default="4", help="re-rank depths for compressed indexes")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency-budget", type=float, default=5.0, help="s of single queries")
    args = parser.parse_args(argv)
    sizes = [int(x.replace("_", "")) for s in args.sizes for x in s.split(",") if x.strip()]
    factories = [f.strip() for f in args.factories.split(";") if f.strip()]
    nprobes = [int(p) for p in args.nprobes.split(",")]
    efs = [int(p) for p in args.efs.split(",")]
    reranks = [int(p) for p in args.rerank.split(",")]
    console = Console(width=None if sys.stdout.isatty() else 220)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    for n in sizes:
        gen = Identities(n, args.seed)
        queries, who = gen.queries(args.queries, seed=1)
        own = [gen.rows_of(int(i)) for i in who]
        with tempfile.TemporaryDirectory(dir=RESULTS.parent) as tmp:
            store = TemplateFile(Path(tmp) / "templates.f32", n)
            t0 = time.perf_counter()
            faiss.omp_set_num_threads(os.cpu_count() or 1)
            truth = exact_neighbours(
                queries,
                ((np.arange(lo + 1, lo + len(b) + 1), b) for lo, b in store.write(gen.chunks())),
                K,
            )
            console.log(
                f"n={n:,}: {gen.n_identities:,} identities generated, written and searched "
                f"exactly in {time.perf_counter() - t0:.0f} s"
            )
            for factory in factories:
                knob_values = efs if "HNSW" in factory and "IVF" not in factory else nprobes
                rows += run_config(
                    factory, knob_values, reranks, store, queries, truth, own, args, console
                )
                write_json(rows, vars(args))
    print_table(rows, console)
    write_json(rows, vars(args))
    console.print(f"Results written to {RESULTS}")


if __name__ == "__main__":
    main()
