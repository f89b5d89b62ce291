"""Keeps the vector index a faithful derivative of the catalog, in every process at once.

The catalog is the source of truth. On first use the persisted index is loaded and brought up
to date: a missing, corrupt or foreign-model index is rebuilt; one that merely lags (a killed
ingest, a crash between a catalog commit and an index save) catches up.

Several processes may hold the index in memory on one data directory (a server, and CLI
commands beside it). Each catches up from the catalog's change feed (`vultus.catalog.changes`)
before it searches and before it saves: what another process erased leaves this one's memory
too, and can never be written back to the file; what another added becomes searchable here.
Saves are serialised by a lock file, and each records the change it reflects, so a process that
opens the file knows exactly what to replay. Every backend goes through here, so they all
recover the same way. See docs/processes.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from vultus.catalog import Catalog
from vultus.catalog.changes import PRUNED_THROUGH, SAVED_THROUGH
from vultus.errors import VectorIndexError
from vultus.files import file_lock
from vultus.index.base import IndexBackend, VectorIndex, normalise
from vultus.index.rerank import RerankedIndex
from vultus.index.tune import TuneResult, exact_neighbours, tune

# HNSW keeps an erased face's (wiped) node until a rebuild; past this share of dead nodes the
# graph is rebuilt. Privacy does not wait on it (the bytes are already gone): it bounds the
# memory and the search effort spent on tombstones, while sparing a large rebuild per erasure.
COMPACT_DEAD_FRACTION = 0.2

log = logging.getLogger(__name__)


class IndexKeeper:
    def __init__(
        self,
        catalog: Catalog,
        backend: IndexBackend,
        *,
        spec: str,
        rerank: int = 4,
        model_id: Callable[[], str],
        dim: Callable[[], int],
        lock: threading.RLock,
        lock_file: Path | None = None,
    ) -> None:
        self.catalog = catalog
        self.backend = backend
        self.spec = spec
        # Callables: the model and its dimension come from the pipeline, loaded lazily.
        self._model_id = model_id
        self._dim = dim
        self._lock = lock
        self.rerank = rerank
        self._index: VectorIndex | None = None
        self._view: VectorIndex | None = None
        # Between processes: one at a time loads or saves the persisted index (None: this
        # process is the only one, as in tests of the index alone).
        self._lock_file = lock_file
        self._file_depth = 0
        # The last catalog change the in-memory index reflects.
        self._seen = 0

    @property
    def index(self) -> VectorIndex:
        """The index every search goes through, up to date with the catalog: compressed ones
        behind exact re-ranking."""
        with self._lock:
            if self._index is None:
                self._use(self._open())
            else:
                self.sync()
            assert self._view is not None
            return self._view

    @contextmanager
    def _file(self) -> Iterator[None]:
        # Reentrant within this keeper (an open may rebuild, a save may compact): flock on a
        # second descriptor would wait for this very process.
        with self._lock:
            if self._file_depth or self._lock_file is None:
                self._file_depth += 1
                try:
                    yield
                finally:
                    self._file_depth -= 1
                return
            with file_lock(self._lock_file):
                self._file_depth += 1
                try:
                    yield
                finally:
                    self._file_depth -= 1

    def sync(self) -> None:
        """Apply to the in-memory index what the catalog changed since it last looked: other
        processes' additions, erasures and restrictions, and this process's own writes."""
        with self._lock:
            if self._index is None:
                return
            if self.catalog.change_head() == self._seen:
                return
            pruned = self.catalog.meta_int(PRUNED_THROUGH) or 0
            if self._seen < pruned or self._index.model_id != self._model_id():
                # Too far behind for the feed, or another process moved to another model.
                log.info("the index fell behind the catalog: reloading it")
                self._index = self._view = None
                self._use(self._open())
                return
            self._seen = self._catch_up(self._index, self._seen)

    def _catch_up(self, index: VectorIndex, since: int) -> int:
        """Replay the catalog's changes after `since` on `index`; returns the last one. Safe to
        replay twice: each changed face ends as the catalog holds it now."""
        last, changed = self.catalog.changes_since(since)
        if not changed:
            return last
        ids = sorted(changed)
        keep = self.catalog.searchable_among(ids)
        # A deleted face leaves even if its id is held again: SQLite may reuse the id of a
        # deleted row for a new face, whose template is then read afresh.
        gone = np.array([i for i in ids if i not in keep or changed[i]], dtype=np.int64)
        removed = index.remove(gone) if gone.size else 0
        wanted = np.array([i for i in ids if i in keep], dtype=np.int64)
        held = set(index.held(wanted).tolist()) if wanted.size else set()
        missing = np.array([i for i in wanted.tolist() if i not in held], dtype=np.int64)
        for chunk_ids, templates in self.catalog.iter_templates(missing):
            index.add(chunk_ids, normalise(templates))
        if removed or missing.size:
            log.info("index caught up: %d added, %d removed", missing.size, removed)
        return last

    def _use(self, index: VectorIndex) -> None:
        self._index = index
        self._view = index
        if index.is_compressed() and self.rerank > 0:
            self._view = RerankedIndex(index, self.catalog.templates_of, self.rerank)

    @property
    def is_open(self) -> bool:
        return self._index is not None

    def _open(self) -> VectorIndex:
        model_id = self._model_id()
        with self._file():
            # Read before the load: a save by another process is file first, then this mark.
            saved = self.catalog.meta_int(SAVED_THROUGH)
            head = self.catalog.change_head()
            try:
                index = self.backend.load()
            except VectorIndexError as exc:
                if exc.code != "index_missing":
                    log.warning("%s; rebuilding the index from the catalog", exc.message)
                return self.rebuild()
            if index.model_id != model_id:
                log.warning(
                    "index holds model %s, catalog %s: rebuilding", index.model_id, model_id
                )
                return self.rebuild()
            pruned = self.catalog.meta_int(PRUNED_THROUGH) or 0
            if saved is not None and saved >= pruned:
                seen = self._catch_up(index, saved)
            else:  # saved before the change feed existed
                self._reconcile(index)
                seen = head
            if index.fingerprint() != self.catalog.fingerprint(model_id):
                log.warning("the index disagrees with the catalog after catching up: reconciling")
                self._reconcile(index)
            if seen != saved:
                self.backend.save(index)
                self.catalog.mark_saved(seen)
            self._seen = seen
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

    def rebuild(
        self, spec: str | None = None, on_progress: Callable[[int, int], None] | None = None
    ) -> VectorIndex:
        """Recreate the index from the catalog's templates, with `spec` or the setting.
        `on_progress(templates read, total)` runs after each chunk read."""
        with self._lock, self._file():
            model_id = self._model_id()
            head = self.catalog.change_head()
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
                    if on_progress is not None:
                        on_progress(filled, count)
                index.train_and_add(ids[:filled], vectors[:filled])
            self._use(index)
            self._seen = head
            self.save()
            assert self._index is not None
            return self._index

    def compact(self) -> VectorIndex:
        """Rebuild the index in its current configuration, dropping erased entries (HNSW's
        tombstones) for good; the tuned search setting is kept."""
        with self._lock:
            old = self.index
            knob = old.search_knob()
            index = self.rebuild(old.factory)
            if knob is not None:
                index.set_search_knob(knob.value)
                self.save()
            return self.index

    def _stored_dim(self) -> int:
        for _, templates in self.catalog.iter_templates(chunk=1):
            return int(templates.shape[1])
        return self._dim()

    def tune(self, target_recall: float, sample: int = 1000, k: int = 10) -> TuneResult:
        """Set the search knob to the smallest value whose recall@k, measured with `sample`
        catalog templates as queries against exact search, reaches the target; persisted."""
        with self._lock:
            index = self.index
            ids = self.catalog.indexed_ids()
            if ids.size == 0:
                raise VectorIndexError("the index is empty: there is nothing to tune on")
            rng = np.random.default_rng(0)
            chosen = np.sort(rng.choice(ids, size=min(sample, ids.size), replace=False))
            found = self.catalog.templates_of(chosen.tolist())
            queries = normalise(np.stack([found[int(i)] for i in chosen if int(i) in found]))
            truth = exact_neighbours(queries, self.catalog.iter_templates(), k)
            result = tune(index, queries, truth, target_recall, k)
            self.save()
            return result

    def maybe_upgrade(self) -> None:
        """Move to the configuration the gallery has grown into: exact search while small,
        then IVF ("auto") or the configured index once there is enough to train it. An index
        rebuilt by hand with another configuration (`vultus index rebuild --factory`) is the
        operator's choice and stays."""
        with self._lock:
            if self._index is None:
                return
            grew_out = self._index.factory in _with_and_without_idmap(
                self.backend.resolve(self.spec, 0)
            )
            if self.spec != "auto" and not grew_out:
                return
            wanted = self.backend.resolve(self.spec, len(self._index))
            if self._index.factory not in _with_and_without_idmap(wanted):
                log.info("gallery reached %d faces: rebuilding as %s", len(self._index), wanted)
                self.rebuild()

    def save(self) -> None:
        """Persist the index, caught up with the catalog first: under the lock file, so that
        no process writes back what another erased since it last looked."""
        with self._lock, self._file():
            if self._index is None:
                return
            self.sync()
            dead = self._index.dead()
            if dead and dead > COMPACT_DEAD_FRACTION * (dead + len(self._index)):
                log.info("%d erased entries in the index: compacting", dead)
                self.compact()
                return
            self.backend.save(self._index)
            self.catalog.mark_saved(self._seen)

    def close(self) -> None:
        with self._lock:
            self._index = self._view = None
            self.backend.close()


def _with_and_without_idmap(factory: str) -> tuple[str, str]:
    # FAISS wraps indexes that keep no ids in IDMap2: "Flat" is stored as "IDMap2,Flat".
    bare = factory.removeprefix("IDMap2,")
    return bare, f"IDMap2,{bare}"
