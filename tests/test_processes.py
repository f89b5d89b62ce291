"""Several processes on one data directory: a server and CLI commands beside it.

Two Engines on one data directory in this process stand for two processes (their locks are on
separate open files, so they exclude each other as two processes would); the last test starts
a real `vultus serve` on loopback.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import PURPOSE
from vultus import audit as actions
from vultus.crypto import read_key_file
from vultus.engine import Engine
from vultus.errors import VultusError
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


# -- key rotation --------------------------------------------------------------------------------
def key_changes(engine: Engine) -> list[dict]:
    return [
        e.details
        for e in engine.audit.entries(action=actions.KEY_CHANGE)
        if "templates" in e.details
    ]


def test_a_key_rotation_is_refused_while_a_server_has_the_data_directory_open(
    two: tuple[Engine, Engine], gallery_split: tuple[list[Path], list]
) -> None:
    server, cli = two
    key_file = Path(os.environ["VULTUS_KEY_FILE"])
    before = key_file.read_bytes()
    with pytest.raises(VultusError, match="another Vultus process has it open") as refused:
        cli.rotate_keys()
    assert refused.value.code == "data_dir_busy"
    assert key_file.read_bytes() == before  # nothing retired under the server's feet

    # The server goes on sealing under the one key there is; after a restart all of it opens.
    probes = [p for p, _ in gallery_split[1][:3]]
    for probe in probes:
        server.add([probe], source="test")
    data_dir = server.settings.data_dir
    server.close()
    counts = cli.rotate_keys()  # alone now
    assert counts["templates"] == cli.catalog.counts()["faces_indexed"]
    cli.close()
    with Engine.open(data_dir, workers=1) as restarted:
        for probe in probes:
            assert restarted.search(probe, purpose=PURPOSE).matches[0].distance < 1e-3
        restarted.rebuild_index()


def test_no_engine_opens_while_a_rotation_holds_the_data_directory(data: Path) -> None:
    with Engine.open(data, workers=1) as rotating:
        with rotating.presence.alone("a test"):
            with pytest.raises(VultusError, match="re-encrypting") as refused:
                Engine.open(data, workers=1)
            assert refused.value.code == "data_dir_busy"
        with Engine.open(data, workers=1):  # and once it is done, they open again
            pass


def test_a_rotation_killed_before_its_audit_entry_is_audited_by_the_rerun(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vultus.audit import AuditLog

    real = AuditLog.append

    def killed(self: AuditLog, action: str, *args: object, **kwargs: object) -> object:
        if action == actions.KEY_CHANGE:
            raise KeyboardInterrupt("killed")
        return real(self, action, *args, **kwargs)  # type: ignore[arg-type]

    with Engine.open(data, workers=1) as engine:
        old = engine.keyring.active_id
        monkeypatch.setattr(AuditLog, "append", killed)
        with pytest.raises(KeyboardInterrupt):
            engine.rotate_keys()
        monkeypatch.setattr(AuditLog, "append", real)
        new = read_key_file(Path(os.environ["VULTUS_KEY_FILE"]))
        assert new.active_id != old and not new.retired_ids  # the rotation itself was done
        assert key_changes(engine) == []
    with Engine.open(data, workers=1) as rerun:
        counts = rerun.rotate_keys()
        assert rerun.keyring.active_id == new.active_id  # no second rotation
        audited = key_changes(rerun)
        assert len(audited) == 1
        assert audited[0]["from"] == old and audited[0]["to"] == new.active_id
        assert audited[0]["templates"] == counts["templates"] > 0
        assert rerun.audit.verify().ok


# -- a real `vultus serve` beside the command line ------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`vultus serve` in a subprocess on loopback, with an API key for each role it needs."""

    def __init__(self, data: Path, keys: dict[str, str]) -> None:
        self.data = data
        self.keys = keys
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data.parent / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vultus", "--data-dir", str(self.data), "serve",
                 "--port", str(self.port), "--log-level", "warning"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):  # a busy machine
                time.sleep(0.2)
        raise AssertionError(f"the server did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def call(self, role: str, method: str, path: str, **kwargs: Any) -> dict:
        import httpx

        headers = {"X-API-Key": self.keys[role]}
        response = httpx.request(method, self.url + path, headers=headers, timeout=120, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    def search(self, photo: Path) -> dict:
        return self.call(
            "investigator", "POST", "/v1/search",
            files={"photo": (photo.name, photo.read_bytes())},
            data={"purpose": PURPOSE, "top_k": "20"},
        )  # fmt: skip

    def upload(self, photo: Path) -> dict:
        return self.call(
            "operator", "POST", "/v1/images",
            files={"file": (photo.name, photo.read_bytes())}, data={"source": "test"},
        )  # fmt: skip


@pytest.fixture
def server(data: Path) -> Iterator[Server]:
    with Engine.open(data, workers=1) as engine:
        keys = {
            role: engine.keys.create(f"test {role}", role)[1]
            for role in ("investigator", "operator", "admin")
        }
    running = Server(data, keys)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_a_running_server_and_the_command_line_beside_it(
    server: Server, data: Path, gallery_split: tuple[list[Path], list]
) -> None:
    from typer.testing import CliRunner

    from vultus.cli import app

    gallery, probes = gallery_split
    photo = gallery[0]
    # Photos of other people: the erased person's stay out (the suppression list).
    probes = [(p, who) for p, who in probes if who != photo.parent.name]
    assert server.search(photo)["found"]  # the server holds the index in memory

    # An erasure from the command line: the server no longer finds the faces, and its next
    # save (an upload makes one) does not write them back into index.faiss.
    with Engine.open(data, workers=1) as cli:
        plan = cli.find_person(photo)
        erased = set(plan.face_ids)
        cli.erase(plan)
    assert not erased & {m["face_id"] for m in server.search(photo)["matches"]}
    server.upload(probes[0][0])
    with Engine.open(data, workers=1) as cli:
        assert not erased & saved_ids(cli)

    # A photo added from the command line is found by the running server.
    newcomer = probes[1][0]
    with Engine.open(data, workers=1) as cli:
        cli.add([newcomer], source="test")
    assert server.search(newcomer)["matches"][0]["distance"] < 1e-3

    # A key rotation from the command line is refused while the server runs...
    runner = CliRunner()
    result = runner.invoke(app, ["--data-dir", str(data), "keys", "rotate"])
    assert result.exit_code == 2 and "data_dir_busy" in result.output, result.output
    # ... and queued for the server, which runs it alone in its process.
    result = runner.invoke(app, ["--data-dir", str(data), "keys", "rotate", "--background"])
    assert result.exit_code == 0, result.output
    job_id = int(result.output.split("job ")[1].split(";")[0])
    deadline = time.monotonic() + 120
    while (job := server.call("admin", "GET", f"/v1/jobs/{job_id}"))["status"] not in (
        "done",
        "failed",
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["status"] == "done", job

    # Three uploads after the rotation, a restart: everything opens with the one key left.
    uploaded = [p for p, _ in probes[2:5]]
    for p in uploaded:
        server.upload(p)
    server.stop()
    assert not read_key_file(Path(os.environ["VULTUS_KEY_FILE"])).retired_ids
    with Engine.open(data, workers=1) as restarted:
        for p in uploaded:
            assert restarted.search(p, purpose=PURPOSE).matches[0].distance < 1e-3
        restarted.rebuild_index()
        assert len(restarted.index) == len(restarted.catalog.indexed_ids())
