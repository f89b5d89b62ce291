"""The engine's whole search path minus face analysis, at N faces: the index, the exact
re-rank with templates fetched from the catalog, the catalog records of the hits, the ranking
and the audit write, on a compressed index.

    python benchmarks/engine_search.py [--faces 1000000] [--factory "IVF4096,PQ128x4fs"]
                                       [--depths 4,10] [--nprobes 16,32] [--queries 200]
                                       [--keep DIR]

With `--keep DIR` the data directory (and its key) stay in DIR: a later run with the same
--faces reuses the catalog, and its index unless --factory names another (10M faces take about
20 minutes to write and 5-25 to index on 2 cores).

Data: benchmarks/search.py's synthetic identities, fitted to real dlib descriptors, written
into a real catalog (SQLite, sealed templates) with bulk inserts, and the index built by the
Engine from it. Queries are fresh photos of indexed people, as in benchmarks/search.py.

Per re-rank depth and nprobe: p50/p90 of `Engine._search` plus its audit write (one FAISS
thread), and of its parts (the index search with its re-rank fetch; the audit write), recall@10
of the engine's index view (re-ranked) against exact search over every template, and the index's
bytes per face. Interleaved, query by query, with the same path fetching its re-rank templates
through the ORM query the catalog used before (`orm_templates_of`), so a load spike on this
shared machine hits both alike. A table is printed; results go to
benchmarks/results/engine_search.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from query import fill  # benchmarks/query.py
from search import Identities  # benchmarks/search.py
from vultus import __version__
from vultus.catalog import Catalog
from vultus.catalog.models import Face
from vultus.engine import Engine
from vultus.index.rerank import RerankedIndex

REPO = Path(__file__).resolve().parent.parent
PURPOSE = "archive research"
K = 10


def orm_templates_of(catalog: Catalog) -> Any:
    """The re-rank fetch as the catalog made it before: an ORM query compiled per call."""

    def templates_of(face_ids: Sequence[int]) -> dict[int, npt.NDArray[np.float32]]:
        with catalog.session() as s:
            rows = s.execute(
                select(Face.id, Face.template).where(
                    Face.id.in_(list(face_ids)), Face.template.is_not(None)
                )
            ).all()
        return {fid: catalog.open_template(blob) for fid, blob in rows if blob is not None}

    return templates_of


def exact_top_k(ident: Identities, queries: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
    """Catalog ids (row + 1) of the exact top k, chunk by chunk."""
    best_s = np.full((len(queries), K), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), K), dtype=np.int64)
    for lo, block in ident.chunks():
        s = queries @ block.T
        cand_s = np.concatenate([best_s, s], axis=1)
        cand_i = np.concatenate(
            [best_i, np.broadcast_to(np.arange(lo, lo + len(block)) + 1, s.shape)], axis=1
        )
        top = np.argpartition(-cand_s, K, axis=1)[:, :K]
        best_s = np.take_along_axis(cand_s, top, axis=1)
        best_i = np.take_along_axis(cand_i, top, axis=1)
    return best_i


def templates(ident: Identities) -> Iterator[npt.NDArray[np.float32]]:
    for _, block in ident.chunks():
        yield block


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--faces", type=int, default=1_000_000)
    parser.add_argument("--factory", default="IVF4096,PQ128x4fs")
    parser.add_argument("--depths", default="4,10", help="re-rank depths, comma-separated")
    parser.add_argument("--nprobes", default="16,32", help="comma-separated")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="a directory for the data directory and its key, kept between runs: a catalog of\n"
        "--faces faces and its index built there by an earlier run are reused (a 10M fill\n"
        "takes about an hour; the search path can then be measured again in minutes)",
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "engine_search.json"
    )
    args = parser.parse_args()
    console = Console(width=140)
    faiss.omp_set_num_threads(1)  # one query at a time, as a server answers one
    ident = Identities(args.faces, seed=0)
    queries, _ = ident.queries(args.queries, seed=1)
    truth = exact_top_k(ident, queries)
    rows: list[dict[str, Any]] = []
    load = [os.getloadavg()[0]]
    with contextlib.ExitStack() as stack:
        home = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        home.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("VULTUS_KEY_FILE", str(home / "bench.key"))
        engine = stack.enter_context(Engine.open(home / "data", workers=1))
        held = len(engine.index)
        build_s = None
        if held not in (0, args.faces):
            raise SystemExit(f"{home} holds {held:,} faces, not {args.faces:,}: use another --keep")
        if held == 0:
            console.print(f"writing {args.faces:,} synthetic faces …")
            fill(engine, args.faces, console, vectors=templates(ident))
        view = engine.index
        index = view.inner if isinstance(view, RerankedIndex) else view
        if held == 0 or index.factory != args.factory:
            t = time.perf_counter()
            faiss.omp_set_num_threads(os.cpu_count() or 1)
            index = engine.rebuild_index(args.factory)
            faiss.omp_set_num_threads(1)
            build_s = time.perf_counter() - t
            console.print(f"index {index.factory} built in {build_s:.0f} s")
        size = len(index.to_bytes())  # type: ignore[attr-defined]
        console.print(f"index {index.factory}: {size:,} bytes")
        load.append(os.getloadavg()[0])
        keeper = engine.indexes
        for nprobe in (int(x) for x in args.nprobes.split(",")):
            index.set_search_knob(nprobe)
            for depth in (int(x) for x in args.depths.split(",")):
                new = RerankedIndex(index, engine.catalog.templates_of, depth)
                old = RerankedIndex(index, orm_templates_of(engine.catalog), depth)
                times: dict[str, list[float]] = {
                    "new": [],
                    "old": [],
                    "index": [],
                    "audit": [],
                }
                found = np.empty((len(queries), K), dtype=np.int64)
                for i, q in enumerate(queries):
                    for name, view in (("new", new), ("old", old)):
                        keeper._view = view
                        t0 = time.perf_counter()
                        result = engine._search(q, top_k=K)
                        t1 = time.perf_counter()
                        engine._audit_search(result, q, "bench", PURPOSE, None, None)
                        times[name].append(1000 * (time.perf_counter() - t0))
                        if name == "new":
                            times["audit"].append(1000 * (time.perf_counter() - t1))
                    t0 = time.perf_counter()
                    found[i] = new.search(q[None, :], K)[1][0]
                    times["index"].append(1000 * (time.perf_counter() - t0))
                hits = [len(set(f) & set(t)) for f, t in zip(found, truth, strict=True)]
                recall = sum(hits) / truth.size
                row = {
                    "faces": args.faces,
                    "factory": index.factory,
                    "nprobe": nprobe,
                    "rerank": depth,
                    "recall_at_10": round(recall, 4),
                    "p50_ms": round(statistics.median(times["new"]), 2),
                    "p90_ms": round(float(np.percentile(times["new"], 90)), 2),
                    "p50_orm_fetch_ms": round(statistics.median(times["old"]), 2),
                    # Parts of p50_ms: the index with its re-rank fetch, and the audit write.
                    "p50_index_rerank_ms": round(statistics.median(times["index"]), 2),
                    "p50_audit_ms": round(statistics.median(times["audit"]), 2),
                    "index_bytes_per_face": round(size / args.faces, 1),
                }
                rows.append(row)
                console.print(row)
        load.append(os.getloadavg()[0])
    mean_load = round(float(np.mean(load)), 2)
    table = Table(
        title=f"Engine._search + audit, minus face analysis ({args.faces:,} faces, "
        f"load {mean_load})"
    )
    for key in rows[0]:
        table.add_column(key, justify="right")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                "load_average": mean_load,
                "index_build_s": None if build_s is None else round(build_s, 1),
                "vultus": __version__,
                "results": rows,
            },
            indent=2,
        )
    )
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
