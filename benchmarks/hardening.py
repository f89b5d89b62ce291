"""Hardening figures: Vultus tried as a hostile user and a careless operator would try it.

    python benchmarks/hardening.py [--points 2] [--all-points] [--load-seconds 15]
                                   [--clients 4] [--fuzz-examples 4]
                                   [--only bad,kill,roles,fuzz,load]
                                   [--out benchmarks/results/hardening.json]

Five parts, each printed as a table and written to the JSON file:

- **bad inputs**: files no photo library should hold (corrupt, truncated, empty, of another
  type, 50,000 pixels wide, a decompression bomb's header, a FIFO, a symbolic-link loop, a
  folder named like a photo) ingested from a folder beside a good photo, uploaded through the
  API, and server paths outside the ingest roots. Clean: refused with an error code, no server
  error, nothing of it written, the good photo added.
- **kill points**: `vultus add`, `vultus rights erase`, `vultus keys rotate`, `vultus reembed`
  and `vultus serve` running an ingest job, each killed (SIGKILL, by itself) right after its
  Nth catalog commit, then run again (the server restarted). Survived: the data directory ends
  as a run that was never killed leaves it (the same photos, faces, index size, no run left
  open, the audit chain whole). Fault injection, not timing: a counting run finds how many
  commits the command makes, and N walks them (`--points` spread over them, or every one with
  `--all-points`). The hook is installed by this script in the child process (a SQLAlchemy
  `after_commit` listener); Vultus has no such switch.
- **routes x roles**: every API operation with no key and with a key of every role: the roles
  it admits get past the door, the others get 403, no key gets 401.
- **schemathesis**: requests generated from the OpenAPI document, valid and invalid, against
  the app: server errors and conformance failures per check.
- **load**: `vultus serve` on loopback; search clients beside an ingest job, then beside a
  `vultus add` run by the command line on the same data directory: errors and latencies.

Needs ../shared/faces/dev (or $VULTUS_TEST_FACES). The default run takes a few minutes on two
busy cores; the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))

PURPOSE = "archive research"
console = Console(width=150)

# Run in the child process before the CLI: kill the process right after its Nth commit of a
# catalog session (0: only count them, into the file named by HARDENING_COUNT_FILE).
BOOT = r"""
import atexit, os, signal, sys
from sqlalchemy import event
from sqlalchemy.orm import Session
limit = int(os.environ.get("HARDENING_KILL_AFTER_COMMIT", "0"))
seen = [0]
@event.listens_for(Session, "after_commit")
def _after_commit(session):
    seen[0] += 1
    if limit and seen[0] >= limit:
        os.kill(os.getpid(), signal.SIGKILL)
count_file = os.environ.get("HARDENING_COUNT_FILE")
if count_file:
    atexit.register(lambda: open(count_file, "w").write(str(seen[0])))
from vultus.cli import app
sys.argv = ["vultus", *sys.argv[1:]]
app()
"""


def dev_photos() -> Path:
    env = os.environ.get("VULTUS_TEST_FACES")
    root = (Path(env) if env else REPO_ROOT.parent / "shared" / "faces") / "dev"
    if not (root / "labels.csv").is_file():
        sys.exit(f"dev photos not found at {root}: set VULTUS_TEST_FACES")
    return root / "images"


# -- a data directory and its key --------------------------------------------------------------
class Place:
    """A data directory with its own master key file (rotation changes it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.key = root / "master.key"

    def env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, "VULTUS_KEY_FILE": str(self.key), "PYTHONPATH": str(REPO_ROOT / "src")}
        env.pop("VULTUS_KEY", None)
        return {**env, **extra}

    def copy(self, root: Path) -> Place:
        shutil.copytree(self.root, root, symlinks=True)
        return Place(root)

    @contextlib.contextmanager
    def engine(self, **settings: Any) -> Iterator[Any]:
        from vultus.engine import Engine

        old = os.environ.get("VULTUS_KEY_FILE")
        os.environ["VULTUS_KEY_FILE"] = str(self.key)
        try:
            with Engine.open(self.data, workers=1, **settings) as engine:
                yield engine
        finally:
            if old is None:
                os.environ.pop("VULTUS_KEY_FILE", None)
            else:
                os.environ["VULTUS_KEY_FILE"] = old

    def cli(
        self, *args: str, kill_after: int = 0, count: Path | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        extra = {"HARDENING_KILL_AFTER_COMMIT": str(kill_after)}
        if count is not None:
            extra["HARDENING_COUNT_FILE"] = str(count)
        return subprocess.run(
            [sys.executable, "-c", BOOT, "--data-dir", str(self.data), *args],
            env=self.env(VULTUS_BATCH_SIZE="2", VULTUS_WORKERS="1", **extra),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def add_source(engine: Any) -> None:
    engine.add_source(
        "test",
        lawful_basis_code="legitimate_interests",
        special_condition="archiving_research",
        purpose="hardening figures",
        retention_days=365,
    )


def state(place: Place) -> dict[str, Any]:
    """What must be the same after a killed run and its rerun as after a clean run."""
    with place.engine() as engine:
        counts = engine.catalog.counts()
        images = sorted(i.path.rsplit("/", 1)[-1] for i in engine.list_images(limit=10_000))
        return {
            "images": images,
            "faces_indexed": counts["faces_indexed"],
            "index_size": len(engine.index),
            "open_runs": len(engine.catalog.running_runs()),
            "audit_whole": engine.audit.verify().ok,
            "suppressed": len(engine.suppression_list()),
            # Each done once, audited once: a rerun must not audit (or do) it twice.
            "audited": {
                action: len(engine.audit.entries(action=action))
                for action in ("erasure", "key_change", "reembed")
            },
            "model": engine.model_id,
            "jobs_unfinished": sum(
                j.status in {"queued", "running"} for j in engine.catalog.list_jobs(limit=500)
            )
            if hasattr(engine.catalog, "list_jobs")
            else 0,
        }


def summary(found: dict[str, Any]) -> dict[str, Any]:
    """A state as the report shows it: the photos counted, not listed."""
    return {**found, "images": len(found["images"])}


# -- bad inputs ---------------------------------------------------------------------------------
def _png_bomb() -> bytes:
    """A PNG whose header claims 100,000 x 100,000 pixels (10 GP) and holds next to nothing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def bad_files(folder: Path, good: Path) -> dict[str, str]:
    """Bad files in `folder`, by name, with what each is."""
    jpeg = good.read_bytes()
    made = {
        "corrupt.jpg": "a JPEG header, then noise",
        "truncated.jpg": "a real photo cut in half",
        "zero.jpg": "zero bytes",
        "text.jpg": "a text file named .jpg",
        "pdf.png": "a PDF named .png",
        "wide.png": "50,000 x 1,100 pixels (55 MP, over the 50 MP limit)",
        "bomb.png": "a header claiming 100,000 x 100,000 pixels",
        "fifo.jpg": "a FIFO (named pipe)",
        "loop.jpg": "a symbolic link to itself",
        "dangling.jpg": "a symbolic link to nothing",
        "folder.jpg": "a folder named like a photo",
    }
    (folder / "corrupt.jpg").write_bytes(jpeg[:200] + os.urandom(4000))
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("holiday photos, to follow\n")
    (folder / "pdf.png").write_bytes(
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    )
    Image.new("1", (50_000, 1_100)).save(folder / "wide.png")
    (folder / "bomb.png").write_bytes(_png_bomb())
    os.mkfifo(folder / "fifo.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "dangling.jpg").symlink_to(folder / "nothing-here.jpg")
    (folder / "folder.jpg").mkdir()
    return made


def part_bad_inputs(work: Path, photos: Path) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from vultus.api import create_app

    good = photos / "Katy_Perry" / sorted(os.listdir(photos / "Katy_Perry"))[0]
    folder = work / "bad"
    folder.mkdir()
    shutil.copy(good, folder / "good.jpg")
    made = bad_files(folder, good)
    place = Place(work / "bad-place")
    rows: list[dict[str, Any]] = []
    with place.engine() as engine:
        add_source(engine)
        started = time.monotonic()
        summary = engine.add([folder], source="test")
        cli_seconds = time.monotonic() - started
        errors = {Path(p).name: code for p, code, _ in summary.errors}
        for name, what in made.items():
            if name == "folder.jpg":  # a folder is walked, not read: nothing to refuse
                rows.append(row("folder ingest", name, what, "walked (empty)", True))
                continue
            code = errors.get(name)
            rows.append(row("folder ingest", name, what, code or "ACCEPTED", code is not None))
        good_added = summary.images_added == 1
        rows.append(
            row("folder ingest", "good.jpg", "the good photo beside them", "added", good_added)
        )

        # The same files uploaded through the API, and paths outside the ingest roots.
        _, operator = engine.keys.create("hardening-operator", "operator")
        client = TestClient(create_app(engine=engine))
        headers = {"X-API-Key": operator}
        for name, what in made.items():
            path = folder / name
            if not path.is_file() or path.is_symlink() or name == "fifo.jpg":
                continue
            r = client.post(
                "/v1/images",
                files={"file": (name, path.read_bytes())},
                data={"source": "test"},
                headers=headers,
            )
            clean = 400 <= r.status_code < 500 and set(r.json()) == {"code", "message"}
            rows.append(
                row("API upload", name, what, f"{r.status_code} {r.json().get('code')}", clean)
            )
        big = b"\xff\xd8" + os.urandom(engine.settings.max_upload_bytes + 10)
        r = client.post(
            "/v1/images", files={"file": ("big.jpg", big)}, data={"source": "test"}, headers=headers
        )
        rows.append(
            row(
                "API upload",
                "big.jpg",
                "over max_upload_bytes",
                f"{r.status_code} {r.json().get('code')}",
                r.status_code == 413,
            )
        )
        answers = set()
        for path in [
            "/etc/passwd",
            "/etc",
            str(good),
            str(place.data / "catalog.db"),
            "/nonexistent.jpg",
            "../../etc/passwd",
            str(engine.settings.data_dir / "inbox" / ".." / "catalog.db"),
        ]:
            for route in ("/v1/images/register", "/v1/jobs/ingest"):
                r = client.post(route, json={"path": path, "source": "test"}, headers=headers)
                answers.add((r.status_code, r.text))
                rows.append(
                    row(
                        f"API {route.rsplit('/', 1)[-1]}",
                        path,
                        "a server path outside the roots",
                        f"{r.status_code} {r.json().get('code')}",
                        r.status_code == 404,
                    )
                )
        images_after = engine.catalog.counts()["images"]
    rows.append(
        row(
            "API",
            "(all paths above)",
            "one answer for all: tells nothing",
            f"{len(answers)} distinct answer(s)",
            len(answers) == 1,
        )
    )
    rows.append(
        row(
            "catalog",
            "(everything above)",
            "only the good photo held",
            f"{images_after} image(s)",
            images_after == 1,
        )
    )
    return {
        "rows": rows,
        "tried": len(rows),
        "clean": sum(r["clean"] for r in rows),
        "folder_seconds": round(cli_seconds, 2),
    }


def row(way: str, name: str, what: str, outcome: str, clean: bool) -> dict[str, Any]:
    return {"way": way, "input": name, "what": what, "outcome": outcome, "clean": bool(clean)}


# -- kill points ----------------------------------------------------------------------------------
class Scenario:
    """A command, and the data directory it starts from. `done`: the error code with which
    a rerun may rightly answer that the killed run had finished its work (a kill after the
    last commit)."""

    def __init__(self, name: str, template: Place, args: list[str], done: str | None = None):
        self.name, self.template, self.args, self.done = name, template, args, done

    def finished(self, run: subprocess.CompletedProcess[str]) -> bool:
        said = run.stdout + run.stderr
        return run.returncode == 0 or bool(self.done and f"({self.done})" in said)


def choose(total: int, points: int | None) -> list[int]:
    if points is None or points >= total:
        return list(range(1, total + 1))
    picks = {1, total, *(round(1 + i * (total - 1) / (points - 1)) for i in range(points))}
    return sorted(p for p in picks if 1 <= p <= total)[: max(points, 2)]


def run_scenario(s: Scenario, work: Path, points: int | None) -> dict[str, Any]:
    clean = s.template.copy(work / f"{s.name}-clean")
    counted = work / f"{s.name}.commits"
    done = clean.cli(*s.args, count=counted)
    if done.returncode != 0:
        raise SystemExit(
            f"{s.name}: the clean run failed ({done.returncode}):\n{done.stderr[-2000:]}"
        )
    total = int(counted.read_text())
    expected = state(clean)
    # Killed after its last commit, the command had done its work, and the rerun does what a
    # second run does (a rotation rotates again): that state is right too.
    clean.cli(*s.args)
    twice = state(clean)
    results = []
    for n in choose(total, points):
        place = s.template.copy(work / f"{s.name}-kill-{n}")
        killed = place.cli(*s.args, kill_after=n)
        rerun = place.cli(*s.args)
        got = state(place)
        diff = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
        if diff and got == twice:
            diff = {}
        results.append(
            {
                "after_commit": n,
                "killed": killed.returncode == -signal.SIGKILL,
                "rerun_status": rerun.returncode,
                "survived": killed.returncode == -signal.SIGKILL and s.finished(rerun) and not diff,
                "differences": {k: [str(a), str(b)] for k, (a, b) in diff.items()},
            }
        )
        shutil.rmtree(place.root, ignore_errors=True)
    return {"scenario": s.name, "commits": total, "clean_run": summary(expected), "points": results}


def part_kill_points(work: Path, photos: Path, points: int | None) -> list[dict[str, Any]]:
    gallery = work / "gallery"
    gallery.mkdir()
    people = ["Katy_Perry", "Kit_Harington", "Rose_Leslie", "Barack_Obama", "Elon_Musk"]
    for person in people:
        for photo in sorted((photos / person).iterdir())[:2]:
            shutil.copy(photo, gallery / photo.name)
    selfie = sorted((photos / "Kit_Harington").iterdir())[-1]  # not in the gallery
    bare = Place(work / "t-bare")
    with bare.engine() as engine:
        add_source(engine)
    full = bare.copy(work / "t-full")
    full.cli("add", str(gallery), "--source", "test")
    scenarios = [
        Scenario("ingest", bare, ["add", str(gallery), "--source", "test"]),
        Scenario("erasure", full, ["rights", "erase", str(selfie), "--yes"]),
        Scenario("rotation", full, ["keys", "rotate"]),
        Scenario("reembed", full, ["reembed", "--model", "dlib-plain"], "reembed_nothing_to_do"),
    ]
    out = []
    for s in scenarios:
        started = time.monotonic()
        result = run_scenario(s, work, points)
        result["seconds"] = round(time.monotonic() - started, 1)
        out.append(result)
        report_scenario(result)
    started = time.monotonic()
    result = server_scenario(work, bare, gallery, points)
    result["seconds"] = round(time.monotonic() - started, 1)
    out.append(result)
    report_scenario(result)
    return out


def report_scenario(r: dict[str, Any]) -> None:
    survived = sum(p["survived"] for p in r["points"])
    console.print(
        f"  kill points, {r['scenario']}: {survived}/{len(r['points'])} survived "
        f"(of {r['commits']} commits; {r.get('seconds', 0)} s)"
    )


class Serve:
    """`vultus serve` on loopback, optionally killing itself after its Nth commit."""

    def __init__(self, place: Place, kill_after: int = 0, count: Path | None = None) -> None:
        self.place = place
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        extra = {"HARDENING_KILL_AFTER_COMMIT": str(kill_after)}
        if count is not None:
            extra["HARDENING_COUNT_FILE"] = str(count)
        self.log = place.root / f"serve-{self.port}.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    BOOT,
                    "--data-dir",
                    str(place.data),
                    "serve",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                ],
                env=place.env(VULTUS_BATCH_SIZE="2", VULTUS_WORKERS="1", **extra),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return  # died on start (a kill point at its start-up commits)
            try:
                httpx.get(f"{self.url}/healthz", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise SystemExit(f"the server did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # a clean stop: atexit runs
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_scenario(work: Path, bare: Place, gallery: Path, points: int | None) -> dict[str, Any]:
    """An ingest job on a running server, the server killed after its Nth commit, restarted:
    the job finishes once, with nothing lost or doubled."""
    template = bare.copy(work / "t-serve")
    with template.engine() as engine:
        key = engine.keys.create("hardening-serve", "operator")[1]
        engine.settings.ingest_roots = [str(gallery)]
    (template.data / "vultus.toml").write_text(f'ingest_roots = ["{gallery}"]\n')

    def run(place: Place, kill_after: int = 0, count: Path | None = None) -> bool:
        server = Serve(place, kill_after, count)
        try:
            if server.proc.poll() is None:
                r = httpx.post(
                    f"{server.url}/v1/jobs/ingest",
                    headers={"X-API-Key": key},
                    json={"path": str(gallery), "source": "test"},
                    timeout=60,
                )
                job = r.json()["id"]
                deadline = time.monotonic() + 300
                while server.proc.poll() is None and time.monotonic() < deadline:
                    status = httpx.get(
                        f"{server.url}/v1/jobs/{job}", headers={"X-API-Key": key}, timeout=60
                    ).json()["status"]
                    if status in {"done", "failed"}:
                        return status == "done"
                    time.sleep(0.3)
        except httpx.HTTPError:
            pass  # killed mid-request
        finally:
            server.stop()
        return False

    def restart(place: Place) -> bool:
        """Started again: the job left running is run again, to the end."""
        server = Serve(place)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                jobs = httpx.get(f"{server.url}/v1/jobs", headers={"X-API-Key": key}, timeout=60)
                statuses = [j["status"] for j in jobs.json()]
                if statuses and all(s in {"done", "failed"} for s in statuses):
                    return all(s == "done" for s in statuses)
                if not statuses:  # killed before the job was recorded: submit it now
                    server.stop()
                    return run(place)
                time.sleep(0.3)
            return False
        finally:
            server.stop()

    clean = template.copy(work / "serve-clean")
    counted = work / "serve.commits"
    if not run(clean, count=counted):
        raise SystemExit("serve: the clean run failed")
    total = int(counted.read_text())
    expected = state(clean)
    results = []
    for n in choose(total, points):
        place = template.copy(work / f"serve-kill-{n}")
        run(place, kill_after=n)
        finished = restart(place)
        got = state(place)
        diff = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
        results.append(
            {
                "after_commit": n,
                "killed": True,
                "rerun_status": 0 if finished else 1,
                "survived": finished and not diff,
                "differences": {k: [str(a), str(b)] for k, (a, b) in diff.items()},
            }
        )
        shutil.rmtree(place.root, ignore_errors=True)
    return {
        "scenario": "server mid-job",
        "commits": total,
        "clean_run": summary(expected),
        "points": results,
    }


# -- routes x roles -------------------------------------------------------------------------------
def part_roles(work: Path) -> dict[str, Any]:
    import re

    from fastapi.testclient import TestClient

    from vultus.api import create_app
    from vultus.engine.apikeys import ROLES

    place = Place(work / "roles")
    with place.engine(requests_per_minute=10**6) as engine:
        add_source(engine)
        keys = {role: engine.keys.create(f"roles-{role}", role)[1] for role in ROLES}
        app = create_app(engine=engine)
        client = TestClient(app)
        document = app.openapi()
        walked = wrong = 0
        failures: list[str] = []
        operations = 0
        for path, item in document["paths"].items():
            for method, op in item.items():
                roles = set(op.get("x-roles") or [])
                if not roles:
                    continue
                operations += 1
                url = re.sub(r"\{[^}]+\}", "1", path)
                for who in [None, *ROLES]:
                    headers = {"X-API-Key": keys[who]} if who else {}
                    r = client.request(method.upper(), url, headers=headers)
                    body = (
                        r.json()
                        if r.headers.get("content-type", "").startswith("application/json")
                        else None
                    )
                    code = body.get("code") if isinstance(body, dict) else None
                    if who is None:
                        fine = r.status_code == 401
                    elif who in roles:  # past the door; a search-bound view may still say no
                        fine = r.status_code != 401 and code != "forbidden"
                    else:
                        fine = r.status_code == 403 and code == "forbidden"
                    fine = fine and r.status_code < 500
                    walked += 1
                    if not fine:
                        wrong += 1
                        failures.append(f"{method.upper()} {path} as {who}: {r.status_code}")
    return {
        "operations": operations,
        "roles": len(ROLES) + 1,
        "requests": walked,
        "as_expected": walked - wrong,
        "failures": failures,
    }


# -- schemathesis ---------------------------------------------------------------------------------
def part_fuzz(work: Path, photos: Path, examples: int) -> dict[str, Any]:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        negative_data_rejection,
        not_a_server_error,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )
    from schemathesis.config import SchemathesisConfig

    from vultus.api import create_app
    from vultus.engine.apikeys import ROLES

    conformance = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]
    malformed = {"bad_request", "invalid_request", "unknown_field", "purpose_required"}
    config = SchemathesisConfig.from_dict(
        {
            "seed": 20261205,
            "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
            "generation": {"max-examples": examples, "database": "none"},
        }
    )
    place = Place(work / "fuzz")
    gallery = work / "fuzz-photos"
    gallery.mkdir()
    for person in ("Katy_Perry", "Kit_Harington"):
        shutil.copy(sorted((photos / person).iterdir())[0], gallery)
    failures: Counter[str] = Counter()
    samples: dict[str, str] = {}
    requests = [0]

    def fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> Callable[[], None]:
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(mode))
        def run(case: Any) -> None:
            requests[0] += 1
            response = case.call(headers=headers)
            checks = list(conformance)
            if mode is GenerationMode.POSITIVE:
                if response.status_code in {400, 422} and response.json().get("code") in malformed:
                    failures["valid request refused as malformed"] += 1
            else:
                checks.append(negative_data_rejection)
            try:
                case.validate_response(response, checks=checks)
            except BaseException as exc:  # noqa: BLE001 - counted, per check
                for sub in getattr(exc, "exceptions", [exc]):
                    failures[type(sub).__name__] += 1
                    samples.setdefault(f"{type(sub).__name__}: {operation.label}", str(sub)[:500])

        return run  # type: ignore[no-any-return]

    with place.engine(requests_per_minute=10**6) as engine:
        add_source(engine)
        engine.add([gallery], source="test")
        keys = {r: engine.keys.create(f"fuzz-{r}-key", r)[1] for r in ROLES}
        app = create_app(engine=engine, run_jobs=False)  # a queued ingest must stay queued
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
        operations = 0
        for result in schema.include(
            path_regex=r"^/(v1/|healthz|readyz|metrics)"
        ).get_all_operations():
            operation = result.ok()
            operations += 1
            raw = operation.definition.raw
            roles = raw.get("x-roles") or []
            headers = {"X-API-Key": keys[roles[0]]} if roles else {}
            modes = [GenerationMode.POSITIVE]
            if raw.get("parameters") or raw.get("requestBody"):
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                fuzz(operation, mode, headers)()
    return {
        "operations": operations,
        "requests": requests[0],
        "server_errors": failures.get("ServerError", 0),
        "failures": dict(failures),
        "examples": samples,
    }


# -- load ------------------------------------------------------------------------------------------
def part_load(work: Path, photos: Path, clients: int, seconds: float) -> list[dict[str, Any]]:
    people = sorted(p for p in photos.iterdir() if p.is_dir())
    first = work / "load-first"
    job_folder = work / "load-job"
    cli_folder = work / "load-cli"
    for folder in (first, job_folder, cli_folder):
        folder.mkdir()
    probes = []
    for i, person in enumerate(people):
        files = sorted(person.iterdir())
        shutil.copy(files[0], first / files[0].name)
        probes.append(files[0])
        for extra in files[1:]:
            shutil.copy(extra, (job_folder if i % 2 else cli_folder) / extra.name)
    place = Place(work / "load")
    with place.engine() as engine:
        add_source(engine)
        engine.add([first], source="test")
        keys = {r: engine.keys.create(f"load-{r}", r)[1] for r in ("investigator", "operator")}
    (place.data / "vultus.toml").write_text(
        f'ingest_roots = ["{job_folder}"]\nrequests_per_minute = 1000000\n'
    )
    server = Serve(place)
    results = []
    try:

        def job() -> None:
            r = httpx.post(
                f"{server.url}/v1/jobs/ingest",
                headers={"X-API-Key": keys["operator"]},
                json={"path": str(job_folder), "source": "test"},
                timeout=60,
            )
            job_id = r.json()["id"]
            while True:
                status = httpx.get(
                    f"{server.url}/v1/jobs/{job_id}",
                    headers={"X-API-Key": keys["operator"]},
                    timeout=60,
                ).json()
                if status["status"] in {"done", "failed"}:
                    return
                time.sleep(0.5)

        def cli_add() -> None:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "vultus",
                    "--data-dir",
                    str(place.data),
                    "add",
                    str(cli_folder),
                    "--source",
                    "test",
                ],
                env=place.env(),
                capture_output=True,
                check=True,
            )

        for name, writer in (
            ("searches beside an ingest job", job),
            ("searches beside `vultus add` (CLI)", cli_add),
        ):
            results.append(
                load(server.url, keys["investigator"], probes, clients, seconds, name, writer)
            )
        # What the CLI added is found by the running server without a restart.
        added = sorted(cli_folder.iterdir())[0]
        r = httpx.post(
            f"{server.url}/v1/search",
            headers={"X-API-Key": keys["investigator"]},
            files={"photo": (added.name, added.read_bytes())},
            data={"purpose": PURPOSE, "top_k": "5"},
            timeout=120,
        )
        names = [c.get("image", {}).get("path", "") or "" for c in r.json().get("candidates", [])]
        results.append(
            {
                "name": "a photo added by the CLI, searched on the server",
                "found": any(added.name in n for n in names) or r.json().get("found", False),
            }
        )
    finally:
        server.stop()
    return results


def load(
    url: str,
    key: str,
    probes: list[Path],
    clients: int,
    seconds: float,
    name: str,
    writer: Callable[[], None],
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    stop = threading.Event()
    lock = threading.Lock()

    def client(i: int) -> None:
        n = i
        with httpx.Client(timeout=120) as http:
            while not stop.is_set():
                probe = probes[n % len(probes)]
                n += clients
                started = time.monotonic()
                try:
                    r = http.post(
                        f"{url}/v1/search",
                        headers={"X-API-Key": key},
                        files={"photo": (probe.name, probe.read_bytes())},
                        data={"purpose": PURPOSE, "top_k": "10"},
                    )
                    outcome = (
                        None if r.status_code == 200 else f"{r.status_code} {r.json().get('code')}"
                    )
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with lock:
                    latencies.append(time.monotonic() - started)
                    if outcome:
                        errors[outcome] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    writer_error = None
    try:
        writer()
    except Exception as exc:  # noqa: BLE001 - reported
        writer_error = f"{type(exc).__name__}: {exc}"
    remaining = seconds - (time.monotonic() - started)
    if remaining > 0:
        time.sleep(remaining)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    ordered = sorted(latencies)
    return {
        "name": name,
        "clients": clients,
        "seconds": round(elapsed, 1),
        "searches": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "p50_ms": round(1000 * statistics.median(ordered), 1) if ordered else None,
        "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 1) if ordered else None,
        "writer_error": writer_error,
    }


# -- the report -----------------------------------------------------------------------------------
def print_report(results: dict[str, Any]) -> None:
    if "bad_inputs" in results:
        table = Table(title="Bad inputs")
        for col in ("way", "input", "what", "outcome", "clean"):
            table.add_column(col)
        for r in results["bad_inputs"]["rows"]:
            table.add_row(
                r["way"], r["input"][:40], r["what"], r["outcome"], "yes" if r["clean"] else "NO"
            )
        console.print(table)
    if "kill_points" in results:
        table = Table(title="Kill points (SIGKILL right after commit N, then run again)")
        for col in ("scenario", "clean run", "commits", "killed after", "survived", "seconds"):
            table.add_column(col)
        for r in results["kill_points"]:
            survived = sum(p["survived"] for p in r["points"])
            clean = r["clean_run"]
            table.add_row(
                r["scenario"],
                f"{clean['images']} photos, {clean['faces_indexed']} faces, "
                f"{clean['suppressed']} suppressed, {clean['model']}",
                str(r["commits"]),
                ", ".join(str(p["after_commit"]) for p in r["points"]),
                f"{survived}/{len(r['points'])}",
                str(r["seconds"]),
            )
        console.print(table)
    if "roles" in results:
        r = results["roles"]
        console.print(
            f"Routes x roles: {r['operations']} operations x {r['roles']} callers "
            f"(no key + each role) = {r['requests']} requests, {r['as_expected']} as "
            f"expected"
        )
    if "schemathesis" in results:
        r = results["schemathesis"]
        console.print(
            f"Schemathesis: {r['requests']} requests, {r['server_errors']} server "
            f"errors, failures: {r['failures'] or 'none'}"
        )
    if "load" in results:
        table = Table(title="Load on loopback")
        for col in ("while", "clients", "searches", "errors", "p50 ms", "p95 ms"):
            table.add_column(col)
        for r in results["load"]:
            if "searches" in r:
                table.add_row(
                    r["name"],
                    str(r["clients"]),
                    str(r["searches"]),
                    str(r["errors"]),
                    str(r["p50_ms"]),
                    str(r["p95_ms"]),
                )
            else:
                table.add_row(r["name"], "", "", "", "found" if r["found"] else "NOT FOUND", "")
        console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=2, help="kill points per scenario")
    parser.add_argument("--all-points", action="store_true", help="every commit of every scenario")
    parser.add_argument("--load-seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--fuzz-examples", type=int, default=4)
    parser.add_argument("--only", default="bad,kill,roles,fuzz,load")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks/results/hardening.json")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    photos = dev_photos()
    results: dict[str, Any] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vultus-hardening-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o700)
        steps: list[tuple[str, str, Callable[[], Any]]] = [
            ("bad", "bad_inputs", lambda: part_bad_inputs(work, photos)),
            ("roles", "roles", lambda: part_roles(work)),
            ("fuzz", "schemathesis", lambda: part_fuzz(work, photos, args.fuzz_examples)),
            (
                "kill",
                "kill_points",
                lambda: part_kill_points(work, photos, None if args.all_points else args.points),
            ),
            ("load", "load", lambda: part_load(work, photos, args.clients, args.load_seconds)),
        ]
        for flag, key, step in steps:
            if flag in parts:
                t = time.monotonic()
                console.print(f"[bold]{key}[/] ...")
                results[key] = step()
                console.print(f"  {key}: {time.monotonic() - t:.0f} s")
    results["meta"] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 1),
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    print_report(results)
    console.print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
        f"{results['meta']['seconds']:.0f} s in all"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    console.print(f"written: {args.out}")


if __name__ == "__main__":
    main()
