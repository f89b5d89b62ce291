"""The Engine's governance duties: retention (data expires when its period ends), consent
records and their withdrawal, master-key rotation, and the Art. 30 and Art. 35 documents.

`Engine` mixes this class in beside `engine.rights`; the documents themselves are written by
`vultus.rights.reports`.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from vultus import audit as actions
from vultus.catalog.models import (
    AuditEntry,
    AwsCredential,
    Consent,
    Face,
    FaceTrack,
    Image,
    Meta,
    RightsRequest,
    Source,
    Subject,
    Suppression,
)
from vultus.catalog.store import SUPPRESSION_AAD, TEMPLATE_AAD, TRACK_CROP_AAD
from vultus.clock import now
from vultus.config import require_controller
from vultus.crypto import (
    KEY_ENV,
    KeyRing,
    default_key_file,
    finish_rotation,
    make_canary,
    read_key_file,
    reencrypt_file,
    reencrypt_table,
    rotated,
    write_key_file,
)
from vultus.engine.awskeys import row_aad as aws_row_aad
from vultus.engine.parts import EngineParts
from vultus.engine.requests import REQUEST_AAD
from vultus.errors import ConfigError, NotFoundError, RightsError
from vultus.lawful_basis import rests_on_consent
from vultus.rights.erasure import (
    is_stored_copy,
)
from vultus.rights.reports import RecipientFacts, ReportFacts, SourceFacts, write_report
from vultus.search.tiers import Tiering

# A key rotation under way: the key ids it goes from and to and, once every value is
# re-encrypted, the counts its audit entry reports. Removed with that entry.
ROTATION_KEY = "key_rotation"


@dataclass(frozen=True)
class RetentionItem:
    image_id: int
    image_path: str
    retain_until: datetime
    faces: int


class Governance(EngineParts):
    """Mixed into `Engine`; every method's `self` is the engine."""

    # -- retention -------------------------------------------------------------------------
    def retention_report(self, at: datetime | None = None) -> list[RetentionItem]:
        return [
            RetentionItem(image_id, path, until, len(faces))
            for image_id, path, until, faces in self.catalog.expired_images(at or now())
        ]

    def retention_run(
        self, at: datetime | None = None, *, actor: str | None = None
    ) -> list[RetentionItem]:
        """Purge every image past its `retain_until`, with the erasure cascade (no suppression:
        expiry says nothing about the person's wishes)."""
        due = self.retention_report(at)
        if due:
            self._purge_images(
                [item.image_id for item in due], actions.RETENTION, {"reason": "expired"}, actor
            )
        return due

    def _purge_images(
        self, image_ids: list[int], action: str, details: dict[str, Any], actor: str | None
    ) -> list[int]:
        """Whole images out, with their faces, in one transaction with the audit entry; then
        the index, Vultus's own stored copies, and the scrub. Returns the face ids removed."""
        with self.catalog.session() as s, s.begin():
            face_ids = list(
                s.scalars(select(Face.id).where(Face.image_id.in_(image_ids)).order_by(Face.id))
            )
            paths = list(s.scalars(select(Image.path).where(Image.id.in_(image_ids))))
            s.execute(delete(Face).where(Face.image_id.in_(image_ids)))
            s.execute(delete(Image).where(Image.id.in_(image_ids)))
            self.audit.append(
                action,
                actor=actor,
                result_ids=face_ids,
                details={**details, "images": len(image_ids), "faces": len(face_ids)},
                session=s,
            )
        if face_ids:
            self.index.remove(np.array(face_ids, dtype=np.int64))
            self.save_index()
        for path in paths:
            if is_stored_copy(path, self.settings.data_dir):
                Path(path).unlink(missing_ok=True)
        self.catalog.scrub()
        return face_ids

    # -- consent ---------------------------------------------------------------------------
    def add_consent(
        self,
        source: str,
        person: str,
        *,
        notice_version: str,
        given_at: datetime | None = None,
        actor: str | None = None,
    ) -> int:
        src = self.catalog.get_source(source)
        if not rests_on_consent(src.lawful_basis, src.special_condition):
            raise RightsError(
                f"source {source!r} does not rest on consent ({src.lawful_basis} / "
                f"{src.special_condition}); consent records belong to consent-based sources"
            )
        with self.catalog.session() as s, s.begin():
            consent = Consent(
                source_id=src.id,
                person=person,
                given_at=given_at or now(),
                notice_version=notice_version,
            )
            s.add(consent)
            s.flush()
            self.audit.append(
                actions.CONSENT,
                actor=actor,
                details={"consent": consent.id, "source": source, "given": True},
                session=s,
            )
        return consent.id

    def withdraw_consent(self, consent_id: int, *, actor: str | None = None) -> int:
        """A withdrawal erases every image and face that rests on the consent; returns how
        many faces went."""
        with self.catalog.session() as s, s.begin():
            consent = s.get(Consent, consent_id)
            if consent is None:
                raise NotFoundError(f"no consent record {consent_id}")
            consent.withdrawn_at = now()
            image_ids = list(
                s.scalars(select(Image.id).where(Image.consent_id == consent_id).order_by(Image.id))
            )
        face_ids = self._purge_images(
            image_ids, actions.CONSENT, {"consent": consent_id, "withdrawn": True}, actor
        )
        return len(face_ids)

    def consent_source_check(self, consent_id: int, source: str) -> None:
        with self.catalog.session() as s:
            consent = s.get(Consent, consent_id)
            src = s.scalar(select(Source).where(Source.name == source))
        if consent is None:
            raise NotFoundError(f"no consent record {consent_id}")
        if consent.withdrawn_at is not None:
            raise RightsError(
                f"consent {consent_id} was withdrawn on {consent.withdrawn_at:%Y-%m-%d}"
            )
        if src is None or consent.source_id != src.id:
            raise RightsError(f"consent {consent_id} was not given for source {source!r}")

    # -- keys ------------------------------------------------------------------------------
    def rotate_keys(self, *, actor: str | None = None) -> dict[str, int]:
        """Re-encrypt everything under a new key. The new key file (new key first, old kept)
        is written before any data changes, so a killed rotation loses nothing and running
        the command again finishes it, audit entry included.

        Only while no other process has the data directory open: one that did would go on
        sealing new templates under the key this retires (see docs/processes.md)."""
        with self.presence.alone("a key rotation"):
            return self._rotate_keys(actor)

    def _rotate_keys(self, actor: str | None) -> dict[str, int]:
        from_env = bool(os.environ.get(KEY_ENV))
        # With a key file, the new ring is written BEFORE any data changes; with the
        # environment, the operator already put both keys there.
        path = None if from_env else (self.settings.key_file or default_key_file())
        stored = self.catalog.get_meta(ROTATION_KEY)
        pending: dict[str, Any] | None = json.loads(stored) if stored else None
        active = self.keyring.active_id
        # Under way: old keys still in the ring, or a record naming the active key as the
        # one rotated to (killed after the key file was finished, before the audit entry).
        resuming = bool(self.keyring.retired_ids) or (
            pending is not None and pending["to"] == active
        )
        if not resuming:
            if from_env:
                raise ConfigError(
                    f"keys come from ${KEY_ENV}: set it to 'NEW,OLD' (NEW from `vultus keys "
                    "generate`), run `vultus keys rotate` again, then set it to NEW alone"
                )
            assert path is not None
            ring = rotated(self.keyring)
            pending = {"from": active, "to": ring.active_id}
            self.catalog.set_meta(ROTATION_KEY, json.dumps(pending))
            write_key_file(path, ring)
            self.keyring = read_key_file(path)
        elif pending is None or pending["to"] != active:
            pending = {"from": self.keyring.retired_ids[0], "to": active}
            self.catalog.set_meta(ROTATION_KEY, json.dumps(pending))
        ring = self.keyring
        self.catalog.keyring = ring
        counts: dict[str, int] | None = pending.get("counts")
        if counts is None:
            counts = self._reencrypt_all(ring)
            # Kept with the record: a rerun after a kill from here on audits these counts.
            pending["counts"] = counts
            self.catalog.set_meta(ROTATION_KEY, json.dumps(pending))
        final = finish_rotation(ring)
        if path is not None and ring.retired_ids:
            write_key_file(path, final)
        self.keyring = final
        self.catalog.keyring = final
        with self.catalog.session() as s, s.begin():
            s.execute(delete(Meta).where(Meta.key == ROTATION_KEY))
            self.audit.append(
                actions.KEY_CHANGE,
                actor=actor,
                details={"from": pending["from"], "to": final.active_id, **counts},
                session=s,
            )
        self.catalog.scrub()
        return counts

    def _reencrypt_all(self, ring: KeyRing) -> dict[str, int]:
        counts = {
            "templates": reencrypt_table(
                self.catalog.session, Face.__table__, "id", "template", ring, aad=TEMPLATE_AAD
            ),
            "suppression": reencrypt_table(
                self.catalog.session,
                Suppression.__table__,
                "id",
                "template",
                ring,
                aad=SUPPRESSION_AAD,
            ),
            "track_crops": reencrypt_table(
                self.catalog.session,
                FaceTrack.__table__,
                "face_id",
                "crop",
                ring,
                aad=TRACK_CROP_AAD,
            ),
            "aws_credentials": reencrypt_table(
                self.catalog.session,
                AwsCredential.__table__,
                "key_id",
                "secret",
                ring,
                aad=aws_row_aad,
            ),
            "requests": reencrypt_table(
                self.catalog.session,
                RightsRequest.__table__,
                "id",
                "selfie",
                ring,
                aad=REQUEST_AAD,
            ),
        }
        self.catalog.set_meta("key_check", base64.b64encode(make_canary(ring)).decode())
        if self.settings.index_path.exists():
            from vultus.index.backends import INDEX_AAD

            counts["index"] = int(reencrypt_file(self.settings.index_path, ring, aad=INDEX_AAD))
        return counts

    # -- Art. 30 and Art. 35 documents -----------------------------------------------------
    def report(self, kind: str, out_dir: Path, *, actor: str | None = None) -> list[Path]:
        # Refused before the facts are gathered (and their export audited) for nothing.
        require_controller(self.settings.controller, f"the {kind} report")
        return write_report(kind, self.report_facts(actor=actor), out_dir)

    def report_facts(self, *, actor: str | None = None) -> ReportFacts:
        sources = [
            SourceFacts(
                name=src.name,
                kind=src.kind,
                lawful_basis=src.lawful_basis,
                special_condition=src.special_condition,
                legal_reference=src.legal_reference,
                purpose=src.purpose,
                retention_days=src.retention_days,
                images=images,
                faces=faces,
            )
            for src, images, faces in self.sources()
        ]
        gallery = self.catalog.fingerprint(self.model_id).count
        cal = self.calibration
        threshold = cal.threshold_for(self.settings.search_fmr, gallery_size=max(1, gallery))
        possible = Tiering.of(
            cal,
            fmr=self.settings.rights_fmr,
            gallery_size=gallery,
            possible_fmr=self.settings.possible_fmr,
            possible_strangers=self.settings.possible_strangers,
        )
        table = []
        for target in (1e-2, 1e-3, 1e-4):
            d = float(cal.threshold_for(target, gallery_size=max(1, gallery)))
            table.append((target, d, float(cal.tar_at(d))))
        with self.catalog.session() as s:
            per_purpose = dict(
                s.execute(
                    select(AuditEntry.purpose, func.count())
                    .where(AuditEntry.action == actions.SEARCH)
                    .group_by(AuditEntry.purpose)
                ).all()
            )
            count = lambda q: s.scalar(q) or 0  # noqa: E731
            # What the documents count is faces and images, which the entries' details hold;
            # the number of entries is the number of erasures (or retention runs).
            erased = _details(s, actions.ERASURE)
            purged = sum(int(d.get("images") or 0) for d in _details(s, actions.RETENTION))
            open_q = RightsRequest.status.in_(["received", "in_review"])
            facts = ReportFacts(
                controller=self.settings.controller,
                generated_at=now(),
                data_dir=str(self.settings.data_dir),
                sources=sources,
                search_purposes=list(self.settings.purposes),
                recipients=[
                    RecipientFacts(name=n, role=r, created_at=c, expires_at=e, revoked=v)
                    for n, r, c, e, v in self.recipients()
                ],
                security_measures=[
                    "face templates encrypted at rest with AES-256-GCM; the key is kept "
                    "outside the data directory",
                    "the vector index file is encrypted at rest and decrypted only in memory"
                    if self.settings.index_backend == "faiss"
                    else "the vector index is held by a Milvus server, whose storage the "
                    "operator encrypts at rest; erased faces leave it at once and their bytes "
                    "at its next compaction and garbage collection",
                    "append-only, hash-chained audit log of every search, view, export, "
                    "erasure, ingest, configuration and key change",
                    "every search states a purpose from a configured list",
                    "erasure removes templates from the catalog and the index and scrubs "
                    "deleted database pages; a suppression list keeps erased people out",
                    "thresholds calibrated to false-match rates and scaled with gallery size",
                    "no collection from the internet: sources are named by the operator",
                ],
                gallery_size=gallery,
                subjects=count(select(func.count(Subject.id))),
                model_id=self.model_id,
                search_fmr_target=self.settings.search_fmr,
                threshold_distance=float(threshold),
                tar_at_threshold=float(cal.tar_at(float(threshold))),
                possible_tar=float(cal.tar_at(possible.possible_threshold)),
                possible_pair_fmr=possible.possible_pair_fmr,
                possible_strangers=self.settings.possible_strangers,
                fmr_table=table,
                searches_per_purpose={str(k): v for k, v in per_purpose.items()},
                erasures=len(erased),
                faces_erased=sum(int(d.get("faces") or 0) for d in erased),
                access_requests=count(
                    select(func.count()).where(AuditEntry.action == actions.ACCESS)
                ),
                open_requests=count(select(func.count(RightsRequest.id)).where(open_q)),
                overdue_requests=count(
                    select(func.count(RightsRequest.id)).where(
                        open_q,
                        func.coalesce(RightsRequest.extended_until, RightsRequest.due_at) < now(),
                    )
                ),
                suppression_entries=count(select(func.count(Suppression.id))),
                restricted_faces=count(
                    select(func.count(Face.id)).where(Face.restricted.is_(True))
                ),
                retention_purged=purged,
            )
        self.audit.append(actions.EXPORT, actor=actor, details={"report": "facts"})
        return facts

    def recipients(self) -> list[tuple[str, str, datetime, datetime | None, bool]]:
        """Who can receive data: the API keys and their roles."""
        return [
            (k.name, k.role, k.created_at, k.expires_at, k.revoked_at is not None)
            for k in self.keys.list()
        ]


def _details(session: Session, action: str) -> list[dict[str, Any]]:
    """The details of every audit entry of one action (counted in Python: JSON sums differ
    between SQLite and PostgreSQL, and these entries are few)."""
    rows = session.scalars(select(AuditEntry.details).where(AuditEntry.action == action))
    return [dict(d or {}) for d in rows]
