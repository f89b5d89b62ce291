"""A real Milvus standalone server for the tests, from the `milvus` package ("embedded Milvus").

One server per test module that asks for `milvus_uri`, each with its own data directory and
its own free ports: the embedded server once failed HNSW builds in a loop until its data
directory was fresh, so no module inherits another's state. Start-up takes about 10 s.
Skipped, with the reason, where the package is not installed.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(base_dir: Path, time_tick_ms: int = 50) -> Any:
    """Start an embedded Milvus server in base_dir on free ports; returns the MilvusServer."""
    import milvus

    server = milvus.MilvusServer()
    server.set_base_dir(str(base_dir))
    # A Strong read waits for the server's clock to pass the request's timestamp, which
    # advances every time tick (200 ms by default): a 50 ms tick makes the tests' many reads
    # quicker without changing what they observe.
    server.config.set("proxy.timeTickInterval", time_tick_ms)
    # The package finds free ports for Milvus's own services, but its embedded etcd always
    # takes peer port 2380, so a second server on the machine (another engineer's, another
    # test run's) would fail to start: give etcd a config file with free ports of its own.
    peer, client = _free_port(), _free_port()
    etcd_config = base_dir / "etcd.yaml"
    etcd_config.write_text(
        "name: default\n"
        f"listen-peer-urls: http://127.0.0.1:{peer}\n"
        f"initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
        f"initial-cluster: default=http://127.0.0.1:{peer}\n"
        f"listen-client-urls: http://127.0.0.1:{client}\n"
        f"advertise-client-urls: http://127.0.0.1:{client}\n"
    )
    server.config.template_text = server.config.template_text.replace(
        "  use:\n    embed: true",
        f"  config:\n    path: {etcd_config}\n  use:\n    embed: true",
        1,
    )
    server.start()
    return server


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("pymilvus", reason="the milvus extra (pymilvus) is not installed")
    pytest.importorskip(
        "milvus", reason="the embedded Milvus server (pip install milvus==2.3.5) is not installed"
    )
    server = start_server(tmp_path_factory.mktemp("milvus"))
    try:
        yield f"http://127.0.0.1:{server.listen_port}"
    finally:
        server.stop()


@pytest.fixture
def milvus_prefix() -> str:
    """A fresh index prefix, so tests sharing a module's server never see each other's index."""
    return f"t{uuid.uuid4().hex[:10]}"
