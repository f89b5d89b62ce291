"""How fast the catalog takes ingested faces, on SQLite and PostgreSQL: the bulk write path
(`Catalog.write_batch`) against the ORM write path it replaced, interleaved batch by batch.

    python benchmarks/catalog_write.py [--faces 50000] [--batch 500] [--url postgresql+psycopg://...]
                                       [--out benchmarks/results/catalog_write.json]

The faces are benchmarks/catalog_size.py's synthetic ones (one per image, five landmarks, a
typical archive path, a real AES-GCM sealed template). Each backend gets two fresh catalogs, one
per path; batches alternate between them, so that a load spike on this shared machine hits both.
The ORM path is kept here as it was (an object per image and per face, one flush) to measure the
ratio. Both go through the same triggers (the change feed) and seal every template. Without
--url a private PostgreSQL is started from Debian's binaries, as the tests do.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from rich.console import Console
from rich.table import Table

from catalog_size import synthetic_images  # benchmarks/catalog_size.py
from vultus import __version__
from vultus.catalog import Catalog, NewImage, open_catalog
from vultus.catalog.models import Face, Image, IngestRun, Source
from vultus.clock import now
from vultus.crypto import KeyRing

REPO = Path(__file__).resolve().parent.parent


def orm_write_batch(catalog: Catalog, run_id: int, source: Source, images: list[NewImage]) -> int:
    """The write path before the bulk inserts: an ORM object per row, flushed together."""
    stamp = now()
    with catalog.session() as s, s.begin():
        faces = []
        for item in images:
            image = Image(
                sha256=item.sha256,
                path=item.path,
                size_bytes=item.size_bytes,
                width=item.width,
                height=item.height,
                format=item.format,
                source_id=source.id,
                added_at=stamp,
                retain_until=stamp + timedelta(days=source.retention_days),
                status="indexed",
                ingest_run_id=run_id,
            )
            s.add(image)
            for nf in item.faces:
                assert nf.template is not None
                face = Face(
                    image=image,
                    left=nf.box[0],
                    top=nf.box[1],
                    right=nf.box[2],
                    bottom=nf.box[3],
                    landmarks=nf.landmarks,
                    detector=nf.detector,
                    det_score=nf.det_score,
                    box_size=nf.box_size,
                    sharpness=nf.sharpness,
                    yaw=nf.yaw,
                    status="indexed",
                    skip_reason=nf.skip_reason,
                    model_id=nf.model_id,
                    template=catalog.seal(nf.template),
                )
                s.add(face)
                faces.append(face)
        s.execute(
            IngestRun.__table__.update()
            .where(IngestRun.id == run_id)
            .values(images_added=IngestRun.images_added + len(images))
        )
        s.flush()
        return len([f.id for f in faces])


def prepared(url: str) -> tuple[Catalog, int, Source]:
    catalog = open_catalog(url, KeyRing.generate())
    catalog.add_source(
        "bench",
        lawful_basis_code="legitimate_interests",
        special_condition="archiving_research",
        purpose="benchmark",
        retention_days=30,
    )
    source = catalog.get_source("bench")
    return catalog, catalog.start_run(source.id), source


def race(urls: dict[str, str], faces: int, batch: int) -> dict[str, float]:
    """Faces per second of each path, batches alternating between the two catalogs."""
    rng = np.random.default_rng(0)
    bulk, bulk_run, bulk_source = prepared(urls["bulk"])
    orm, orm_run, orm_source = prepared(urls["orm"])
    took = {"bulk": 0.0, "orm": 0.0, "bulk_cpu": 0.0, "orm_cpu": 0.0}
    for start in range(0, faces, batch):
        images = synthetic_images(min(batch, faces - start), start, rng)
        t, c = time.perf_counter(), time.process_time()
        written = len(bulk.write_batch(bulk_run, bulk_source, images))
        took["bulk"] += time.perf_counter() - t
        took["bulk_cpu"] += time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        assert orm_write_batch(orm, orm_run, orm_source, images) == written
        took["orm"] += time.perf_counter() - t
        took["orm_cpu"] += time.process_time() - c
    # Both paths fed the change feed one entry per face.
    for catalog in (bulk, orm):
        assert catalog.changes_since(0)[1].keys() == set(catalog.indexed_ids().tolist())
        catalog.close()
    return {path: faces / seconds for path, seconds in took.items()}


@contextmanager
def postgres_databases(url: str | None) -> Iterator[dict[str, str]]:
    """Two empty databases, one per path: on the server at `url` (each path gets a fresh
    database made there), or on a private server started as the tests start theirs."""
    if url:
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            names = {path: f"vultus_bench_{path}_{os.getpid()}" for path in ("bulk", "orm")}
            for name in names.values():
                conn.execute(f"CREATE DATABASE {name}")
        base = url.rsplit("/", 1)[0]
        yield {path: f"{base}/{name}" for path, name in names.items()}
        return
    sys.path.insert(0, str(REPO / "tests"))  # the tests' private-server helper
    from postgres import postgres_bin, private_server

    bin_dir = postgres_bin()
    if bin_dir is None:
        raise SystemExit("no PostgreSQL binaries under /usr/lib/postgresql: pass --url")
    with private_server(bin_dir) as server:
        yield {path: server.url(server.create_database()) for path in ("bulk", "orm")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500, help="images per write (ingest's)")
    parser.add_argument(
        "--url", help="a PostgreSQL server where databases may be created (default: private)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/catalog_write.json")
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp, postgres_databases(args.url) as pg:
        backends = {
            "sqlite": {path: f"sqlite:///{tmp}/{path}.db" for path in ("bulk", "orm")},
            "postgresql": pg,
        }
        for backend, urls in backends.items():
            rates = race(urls, args.faces, args.batch)
            rows.append(
                {
                    "backend": backend,
                    "faces": args.faces,
                    "batch": args.batch,
                    "bulk_faces_per_s": rates["bulk"],
                    "orm_faces_per_s": rates["orm"],
                    "ratio": rates["bulk"] / rates["orm"],
                    # Per CPU-second of this process: what a core would take, whatever the
                    # machine's load (on PostgreSQL the server's own work is not counted).
                    "bulk_faces_per_cpu_s": rates["bulk_cpu"],
                    "orm_faces_per_cpu_s": rates["orm_cpu"],
                }
            )
    load = (load_before + os.getloadavg()[0]) / 2

    table = Table(
        title=f"Catalog writes ({args.faces:,} faces, {args.batch} per batch; load {load:.1f})"
    )
    for col in ("backend", "bulk faces/s", "ORM faces/s", "ratio", "bulk /CPU-s", "ORM /CPU-s"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["backend"],
            f"{r['bulk_faces_per_s']:,.0f}",
            f"{r['orm_faces_per_s']:,.0f}",
            f"{r['ratio']:.1f}x",
            f"{r['bulk_faces_per_cpu_s']:,.0f}",
            f"{r['orm_faces_per_cpu_s']:,.0f}",
        )
    Console(width=100).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "load_average": round(load, 2),
                "vultus": __version__,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
