"""What the engine's mixins share. `core.Engine` sets these; each mixin (ingesting, searching,
library, rights.facade) declares here, for the type checker, what it uses of the others."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vultus.auth import KeyStore
    from vultus.calibration import Calibration
    from vultus.catalog import Catalog
    from vultus.config import Settings
    from vultus.index import VectorIndex
    from vultus.index.keeper import IndexKeeper
    from vultus.ingest import IngestSummary
    from vultus.pipeline.analyse import FacePipeline
    from vultus.rights.audit import AuditLog
    from vultus.rights.crypto import KeyRing


class EngineParts:
    if TYPE_CHECKING:
        settings: Settings
        catalog: Catalog
        keyring: KeyRing
        audit: AuditLog
        keys: KeyStore
        lock: threading.RLock
        indexes: IndexKeeper
        _pipeline: FacePipeline | None
        _calibration: Calibration | None

        @property
        def pipeline(self) -> FacePipeline: ...
        @property
        def model_id(self) -> str: ...
        @property
        def calibration(self) -> Calibration: ...
        @property
        def index(self) -> VectorIndex: ...
        def save_index(self) -> None: ...

        # Across mixins: the library ingests uploads; ingest checks consents (rights).
        add: Callable[..., IngestSummary]
        consent_source_check: Callable[[int, str], Any]
