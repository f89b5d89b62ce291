"""The catalog's schema comes from its migrations, and they match the models."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from vultus.catalog import open_catalog
from vultus.catalog.models import Base


def test_migrations_create_exactly_the_models_schema(tmp_path: Path) -> None:
    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    with catalog.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_opening_twice_migrates_once_and_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    first = open_catalog(url)
    first.add_source(
        "archive",
        lawful_basis_code="consent",
        special_condition="explicit_consent",
        purpose="p",
        retention_days=10,
    )
    first.close()
    again = open_catalog(url)
    assert [s.name for s, _, _ in again.list_sources()] == ["archive"]
    assert "alembic_version" in inspect(again.engine).get_table_names()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    catalog = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    with catalog.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
