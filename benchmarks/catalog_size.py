"""What the catalog holds per face, in bytes, on SQLite and PostgreSQL, and how fast it takes them.

    python benchmarks/catalog_size.py [--faces 100000] [--url postgresql+psycopg://...]
                                      [--out benchmarks/results/catalog_size.json]

Writes synthetic faces through the catalog's own write path (`Catalog.write_batch`): one face
per image, five landmarks rounded as ingest rounds them, a typical archive path, and a real
AES-GCM sealed 128-d template. Then measures each table with its indexes: on PostgreSQL with
`pg_column_size` and `pg_total_relation_size` after VACUUM ANALYZE, on SQLite with `dbstat`
after VACUUM. Without --url a private PostgreSQL is started from Debian's binaries, as the tests
do (tests/postgres.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from vultus import __version__
from vultus.catalog import Catalog, NewFace, NewImage, open_catalog
from vultus.crypto import KeyRing

REPO = Path(__file__).resolve().parent.parent
BATCH = 500


def synthetic_images(n: int, start: int, rng: np.random.Generator) -> list[NewImage]:
    images = []
    for i in range(start, start + n):
        x, y = rng.uniform(50, 700, 2)
        landmarks = (np.array([x, y]) + rng.uniform(0, 120, (5, 2))).round(1).tolist()
        images.append(
            NewImage(
                path=f"/archive/collections/{i // 10_000:04d}/photo_{i:09d}.jpg",
                sha256=f"{i:064x}",
                size_bytes=int(rng.integers(50_000, 5_000_000)),
                width=1024,
                height=768,
                format="JPEG",
                faces=[
                    NewFace(
                        box=(int(x), int(y), int(x) + 120, int(y) + 120),
                        landmarks=landmarks,
                        detector="hog",
                        det_score=float(rng.uniform(0, 3)),
                        box_size=120,
                        sharpness=float(rng.uniform(10, 500)),
                        yaw=float(rng.uniform(-40, 40)),
                        model_id="dlib-resnet-v1",
                        template=rng.standard_normal(128).astype(np.float32),
                        skip_reason=None,
                    )
                ],
            )
        )
    return images


def fill(catalog: Catalog, faces: int) -> float:
    """Write `faces` faces; returns faces written per second."""
    rng = np.random.default_rng(0)
    catalog.add_source(
        "bench",
        lawful_basis_code="legitimate_interests",
        special_condition="archiving_research",
        purpose="benchmark",
        retention_days=30,
    )
    source = catalog.get_source("bench")
    run = catalog.start_run(source.id)
    took = 0.0
    for start in range(0, faces, BATCH):
        batch = synthetic_images(min(BATCH, faces - start), start, rng)
        t0 = time.perf_counter()
        catalog.write_batch(run, source, batch)
        took += time.perf_counter() - t0
    return faces / took


def measure_postgresql(catalog: Catalog, faces: int) -> dict[str, Any]:
    with catalog.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE faces, images")
        row = conn.exec_driver_sql(
            "SELECT avg(pg_column_size(f.*)), avg(pg_column_size(f.template)),"
            " avg(pg_column_size(f.landmarks)) FROM faces f"
        ).one()
        image_row = conn.exec_driver_sql("SELECT avg(pg_column_size(i.*)) FROM images i").scalar()
        sizes = {
            table: conn.exec_driver_sql(
                f"SELECT pg_relation_size('{table}'), pg_indexes_size('{table}'),"
                f" pg_total_relation_size('{table}')"
            ).one()
            for table in ("faces", "images")
        }
    total = sum(s[2] for s in sizes.values())
    return {
        "face_row_bytes": float(row[0]),
        "template_bytes": float(row[1]),
        "landmarks_bytes": float(row[2]),
        "image_row_bytes": float(image_row),
        "faces_heap_per_face": sizes["faces"][0] / faces,
        "faces_indexes_per_face": sizes["faces"][1] / faces,
        "images_total_per_face": sizes["images"][2] / faces,
        "total_per_face": total / faces,
    }


def measure_sqlite(catalog: Catalog, faces: int) -> dict[str, Any]:
    with catalog.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM")
        pages = dict(
            conn.exec_driver_sql("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").all()
        )
        row = conn.exec_driver_sql(
            "SELECT avg(length(template)), avg(length(landmarks)) FROM faces"
        ).one()
    # A table's own pages, plus its indexes (autoindexes and ix_<table>_*).
    faces_indexes = sum(
        v for k, v in pages.items() if k.startswith(("ix_faces", "sqlite_autoindex_faces"))
    )
    images_all = sum(
        v
        for k, v in pages.items()
        if k == "images" or k.startswith(("ix_images", "sqlite_autoindex_images"))
    )
    return {
        "face_row_bytes": None,
        "template_bytes": float(row[0]),
        "landmarks_bytes": float(row[1]),
        "image_row_bytes": None,
        "faces_heap_per_face": pages["faces"] / faces,
        "faces_indexes_per_face": faces_indexes / faces,
        "images_total_per_face": images_all / faces,
        "total_per_face": (pages["faces"] + faces_indexes + images_all) / faces,
    }


@contextmanager
def postgres_url(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    sys.path.insert(0, str(REPO / "tests"))  # the tests' private-server helper
    from postgres import postgres_bin, private_server

    bin_dir = postgres_bin()
    if bin_dir is None:
        raise SystemExit("no PostgreSQL binaries under /usr/lib/postgresql: pass --url")
    with private_server(bin_dir) as server:
        yield server.url(server.create_database())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--url", help="an empty PostgreSQL database (default: a private server)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/catalog_size.json")
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, postgres_url(args.url) as pg:
        for backend, url, measure in (
            ("sqlite", f"sqlite:///{tmp}/catalog.db", measure_sqlite),
            ("postgresql", pg, measure_postgresql),
        ):
            catalog = open_catalog(url, KeyRing.generate())
            rate = fill(catalog, args.faces)
            rows.append(
                {
                    "backend": backend,
                    "faces": args.faces,
                    "write_faces_per_s": rate,
                    **measure(catalog, args.faces),
                }
            )
            catalog.close()

    table = Table(title=f"Catalog bytes per face ({args.faces:,} faces, one per image)")
    for col in (
        "backend",
        "write faces/s",
        "template B",
        "face row B",
        "faces heap B/face",
        "faces indexes B/face",
        "images B/face",
        "total B/face",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["backend"],
            f"{r['write_faces_per_s']:,.0f}",
            f"{r['template_bytes']:.0f}",
            "-" if r["face_row_bytes"] is None else f"{r['face_row_bytes']:.0f}",
            f"{r['faces_heap_per_face']:.0f}",
            f"{r['faces_indexes_per_face']:.0f}",
            f"{r['images_total_per_face']:.0f}",
            f"{r['total_per_face']:.0f}",
        )
    Console(width=120).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": platform.platform(),
                "vultus": __version__,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
