"""The Milvus backend of `VectorIndex`: the index lives on a Milvus server, not in this process.

Layout on the server, for a data directory with prefix P (setting `index_prefix`):

* one collection per built index, named `P__<model>__<generation>`: primary key `id` (INT64, the
  catalog's face id, auto_id off) and `vector` (FLOAT_VECTOR of the model's dimension), metric
  IP on unit vectors, so scores are cosine similarities as with FAISS;
* one alias `P` naming the live collection. A rebuild fills a fresh collection and then moves
  the alias in one server-side step, so a rebuild killed half-way leaves the old index live;
  the previous collection is dropped only after the move.

The collection's description holds what FAISS keeps in its file header (model id, configuration,
dimension, owner), so `load()` can tell which model an index belongs to.

Searches (and the gallery count) read at Session consistency: they see this client's own
writes (the first search after a delete reads at Strong, once, see `MilvusIndex.remove`), but
not necessarily another process's from the last moments. Strong would close that
gap by waiting for the server's next time tick on every search (100-200 ms measured, against a
few ms at Session). The gap is closed where the truth is instead: every hit goes through the
catalog, and the engine drops any face the catalog no longer holds, or holds as restricted,
before it is returned (`vultus.engine.searching`, `vultus.engine.finding`). Reads that decide
what to write or delete (which ids are held) stay Strong.

Configurations read like FAISS factory strings: "FLAT", "IVF_FLAT,nlist=1024",
"IVF_PQ,nlist=1024,m=16", "HNSW,M=16,efConstruction=200".
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vultus.config import Settings
from vultus.errors import ConfigError, VectorIndexError
from vultus.index.base import (
    Ids,
    IndexBackend,
    IndexFingerprint,
    VectorIndex,
    Vectors,
    check_ids,
)
from vultus.index.faiss_index import AUTO_FLAT_BELOW, nlist_for

try:
    from pymilvus import (
        Collection,
        CollectionSchema,
        DataType,
        FieldSchema,
        MilvusException,
        connections,
        utility,
    )
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ConfigError(
        "index backend 'milvus' needs pymilvus: install Vultus with the milvus extra "
        "(pip install 'vultus[milvus]')",
        code="milvus_missing",
    ) from exc

log = logging.getLogger(__name__)

FORMAT_NAME = "vultus-milvus-index"
FORMAT_VERSION = 1
ID_FIELD = "id"
VECTOR_FIELD = "vector"
STRONG = "Strong"
# Searches: read-your-own-writes without a time tick per search (see the module docstring).
SESSION = "Session"
# Rows per insert/upsert: a few MB per gRPC message at 128-d, well under the 64 MB limit.
WRITE_BATCH = 10_000
# Ids per `id in [...]` expression when checking or deleting: keeps expressions a few 100 kB.
EXPR_BATCH = 16_384
# Milvus refuses a top-k above this.
MAX_TOPK = 16_384
# The engine reads the gallery size on every search (for its thresholds, which move little
# with it): a count this fresh saves a second round trip per search. This index's own writes
# reset it; another process's show within this many seconds.
COUNT_TTL_S = 10.0

# Parameters each index type accepts, with the defaults `resolve` fills in. nlist defaults to
# the same rule as FAISS IVF (4*sqrt(n)); HNSW's are Milvus's usual starting point.
INDEX_PARAMS: dict[str, dict[str, int | None]] = {
    "FLAT": {},
    "IVF_FLAT": {"nlist": None},
    "IVF_SQ8": {"nlist": None},
    "IVF_PQ": {"nlist": None, "m": 16, "nbits": 8},
    "HNSW": {"M": 16, "efConstruction": 200},
}
_NAME_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _unavailable(what: str, exc: Exception) -> VectorIndexError:
    return VectorIndexError(f"Milvus {what} failed: {exc}", code="index_unavailable")


LOSSY = {"IVF_SQ8", "IVF_PQ"}


@dataclass(frozen=True)
class MilvusConfig:
    """A parsed configuration string: an index type and its build parameters."""

    index_type: str
    params: dict[str, int]

    @classmethod
    def parse(cls, text: str, size: int | None = None) -> MilvusConfig:
        """Parse "TYPE[,key=value...]". With `size`, missing parameters get their defaults
        (nlist from size); without it every parameter must already be there."""
        parts = [p.strip() for p in text.strip().split(",") if p.strip()]
        index_type = parts[0].upper() if parts else ""
        if index_type not in INDEX_PARAMS:
            raise ConfigError(
                f"Milvus index configuration {text!r}: the type must be one of "
                f"{', '.join(INDEX_PARAMS)} (or 'auto'), e.g. 'IVF_FLAT,nlist=1024'"
            )
        allowed = INDEX_PARAMS[index_type]
        params: dict[str, int] = {}
        for part in parts[1:]:
            key, _, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if key not in allowed:
                raise ConfigError(
                    f"Milvus index configuration {text!r}: {index_type} takes "
                    f"{', '.join(allowed) or 'no parameters'}, not {key!r}"
                )
            if value == "{auto}" and size is not None:
                continue
            try:
                params[key] = int(value)
            except ValueError as exc:
                raise ConfigError(
                    f"Milvus index configuration {text!r}: {key} must be an integer"
                ) from exc
            if params[key] <= 0:
                raise ConfigError(f"Milvus index configuration {text!r}: {key} must be positive")
        for key, default in allowed.items():
            if key in params:
                continue
            if size is None:
                raise ConfigError(
                    f"Milvus index configuration {text!r} lacks {key}; resolve it first"
                )
            params[key] = nlist_for(size) if default is None else default
        return cls(index_type, params)

    def __str__(self) -> str:
        return ",".join([self.index_type, *(f"{k}={v}" for k, v in self.params.items())])

    def build_params(self) -> dict[str, Any]:
        return {"index_type": self.index_type, "metric_type": "IP", "params": dict(self.params)}

    def search_params(self, k: int, nprobe: int) -> dict[str, Any]:
        if self.index_type == "HNSW":
            params: dict[str, int] = {"ef": max(k, nprobe)}  # Milvus requires ef >= k
        elif "nlist" in self.params:
            params = {"nprobe": min(nprobe, self.params["nlist"])}
        else:
            params = {}
        return {"metric_type": "IP", "params": params}


def resolve_config(spec: str, size: int) -> str:
    """The concrete configuration for `spec` at `size` vectors: "auto" is FLAT (exact) below
    AUTO_FLAT_BELOW vectors, as with FAISS, else IVF_FLAT with nlist from size."""
    spec = spec.strip()
    if spec.lower() == "auto":
        return "FLAT" if size < AUTO_FLAT_BELOW else f"IVF_FLAT,nlist={nlist_for(size)}"
    return str(MilvusConfig.parse(spec, size))


def _in(ids: Ids) -> str:
    return f"{ID_FIELD} in [{','.join(map(str, ids.tolist()))}]"


class MilvusIndex(VectorIndex):
    """One collection on the server. Every call is a round trip: `ids()` and `fingerprint()`
    scan the server's ids rather than keep a local copy that another process sharing the
    server could have made stale (`__len__` alone is cached, for COUNT_TTL_S)."""

    def __init__(
        self, collection: Collection, config: MilvusConfig, dim: int, model_id: str, nprobe: int
    ) -> None:
        self._collection = collection
        self._config = config
        self.factory = str(config)
        self.dim = dim
        self.model_id = model_id
        self.nprobe = nprobe
        # Deleted vectors stay in their segment until a compaction rewrites it: save() asks
        # for one after deletes (see MilvusBackend.save).
        self.deleted_since_save = False
        # Milvus advises against frequent flushes (each seals small segments): save() flushes
        # only what changed. Writes are durable before that, in the server's log.
        self.changed_since_save = False
        self._count: tuple[float, int] | None = None  # (monotonic time read, count)
        # pymilvus's Session reads wait for this client's inserts but not for its deletes
        # (the embedded 2.3.5 server returns no timestamp for a delete): the first search after
        # a delete reads at Strong, once, so that this process never sees what it just erased.
        self._deleted_unseen = False

    @property
    def collection(self) -> Collection:
        """The pymilvus collection, for operations and benchmarks."""
        return self._collection

    @property
    def collection_name(self) -> str:
        return str(self._collection.name)

    @property
    def config(self) -> MilvusConfig:
        return self._config

    def is_compressed(self) -> bool:
        # Quantised vectors score approximately: the keeper re-ranks them from the catalog.
        return self._config.index_type in LOSSY

    def __len__(self) -> int:
        if self._count is not None and time.monotonic() - self._count[0] < COUNT_TTL_S:
            return self._count[1]
        try:
            rows = self._collection.query(
                f"{ID_FIELD} >= 0",
                output_fields=["count(*)"],
                consistency_level=STRONG if self._deleted_unseen else SESSION,
            )
        except MilvusException as exc:
            raise _unavailable("count", exc) from exc
        self._count = (time.monotonic(), int(rows[0]["count(*)"]))
        return self._count[1]

    def ids(self) -> Ids:
        """Every id held, ascending: one pass of a query iterator over the whole collection
        (about 8 bytes per face over the wire)."""
        parts = list(self._iter_ids())
        ids = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        return np.sort(ids)

    def _iter_ids(self) -> Iterator[Ids]:
        try:
            it = self._collection.query_iterator(
                batch_size=EXPR_BATCH,
                expr=f"{ID_FIELD} >= 0",
                output_fields=[ID_FIELD],
                consistency_level=STRONG,
            )
            try:
                while batch := it.next():
                    yield np.fromiter((row[ID_FIELD] for row in batch), dtype=np.int64)
            finally:
                it.close()
        except MilvusException as exc:
            raise _unavailable("id scan", exc) from exc

    def fingerprint(self) -> IndexFingerprint:
        ids = self.ids()
        id_max = int(ids[-1]) if ids.size else -1
        # Summed as Python ints: exact for any id, as the catalog's SQL SUM is.
        return IndexFingerprint(self.model_id, int(ids.size), int(ids.sum(dtype=object)), id_max)

    # ----------------------------------------------------------------- writing

    def add(self, ids: Ids, vectors: Vectors) -> None:
        """Add vectors under the catalog's ids; an id already held is replaced (an upsert), so
        replaying an add after a crash is harmless."""
        ids = check_ids(ids)
        vectors = self.check_vectors(vectors)
        if ids.shape[0] != vectors.shape[0]:
            raise VectorIndexError(f"{ids.shape[0]} ids for {vectors.shape[0]} vectors")
        self._count = None
        if np.unique(ids).size != ids.size:
            raise VectorIndexError("the same id appears more than once in one add")
        try:
            for i in range(0, ids.size, WRITE_BATCH):
                self._collection.upsert(
                    [ids[i : i + WRITE_BATCH].tolist(), vectors[i : i + WRITE_BATCH]]
                )
        except MilvusException as exc:
            raise _unavailable("insert", exc) from exc
        self.changed_since_save = bool(ids.size) or self.changed_since_save

    def remove(self, ids: Ids) -> int:
        """Delete these ids (unknown ones are ignored); returns how many were held. This client's
        next search (at Strong consistency, once) no longer finds them; another client's may,
        for a moment, which is why the engine checks every hit against the catalog."""
        ids = np.unique(check_ids(ids))
        self._count = None
        held = self._held(ids)
        try:
            for i in range(0, held.size, EXPR_BATCH):
                self._collection.delete(_in(held[i : i + EXPR_BATCH]))
        except MilvusException as exc:
            raise _unavailable("delete", exc) from exc
        if held.size:
            self.deleted_since_save = self.changed_since_save = True
            self._deleted_unseen = True
        return int(held.size)

    def held(self, ids: Ids) -> Ids:
        return self._held(np.unique(check_ids(ids)))

    def _held(self, ids: Ids) -> Ids:
        # Milvus's delete counts the ids it was given, not those it found: ask first.
        found: list[int] = []
        try:
            for i in range(0, ids.size, EXPR_BATCH):
                rows = self._collection.query(
                    _in(ids[i : i + EXPR_BATCH]),
                    output_fields=[ID_FIELD],
                    consistency_level=STRONG,
                )
                found.extend(int(r[ID_FIELD]) for r in rows)
        except MilvusException as exc:
            raise _unavailable("query", exc) from exc
        return np.array(sorted(found), dtype=np.int64)

    def flush(self) -> None:
        """Seal what was written into segments in object storage, where they get indexed."""
        try:
            self._collection.flush()
            self.changed_since_save = False
        except MilvusException as exc:
            raise VectorIndexError(
                f"could not flush the Milvus collection {self.collection_name}: {exc}",
                code="index_save_failed",
            ) from exc

    def compact(self, wait: bool = False) -> None:
        """Ask Milvus to rewrite segments without their deleted rows. Until then, and until its
        garbage collector drops the old segment files, deleted vectors' bytes stay in storage."""
        try:
            self._collection.compact()
            if wait:
                self._collection.wait_for_compaction_completed()
        except MilvusException as exc:
            raise _unavailable("compaction", exc) from exc
        self.deleted_since_save = False

    def wait_for_index(self) -> None:
        """Block until the server has built the index on every sealed segment (until then it
        searches those segments by brute force)."""
        try:
            utility.wait_for_index_building_complete(
                self.collection_name, using=self._collection._using
            )
        except MilvusException as exc:
            raise _unavailable("index build", exc) from exc

    # ----------------------------------------------------------------- searching

    def search(
        self, queries: Vectors, k: int, allowed: Ids | None = None
    ) -> tuple[npt.NDArray[np.float32], Ids]:
        """Top-k inner products per query row; missing results are id -1, score -inf.
        `allowed` becomes an `id in [...]` filter evaluated on the server."""
        queries = self.check_vectors(queries)
        if k <= 0:
            raise VectorIndexError(f"k must be positive, not {k}")
        nq = queries.shape[0]
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        result = np.full((nq, k), -1, dtype=np.int64)
        expr = None
        nprobe = self.nprobe
        if allowed is not None:
            allowed_ids = np.unique(check_ids(allowed))
            if allowed_ids.size == 0:
                return scores, result
            expr = _in(allowed_ids)
            if "nlist" in self._config.params:
                # As with FAISS IVF: a filter keeping a fraction f of the faces needs about
                # nprobe/f lists probed to find as many allowed candidates.
                fraction = min(1.0, allowed_ids.size / max(1, len(self)))
                nprobe = math.ceil(nprobe / fraction)
        if nq == 0:
            return scores, result
        limit = min(k, MAX_TOPK)
        deleted_unseen = self._deleted_unseen
        try:
            hits = self._collection.search(
                queries,
                VECTOR_FIELD,
                self._config.search_params(limit, nprobe),
                limit=limit,
                expr=expr,
                consistency_level=STRONG if deleted_unseen else SESSION,
            )
        except MilvusException as exc:
            raise _unavailable("search", exc) from exc
        if deleted_unseen:
            self._deleted_unseen = False
        for row, hit in enumerate(hits):
            n = len(hit.ids)
            result[row, :n] = hit.ids
            scores[row, :n] = hit.distances
        return scores, result


class MilvusBackend(IndexBackend):
    """A data directory's index on a Milvus server (`index_uri`), under the alias
    `index_prefix`. Two data directories can share a server with different prefixes."""

    name = "milvus"

    def __init__(self, settings: Settings) -> None:
        if not settings.index_uri:
            raise ConfigError(
                "index backend 'milvus' needs the server's address: set `uri` in the [index] "
                "table of vultus.toml or VULTUS_INDEX_URI, e.g. http://localhost:19530",
                code="index_uri_missing",
            )
        if not _NAME_OK.match(settings.index_prefix) or "__" in settings.index_prefix:
            raise ConfigError(
                f"index prefix {settings.index_prefix!r} must be letters, digits and single "
                "underscores, starting with a letter (it names Milvus collections)"
            )
        self.uri = settings.index_uri
        self.prefix = settings.index_prefix
        self.nprobe = settings.index_nprobe
        self.owner = str(Path(settings.data_dir).resolve())
        # A FAISS file left from before the switch to Milvus (removed on the first save).
        self.stale_file = settings.index_path
        # pymilvus keeps connections in a global registry by name: one name per backend.
        self._using = f"vultus-{uuid.uuid4().hex[:12]}"
        self._connected = False

    def _connect(self) -> str:
        if not self._connected:
            try:
                connections.connect(alias=self._using, uri=self.uri, timeout=30)
            except MilvusException as exc:
                raise _unavailable(f"connection to {self.uri}", exc) from exc
            self._connected = True
        return self._using

    def close(self) -> None:
        if self._connected:
            connections.disconnect(self._using)
            self._connected = False

    def resolve(self, spec: str, size: int) -> str:
        return resolve_config(spec, size)

    # ----------------------------------------------------------------- loading

    def _live_name(self) -> str | None:
        using = self._connect()
        try:
            if not utility.has_collection(self.prefix, using=using):
                return None
            return str(Collection(self.prefix, using=using).describe()["collection_name"])
        except MilvusException as exc:
            raise _unavailable("describe", exc) from exc

    def _meta(self, name: str) -> dict[str, Any] | None:
        """What Vultus recorded in a collection's description; None for foreign collections."""
        try:
            meta = json.loads(Collection(name, using=self._connect()).description)
        except (ValueError, TypeError):
            return None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            return None
        return meta

    def load(self) -> MilvusIndex:
        name = self._live_name()
        if name is None:
            raise VectorIndexError(
                f"no vector index named {self.prefix!r} on {self.uri}", code="index_missing"
            )
        meta = self._meta(name)
        if meta is None or meta.get("version") != FORMAT_VERSION:
            raise VectorIndexError(
                f"the Milvus collection {name} is not a Vultus index of this version",
                code="index_corrupt",
            )
        if meta.get("owner") != self.owner:
            # Refuse rather than let the keeper "reconcile" another directory's index away.
            raise ConfigError(
                f"the Milvus index {self.prefix!r} on {self.uri} belongs to the data directory "
                f"{meta.get('owner')}; give this one its own `prefix` in the [index] table",
                code="index_prefix_taken",
            )
        try:
            config = MilvusConfig.parse(str(meta["config"]))
            collection = Collection(name, using=self._connect())
            collection.load()
        except MilvusException as exc:
            raise _unavailable(f"loading {name}", exc) from exc
        return MilvusIndex(collection, config, int(meta["dim"]), str(meta["model_id"]), self.nprobe)

    # ----------------------------------------------------------------- building

    def create(self, config: str, dim: int, model_id: str) -> MilvusIndex:
        """A new, empty collection beside the live one; it goes live on `save`."""
        if dim <= 0:
            raise ConfigError(f"vector index dimension must be positive, not {dim}")
        if config.strip().lower() == "auto" or "{auto}" in config:
            raise ConfigError(f"index configuration {config!r} must be resolved first")
        parsed = MilvusConfig.parse(config)
        if parsed.index_type == "IVF_PQ" and dim % parsed.params["m"]:
            raise ConfigError(f"IVF_PQ needs m to divide the dimension {dim}: {config!r}")
        model = re.sub(r"[^A-Za-z0-9]+", "_", model_id).strip("_")[:64] or "model"
        name = f"{self.prefix}__{model}__{uuid.uuid4().hex[:12]}"
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "model_id": model_id,
            "config": str(parsed),
            "dim": dim,
            "prefix": self.prefix,
            "owner": self.owner,
        }
        schema = CollectionSchema(
            [
                FieldSchema(ID_FIELD, DataType.INT64, is_primary=True, auto_id=False),
                FieldSchema(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim),
            ],
            description=json.dumps(meta, sort_keys=True),
        )
        try:
            collection = Collection(name, schema, using=self._connect(), consistency_level=STRONG)
            collection.create_index(VECTOR_FIELD, parsed.build_params())
            collection.load()
        except MilvusException as exc:
            raise _unavailable(f"creating {name}", exc) from exc
        return MilvusIndex(collection, parsed, dim, model_id, self.nprobe)

    def save(self, index: VectorIndex) -> None:
        """Flush what changed, and make `index` the live one if it is new: the alias moves in one
        step, then the collection it named is dropped. Asks for a compaction after deletes."""
        if not isinstance(index, MilvusIndex):
            raise VectorIndexError(f"the Milvus backend cannot save a {type(index).__name__}")
        if index.changed_since_save:
            index.flush()
        using = self._connect()
        live = self._live_name()
        try:
            if live is None:
                utility.create_alias(index.collection_name, self.prefix, using=using)
            elif live != index.collection_name:
                utility.alter_alias(index.collection_name, self.prefix, using=using)
        except MilvusException as exc:
            raise VectorIndexError(
                f"could not make {index.collection_name} the live index: {exc}",
                code="index_save_failed",
            ) from exc
        self._drop_others(index.collection_name)
        if index.deleted_since_save:
            index.compact()
        # Its templates would otherwise outlive every erasure made from now on.
        self.stale_file.unlink(missing_ok=True)

    def _drop_others(self, live: str) -> None:
        """Drop this directory's collections other than the live one: the one a rebuild
        replaced, and any a killed rebuild left behind. They hold templates of faces that may
        have been erased since."""
        using = self._connect()
        try:
            for name in utility.list_collections(using=using):
                meta = self._meta(name) if name != live else None
                if meta and meta.get("prefix") == self.prefix and meta.get("owner") == self.owner:
                    utility.drop_collection(name, using=using)
                    log.info("dropped the replaced Milvus collection %s", name)
        except MilvusException as exc:
            raise _unavailable("cleanup", exc) from exc
