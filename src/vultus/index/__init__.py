"""Vector indexes: the interface and its FAISS backend."""

from vultus.index.base import IndexFingerprint, VectorIndex
from vultus.index.faiss_index import FaissIndex, resolve_factory

__all__ = ["FaissIndex", "IndexFingerprint", "VectorIndex", "resolve_factory"]
