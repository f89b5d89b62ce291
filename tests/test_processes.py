"""Several processes on one data directory: a server and CLI commands beside it.

Two Engines on one data directory in this process stand for two processes (their locks are on
separate open files, so they exclude each other as two processes would); the last test starts
a real `vultus serve` on loopback.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PURPOSE
from vultus.engine import Engine
from vultus.index.backends import INDEX_AAD


@pytest.fixture
def data(gallery_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the session gallery, under a key file of its own: tests here rotate keys,
    which must not change the key every other test directory was sealed with."""
    shutil.copy(os.environ["VULTUS_KEY_FILE"], tmp_path / "own.key")
    os.chmod(tmp_path / "own.key", 0o600)
    monkeypatch.setenv("VULTUS_KEY_FILE", str(tmp_path / "own.key"))
    shutil.copytree(gallery_dir, tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture
def two(data: Path) -> Iterator[tuple[Engine, Engine]]:
    """(server, cli): two engines open on one data directory."""
    with Engine.open(data, workers=1) as server, Engine.open(data, workers=1) as cli:
        yield server, cli


def saved_ids(engine: Engine) -> set[int]:
    """The face ids in the index file on disk."""
    from vultus.crypto import read_encrypted_file
    from vultus.index.faiss_index import FaissIndex

    data = read_encrypted_file(engine.settings.index_path, engine.keyring, aad=INDEX_AAD)
    return set(FaissIndex.from_bytes(data).ids().tolist())


def test_an_erasure_by_the_cli_is_never_written_back_by_the_server(
    two: tuple[Engine, Engine], gallery_split: tuple[list[Path], list]
) -> None:
    server, cli = two
    photo = gallery_split[0][0]
    before = server.search(photo, purpose=PURPOSE)
    assert before.found  # the server's index is in memory now

    plan = cli.find_person(photo)
    erased = set(plan.face_ids)
    assert erased
    cli.erase(plan)
    assert not erased & saved_ids(cli)

    # The server's next save (any write does one) must not bring the erased faces back.
    server.save_index()
    assert not erased & saved_ids(server)
    # Nor may its searches find them.
    after = server.search(photo, purpose=PURPOSE)
    assert not erased & {m.face_id for m in after.matches}


def test_faces_added_by_the_cli_are_found_by_the_running_server(
    two: tuple[Engine, Engine], gallery_split: tuple[list[Path], list]
) -> None:
    server, cli = two
    probe, _ = gallery_split[1][0]
    server.search(probe, purpose=PURPOSE)  # loaded before the CLI adds the photo
    summary = cli.add([probe], source="test")
    assert summary.faces_indexed >= 1

    result = server.search(probe, purpose=PURPOSE)
    assert result.found and result.matches[0].distance < 1e-3
    # And the server's own save keeps them.
    server.save_index()
    added = {m.face_id for m in result.matches if m.distance < 1e-3}
    assert added <= saved_ids(server)


def test_a_restriction_by_one_process_hides_the_face_in_the_other(
    two: tuple[Engine, Engine], gallery_split: tuple[list[Path], list]
) -> None:
    server, cli = two
    photo = gallery_split[0][0]
    face_id = server.search(photo, purpose=PURPOSE).matches[0].face_id
    cli.restrict(face_ids=[face_id], reason="accuracy contested")
    assert face_id not in {m.face_id for m in server.search(photo, purpose=PURPOSE).matches}
    cli.restrict(face_ids=[face_id], reason="resolved", lift=True)
    assert server.search(photo, purpose=PURPOSE).matches[0].face_id == face_id


def test_a_reused_face_id_never_keeps_an_erased_template(
    two: tuple[Engine, Engine], gallery_split: tuple[list[Path], list]
) -> None:
    """SQLite gives a new row the id of a deleted last row: the index must drop the erased
    person's vector under that id and hold the new face's."""
    server, cli = two
    gallery = gallery_split[0]
    server.search(gallery[0], purpose=PURPOSE)
    last = int(cli.catalog.indexed_ids().max())
    cli.delete_faces([last])
    newcomer = gallery_split[1][0][0]
    cli.add([newcomer], source="test")
    assert last in set(cli.catalog.indexed_ids().tolist())  # the id came back
    result = server.search(newcomer, purpose=PURPOSE)
    assert result.matches[0].face_id == last and result.matches[0].distance < 1e-3
    assert len(server.index) == len(cli.catalog.indexed_ids())


def test_a_process_far_behind_the_change_feed_reloads_the_saved_index(
    two: tuple[Engine, Engine], gallery_split: tuple[list[Path], list], monkeypatch
) -> None:
    from vultus.catalog import changes

    server, cli = two
    photo = gallery_split[0][0]
    server.search(photo, purpose=PURPOSE)
    monkeypatch.setattr(changes, "KEEP_CHANGES", 0)  # prune everything the file reflects
    plan = cli.find_person(photo)
    cli.erase(plan)
    assert cli.catalog.meta_int(changes.PRUNED_THROUGH)
    after = server.search(photo, purpose=PURPOSE)
    assert not set(plan.face_ids) & {m.face_id for m in after.matches}
    assert len(server.index) == len(cli.catalog.indexed_ids())
