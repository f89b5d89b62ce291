"""The one façade the CLI, the REST API and the web UI call: `Engine.add / search / verify /
delete ...`. It owns the catalog, the pipeline and the vector index, and keeps the index a
faithful derivative of the catalog.

The methods live by concept in the mixins beside this module (ingesting, searching, library,
people, finding, rights, requests and governance); this class owns the parts they share."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vultus import audit as actions
from vultus.accuracy.calibration import Calibration, calibration_for
from vultus.audit import AuditLog
from vultus.catalog import Catalog, catalog_exists, open_catalog
from vultus.catalog.models import Source
from vultus.config import Settings
from vultus.crypto import (
    KeyRing,
    check_canary,
    load_keyring,
    make_canary,
)
from vultus.engine.admin import OVERRIDES_KEY, Administering, apply_overrides, file_values
from vultus.engine.apikeys import KeyStore
from vultus.engine.awskeys import AwsCredentials
from vultus.engine.collections import Collections
from vultus.engine.examples import Examples
from vultus.engine.finding import Finding
from vultus.engine.governance import Governance
from vultus.engine.ingesting import Ingesting
from vultus.engine.library import Library
from vultus.engine.locking import Presence, locked
from vultus.engine.people import People
from vultus.engine.requests import Requests
from vultus.engine.rights import Rights
from vultus.engine.searching import Searching
from vultus.files import private_dir
from vultus.index import VectorIndex
from vultus.index.backends import open_backend
from vultus.index.keeper import IndexKeeper
from vultus.index.tune import TuneResult
from vultus.pipeline.analyse import FacePipeline
from vultus.rights.review import Review

log = logging.getLogger(__name__)

CONFIG_KEY = "settings"
# Serialises loads and saves of the persisted index between processes (see IndexKeeper).
INDEX_LOCK = "index.lock"
CANARY_KEY = "key_check"
# Settings that say how this process runs, not what is processed: not audited as changes
# (and catalog_url may hold a password).
RUNTIME_SETTINGS = {"data_dir", "workers", "batch_size", "key_file", "catalog_url"}
# A server address may carry credentials (https://user:secret@host): masked before auditing.
CREDENTIALS = re.compile(r"//[^/@\s]+@")


class Engine(
    Ingesting,
    Searching,
    Library,
    People,
    Examples,
    Finding,
    Rights,
    Requests,
    Governance,
    Administering,
    Collections,
):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        new = not catalog_exists(settings.catalog_url)
        # Only its owner may enter: the catalog, the index and stored photos are personal data.
        private_dir(settings.data_dir)
        if settings.data_dir.stat().st_mode & 0o077:
            # Made before Vultus created it private, or opened up by hand: said, not changed.
            log.warning(
                "the data directory %s can be entered by other users; run `chmod 700 %s`",
                settings.data_dir,
                settings.data_dir,
            )
        # Before the key is read: a rotation in another process must not change it under us.
        self.presence = Presence(settings.data_dir)
        try:
            # A new data directory may create the master key; an existing one must be given
            # its own.
            self.keyring: KeyRing = load_keyring(
                settings.data_dir, key_file=settings.key_file, create=new
            )
            self.catalog: Catalog = open_catalog(settings.catalog_url, self.keyring)
            self._check_key()
        except BaseException:
            self.presence.close()
            raise
        # Settings an admin changed in the UI, stored in the catalog, override the file.
        self._file_settings = file_values(settings)
        apply_overrides(settings, self.catalog.get_meta(OVERRIDES_KEY))
        # Through lambdas: a key rotation swaps self.keyring, and the log must follow it.
        self.audit = AuditLog(
            self.catalog,
            signer=lambda data: self.keyring.sign(data),
            verifier=lambda data, sig: self.keyring.verify(data, sig),
        )
        self.keys = KeyStore(self.catalog, self.audit, self.settings.purposes)
        self.aws_credentials = AwsCredentials(self.catalog, self.audit, lambda: self.keyring)
        self._pipeline: FacePipeline | None = None
        self._calibration: Calibration | None = None
        # One thread at a time in the in-process pipeline (dlib and ONNX Runtime objects are
        # not thread-safe) and in the in-memory index (a FAISS add racing a search corrupts
        # results). A server calls the engine from many threads; the CLI from one, for free.
        # Reentrant: locked methods call each other (access -> find_person -> index).
        self.lock = threading.RLock()
        self.indexes = IndexKeeper(
            self.catalog,
            open_backend(settings, lambda: self.keyring),
            spec=settings.index_factory,
            rerank=settings.index_rerank,
            model_id=lambda: self.model_id,
            dim=lambda: self.pipeline.embedder.dim,
            lock=self.lock,
            lock_file=settings.data_dir / INDEX_LOCK,
        )
        # An erasure killed after its commit left file work to do: finish it before anything.
        self.finish_pending_erasure()
        self._audit_config_change()

    def _audit_config_change(self) -> None:
        """Configuration changes are audited: the settings that decide what is processed and
        how (purposes, thresholds, retention rules...) are compared with those last seen."""
        current = self._config_now()
        stored = self.catalog.get_meta(CONFIG_KEY)
        previous = json.loads(stored) if stored else None
        if previous == current:
            return
        changed = {
            k: {"from": (previous or {}).get(k), "to": v}
            for k, v in current.items()
            if (previous or {}).get(k) != v
        }
        self.catalog.set_meta(CONFIG_KEY, json.dumps(current, sort_keys=True))
        self.audit.append(
            actions.CONFIG,
            details={"change": "settings" if previous else "first_open", "settings": changed},
        )

    def _config_now(self) -> dict[str, str]:
        return {
            # A server address may carry credentials (https://user:secret@host): never logged.
            k: CREDENTIALS.sub("//***@", str(v))
            for k, v in dataclasses.asdict(self.settings).items()
            if k not in RUNTIME_SETTINGS
        }

    def _remember_config(self) -> None:
        """The settings now in effect are those the next open compares with (a change made
        in the UI is audited once, when it is made)."""
        self.catalog.set_meta(CONFIG_KEY, json.dumps(self._config_now(), sort_keys=True))

    @classmethod
    def open(cls, data_dir: Path | str | None = None, **overrides: Any) -> Engine:
        return cls(Settings.load(data_dir, **overrides))

    def close(self) -> None:
        self.indexes.close()
        self.catalog.close()
        self.presence.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_key(self) -> None:
        """Refuse a wrong key before anything is read or written: a canary sealed under the
        catalog's key must open."""
        stored = self.catalog.get_meta(CANARY_KEY)
        if stored is None:
            self.catalog.set_meta(CANARY_KEY, base64.b64encode(make_canary(self.keyring)).decode())
        else:
            check_canary(self.keyring, base64.b64decode(stored))

    # -- lazily built parts ------------------------------------------------------------------
    @property
    def pipeline(self) -> FacePipeline:
        with self.lock:
            if self._pipeline is None:
                # One thread: measured here, a second ONNX Runtime thread makes a single face
                # twice as slow (6.9 -> 14.8 ms), and a server runs requests side by side anyway.
                self._pipeline = FacePipeline(self.settings, embed_threads=1)
            return self._pipeline

    @property
    def model_id(self) -> str:
        return self.catalog.get_meta("model_id") or self.pipeline.model_id

    @property
    def calibration(self) -> Calibration:
        if self._calibration is None:
            self._calibration = calibration_for(self.model_id, self.settings.data_dir)
        return self._calibration

    @property
    def index(self) -> VectorIndex:
        return self.indexes.index

    # -- sources -----------------------------------------------------------------------------
    def add_source(self, name: str, *, actor: str | None = None, **fields: Any) -> Source:
        source = self.catalog.add_source(name, **fields)
        self.audit.append(
            actions.CONFIG,
            actor=actor,
            details={
                "change": "source_added",
                "source": name,
                **{k: v for k, v in fields.items() if k != "notes"},
            },
        )
        return source

    def sources(self) -> list[tuple[Source, int, int]]:
        return self.catalog.list_sources()

    # -- the vector index, derived from the catalog -----------------------------------------
    @locked
    def rebuild_index(
        self, factory: str | None = None, *, on_progress: Callable[[int, int], None] | None = None
    ) -> VectorIndex:
        """Recreate the index from the catalog's templates, with `factory` or the setting.
        `on_progress(templates read, total)` follows the reading, the long part before the
        one call that trains and fills the index."""
        return self.indexes.rebuild(factory, on_progress)

    def explain_index(self, factory: str, size: int) -> str | None:
        """Why `factory` at `size` faces is built as another configuration (an IVF index too
        small to train is exact), in words; None when it is built as named."""
        return self.indexes.backend.explain(factory, size)

    @locked
    def tune_index(
        self, target_recall: float = 0.95, *, sample: int = 1000, actor: str | None = None
    ) -> TuneResult:
        """Pick nprobe/efSearch for `target_recall` (recall@10 against exact search on a sample
        of catalog templates); the choice is stored in the index and audited."""
        result = self.indexes.tune(target_recall, sample)
        self.audit.append(
            actions.CONFIG,
            actor=actor,
            details={"change": "index_tune", **dataclasses.asdict(result)},
        )
        return result

    @locked
    def compact_index(self) -> VectorIndex:
        """Rebuild the index without the entries of erased faces (HNSW's tombstones)."""
        return self.indexes.compact()

    @locked
    def save_index(self) -> None:
        self.indexes.save()

    # The rights methods run the pipeline and change the index too: the same lock guards them.
    @locked
    def review_person(self, selfie: Path | bytes | np.ndarray, **options: Any) -> Review:
        self._check_query_model()
        return Finding.review_person(self, selfie, **options)

    expand_review = locked(Finding.expand_review)
    refresh_review = locked(Finding.refresh_review)
    # A request's life: its photo checked, its review decided, the act done on the reviewed
    # faces, each as one step that no ingest or other reviewer slips into.
    photo_faces = locked(Requests.photo_faces)
    face_choice = locked(Requests.face_choice)
    intake_photo = locked(Requests.intake_photo)
    replace_request_photo = locked(Requests.replace_request_photo)
    request_review = locked(Requests.request_review)
    decide_request = locked(Requests.decide_request)
    erase_request = locked(Requests.erase_request)
    access_request = locked(Requests.access_request)
    restrict_request = locked(Requests.restrict_request)
    settle = locked(Finding.settle)
    find_person = locked(Finding.find_person)
    access = locked(Rights.access)
    erase = locked(Rights.erase)
    restrict = locked(Rights.restrict)
    object_to_processing = locked(Rights.object_to_processing)
    retention_run = locked(Governance.retention_run)
    withdraw_consent = locked(Governance.withdraw_consent)
    rotate_keys = locked(Governance.rotate_keys)

    @locked
    def status(self) -> dict[str, Any]:
        counts: dict[str, Any] = dict(self.catalog.counts())
        counts["model"] = self.catalog.get_meta("model_id")
        counts["data_dir"] = str(self.settings.data_dir)
        if counts["model"]:
            index = self.index
            counts["index_factory"] = index.factory
            counts["index_size"] = len(index)
        return counts
