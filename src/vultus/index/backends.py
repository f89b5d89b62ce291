"""The index backends a data directory can use, chosen by the `index_backend` setting."""

from __future__ import annotations

from collections.abc import Callable

from vultus.config import Settings
from vultus.crypto import KeyRing, read_encrypted_file, write_encrypted_file
from vultus.errors import ConfigError, VectorIndexError, VultusError
from vultus.index.base import IndexBackend, VectorIndex
from vultus.index.faiss_index import FaissIndex, explain_factory, resolve_factory

INDEX_AAD = b"vultus-index"


class FaissFileBackend(IndexBackend):
    """FAISS in this process, persisted as one file encrypted under the master key: the
    templates in it are biometric data."""

    name = "faiss"

    def __init__(self, settings: Settings, keyring: Callable[[], KeyRing]) -> None:
        self.path = settings.index_path
        self.nprobe = settings.index_nprobe
        # A callable, not a KeyRing: a key rotation swaps the engine's keyring.
        self._keyring = keyring

    def resolve(self, spec: str, size: int) -> str:
        return resolve_factory(spec, size)

    def explain(self, spec: str, size: int) -> str | None:
        return explain_factory(spec, size)

    def load(self) -> FaissIndex:
        if not self.path.exists():
            raise VectorIndexError(f"no vector index at {self.path}", code="index_missing")
        try:
            data = read_encrypted_file(self.path, self._keyring(), aad=INDEX_AAD)
        except VultusError as exc:
            raise VectorIndexError(
                f"the index file {self.path} cannot be decrypted ({exc.message})",
                code="index_corrupt",
            ) from exc
        return FaissIndex.from_bytes(data, source=str(self.path))

    def create(self, config: str, dim: int, model_id: str) -> FaissIndex:
        return FaissIndex.create(config, dim, model_id, nprobe=self.nprobe)

    def save(self, index: VectorIndex) -> None:
        if not isinstance(index, FaissIndex):
            raise VectorIndexError(f"the FAISS backend cannot save a {type(index).__name__}")
        write_encrypted_file(self.path, index.to_bytes(), self._keyring(), aad=INDEX_AAD)


def open_backend(settings: Settings, keyring: Callable[[], KeyRing]) -> IndexBackend:
    """The backend the settings name."""
    if settings.index_backend == "faiss":
        return FaissFileBackend(settings, keyring)
    if settings.index_backend == "milvus":
        # Imported here: pymilvus is an optional extra, and slow to import.
        from vultus.index.milvus_index import MilvusBackend

        return MilvusBackend(settings)
    raise ConfigError(
        f'unknown index backend {settings.index_backend!r}: use "faiss" or "milvus"',
        code="index_backend_unknown",
    )
