"""What a search of a Rekognition collection costs as the collection grows.

    python benchmarks/collection_search.py [--sizes 1000,10000,100000] [--queries 20]
                                     [--out benchmarks/results/collection_search.json]

A collection is searched through the vector index, restricted to the collection's faces (the
index's filtered search; see `vultus.engine.collections`). This measures that path,
`Engine.search_collection` by a face of the collection (as `SearchFaces` calls it; a photo
search adds the pipeline's time, which does not depend on the collection), with its audit entry,
on SQLite with the default exact FAISS index, interleaved with the baseline it replaced: the
collection's sealed templates read from the catalog, opened and scored in memory. Agreement is
the share of the baseline's top 10 that the filtered index search returns.

Data: synthetic faces written through the catalog's own write path (`Catalog.write_batch`), one
per image, with random 128-d templates sealed as real ones are; every face in one collection.
Half of the faces are in the collection, half are other faces of the gallery that the filter
must pass over. The sizes grow within one data directory, so each row's collection holds half of
all faces written so far. A table is printed, with the load average; results are written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from vultus import __version__
from vultus.catalog import NewFace, NewImage
from vultus.engine import Engine

REPO = Path(__file__).resolve().parent.parent
BATCH = 1000
PURPOSE = "archive research"


def synthetic(n: int, start: int, rng: np.random.Generator, model_id: str) -> list[NewImage]:
    return [
        NewImage(
            path=f"/archive/photo_{i:09d}.jpg",
            sha256=f"{i:064x}",
            size_bytes=100_000,
            width=1024,
            height=768,
            format="JPEG",
            faces=[
                NewFace(
                    box=(100, 100, 220, 220),
                    landmarks=[[120.0, 140.0], [140.0, 140.0], [180.0, 140.0], [200.0, 140.0],
                               [160.0, 180.0]],  # fmt: skip
                    detector="hog",
                    det_score=1.5,
                    box_size=120,
                    sharpness=100.0,
                    yaw=0.0,
                    model_id=model_id,
                    template=rng.standard_normal(128).astype(np.float32),
                    skip_reason=None,
                )
            ],
        )
        for i in range(start, start + n)
    ]


def grow(engine: Engine, held: int, size: int, rng: np.random.Generator) -> None:
    """Write faces `held`..`size` and put them in the collection "bench"."""
    source = engine.catalog.get_source("bench")
    run = engine.catalog.start_run(source.id)
    for start in range(held, size, BATCH):
        batch = synthetic(min(BATCH, size - start), start, rng, engine.model_id)
        engine.catalog.write_batch(run, source, batch)
    ids = [int(i) for i in engine.catalog.indexed_ids() if i > held][::2]
    for start in range(0, len(ids), BATCH):
        engine.catalog.add_members("bench", ids[start : start + BATCH], external_image_id=None)


def exact_top(engine: Engine, face_id: int, k: int) -> list[int]:
    """The baseline: every template of the collection read, opened and scored."""
    query = engine.catalog.templates_of([face_id])[face_id]
    query = query / np.linalg.norm(query)
    ids = np.asarray(engine.catalog.member_face_ids("bench"), dtype=np.int64)
    found, scores = [], []
    for chunk_ids, templates in engine.catalog.iter_templates(ids):
        found.append(chunk_ids)
        scores.append((templates / np.linalg.norm(templates, axis=1, keepdims=True)) @ query)
    all_ids, all_scores = np.concatenate(found), np.concatenate(scores)
    return [int(i) for i in all_ids[np.argsort(-all_scores, kind="stable")[:k]]]


def agree(engine: Engine, face_id: int, exact: list[int]) -> float:
    query = engine.catalog.templates_of([face_id])[face_id][None, :]
    allowed = np.asarray(engine.catalog.member_face_ids("bench"), dtype=np.int64)
    _, ids = engine.index.search(query / np.linalg.norm(query), len(exact), allowed=allowed)
    return len(set(ids[0].tolist()) & set(exact)) / len(exact)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks/results/collection_search.json"
    )
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))

    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("VULTUS_KEY_FILE", f"{tmp}/master.key")
        with Engine.open(Path(tmp) / "data", workers=1) as engine:
            engine.add_source(
                "bench",
                lawful_basis_code="legitimate_interests",
                special_condition="archiving_research",
                purpose="benchmark",
                retention_days=30,
            )
            engine.create_collection("bench", source="bench")
            held = 0
            for size in sizes:
                t0 = time.perf_counter()
                grow(engine, held, size, rng)
                write_s = time.perf_counter() - t0
                held = size
                len(engine.index)  # the index takes the new faces in before any timing
                members = engine.collection_faces("bench", limit=args.queries)
                served, baseline, agreement = [], [], []
                for member in members:
                    t0 = time.perf_counter()
                    engine.search_collection(
                        "bench", face_uuid=member.uuid, purpose=PURPOSE, top_k=80
                    )
                    served.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    exact = exact_top(engine, member.face_id, 80)
                    baseline.append(time.perf_counter() - t0)
                    agreement.append(agree(engine, member.face_id, exact[:10]))
                n = len(engine.catalog.member_face_ids("bench"))
                for variant, took in (("index, filtered", served), ("templates", baseline)):
                    took.sort()
                    rows.append(
                        {
                            "variant": variant,
                            "collection_faces": n,
                            "gallery_faces": size,
                            "queries": len(took),
                            "p50_ms": 1000 * statistics.median(took),
                            "p90_ms": 1000 * took[int(0.9 * (len(took) - 1))],
                            "agreement_top10": statistics.mean(agreement),
                            "fill_s": write_s,
                            "load_avg": os.getloadavg()[0],
                        }
                    )

    table = Table(title="Searching a Rekognition collection (SearchFaces, top 80)")
    for col in ("variant", "collection", "gallery", "queries", "p50 ms", "p90 ms", "top-10 agree",
                "load avg"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["variant"],
            f"{r['collection_faces']:,}",
            f"{r['gallery_faces']:,}",
            str(r["queries"]),
            f"{r['p50_ms']:.1f}",
            f"{r['p90_ms']:.1f}",
            f"{r['agreement_top10']:.3f}",
            f"{r['load_avg']:.1f}",
        )
    Console(width=120).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "index": "Flat (the default: exact)",
                "vultus": __version__,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
