"""The whole story on a PostgreSQL catalog: ingest the dev photos, search by a photo, erase a
person by selfie, and reopen with the index rebuilt from PostgreSQL alone."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import PURPOSE, add_test_source
from vultus.catalog.models import Face, Image
from vultus.engine import Engine
from vultus.errors import VultusError

KIT_SELFIE = "images/Kit_Harington/Kit_Harington_1.jpeg"


def dead_tuples(engine: Engine, table: str) -> int:
    with engine.catalog.engine.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        sql = f"SELECT dead_tuple_count FROM pgstattuple('{table}')"
        return int(conn.exec_driver_sql(sql).scalar_one())


def test_ingest_search_erase_and_reopen_on_postgresql(
    postgres_url: str, dev_photos: list[tuple[Path, str]], faces_dir: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    selfie = faces_dir / "dev" / KIT_SELFIE
    photos = [path for path, _ in dev_photos if path != selfie]
    kit_photos = {str(path) for path, who in dev_photos if who == "Kit_Harington"} - {str(selfie)}
    rose = faces_dir / "dev" / "images" / "Rose_Leslie" / "Rose_Leslie_1.jpg"

    with Engine.open(data_dir, workers=1, catalog_url=postgres_url) as engine:
        assert engine.catalog.engine.dialect.name == "postgresql"
        add_test_source(engine)
        summary = engine.add(photos, source="test")
        assert summary.errors == [] and summary.images_added == len(photos)
        # The catalog lives in PostgreSQL; the data directory keeps only the index and files.
        assert not (data_dir / "catalog.db").exists()

        # Given a selfie, the search finds that person's other photos, and only those.
        found = engine.search(selfie, purpose=PURPOSE)
        assert {m.image_path for m in found.matches if m.is_match} == kit_photos
        rose_faces = {m.face_id for m in engine.search(rose, purpose=PURPOSE).matches if m.is_match}
        indexed_before = engine.catalog.counts()["faces_indexed"]

        # Erasure by selfie: the faces, their images and their sealed templates leave the
        # catalog, and VACUUM reclaims the dead rows at once.
        plan = engine.find_person(selfie)
        kit = plan.face_ids
        assert len(kit) == len(kit_photos)
        with engine.catalog.session() as s:
            sealed = set(s.scalars(select(Face.template).where(Face.id.in_(kit))))
        receipt = engine.erase(plan, request_ref="R-PG")
        assert receipt.faces_erased == len(kit) and receipt.verify(engine.keyring)
        with engine.catalog.session() as s:
            assert list(s.scalars(select(Face.id).where(Face.id.in_(kit)))) == []
            assert list(s.scalars(select(Image.path).where(Image.path.in_(kit_photos)))) == []
            assert not sealed & set(s.scalars(select(Face.template)))
        assert dead_tuples(engine, "faces") == 0
        assert engine.catalog.counts()["faces_indexed"] == indexed_before - len(kit)
        assert not engine.search(selfie, purpose=PURPOSE).found
        assert engine.audit.verify().ok

    # Reopened without its index file: the index is rebuilt from the PostgreSQL catalog.
    engine.settings.index_path.unlink()
    with Engine.open(data_dir, workers=1, catalog_url=postgres_url) as reopened:
        assert {
            m.face_id for m in reopened.search(rose, purpose=PURPOSE).matches if m.is_match
        } == rose_faces
        assert not reopened.search(selfie, purpose=PURPOSE).found
        assert reopened.index.fingerprint() == reopened.catalog.fingerprint(reopened.model_id)
        assert reopened.settings.index_path.exists()
        assert reopened.audit.verify().ok


def test_concurrent_searches_and_writes_on_postgresql(
    postgres_url: str, gallery_split: tuple[list[Path], list[tuple[Path, str]]], tmp_path: Path
) -> None:
    """A server's threads search and write at once: every search is answered and audited, and
    the audit chain stays whole (its appenders queue on the head row's lock)."""
    gallery, probes = gallery_split
    with Engine.open(tmp_path / "data", workers=1, catalog_url=postgres_url) as engine:
        add_test_source(engine)
        engine.add(gallery, source="test")
        searches_before = len(engine.audit.entries(action="search"))
        failures: list[BaseException] = []

        def search(probe: Path) -> None:
            try:
                engine.search(probe, purpose=PURPOSE)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                failures.append(exc)

        def write(n: int) -> None:
            try:
                engine.catalog.create_subject(f"person {n}")
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                failures.append(exc)

        threads = [threading.Thread(target=search, args=(p,)) for p, _ in probes[:8]]
        threads += [threading.Thread(target=write, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        assert len(engine.audit.entries(action="search")) == searches_before + 8
        assert engine.catalog.counts()["subjects"] == 8
        assert engine.audit.verify().ok


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg"])
def test_a_new_data_directory_on_an_existing_catalog_needs_its_key(
    postgres_url: str, tmp_path: Path, scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catalog that exists in PostgreSQL is not new, even from a fresh data directory: its
    master key is not silently generated again."""
    url = postgres_url.replace("postgresql+psycopg", scheme)
    with Engine.open(tmp_path / "first", workers=1, catalog_url=url):
        pass
    monkeypatch.setenv("VULTUS_KEY_FILE", str(tmp_path / "elsewhere" / "missing.key"))
    with pytest.raises(VultusError) as err:
        Engine.open(tmp_path / "second", workers=1, catalog_url=url)
    assert getattr(err.value, "code", None) == "key_missing"
    assert not (tmp_path / "elsewhere" / "missing.key").exists()
