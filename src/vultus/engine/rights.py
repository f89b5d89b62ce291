"""The Engine's data-subject rights once a person is found: access (Art. 15), erasure (Art. 17),
the suppression list, restriction and objection (Arts. 18 and 21).

`Engine` mixes this class in, so the CLI and the API still call one object; finding the person
is `engine.finding`, the request workflow `engine.requests`, governance (retention, consent, key
rotation, reports) `engine.governance`; the documents (plans, receipts, packages) live in
`vultus.rights`.
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
from vultus.catalog.collections import Membership
from vultus.catalog.models import (
    AuditEntry,
    RightsRequest,
    Suppression,
)
from vultus.catalog.records import ErasedFaces, FaceRecord
from vultus.catalog.store import SUPPRESSION_AAD
from vultus.clock import now
from vultus.config import require_controller
from vultus.engine.parts import EngineParts
from vultus.engine.records import SuppressionEntry
from vultus.errors import NotFoundError, RightsError, VultusError
from vultus.index.base import normalise
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
from vultus.rights.review import Review
from vultus.storage import bucket_keeps_versions, is_s3, split_s3

PENDING_ERASURE = "pending_erasure"


class Rights(EngineParts):
    """Mixed into `Engine`; every method's `self` is the engine."""

    # -- Art. 15: access -------------------------------------------------------------------
    def access(
        self,
        review: Review,
        out: Path,
        *,
        include_templates: bool = False,
        actor: str | None = None,
    ) -> tuple[Path, ErasurePlan]:
        """Write the access package of a reviewed request: the included faces, what was
        reviewed and by whom, and the identity check (see `review_person(verify_with=...)`)."""
        require_controller(self.settings.controller, "an access package")
        plan = self.settle(review)
        request_ref = review.request_ref
        ids = plan.face_ids
        records = self.catalog.face_records(ids)
        templates = self.catalog.templates_of(ids) if include_templates else {}
        held = self.catalog.memberships_of(ids)
        matches = [
            _access_match(
                records[m.face_id],
                m,
                templates.get(m.face_id),
                self.catalog.track_crop(m.face_id) if records[m.face_id].track else None,
                held.get(m.face_id, []),
            )
            for m in plan.matches
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
            verification=review.identity_check,
            reviewer=review.reviewer or actor,
            review_summary=_review_summary(review),
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
            details={
                "request": request_ref,
                "templates": include_templates,
                "reviewer": review.reviewer or actor,
                "candidates": len(review.candidates),
                "struck": [c.face_id for c in review.struck],
            },
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
        # The memberships go with the faces (the foreign key cascades): read them first, for
        # the receipt. Collection and FaceId only: the receipt outlives the erasure, and a
        # client's ExternalImageId or UserId may name the person.
        memberships = [
            {"collection": c.collection, "face_id": c.uuid}
            for held in self.catalog.memberships_of(plan.face_ids).values()
            for c in held
        ]

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
                "collection_memberships": sorted(
                    memberships, key=lambda c: (c["collection"], c["face_id"])
                ),
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
                    "collection_memberships": len(memberships),
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
    def suppression_list(self) -> list[SuppressionEntry]:
        """Ids, dates and the request behind each entry: never the sealed template."""
        with self.catalog.session() as s:
            rows = s.execute(
                select(Suppression.id, Suppression.created_at, Suppression.request_ref).order_by(
                    Suppression.id
                )
            ).all()
        return [SuppressionEntry(i, at, ref) for i, at, ref in rows]

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
        request_ref: str | None = None,
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
                    self.index.add(chunk_ids, normalise(templates))
            else:
                self.index.remove(ids)
            self.save_index()
        self.audit.append(
            actions.RESTRICTION,
            actor=actor,
            result_ids=changed,
            details={
                "lifted": lift,
                "subject": subject,
                "reason": reason,
                **({"request": request_ref} if request_ref else {}),
            },
        )
        return len(changed)

    def object_to_processing(
        self,
        selfie: Path | bytes,
        *,
        contact: str | None = None,
        actor: str | None = None,
    ) -> tuple[RightsRequest, int]:
        """Art. 21: restrict the person's matches at once and queue the objection for review,
        with its photo and the review's possible candidates for a person to check."""
        photo = selfie.read_bytes() if isinstance(selfie, Path) else selfie
        review = self.review_person(photo, kind="objection", reviewer=actor)
        request = self.create_request("objection", contact=contact, selfie=photo, actor=actor)
        review.request_ref = request.ref
        n = (
            self.restrict(
                face_ids=review.face_ids,
                reason=f"objection {request.ref}",
                request_ref=request.ref,
                actor=actor,
            )
            if review.face_ids
            else 0
        )
        self.record_review(request.ref, review, actor=actor)
        return request, n


def _meta(key: str, value: str) -> Any:
    from vultus.catalog.models import Meta

    return Meta(key=key, value=value)


def _review_summary(review: Review) -> str:
    matches = sum(c.tier != "possible" for c in review.candidates)
    possible = len(review.candidates) - matches
    rounds = (
        f", over {review.rounds + 1} rounds of search from the faces confirmed"
        if review.rounds
        else ""
    )
    return (
        f"Our system proposed {len(review.candidates)} face(s) that might be you "
        f"({matches} close match(es) and {possible} possible match(es) to check by eye"
        f"{rounds}). A person checked each one: {len(review.included)} were judged to be you "
        f"and {len(review.candidates) - len(review.included)} were not."
    )


def _access_match(
    record: FaceRecord,
    match: PersonMatch,
    template: npt.NDArray[np.float32] | None,
    still: tuple[bytes, tuple[int, int, int, int]] | None = None,
    memberships: list[Membership] | None = None,
) -> AccessMatch:
    track = record.track
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
        video=None if track is None else (track.start_s, track.end_s, track.best_s),
        still=None if still is None else still[0],
        collections=[
            {
                "CollectionId": c.collection,
                "FaceId": c.uuid,
                "ImageId": c.image_uuid,
                "ExternalImageId": c.external_image_id,
                "UserId": c.user_id,
            }
            for c in memberships or []
        ],
    )
