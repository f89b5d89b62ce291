"""Milvus backend benchmark: MilvusIndex configurations on synthetic face templates.

    python benchmarks/milvus_search.py                      # embedded server, 100k vectors
    python benchmarks/milvus_search.py --n 1000000 --uri http://milvus:19530

(Not named milvus.py: run as a script, that name would hide the `milvus` package.)

Data: the clustered 128-d identities of benchmarks/search.py. Without --uri a real Milvus
standalone server is started from the `milvus` package in a temporary directory.

Per configuration, through MilvusBackend/MilvusIndex as the engine uses them: insert rate
(upserts in batches, then the flush and index build that `save` waits for), p50/p99 latency of
single queries as Vultus makes them (Session consistency, no wait for the server's time tick),
and, interleaved with them, at Strong consistency (what Vultus used before), recall@10 against
exact search, a filtered search allowing 10% of the ids through an
`id in [...]` expression, a full id scan (what `fingerprint()` costs), the latency of deleting
1000 ids, whether any deleted id comes back from the next search, and, with the embedded server,
how many of the deleted vectors' bytes are still in the server's files after a compaction.
A table is printed; results merge into benchmarks/results/milvus.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

from search import Identities  # benchmarks/search.py
from vultus.config import Settings
from vultus.index.milvus_index import MilvusBackend, MilvusIndex

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

DIM = 128
K = 10
RESULTS = Path(__file__).resolve().parent / "results" / "milvus.json"
DEFAULT_CONFIGS = "FLAT;IVF_FLAT;HNSW"


def exact_top_k(data: F32, queries: F32, k: int) -> I64:
    scores = queries @ data.T
    return np.argsort(-scores, axis=1)[:, :k].astype(np.int64)


def recall(found: I64, truth: I64) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def paired_latencies_ms(
    fn_a: Any, fn_b: Any, queries: F32
) -> tuple[tuple[float, float], tuple[float, float]]:
    """p50 and p99 of single queries through each function, alternating between them."""
    times: tuple[list[float], list[float]] = ([], [])
    for q in queries:
        for fn, out in zip((fn_a, fn_b), times, strict=True):
            t = time.perf_counter()
            fn(q[None, :])
            out.append((time.perf_counter() - t) * 1000)
    a, b = (np.array(x) for x in times)
    return (
        (float(np.percentile(a, 50)), float(np.percentile(a, 99))),
        (float(np.percentile(b, 50)), float(np.percentile(b, 99))),
    )


def bytes_left(base_dir: Path, needles: list[bytes]) -> tuple[int, list[str]]:
    """How many needles still occur in any file under base_dir, and where."""
    found: set[int] = set()
    where: set[str] = set()
    for root, _, files in os.walk(base_dir):
        for name in files:
            path = Path(root) / name
            try:
                data = path.read_bytes()
            except OSError:
                continue
            for i, needle in enumerate(needles):
                if needle in data:
                    found.add(i)
                    where.add("/".join(path.relative_to(base_dir).parts[:3]))
    return len(found), sorted(where)


def run_config(
    backend: MilvusBackend,
    spec: str,
    data: F32,
    queries: F32,
    truth: I64,
    base_dir: Path | None,
) -> dict[str, Any]:
    n = len(data)
    ids = np.arange(n, dtype=np.int64)
    config = backend.resolve(spec, n)
    index = backend.create(config, DIM, "bench-model")
    t = time.perf_counter()
    index.train_and_add(ids, data)
    insert_s = time.perf_counter() - t
    t = time.perf_counter()
    backend.save(index)  # flush, alias
    index.wait_for_index()
    save_s = time.perf_counter() - t
    index = backend.load()
    assert isinstance(index, MilvusIndex)

    def strong(q: F32) -> Any:  # what Vultus read at before: a server time tick per search
        return index.collection.search(
            q,
            "vector",
            index.config.search_params(K, index.nprobe),
            limit=K,
            consistency_level="Strong",
        )

    # Interleaved query by query, so that a load spike on the machine hits both alike.
    (p50, p99), (st50, st99) = paired_latencies_ms(
        lambda q: index.search(q, K), strong, queries[:200]
    )
    found = np.vstack(
        [index.search(queries[i : i + 100], K)[1] for i in range(0, len(queries), 100)]
    )
    rec = recall(found, truth)

    allowed = ids[::10]
    t = time.perf_counter()
    filtered = index.search(queries[:20], K, allowed=allowed)[1]
    filtered_ms = (time.perf_counter() - t) * 1000 / 20
    filtered_ok = bool(np.isin(filtered[filtered >= 0], allowed).all())

    t = time.perf_counter()
    fp = index.fingerprint()
    scan_s = time.perf_counter() - t
    assert fp.count == n

    gone = ids[: 1000 * 7 : 7]
    t = time.perf_counter()
    removed = index.remove(gone)
    delete_ms = (time.perf_counter() - t) * 1000
    back = index.search(data[gone[:200]], K)[1]
    came_back = int(np.isin(back, gone).sum())
    t = time.perf_counter()
    backend.save(index)  # flush + compaction request
    index.compact(wait=True)
    compact_s = time.perf_counter() - t
    back_after = int(np.isin(backend.load().search(data[gone[:200]], K)[1], gone).sum())
    row: dict[str, Any] = {
        "config": config,
        "n": n,
        "insert_per_s": round(n / insert_s),
        "save_and_index_s": round(save_s, 1),
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
        "p50_strong_ms": round(st50, 2),
        "p99_strong_ms": round(st99, 2),
        "recall_at_10": round(rec, 4),
        "filtered_10pct_ms": round(filtered_ms, 1),
        "filtered_only_allowed": filtered_ok,
        "id_scan_s": round(scan_s, 2),
        "delete_1000_ms": round(delete_ms, 1),
        "removed": removed,
        "deleted_came_back": came_back + back_after,
        "compact_s": round(compact_s, 1),
    }
    if base_dir is not None:
        needles = [data[i].tobytes() for i in gone[:50]]
        left, where = bytes_left(base_dir, needles)
        row["deleted_bytes_left"] = f"{left}/50"
        row["deleted_bytes_where"] = where
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help="';'-separated, e.g. 'FLAT;HNSW'")
    ap.add_argument("--uri", help="an existing Milvus server; default: start an embedded one")
    ap.add_argument("--nprobe", type=int, default=64)
    ap.add_argument(
        "--time-tick-ms", type=int, default=200, help="embedded server's proxy.timeTickInterval"
    )
    args = ap.parse_args(argv)
    console = Console(width=200)

    server = None
    base_dir: Path | None = None
    uri = args.uri
    if uri is None:
        # The tests' launcher: free ports for everything, etcd's included.
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from milvus_server import start_server

        base_dir = Path(tempfile.mkdtemp(prefix="vultus-milvus-bench-"))
        t = time.perf_counter()
        server = start_server(base_dir, time_tick_ms=args.time_tick_ms)
        console.print(f"embedded Milvus started in {time.perf_counter() - t:.1f} s")
        uri = f"http://127.0.0.1:{server.listen_port}"
    try:
        ident = Identities(args.n, seed=0)
        data = np.empty((args.n, DIM), dtype=np.float32)
        for lo, block in ident.chunks():
            data[lo : lo + len(block)] = block
        queries, _ = ident.queries(args.queries, seed=1)
        truth = exact_top_k(data, queries, K)
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings.load(
                Path(tmp),
                index_backend="milvus",
                index_uri=uri,
                index_nprobe=args.nprobe,
                index_prefix="bench",
            )
            backend = MilvusBackend(settings)
            for spec in args.configs.split(";"):
                console.print(f"{spec} ...")
                rows.append(run_config(backend, spec, data, queries, truth, base_dir))
                console.print(rows[-1])
            backend.close()
    finally:
        if server is not None:
            server.stop()

    table = Table(title=f"Milvus 2.3 (embedded standalone), {args.n:,} x {DIM}-d, k={K}")
    if server is None:
        table.title = f"Milvus at {uri}, {args.n:,} x {DIM}-d, k={K}"
    for col in [
        "config",
        "insert/s",
        "save+index s",
        "p50 ms",
        "p99 ms",
        "p50 Strong",
        "recall@10",
        "filter 10% ms",
        "id scan s",
        "delete 1000 ms",
        "came back",
        "bytes left",
    ]:
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["config"],
            f"{r['insert_per_s']:,}",
            str(r["save_and_index_s"]),
            str(r["p50_ms"]),
            str(r["p99_ms"]),
            str(r["p50_strong_ms"]),
            str(r["recall_at_10"]),
            str(r["filtered_10pct_ms"]),
            str(r["id_scan_s"]),
            str(r["delete_1000_ms"]),
            str(r["deleted_came_back"]),
            str(r.get("deleted_bytes_left", "-")),
        )
    console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.node()} {os.cpu_count()} cpus, {platform.machine()}",
                "python": sys.version.split()[0],
                "params": vars(args),
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"Results written to {RESULTS}")


if __name__ == "__main__":
    main()
