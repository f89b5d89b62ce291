"""The Engine's data-subject rights: finding a person by selfie, access (Art. 15), erasure
(Art. 17), the suppression list, restriction and objection (Arts. 18 and 21) and the request
workflow (Art. 12(3)).

`Engine` mixes this class in, so the CLI and the API still call one object; the documents
(plans, receipts, packages) live in `vultus.rights`; governance (retention, consent, key
rotation, reports) in `engine.governance` beside this module.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vultus import audit as actions
from vultus.audit import face_hash
from vultus.catalog.models import (
    AuditEntry,
    RightsRequest,
    Suppression,
)
from vultus.catalog.records import ErasedFaces, FaceRecord
from vultus.catalog.store import SUPPRESSION_AAD
from vultus.clock import now
from vultus.engine.parts import EngineParts
from vultus.errors import NotFoundError, RightsError, VultusError
from vultus.rights import requests as req
from vultus.rights.erasure import (
    LEAVE,
    ErasurePlan,
    ErasureReceipt,
    PersonMatch,
    blur_location,
    carry_out,
    plan_files,
    read_receipt,
    receipt_id,
    write_receipt,
)
from vultus.rights.package import AccessMatch, AccessPackage, Recipient, write_access_package
from vultus.storage import bucket_keeps_versions, is_s3, split_s3

REQUEST_AAD = b"rights_requests.selfie"
PENDING_ERASURE = "pending_erasure"
# The stricter 1:1 check behind `--verify-with`: an access package goes only to the person.
IDENTITY_CHECK_FMR = 1e-4


class Rights(EngineParts):
    """Mixed into `Engine`; every method's `self` is the engine."""

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
        blurred in stored copies (in the operator's originals too, with `blur_originals`),
        originals are deleted where their source allows it and otherwise left in place, the
        person joins the suppression list, and a signed receipt says exactly which.

        The receipt's content commits with the erasure (in the pending-erasure record), so a
        process killed after the commit still leaves its receipt: the next open writes it."""
        if not plan.matches:
            raise RightsError("nothing to erase: the plan holds no faces", code="empty_plan")
        if blur_originals:
            self._check_blurrable({m.image_path for m in plan.matches})
        # One pending record at a time: an earlier erasure's unfinished file work goes first.
        self.finish_pending_erasure()
        stamp = now()
        rid = receipt_id(plan.face_ids, stamp)
        sealed = (
            (self.catalog.seal(plan.template, SUPPRESSION_AAD), self.model_id)
            if suppress and plan.template is not None
            else None
        )
        data_dir = self.settings.data_dir

        def commit_with(session: Session, erased: ErasedFaces) -> None:
            content = {
                "receipt_id": rid,
                "at": stamp.isoformat(),
                "request_ref": request_ref,
                "faces_erased": len(erased.face_ids),
                "images_erased": len(erased.images_removed),
                "images_kept_with_others": len(erased.images_kept),
                "suppression_added": sealed is not None,
                "image_hashes": sorted(sha for _, _, sha in erased.images_removed),
            }
            files = plan_files(erased, data_dir=data_dir, blur_originals=blur_originals)
            session.merge(_meta(PENDING_ERASURE, json.dumps({"receipt": content, "files": files})))
            if request_ref is not None:
                session.execute(
                    update(RightsRequest)
                    .where(RightsRequest.ref == request_ref)
                    .values(receipt_id=rid)
                )
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
                    "originals_left": sum(f["action"] == LEAVE for f in files),
                    "suppressed": sealed is not None,
                },
                session=session,
            )

        erased = self.catalog.erase_faces(
            plan.face_ids, suppression=sealed, request_ref=request_ref, in_transaction=commit_with
        )
        self.index.remove(np.array(erased.face_ids, dtype=np.int64))
        self.save_index()
        receipt = self.finish_pending_erasure()
        assert receipt is not None  # the record committed above holds the receipt's content
        return receipt

    def finish_pending_erasure(self) -> ErasureReceipt | None:
        """Do the file work recorded with an erasure's commit, write its signed receipt and
        scrub the catalog. Run again on open, so a process killed after the commit still
        deletes and blurs what it must, leaves no erased bytes in the database files, and
        leaves its receipt (one: a receipt already written is kept as it is)."""
        raw = self.catalog.get_meta(PENDING_ERASURE)
        if not raw:
            return None
        work = json.loads(raw)
        endpoint = self.settings.s3_endpoint_url
        receipt = None
        if isinstance(work.get("receipt"), dict):
            done = carry_out(work["files"], endpoint_url=endpoint)
            folder = self.settings.data_dir / "receipts"
            content = work["receipt"]
            receipt = read_receipt(folder, content["receipt_id"])
            if receipt is None:
                receipt = ErasureReceipt(
                    **{**content, "at": datetime.fromisoformat(content["at"])},
                    copies_blurred=len(done.blurred),
                    stored_copies_deleted=done.stored_copies_deleted,
                    originals_deleted=done.originals_deleted,
                    blurred=done.blurred,
                    left_in_place=done.left_in_place,
                ).signed(self.keyring)
                write_receipt(receipt, folder)
        else:  # a record from before receipts were part of it: the file work alone
            for path, boxes in work.get("blur", []):
                blur_location(path, boxes, endpoint_url=endpoint)
            for path in work.get("delete", []):
                Path(path).unlink(missing_ok=True)
        with self.catalog.session() as s, s.begin():
            s.merge(_meta(PENDING_ERASURE, ""))
        self.catalog.scrub()
        return receipt

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
