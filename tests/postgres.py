"""A private PostgreSQL server for the tests, from Debian's `postgresql` binaries.

One server per session, in a temporary directory, reachable only through a Unix socket in that
directory (no TCP listener: trust authentication is safe only where nobody else can connect).
Each test that asks for `postgres_url` gets a database of its own. Where the binaries are
absent, the PostgreSQL variants skip and say how to get them (`make test` installs them as root).
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

USER = "vultus"
BACKENDS = ("sqlite", "postgresql")


def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL bin folder holding initdb, or None."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    socket_dir: Path
    port: int
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{USER}@/{database}?host={self.socket_dir}&port={self.port}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host=str(self.socket_dir), port=self.port, user=USER, dbname=database, autocommit=True
        )

    def create_database(self) -> str:
        name = f"test_{next(self._names)}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name


def _as_server_user(root: Path) -> list[str]:
    """initdb refuses to run as root: run the server as the `postgres` user Debian creates."""
    if os.geteuid() != 0:
        return []
    shutil.chown(root, user="postgres", group="postgres")
    return ["runuser", "-u", "postgres", "--"]


@contextmanager
def private_server(bin_dir: Path) -> Iterator[PostgresServer]:
    """Start a throwaway server from `bin_dir` (initdb, pg_ctl); stop and delete it after."""
    # Not under pytest's tmp_path: its parents are private to the current user, and the server
    # may have to run as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="vultus-pg-"))
    data = root / "data"
    sudo = _as_server_user(root)
    port = _free_port()
    try:
        subprocess.run(
            [*sudo, str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust"]
            + ["-E", "UTF8", "--locale=C"],
            check=True,
            capture_output=True,
        )
        # fsync off: a test server need not survive a power cut, and it spares the shared disk.
        options = f"-k {root} -p {port} -c listen_addresses='' -c fsync=off"
        subprocess.run(
            [*sudo, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log")]
            + ["-o", options, "-w", "start"],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        log = root / "server.log"
        detail = log.read_text() if log.exists() else exc.stderr.decode(errors="replace")
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"the private PostgreSQL server did not start: {detail}") from exc
    try:
        yield PostgresServer(root, port)
    finally:
        subprocess.run(
            [*sudo, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin: install Debian's "
            "`postgresql` package (`make test` does so when run as root)"
        )
    with private_server(bin_dir) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.url(postgres_server.create_database())


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The catalog's URL on each backend: a SQLite file, and a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return str(request.getfixturevalue("postgres_url"))
