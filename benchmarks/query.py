"""End-to-end query latency: `Engine.search(photo)` on a 1 MP photo, warm, against a catalog of
N synthetic faces (default 1,000,000), with the index the "auto" setting picks.

    python benchmarks/query.py [--faces 1000000] [--photo PATH] [--runs 20]

The catalog rows are real (SQLite, encrypted templates) and the index is built by the Engine
from them, so the figure includes decoding, detection, alignment, embedding, index search,
catalog lookups and the audit write. Prints a table and writes benchmarks/results/query.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt
from PIL import Image
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, insert, select

from vultus import __version__
from vultus.catalog.models import Face
from vultus.catalog.models import Image as ImageRow
from vultus.clock import now
from vultus.engine import Engine

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PHOTO = REPO.parent / "shared" / "faces" / "dev" / "images" / "Barack_Obama"
PURPOSE = "archive research"
CHUNK = 50_000


def fill(
    engine: Engine,
    n: int,
    console: Console,
    *,
    vectors: Iterator[npt.NDArray[np.float32]] | None = None,
    source_name: str = "synthetic",
) -> None:
    """N faces, one per synthetic image, written with bulk inserts (the ingest path would take
    hours here; what is measured is search, not ingest). Random unit vectors unless `vectors`
    yields chunks of templates (e.g. benchmarks/search.py's fitted identities)."""
    rng = np.random.default_rng(0)
    pending = np.empty((0, 128), dtype=np.float32)
    with engine.catalog.session() as s:
        first_id = (s.scalar(select(func.max(ImageRow.id))) or 0) + 1
    known = {s.name: s for s, _, _ in engine.sources()}
    source = known.get(source_name) or engine.add_source(
        source_name,
        lawful_basis_code="legitimate_interests",
        special_condition="archiving_research",
        purpose="benchmark",
        retention_days=30,
    )
    model_id = engine.pipeline.model_id
    engine.catalog.check_model(model_id)
    stamp = now()
    start = time.perf_counter()
    for base in range(0, n, CHUNK):
        m = min(CHUNK, n - base)
        if vectors is None:
            vecs = rng.standard_normal((m, 128)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        else:
            while len(pending) < m:
                pending = np.concatenate([pending, next(vectors)])
            vecs, pending = pending[:m], pending[m:]
        images = [
            {
                "id": first_id + base + i,
                "sha256": f"{first_id + base + i:064x}",
                "path": f"/synthetic/{first_id + base + i}.jpg",
                "size_bytes": 1,
                "width": 250,
                "height": 250,
                "format": "JPEG",
                "source_id": source.id,
                "added_at": stamp,
                "retain_until": stamp + timedelta(days=30),
                "status": "indexed",
            }
            for i in range(m)
        ]
        faces = [
            {
                "image_id": first_id + base + i,
                "left": 70,
                "top": 70,
                "right": 180,
                "bottom": 180,
                "landmarks": [],
                "detector": "hog",
                "det_score": 1.0,
                "box_size": 110,
                "sharpness": 100.0,
                "yaw": 0.0,
                "status": "indexed",
                "skip_reason": None,
                "model_id": model_id,
                "template": engine.catalog.seal(vecs[i]),
                "restricted": False,
            }
            for i in range(m)
        ]
        with engine.catalog.session() as s, s.begin():
            s.execute(insert(ImageRow), images)
            s.execute(insert(Face), faces)
        console.print(f"  {base + m:,} faces written ({time.perf_counter() - start:.0f} s)")


def one_megapixel(photo: Path, out: Path) -> Path:
    with Image.open(photo) as im:
        rgb = im.convert("RGB")
    scale = (1_000_000 / (rgb.width * rgb.height)) ** 0.5
    rgb.resize((round(rgb.width * scale), round(rgb.height * scale))).save(out, quality=92)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--faces", type=int, default=1_000_000)
    parser.add_argument("--photo", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "query.json")
    args = parser.parse_args()
    console = Console()
    photo = args.photo or next(iter(sorted(DEFAULT_PHOTO.glob("*.jpg"))), None)
    if photo is None:
        console.print("[red]no photo: pass --photo[/]")
        raise SystemExit(2)
    faiss.omp_set_num_threads(1)  # one query at a time: threads only add overhead
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("VULTUS_KEY_FILE", str(Path(tmp) / "bench.key"))
        query = one_megapixel(photo, Path(tmp) / "query.jpg")
        with Engine.open(Path(tmp) / "data", workers=1) as engine:
            console.print(f"writing {args.faces:,} synthetic faces …")
            fill(engine, args.faces, console)
            t = time.perf_counter()
            index = engine.rebuild_index()
            build = time.perf_counter() - t
            console.print(f"index {index.factory} built in {build:.0f} s")
            for _ in range(3):
                engine.search(query, purpose=PURPOSE, top_k=10)
            total, analyse = [], []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                engine.pipeline.analyse(query)
                t1 = time.perf_counter()
                engine.search(query, purpose=PURPOSE, top_k=10)
                t2 = time.perf_counter()
                analyse.append(1000 * (t1 - t0))
                total.append(1000 * (t2 - t1))
    row = {
        "faces": args.faces,
        "index": index.factory,
        "nprobe": engine.settings.index_nprobe,
        "p50_ms": round(statistics.median(total), 1),
        "p90_ms": round(sorted(total)[int(0.9 * (len(total) - 1))], 1),
        "analyse_p50_ms": round(statistics.median(analyse), 1),
        "index_build_s": round(build, 1),
    }
    table = Table(title="Engine.search(photo), warm")
    for key in row:
        table.add_column(key)
    table.add_row(*(str(v) for v in row.values()))
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                "vultus": __version__,
                "results": [row],
            },
            indent=2,
        )
    )
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
