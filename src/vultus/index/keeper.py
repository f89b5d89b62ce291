"""Keeps the vector index a faithful derivative of the catalog.

The catalog is the source of truth. On first use the persisted index is loaded and compared
with the catalog's fingerprint: a missing, corrupt or foreign-model index is rebuilt, one that
merely lags (a killed ingest, a crash between a catalog delete and an index save) is
reconciled id by id. Every backend goes through here, so they all recover the same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from vultus.catalog import Catalog
from vultus.errors import VectorIndexError
from vultus.index.base import IndexBackend, VectorIndex, normalise

log = logging.getLogger(__name__)


class IndexKeeper:
    def __init__(
        self,
        catalog: Catalog,
        backend: IndexBackend,
        *,
        spec: str,
        model_id: Callable[[], str],
        dim: Callable[[], int],
        lock: threading.RLock,
    ) -> None:
        self.catalog = catalog
        self.backend = backend
        self.spec = spec
        # Callables: the model and its dimension come from the pipeline, loaded lazily.
        self._model_id = model_id
        self._dim = dim
        self._lock = lock
        self._index: VectorIndex | None = None

    @property
    def index(self) -> VectorIndex:
        with self._lock:
            if self._index is None:
                self._index = self._open()
            return self._index

    @property
    def is_open(self) -> bool:
        return self._index is not None

    def _open(self) -> VectorIndex:
        model_id = self._model_id()
        try:
            index = self.backend.load()
        except VectorIndexError as exc:
            if exc.code != "index_missing":
                log.warning("%s; rebuilding the index from the catalog", exc.message)
            return self.rebuild()
        if index.model_id != model_id:
            log.warning("index holds model %s, catalog %s: rebuilding", index.model_id, model_id)
            return self.rebuild()
        if index.fingerprint() != self.catalog.fingerprint(model_id):
            self._reconcile(index)
            self.backend.save(index)
        return index

    def _reconcile(self, index: VectorIndex) -> None:
        in_catalog = self.catalog.indexed_ids()
        in_index = index.ids()
        extra = np.setdiff1d(in_index, in_catalog)
        missing = np.setdiff1d(in_catalog, in_index)
        if extra.size:
            index.remove(extra)
        for ids, templates in self.catalog.iter_templates(missing):
            index.add(ids, normalise(templates))
        log.info("index reconciled: %d added, %d removed", missing.size, extra.size)

    def rebuild(self, spec: str | None = None) -> VectorIndex:
        """Recreate the index from the catalog's templates, with `spec` or the setting."""
        with self._lock:
            model_id = self._model_id()
            count = self.catalog.fingerprint(model_id).count
            config = self.backend.resolve(spec or self.spec, count)
            dim = self._stored_dim() if count else self._dim()
            index = self.backend.create(config, dim, model_id)
            if count:
                ids = np.empty(count, dtype=np.int64)
                vectors = np.empty((count, dim), dtype=np.float32)
                filled = 0
                for chunk_ids, templates in self.catalog.iter_templates():
                    n = len(chunk_ids)
                    ids[filled : filled + n] = chunk_ids
                    vectors[filled : filled + n] = normalise(templates)
                    filled += n
                index.train_and_add(ids[:filled], vectors[:filled])
            self.backend.save(index)
            self._index = index
            return index

    def _stored_dim(self) -> int:
        for _, templates in self.catalog.iter_templates(chunk=1):
            return int(templates.shape[1])
        return self._dim()

    def maybe_upgrade(self) -> None:
        """With the "auto" setting, move to the configuration the gallery has grown into:
        exact search while small, IVF once large."""
        with self._lock:
            if self.spec != "auto" or self._index is None:
                return
            wanted = self.backend.resolve(self.spec, len(self._index))
            if wanted != self._index.factory:
                log.info("gallery reached %d faces: rebuilding as %s", len(self._index), wanted)
                self.rebuild()

    def save(self) -> None:
        with self._lock:
            if self._index is not None:
                self.backend.save(self._index)

    def close(self) -> None:
        with self._lock:
            self._index = None
            self.backend.close()
