"""Paths that a client of the server names are confined to the configured ingest roots.

An operator key, or a browser session, can name a path on the server: a photo registered
where it lies, a folder ingested as a job. The server reads nothing outside `ingest_roots`,
and answers a path outside them exactly as it answers a path that does not exist.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from vultus.api import create_app
from vultus.config import Settings
from vultus.engine import Engine


def _photo(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue())
    return path


def test_the_server_reads_only_under_its_ingest_roots_and_refuses_the_rest_alike(
    empty_engine: Engine, tmp_path: Path
) -> None:
    inbox, private = tmp_path / "inbox", tmp_path / "private"
    inbox.mkdir()
    private.mkdir()
    secret = _photo(private / "secret.jpg", 1)
    photo = _photo(inbox / "photo.jpg", 2)
    (inbox / "escape.jpg").symlink_to(secret)  # a link inside the root to a file outside it
    (inbox / "up").symlink_to(private)  # and one to a folder outside it
    empty_engine.settings.ingest_roots = [str(inbox)]
    _, key = empty_engine.keys.create("ops", "operator")
    op = {"X-API-Key": key}

    refused_paths = [
        str(secret),  # exists, outside
        str(private),
        "/etc",
        "/etc/passwd",
        str(private / "nothing.jpg"),  # does not exist, outside
        str(inbox / "nothing.jpg"),  # does not exist, inside
        str(inbox / "escape.jpg"),  # a link out, resolved before the check
        str(inbox / "up"),
        str(inbox / "up" / "secret.jpg"),
        str(inbox / ".." / "private" / "secret.jpg"),
        "photo.jpg",  # relative: the server's working folder is nobody's business
        "~/photo.jpg",
        "/tmp/\x00.jpg",
    ]
    with TestClient(create_app(engine=empty_engine)) as client:
        answers = set()
        for path in refused_paths:
            for route in ("/v1/images/register", "/v1/jobs/ingest"):
                r = client.post(route, json={"path": path, "source": "test"}, headers=op)
                answers.add((r.status_code, r.text))
        # One answer for all of them: a status or a word that differed would tell an API key
        # which files exist on the server.
        ((status, text),) = answers
        assert status == 404 and '"path_not_found"' in text and str(inbox) in text
        assert empty_engine.catalog.counts()["images"] == 0
        assert client.get("/v1/jobs", headers=op).json() == []

        # Inside the root, photos and folders are read; links out of it are skipped, named.
        registered = client.post(
            "/v1/images/register", json={"path": str(photo), "source": "test"}, headers=op
        )
        assert registered.status_code == 201, registered.text
        started = client.post(
            "/v1/jobs/ingest", json={"path": str(inbox), "source": "test"}, headers=op
        )
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 60
        job = started.json()
        while job["status"] not in {"done", "failed"} and time.monotonic() < deadline:
            time.sleep(0.1)
            job = client.get(f"/v1/jobs/{job['id']}", headers=op).json()
        assert job["status"] == "done", job
    result = job["result"]
    assert result["images_duplicate"] == 1 and result["images_added"] == 0
    assert [(Path(p).name, code) for p, code, _ in result["errors"]] == [
        ("escape.jpg", "outside_roots")
    ]
    held = [im.path for im in empty_engine.list_images()]
    assert held == [str(photo)]


def test_the_default_root_is_the_data_directorys_inbox(tmp_path: Path) -> None:
    assert Settings.load(tmp_path).ingest_root_paths == [tmp_path / "inbox"]
    (tmp_path / "vultus.toml").write_text('ingest_roots = ["/srv/photos", "~/scans"]\n')
    roots = Settings.load(tmp_path).ingest_root_paths
    assert roots == [Path("/srv/photos"), Path.home() / "scans"]
