"""The catalog's schema comes from its migrations, and they match the models, on SQLite and on
PostgreSQL alike (`catalog_url` runs each test on both; see tests/postgres.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, update
from sqlalchemy.pool import QueuePool

from vultus.catalog import NewFace, NewImage, open_catalog
from vultus.catalog.models import Base, Face, Image, IndexChange
from vultus.config import Settings
from vultus.crypto import KeyRing
from vultus.errors import ConfigError


def add_source(catalog_url: str, name: str = "archive") -> None:
    open_catalog(catalog_url).add_source(
        name,
        lawful_basis_code="consent",
        special_condition="explicit_consent",
        purpose="p",
        retention_days=10,
    )


def new_image(n: int, faces: int) -> NewImage:
    rng = np.random.default_rng(n)
    return NewImage(
        path=f"photo-{n}.jpg",
        sha256=f"{n:064x}",
        size_bytes=1000,
        width=100,
        height=100,
        format="JPEG",
        faces=[
            NewFace(
                box=(0, 0, 50, 50),
                landmarks=[[1.0, 2.0]] * 5,
                detector="hog",
                det_score=1.0,
                box_size=50,
                sharpness=10.0,
                yaw=0.0,
                model_id="test-model",
                template=rng.standard_normal(128).astype(np.float32),
                skip_reason=None,
            )
            for _ in range(faces)
        ],
    )


def test_migrations_create_exactly_the_models_schema(catalog_url: str) -> None:
    catalog = open_catalog(catalog_url)
    with catalog.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_opening_twice_migrates_once_and_keeps_data(catalog_url: str) -> None:
    add_source(catalog_url)
    again = open_catalog(catalog_url)
    assert [s.name for s, _, _ in again.list_sources()] == ["archive"]
    assert "alembic_version" in inspect(again.engine).get_table_names()


def test_faces_round_trip_and_erasure_cascades(catalog_url: str) -> None:
    """Templates come back as sealed; erasing an image's last face removes the image, and a
    restricted face leaves the searchable set."""
    catalog = open_catalog(catalog_url, KeyRing.generate())
    add_source(catalog_url)
    source = catalog.get_source("archive")
    run = catalog.start_run(source.id)
    images = [new_image(1, faces=2), new_image(2, faces=1)]
    added = catalog.write_batch(run, source, images)
    ids = [face_id for face_id, _ in added]
    stored = catalog.templates_of(ids)
    for face_id, template in added:
        assert np.array_equal(stored[face_id], template)

    assert catalog.set_restricted([ids[0]], True) == [ids[0]]
    assert catalog.indexed_ids().tolist() == ids[1:]

    erased = catalog.erase_faces([ids[0], ids[2]])
    catalog.scrub()
    assert erased.face_ids == [ids[0], ids[2]]
    assert [path for _, path, _ in erased.images_removed] == ["photo-2.jpg"]
    assert [path for _, path, _ in erased.images_kept] == ["photo-1.jpg"]
    with catalog.session() as s:
        assert list(s.scalars(select(Face.id))) == [ids[1]]
        assert list(s.scalars(select(Image.path))) == ["photo-1.jpg"]


def test_every_change_to_the_searchable_faces_is_in_the_change_feed(catalog_url: str) -> None:
    """What the index of every process catches up from: recorded by the database itself, in
    the transaction of the change, whichever code made it."""
    catalog = open_catalog(catalog_url, KeyRing.generate())
    add_source(catalog_url)
    source = catalog.get_source("archive")
    start = catalog.change_head()
    added = catalog.write_batch(catalog.start_run(source.id), source, [new_image(1, faces=3)])
    ids = [face_id for face_id, _ in added]
    catalog.set_restricted([ids[0]], True)
    catalog.erase_faces([ids[1]])
    with catalog.session() as s, s.begin():  # a write that no catalog method made
        s.execute(update(Face).where(Face.id == ids[2]).values(status="skipped"))
    with pytest.raises(RuntimeError), catalog.session() as s, s.begin():
        s.execute(update(Face).where(Face.id == ids[2]).values(status="indexed"))
        raise RuntimeError("rolled back: no record of it either")
    with catalog.session() as s, s.begin():
        s.execute(update(Face).values(sharpness=1.0))  # not about searchability: no record
    head, changed = catalog.changes_since(start)
    assert head == catalog.change_head() > start
    assert changed == {ids[0]: False, ids[1]: True, ids[2]: False}
    with catalog.session() as s:
        ops = [(c.face_id, c.op) for c in s.scalars(select(IndexChange).order_by(IndexChange.seq))]
    assert ops == [(i, "I") for i in ids] + [(ids[0], "U"), (ids[1], "D"), (ids[2], "U")]
    assert catalog.changes_since(head) == (head, {})


def test_batches_written_at_once_keep_every_face_with_its_image(catalog_url: str) -> None:
    """Ingest writes in bulk, with ids allocated up front: writers running at once never share
    an id, every face lands under its own image, duplicates and faceless photos are counted,
    and a row written afterwards by any other path gets an id of its own."""
    catalog = open_catalog(catalog_url, KeyRing.generate())
    add_source(catalog_url)
    source = catalog.get_source("archive")
    run = catalog.start_run(source.id)
    written: dict[int, list[tuple[int, np.ndarray]]] = {}
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for b in range(3):
                n = 100 * worker + 10 * b
                batch = [new_image(n + i, faces=i % 3) for i in range(4)]
                written[n] = catalog.write_batch(run, source, batch + [new_image(n, faces=1)])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    added = [pair for pairs in written.values() for pair in pairs]
    ids = [face_id for face_id, _ in added]
    assert len(ids) == len(set(ids)) == 4 * 3 * (0 + 1 + 2 + 0)
    stored = catalog.templates_of(ids)
    assert all(np.array_equal(stored[face_id], template) for face_id, template in added)
    with catalog.session() as s:
        rows = s.execute(select(Face.id, Image.path).join(Image, Image.id == Face.image_id)).all()
    # new_image(n) seeds its templates with n: each face sits under the photo it came from.
    for face_id, path in rows:
        n = int(path.removeprefix("photo-").removesuffix(".jpg"))
        assert any(np.array_equal(stored[face_id], t.template) for t in new_image(n, 2).faces)
    summary, _ = catalog.get_run(run)
    assert (summary.images_added, summary.images_duplicate) == (4 * 3 * 4, 4 * 3)
    assert (summary.images_no_face, summary.faces_indexed) == (4 * 3 * 2, len(ids))
    assert catalog.changes_since(0)[1].keys() == set(ids)
    with catalog.session() as s, s.begin():
        before = max(s.scalars(select(Image.id)))
        later = Image(
            sha256="f" * 64,
            path="later.jpg",
            size_bytes=1,
            width=1,
            height=1,
            format="JPEG",
            source_id=source.id,
            added_at=summary.started_at,
            retain_until=summary.started_at,
            status="no_faces",
        )
        s.add(later)
        s.flush()
        assert later.id > before


def test_the_catalog_serves_many_threads_at_once(catalog_url: str) -> None:
    """The server calls the catalog from many threads: concurrent writers and readers all
    succeed, and every write lands."""
    catalog = open_catalog(catalog_url)
    failures: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(5):
                catalog.create_subject(f"person {worker}-{i}")
                catalog.list_subjects()
                catalog.counts()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert catalog.counts()["subjects"] == 40


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    with catalog.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_postgresql_uses_a_checked_connection_pool(postgres_url: str) -> None:
    catalog = open_catalog(postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    assert catalog.engine.dialect.driver == "psycopg"
    assert isinstance(catalog.engine.pool, QueuePool)
    assert catalog.engine.pool._pre_ping  # type: ignore[attr-defined]


def test_postgresql_scrub_reclaims_every_dead_row(postgres_url: str) -> None:
    """After an erasure, VACUUM leaves no dead tuple of the faces behind (autovacuum could
    take minutes to hours)."""
    catalog = open_catalog(postgres_url, KeyRing.generate())
    add_source(postgres_url)
    source = catalog.get_source("archive")
    added = catalog.write_batch(
        catalog.start_run(source.id), source, [new_image(n, faces=3) for n in range(20)]
    )
    catalog.erase_faces([face_id for face_id, _ in added[::2]])
    with catalog.engine.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pgstattuple")

    def dead(table: str) -> int:
        with catalog.engine.connect() as conn:
            return int(
                conn.exec_driver_sql(
                    f"SELECT dead_tuple_count FROM pgstattuple('{table}')"
                ).scalar_one()
            )

    assert dead("faces") > 0
    catalog.scrub()
    assert dead("faces") == 0
    assert dead("images") == 0


def test_postgresql_refuses_an_overlong_value_clearly(postgres_url: str) -> None:
    """SQLite ignores VARCHAR lengths; PostgreSQL enforces them. The user gets a clear error
    and the catalog is unchanged."""
    catalog = open_catalog(postgres_url)
    with pytest.raises(ConfigError) as err:
        catalog.create_subject("x" * 300)
    assert err.value.code == "value_too_long"
    assert "nothing was written" in err.value.message
    assert catalog.list_subjects() == []

    # Ingest's bulk path (COPY) says the same, and writes nothing of the batch either.
    catalog = open_catalog(postgres_url, KeyRing.generate())
    add_source(postgres_url)
    source = catalog.get_source("archive")
    run = catalog.start_run(source.id)
    bad = new_image(2, faces=1)
    bad = NewImage(**{**bad.__dict__, "format": "X" * 40})
    with pytest.raises(ConfigError) as err:
        catalog.write_batch(run, source, [new_image(1, faces=1), bad])
    assert err.value.code == "value_too_long"
    assert catalog.indexed_ids().size == 0 and catalog.get_run(run)[0].images_added == 0


def test_an_unreachable_catalog_is_named_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://vultus:s3cret@/vultus?host={tmp_path}&port=1"
    with pytest.raises(ConfigError) as err:
        open_catalog(url)
    assert err.value.code == "catalog_unavailable"
    assert "s3cret" not in err.value.message
    assert "***" in err.value.message


def test_an_unsupported_catalog_url_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        open_catalog("mysql://vultus@localhost/vultus")
    assert err.value.code == "catalog_url"


def test_catalog_url_comes_from_the_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings.load(tmp_path).catalog_url == f"sqlite:///{tmp_path / 'catalog.db'}"
    (tmp_path / "vultus.toml").write_text('catalog_url = "postgresql://db/from-file"\n')
    assert Settings.load(tmp_path).catalog_url == "postgresql://db/from-file"
    monkeypatch.setenv("VULTUS_CATALOG_URL", "postgresql://db/from-env")
    assert Settings.load(tmp_path).catalog_url == "postgresql://db/from-env"
