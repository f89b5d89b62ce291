"""A real Milvus standalone server for the tests, from the `milvus` package ("embedded Milvus").

One server per test module that asks for `milvus_uri`, each with its own data directory and
its own free ports: the embedded server once failed HNSW builds in a loop until its data
directory was fresh, so no module inherits another's state. Start-up takes about 10 s.
Skipped, with the reason, where the package is not installed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("pymilvus", reason="the milvus extra (pymilvus) is not installed")
    milvus = pytest.importorskip(
        "milvus", reason="the embedded Milvus server (pip install milvus==2.3.5) is not installed"
    )
    server = milvus.MilvusServer()
    # The package binds the first free port from each default (19530, 2379, ...) upwards.
    server.set_base_dir(str(tmp_path_factory.mktemp("milvus")))
    server.start()
    try:
        yield f"http://127.0.0.1:{server.listen_port}"
    finally:
        server.stop()


@pytest.fixture
def milvus_prefix() -> str:
    """A fresh index prefix, so tests sharing a module's server never see each other's index."""
    return f"t{uuid.uuid4().hex[:10]}"
