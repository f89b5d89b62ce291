"""The data-protection half of the Engine façade: access, erasure, suppression, restriction,
objection, retention, consent, requests, key rotation and reports.

`Engine` mixes this class in, so the CLI and the API still call one object; the obligations
themselves (documents, receipts, crypto, audit) live in their own modules beside this one.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from vultus.catalog.models import (
    AuditEntry,
    Consent,
    Face,
    Image,
    RightsRequest,
    Source,
    Subject,
    Suppression,
)
from vultus.catalog.records import ErasedFaces, FaceRecord, now
from vultus.catalog.store import SUPPRESSION_AAD, TEMPLATE_AAD
from vultus.errors import ConfigError, NotFoundError, VultusError
from vultus.rights import audit as actions
from vultus.rights import requests as req
from vultus.rights.audit import face_hash
from vultus.rights.crypto import (
    KEY_ENV,
    default_key_file,
    finish_rotation,
    make_canary,
    read_key_file,
    reencrypt_file,
    reencrypt_table,
    rotated,
    write_key_file,
)
from vultus.rights.erasure import (
    ErasurePlan,
    ErasureReceipt,
    PersonMatch,
    blur_location,
    receipt_id,
    write_receipt,
)
from vultus.rights.package import AccessMatch, AccessPackage, Recipient, write_access_package
from vultus.rights.reports import RecipientFacts, ReportFacts, SourceFacts, write_report
from vultus.storage import bucket_keeps_versions, is_s3, split_s3

if TYPE_CHECKING:
    from vultus.auth import KeyStore
    from vultus.calibration import Calibration
    from vultus.catalog import Catalog
    from vultus.catalog.models import Source as SourceRow
    from vultus.config import Settings
    from vultus.index import VectorIndex
    from vultus.pipeline.analyse import FacePipeline
    from vultus.rights.audit import AuditLog
    from vultus.rights.crypto import KeyRing
    from vultus.search import Verification

REQUEST_AAD = b"rights_requests.selfie"
PENDING_ERASURE = "pending_erasure"
# The stricter 1:1 check behind `--verify-with`: an access package goes only to the person.
IDENTITY_CHECK_FMR = 1e-4


class RightsError(VultusError):
    code = "rights_error"


@dataclass(frozen=True)
class RetentionItem:
    image_id: int
    image_path: str
    retain_until: datetime
    faces: int


class RightsFacade:
    """Mixed into `Engine`; every method's `self` is the engine."""

    if TYPE_CHECKING:  # what the Engine provides
        settings: Settings
        catalog: Catalog
        keyring: KeyRing
        audit: AuditLog
        keys: KeyStore

        @property
        def index(self) -> VectorIndex: ...
        @property
        def pipeline(self) -> FacePipeline: ...
        @property
        def calibration(self) -> Calibration: ...
        @property
        def model_id(self) -> str: ...
        def compare(
            self, a: npt.NDArray[np.float32], b: npt.NDArray[np.float32], *, fmr: float
        ) -> Verification: ...
        def save_index(self) -> None: ...
        def sources(self) -> list[tuple[SourceRow, int, int]]: ...

    # -- finding a person: the heart of access and erasure by selfie -------------------------
    def find_person(self, selfie: Path | bytes, *, fmr: float | None = None) -> ErasurePlan:
        """Every catalogued face of the person in the selfie, restricted faces included, at
        the strict per-request false-match rate `rights_fmr`. One round of query expansion (the
        selfie fused with its first matches) reaches photos that differ more from the selfie
        than from the person's other photos."""
        analysed = self.pipeline.analyse(selfie)
        usable = [f for f in analysed.faces if f.template is not None]
        if not usable:
            raise RightsError("no usable face in the selfie", code="no_face")
        if len(usable) > 1:
            raise RightsError(
                f"the selfie shows {len(usable)} faces; a rights request needs a photo of one "
                "person alone",
                code="several_faces",
            )
        template = _unit(usable[0].template)
        return self._plan_for(template, fmr or self.settings.rights_fmr)

    def _plan_for(self, template: npt.NDArray[np.float32], fmr: float) -> ErasurePlan:
        restricted = self.catalog.restricted_templates()
        gallery = len(self.index) + len(restricted)
        threshold = float(self.calibration.threshold_for(fmr, gallery_size=max(1, gallery)))
        found = self._within(template, threshold, restricted)
        if found:
            fused = _unit(np.vstack([template] + [v for _, v in found.values()]).mean(axis=0))
            for fid, hit in self._within(fused, threshold, restricted).items():
                found.setdefault(fid, hit)
            template = fused
        records = self.catalog.face_records(list(found))
        others = self.catalog.image_faces(list({r.image_id for r in records.values()}))
        matches = []
        for fid, (dist, _) in sorted(found.items(), key=lambda kv: kv[1][0]):
            rec = records[fid]
            matches.append(
                PersonMatch(
                    face_id=fid,
                    image_id=rec.image_id,
                    image_path=rec.image_path,
                    box=rec.box,
                    distance=round(dist, 4),
                    fmr=float(self.calibration.fmr_at_gallery(dist, max(1, gallery))),
                    other_faces=len([f for f in others[rec.image_id] if f not in found]),
                    restricted=rec.restricted,
                )
            )
        return ErasurePlan(matches, threshold, fmr, gallery, template)

    def _within(
        self,
        template: npt.NDArray[np.float32],
        threshold: float,
        restricted: list[tuple[int, npt.NDArray[np.float32]]],
    ) -> dict[int, tuple[float, npt.NDArray[np.float32]]]:
        """All faces (index and restricted) within `threshold` of `template`."""
        out: dict[int, tuple[float, npt.NDArray[np.float32]]] = {}
        index = self.index
        k = min(len(index), 64)
        while k:
            scores, ids = index.search(template[None, :].astype(np.float32), k)
            dists = np.sqrt(np.clip(2.0 - 2.0 * scores[0].astype(np.float64), 0.0, None))
            hits = [(int(i), float(d)) for i, d in zip(ids[0], dists, strict=True) if i >= 0]
            if not hits or hits[-1][1] > threshold or k >= len(index):
                break
            k = min(len(index), k * 4)  # everything fetched was a match: there may be more
        under = [(fid, d) for fid, d in (hits if k else []) if d <= threshold]
        templates = self.catalog.templates_of([fid for fid, _ in under])
        for fid, d in under:
            out[fid] = (d, _unit(templates[fid]))
        for fid, vec in restricted:
            unit = _unit(vec)
            d = float(np.sqrt(max(0.0, 2.0 - 2.0 * float(unit @ template))))
            if d <= threshold:
                out[fid] = (d, unit)
        return out

    # -- Art. 15: access -------------------------------------------------------------------
    def access(
        self,
        selfie: Path | bytes,
        out: Path,
        *,
        include_templates: bool = False,
        verify_with: Path | bytes | None = None,
        request_ref: str | None = None,
        actor: str | None = None,
    ) -> tuple[Path, ErasurePlan]:
        """Write the access package of the person in the selfie. With `verify_with`, the
        package is produced only if the selfie and that second photo (an ID photo) match."""
        verification = None
        if verify_with is not None:
            a = self.pipeline.analyse(selfie).indexable
            b = self.pipeline.analyse(verify_with).indexable
            if not a or not b:
                raise RightsError("the identity check needs a face in both photos")
            check = self.compare(a[0].template, b[0].template, fmr=IDENTITY_CHECK_FMR)  # type: ignore[arg-type]
            if not check.same_person:
                self.audit.append(
                    actions.ACCESS,
                    actor=actor,
                    details={"request": request_ref, "identity_check": "failed"},
                )
                raise RightsError(
                    f"identity check failed: the selfie and the ID photo do not match at FMR "
                    f"{IDENTITY_CHECK_FMR:g} (distance {check.distance:.3f}); no package written",
                    code="identity_check_failed",
                )
            verification = (
                f"The selfie matched the second photo at distance {check.distance:.3f} "
                f"(threshold {check.threshold:.3f}, false-match rate {IDENTITY_CHECK_FMR:g})."
            )
        plan = self.find_person(selfie)
        ids = plan.face_ids
        records = self.catalog.face_records(ids)
        templates = self.catalog.templates_of(ids) if include_templates else {}
        matches = [
            _access_match(records[m.face_id], m, templates.get(m.face_id)) for m in plan.matches
        ]
        recipients = [
            Recipient(
                at=e.at,
                actor=e.actor,
                purpose=e.purpose,
                case_ref=e.case_ref,
                action=e.action,
                face_ids=sorted(set(e.result_ids) & set(ids)),
            )
            for e in self._entries_containing(ids)
        ]
        package = AccessPackage(
            request_ref=request_ref,
            generated_at=now(),
            controller=self.settings.controller,
            fmr_target=plan.fmr_target,
            threshold=plan.threshold,
            gallery_size=plan.gallery_size,
            matches=matches,
            recipients=recipients,
            include_templates=include_templates,
            verification=verification,
        )
        path = write_access_package(
            package,
            out,
            max_pixels=self.settings.max_pixels,
            endpoint_url=self.settings.s3_endpoint_url,
        )
        self.audit.append(
            actions.ACCESS,
            actor=actor,
            query_hash=face_hash(plan.template),
            result_ids=ids,
            details={"request": request_ref, "templates": include_templates},
        )
        return path, plan

    def _entries_containing(self, face_ids: list[int]) -> list[AuditEntry]:
        """Every audited disclosure (search, verify, export) whose results held these faces."""
        wanted = set(face_ids)
        seen: dict[int, AuditEntry] = {}
        for fid in face_ids:
            for entry in self.audit.entries(containing_face=fid):
                if entry.action != actions.ACCESS and wanted & set(entry.result_ids):
                    seen[entry.id] = entry
        return [seen[k] for k in sorted(seen)]

    # -- Art. 17: erasure ------------------------------------------------------------------
    def erase(
        self,
        plan: ErasurePlan,
        *,
        request_ref: str | None = None,
        suppress: bool = True,
        blur_originals: bool = False,
        actor: str | None = None,
    ) -> ErasureReceipt:
        """Carry out a reviewed plan: faces and templates leave the catalog and the index,
        images left with no face go, images with other people keep them, the erased faces are
        blurred in stored copies (in the operator's originals too, with `blur_originals`), the
        person joins the suppression list, and a signed receipt is written."""
        if not plan.matches:
            raise RightsError("nothing to erase: the plan holds no faces", code="empty_plan")
        if blur_originals:
            self._check_blurrable({m.image_path for m in plan.matches})
        stamp = now()
        rid = receipt_id(plan.face_ids, stamp)
        sealed = (
            (self.catalog.seal(plan.template, SUPPRESSION_AAD), self.model_id)
            if suppress and plan.template is not None
            else None
        )

        def commit_with(session: Session, erased: ErasedFaces) -> None:
            blur = [
                (path, boxes)
                for _, path, boxes in erased.images_kept
                if blur_originals or self._is_stored_copy(path)
            ]
            drop = [p for _, p, _ in erased.images_removed if self._is_stored_copy(p)]
            work = {"receipt": rid, "blur": blur, "delete": drop}
            session.merge(_meta(PENDING_ERASURE, json.dumps(work)))
            self.audit.append(
                actions.ERASURE,
                actor=actor,
                query_hash=face_hash(plan.template) if plan.template is not None else None,
                details={
                    "receipt": rid,
                    "request": request_ref,
                    "faces": len(erased.face_ids),
                    "images_erased": len(erased.images_removed),
                    "images_kept_with_others": len(erased.images_kept),
                    "suppressed": sealed is not None,
                },
                session=session,
            )

        erased = self.catalog.erase_faces(
            plan.face_ids, suppression=sealed, in_transaction=commit_with
        )
        self.index.remove(np.array(erased.face_ids, dtype=np.int64))
        self.save_index()
        blurred = self.finish_pending_erasure()
        self.catalog.scrub()
        receipt = ErasureReceipt(
            receipt_id=rid,
            at=stamp,
            request_ref=request_ref,
            faces_erased=len(erased.face_ids),
            images_erased=len(erased.images_removed),
            images_kept_with_others=len(erased.images_kept),
            copies_blurred=blurred,
            suppression_added=sealed is not None,
            image_hashes=sorted(sha for _, _, sha in erased.images_removed),
        ).signed(self.keyring)
        write_receipt(receipt, self.settings.data_dir / "receipts")
        return receipt

    def finish_pending_erasure(self) -> int:
        """File work recorded with an erasure's commit. Run again on open, so a process killed
        after the commit still blurs and deletes what it must."""
        raw = self.catalog.get_meta(PENDING_ERASURE)
        if not raw:
            return 0
        work = json.loads(raw)
        endpoint = self.settings.s3_endpoint_url
        blurred = sum(
            blur_location(path, boxes, endpoint_url=endpoint) for path, boxes in work["blur"]
        )
        for path in work["delete"]:
            Path(path).unlink(missing_ok=True)
        with self.catalog.session() as s, s.begin():
            s.merge(_meta(PENDING_ERASURE, ""))
        return blurred

    def _check_blurrable(self, locations: set[str]) -> None:
        """Refuse, before anything is erased, to blur originals in a bucket that keeps object
        versions: the blurred copy would become the current version and the unblurred photo
        would stay behind as an older one, a copy of the face the receipt says is gone."""
        buckets = sorted({split_s3(loc)[0] for loc in locations if is_s3(loc)})
        for bucket in buckets:
            try:
                versioned = bucket_keeps_versions(
                    f"s3://{bucket}/", endpoint_url=self.settings.s3_endpoint_url
                )
            except VultusError as exc:
                raise RightsError(
                    f"cannot check whether bucket {bucket!r} keeps object versions ({exc}); "
                    "erase without --blur-originals, or blur the photos there yourself",
                    code="cannot_blur_original",
                ) from None
            if versioned:
                raise RightsError(
                    f"bucket {bucket!r} keeps object versions: a blurred copy would leave the "
                    "unblurred original behind as an older version. Erase without "
                    "--blur-originals (the catalog and index forget the face either way) and "
                    "remove the photo's versions in the bucket yourself",
                    code="cannot_blur_original",
                )

    def _is_stored_copy(self, path: str) -> bool:
        """Copies Vultus itself keeps (uploads) live under the data directory; originals in the
        operator's folders are theirs, altered only when asked."""
        try:
            Path(path).resolve().relative_to(self.settings.data_dir.resolve())
        except ValueError:
            return False
        return True

    # -- the suppression list --------------------------------------------------------------
    def suppression_list(self) -> list[tuple[int, datetime]]:
        with self.catalog.session() as s:
            return [
                (i, at)
                for i, at in s.execute(
                    select(Suppression.id, Suppression.created_at).order_by(Suppression.id)
                ).all()
            ]

    def remove_suppression(self, entry_id: int, *, reason: str, actor: str | None = None) -> None:
        """Separate and audited: the only way a suppressed person can be ingested again."""
        if not reason.strip():
            raise RightsError("removing a suppression entry needs a stated reason")
        with self.catalog.session() as s, s.begin():
            entry = s.get(Suppression, entry_id)
            if entry is None:
                raise NotFoundError(f"no suppression entry {entry_id}")
            s.delete(entry)
            self.audit.append(
                actions.SUPPRESSION_REMOVED,
                actor=actor,
                details={"entry": entry_id, "reason": reason},
                session=s,
            )
        self.catalog.scrub()

    # -- Arts. 18 and 21: restriction and objection ----------------------------------------
    def restrict(
        self,
        *,
        face_ids: list[int] | None = None,
        subject: str | None = None,
        reason: str,
        lift: bool = False,
        actor: str | None = None,
    ) -> int:
        """Restricted faces stay stored but leave the index, so no search can return them,
        until the restriction is lifted (`lift=True`)."""
        if subject is not None:
            changed = self.catalog.restrict_subject(subject, not lift)
        elif face_ids:
            changed = self.catalog.set_restricted(face_ids, not lift)
        else:
            raise RightsError("restrict what? give face ids or a subject")
        if changed:
            ids = np.array(changed, dtype=np.int64)
            if lift:
                for chunk_ids, templates in self.catalog.iter_templates(ids):
                    self.index.add(chunk_ids, _unit(templates))
            else:
                self.index.remove(ids)
            self.save_index()
        self.audit.append(
            actions.RESTRICTION,
            actor=actor,
            result_ids=changed,
            details={"lifted": lift, "subject": subject, "reason": reason},
        )
        return len(changed)

    def object_to_processing(
        self,
        selfie: Path | bytes,
        *,
        contact: str | None = None,
        actor: str | None = None,
    ) -> tuple[RightsRequest, int]:
        """Art. 21: restrict the person's faces at once and queue the objection for review."""
        plan = self.find_person(selfie)
        request = self.create_request("objection", contact=contact, actor=actor)
        n = (
            self.restrict(face_ids=plan.face_ids, reason=f"objection {request.ref}", actor=actor)
            if plan.face_ids
            else 0
        )
        self.update_request(request.ref, status="in_review", actor=actor)
        return request, n

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
            if self._is_stored_copy(path):
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
        if src.lawful_basis != "consent" and src.special_condition != "explicit_consent":
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

    # -- Art. 12(3): the request workflow --------------------------------------------------
    def create_request(
        self,
        kind: str,
        *,
        contact: str | None = None,
        selfie: bytes | None = None,
        received_at: datetime | None = None,
        notes: str | None = None,
        actor: str | None = None,
    ) -> RightsRequest:
        if kind not in req.KINDS:
            raise RightsError(f"unknown request kind {kind!r}; one of: {', '.join(req.KINDS)}")
        received = received_at or now()
        with self.catalog.session() as s, s.begin():
            request = RightsRequest(
                ref=req.new_ref(received),
                kind=kind,
                status="received",
                received_at=received,
                due_at=req.add_months(received, 1),
                contact=contact,
                selfie=self.keyring.encrypt(selfie, REQUEST_AAD) if selfie else None,
                notes=notes,
            )
            s.add(request)
            s.flush()
            self.audit.append(
                actions.REQUEST,
                actor=actor,
                details={"request": request.ref, "kind": kind, "event": "received"},
                session=s,
            )
        return request

    def update_request(
        self,
        ref: str,
        *,
        status: str | None = None,
        extend_months: int = 0,
        reason: str | None = None,
        actor: str | None = None,
    ) -> RightsRequest:
        if status is not None and status not in req.STATUSES:
            raise RightsError(f"unknown status {status!r}; one of: {', '.join(req.STATUSES)}")
        with self.catalog.session() as s, s.begin():
            request = s.scalar(select(RightsRequest).where(RightsRequest.ref == ref))
            if request is None:
                raise NotFoundError(f"no request {ref}")
            if extend_months:
                if not 0 < extend_months <= req.MAX_EXTENSION_MONTHS or not reason:
                    raise RightsError(
                        "Art. 12(3) allows extending by at most two further months, with reasons"
                    )
                request.extended_until = req.add_months(request.due_at, extend_months)
                request.extension_reason = reason
            if status is not None:
                request.status = status
                if status in {"done", "rejected"}:
                    request.closed_at = now()
            self.audit.append(
                actions.REQUEST,
                actor=actor,
                details={"request": ref, "status": request.status, "extended": extend_months},
                session=s,
            )
        return request

    def requests(self, *, open_only: bool = True) -> list[RightsRequest]:
        with self.catalog.session() as s:
            q = select(RightsRequest).order_by(RightsRequest.due_at)
            if open_only:
                q = q.where(RightsRequest.status.in_(["received", "in_review"]))
            return list(s.scalars(q))

    def request_selfie(self, ref: str) -> bytes:
        with self.catalog.session() as s:
            request = s.scalar(select(RightsRequest).where(RightsRequest.ref == ref))
        if request is None or request.selfie is None:
            raise NotFoundError(f"request {ref} holds no selfie")
        return bytes(self.keyring.decrypt(request.selfie, REQUEST_AAD))

    # -- keys ------------------------------------------------------------------------------
    def rotate_keys(self, *, actor: str | None = None) -> dict[str, int]:
        """Re-encrypt everything under a new key. The new key file (new key first, old kept)
        is written before any data changes, so a killed rotation loses nothing and running
        the command again finishes it."""
        from_env = bool(os.environ.get(KEY_ENV))
        if from_env and not self.keyring.retired_ids:
            raise ConfigError(
                f"keys come from ${KEY_ENV}: set it to 'NEW,OLD' (NEW from `vultus keys "
                "generate`), run `vultus keys rotate` again, then set it to NEW alone"
            )
        # With a key file, the new ring is written BEFORE any data changes; with the
        # environment, the operator already put both keys there.
        path = None if from_env else (self.settings.key_file or default_key_file())
        old_id = self.keyring.retired_ids[0] if self.keyring.retired_ids else self.keyring.active_id
        if path is not None and not self.keyring.retired_ids:
            write_key_file(path, rotated(self.keyring))
            self.keyring = read_key_file(path)
        ring = self.keyring
        self.catalog.keyring = ring
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
        final = finish_rotation(ring)
        if path is not None:
            write_key_file(path, final)
        self.keyring = final
        self.catalog.keyring = final
        self.audit.append(
            actions.KEY_CHANGE,
            actor=actor,
            details={"from": old_id, "to": final.active_id, **counts},
        )
        self.catalog.scrub()
        return counts

    # -- Art. 30 and Art. 35 documents -----------------------------------------------------
    def report(self, kind: str, out_dir: Path, *, actor: str | None = None) -> list[Path]:
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
            erasures = count(select(func.count()).where(AuditEntry.action == actions.ERASURE))
            purged = count(select(func.count()).where(AuditEntry.action == actions.RETENTION))
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
                fmr_table=table,
                searches_per_purpose={str(k): v for k, v in per_purpose.items()},
                erasures=erasures,
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


def _meta(key: str, value: str) -> Any:
    from vultus.catalog.models import Meta

    return Meta(key=key, value=value)


def _unit(x: Any) -> npt.NDArray[np.float32]:
    v = np.asarray(x, dtype=np.float64)
    if v.ndim == 1:
        return (v / np.linalg.norm(v)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _access_match(
    record: FaceRecord, match: PersonMatch, template: npt.NDArray[np.float32] | None
) -> AccessMatch:
    return AccessMatch(
        face_id=record.face_id,
        image_id=record.image_id,
        image_path=record.image_path,
        box=record.box,
        distance=match.distance,
        fmr=match.fmr,
        source=record.source,
        source_kind=record.source_kind,
        lawful_basis=record.lawful_basis,
        special_condition=record.special_condition,
        legal_reference=record.legal_reference,
        purpose=record.purpose,
        added_at=record.added_at,
        retain_until=record.retain_until,
        subject=record.subject,
        restricted=record.restricted,
        template=template.tolist() if template is not None else None,
    )
