"""What the engine's mixins share. `core.Engine` sets these; each mixin (ingesting, searching,
library, finding, rights, requests, governance) declares here, for the type checker, what it uses
of the others."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import numpy.typing as npt

    from vultus.accuracy.calibration import Calibration
    from vultus.audit import AuditLog
    from vultus.catalog import Catalog, FaceRecord
    from vultus.catalog.models import RightsRequest, Source, Subject
    from vultus.config import Settings
    from vultus.crypto import KeyRing
    from vultus.engine.apikeys import KeyStore
    from vultus.engine.awskeys import AwsCredentials
    from vultus.engine.examples import DecisionPoints
    from vultus.engine.locking import Presence
    from vultus.index import VectorIndex
    from vultus.index.keeper import IndexKeeper
    from vultus.ingest.batches import IngestSummary
    from vultus.pipeline.analyse import FacePipeline
    from vultus.rights.erasure import ErasurePlan, ErasureReceipt
    from vultus.rights.review import Review
    from vultus.search.results import SearchResult, Verification


class EngineParts:
    if TYPE_CHECKING:
        settings: Settings
        catalog: Catalog
        keyring: KeyRing
        audit: AuditLog
        keys: KeyStore
        aws_credentials: AwsCredentials
        presence: Presence
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

        def sources(self) -> list[tuple[Source, int, int]]: ...

        # Across mixins: the library ingests uploads; ingest checks consents (governance);
        # rights compare an identity photo with the selfie (searching).
        add: Callable[..., IngestSummary]
        # Examples (a face collection's named faces) and collections (AWS Rekognition's) stand
        # on the library and on searching; people (discovery and its decisions) names faces
        # through the library.
        upload: Callable[..., tuple[IngestSummary, int | None]]
        face: Callable[[int], FaceRecord]
        create_subject: Callable[..., Subject]
        link_faces: Callable[..., int]
        subject: Callable[[str], Subject]
        delete_subject: Callable[..., int]
        delete_faces: Callable[..., int]
        check_purpose: Callable[[str | None], str]
        _check_query_model: Callable[[], None]
        _search: Callable[..., SearchResult]
        decision_points: Callable[..., DecisionPoints]
        _audit_search: Callable[..., None]
        check_consent: Callable[[str, int | None], None]
        consent_source_check: Callable[[int, str], Any]
        compare: Callable[..., Verification]
        # A request's review (finding) is acted on by rights and by the request workflow, which
        # also records it; rights' objection opens a request.
        review_person: Callable[..., Review]
        expand_review: Callable[..., Review]
        refresh_review: Callable[[Review], int]
        settle: Callable[[Review], ErasurePlan]
        _selfie_template: Callable[[Any], npt.NDArray[np.float32]]
        _identity_check: Callable[..., str]
        access: Callable[..., tuple[Path, ErasurePlan]]
        erase: Callable[..., ErasureReceipt]
        restrict: Callable[..., int]
        create_request: Callable[..., RightsRequest]
        record_review: Callable[..., None]
