"""The Engine's data-subject rights: finding a person by selfie, access (Art. 15), erasure
(Art. 17), the suppression list, restriction and objection (Arts. 18 and 21) and the request
workflow (Art. 12(3)).

`Engine` mixes this class in, so the CLI and the API still call one object; the documents
(plans, receipts, packages) live in `vultus.rights`; governance (retention, consent, key
rotation, reports) in `engine.governance` beside this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
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
from vultus.config import require_controller
from vultus.engine.parts import EngineParts
from vultus.engine.records import SuppressionEntry
from vultus.errors import NotFoundError, RightsError, VultusError
from vultus.pipeline.analyse import AnalysedImage
from vultus.pipeline.decode import decode_image
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
from vultus.rights.intake import MARGINS, PhotoFace, PhotoFaces, crop_face, working_copy
from vultus.rights.package import AccessMatch, AccessPackage, Recipient, write_access_package
from vultus.rights.review import KINDS, Candidate, Review
from vultus.search.tiers import Tiering, odds_in_words
from vultus.storage import bucket_keeps_versions, is_s3, split_s3

REQUEST_AAD = b"rights_requests.selfie"
PENDING_ERASURE = "pending_erasure"
# The stricter 1:1 check behind `--verify-with`: an access package goes only to the person.
IDENTITY_CHECK_FMR = 1e-4
# A round of expansion searches from the fused person and at most this many templates in all.
MAX_QUERIES_PER_ROUND = 8
# At most this many possible candidates enter a review per round, nearest first.
POSSIBLE_PER_ROUND = 25
# What a request by selfie acts on, by request kind; restriction covers objections too.
ACTS = {"erasure": {"erasure"}, "access": {"access"}, "restriction": {"restriction", "objection"}}


class Rights(EngineParts):
    """Mixed into `Engine`; every method's `self` is the engine."""

    # -- finding a person: the heart of every request by selfie ------------------------------
    def review_person(
        self,
        selfie: Path | bytes | npt.NDArray[np.float32],
        *,
        kind: str = "erasure",
        include: Iterable[int] = (),
        exclude: Iterable[int] = (),
        verify_with: Path | bytes | None = None,
        request_ref: str | None = None,
        reviewer: str | None = None,
        expand: bool = True,
    ) -> Review:
        """Every catalogued face that may be the person in the selfie, restricted ones too, in
        tiers for a person to review: matches (pre-included) and possible ones (to check by
        eye). `include`/`exclude` settle candidates by face id; with `expand`, the search then
        reruns from every included face until no new candidate appears.

        With `verify_with` (an ID photo), the review goes ahead only if it matches the selfie
        at the strict identity-check rate, and the review records the check. `selfie` may be a
        template this model made (benchmarks)."""
        if kind not in KINDS:
            raise RightsError(f"unknown review kind {kind!r}; one of: {', '.join(KINDS)}")
        template = self._selfie_template(selfie)
        identity = None
        if verify_with is not None:
            identity = self._identity_check(template, verify_with, request_ref, reviewer)
        tiering = self._tiering()
        review = Review(
            kind=kind,
            candidates=[],
            match_threshold=tiering.match_threshold,
            possible_threshold=tiering.possible_threshold,
            fmr_target=self.settings.rights_fmr,
            gallery_size=tiering.gallery_size,
            request_ref=request_ref,
            reviewer=reviewer,
            identity_check=identity,
            template=template,
            newest_face=self.catalog.newest_face_id(),
        )
        self._add_candidates(review, template[None, :], tiering, round_no=0)
        review.decide(include=include, strike=exclude, reviewer=reviewer)
        return self.expand_review(review) if expand else review

    def expand_review(self, review: Review, *, max_rounds: int = 5) -> Review:
        """Search again from the faces the reviewer confirmed (included) and not yet searched
        from: each on its own and fused with the selfie. Faces linked to the same subject as a
        confirmed face come along. Stops when every confirmed face has been searched from."""
        for _ in range(max_rounds):
            fresh = [c.face_id for c in review.included if c.face_id not in review.searched_from]
            if not fresh:
                break
            round_no = review.rounds + 1
            confirmed = self.catalog.templates_of([c.face_id for c in review.included])
            person = self._person_template(review, confirmed)
            # The person as a whole, and the confirmed faces least like that whole (other
            # ages, angles, light): they reach photos the fused template does not. The rest
            # wait for the next round, so that no round splits its budget too thin.
            fresh = sorted(
                (f for f in fresh if f in confirmed),
                key=lambda f: _distance(person, _unit(confirmed[f])),
                reverse=True,
            )[: MAX_QUERIES_PER_ROUND - 1]
            review.searched_from += fresh
            queries = [_unit(confirmed[f]) for f in fresh] + [person]
            # Each query can bring its own strangers: the round shares one budget.
            tiering = self._tiering(queries=len(queries))
            self._add_candidates(review, np.stack(queries), tiering, round_no)
            self._add_linked(review, fresh, confirmed, tiering, round_no)
            review.rounds = round_no
        review.newest_face = self.catalog.newest_face_id()
        return review

    def refresh_review(self, review: Review) -> int:
        """Faces catalogued since the review last searched that may be the person join it as
        new candidates, in a new round; returns how many. Acting on a stored review looks
        first, so that a photo ingested between the review and the act is not missed."""
        newest = self.catalog.newest_face_id()
        since, review.newest_face = review.newest_face, newest
        if since is None or newest <= since:
            return 0
        confirmed = self.catalog.templates_of(review.face_ids)
        rows = [review.template] if review.template is not None else []
        rows += [_unit(confirmed[f]) for f in review.face_ids if f in confirmed]
        if not rows:
            return 0
        queries = np.stack([*rows, self._person_template(review, confirmed)])
        tiering = self._tiering(queries=len(queries))
        known = {c.face_id for c in review.candidates}
        nearest: dict[int, float] = {}
        for ids, templates in self.catalog.iter_templates(after=since):
            dists = np.sqrt(np.clip(2.0 - 2.0 * (_unit(templates) @ queries.T), 0.0, None))
            for fid, d in zip(ids.tolist(), dists.min(axis=1).tolist(), strict=True):
                if fid not in known and d <= tiering.possible_threshold:
                    nearest[fid] = d
        ranked = sorted(nearest.items(), key=lambda kv: kv[1])
        tiers = tiering.assign([d for _, d in ranked])
        chosen = {fid: (d, t) for (fid, d), t in zip(ranked, tiers, strict=True) if t}
        possible = [f for f, (_, t) in chosen.items() if t == "possible"]
        for fid in possible[POSSIBLE_PER_ROUND:]:
            del chosen[fid]
        if chosen:
            review.rounds += 1
            review.candidates += self._candidates(chosen, tiering, review.rounds)
        return len(chosen)

    def settle(self, review: Review) -> ErasurePlan:
        """The included faces of a review, with the person's fused template (the suppression
        entry) and, per image, the faces of others that an erasure keeps."""
        ids = review.face_ids
        confirmed = self.catalog.templates_of(ids)
        plan = review.plan(self._person_template(review, confirmed))
        others = self.catalog.image_faces(list({m.image_id for m in plan.matches}))
        wanted = set(ids)
        plan.matches = [
            replace(m, other_faces=len([f for f in others[m.image_id] if f not in wanted]))
            for m in plan.matches
        ]
        return plan

    def find_person(self, selfie: Path | bytes | npt.NDArray[np.float32]) -> ErasurePlan:
        """The review settled as proposed (matches and what expanding from them finds; no
        possible candidate): for scripts that accept the calibrated decision alone."""
        return self.settle(self.review_person(selfie))

    def _selfie_template(
        self, selfie: Path | bytes | npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        if isinstance(selfie, np.ndarray):
            return _unit(selfie)
        analysed = self.pipeline.analyse(selfie)
        usable = [f for f in analysed.faces if f.template is not None]
        if not usable:
            raise RightsError(
                "no usable face in the photo: a request needs a clear photo of the person's "
                "face",
                code="no_face",
            )
        if len(usable) > 1:
            raise RightsError(
                f"the photo shows {len(usable)} faces; a rights request needs a photo of one "
                "person alone",
                code="several_faces",
            )
        return _unit(usable[0].template)

    def _identity_check(
        self,
        template: npt.NDArray[np.float32],
        id_photo: Path | bytes,
        request_ref: str | None,
        actor: str | None,
    ) -> str:
        faces = self.pipeline.analyse(id_photo).indexable
        if not faces:
            raise RightsError("the identity check needs a face in both photos")
        check = self.compare(template, faces[0].template, fmr=IDENTITY_CHECK_FMR)
        if not check.same_person:
            self.audit.append(
                actions.ACCESS,
                actor=actor,
                details={"request": request_ref, "identity_check": "failed"},
            )
            raise RightsError(
                f"identity check failed: the selfie and the ID photo do not match at FMR "
                f"{IDENTITY_CHECK_FMR:g} (distance {check.distance:.3f}); nothing was disclosed",
                code="identity_check_failed",
            )
        return (
            f"The selfie matched the second photo at distance {check.distance:.3f} "
            f"(threshold {check.threshold:.3f}, false-match rate {IDENTITY_CHECK_FMR:g})."
        )

    def _tiering(self, queries: int = 1) -> Tiering:
        gallery = len(self.index) + self.catalog.count_restricted()
        return Tiering.of(
            self.calibration,
            fmr=self.settings.rights_fmr,
            gallery_size=gallery,
            possible_fmr=self.settings.possible_fmr,
            possible_strangers=self.settings.possible_strangers,
            queries=queries,
        )

    def _person_template(
        self, review: Review, confirmed: dict[int, npt.NDArray[np.float32]]
    ) -> npt.NDArray[np.float32]:
        """The selfie fused with the included faces: the person as all their photos show them."""
        rows = [review.template] if review.template is not None else []
        rows += [_unit(confirmed[f]) for f in review.face_ids if f in confirmed]
        return _unit(np.mean(np.stack(rows), axis=0))

    def _add_candidates(
        self,
        review: Review,
        queries: npt.NDArray[np.float32],
        tiering: Tiering,
        round_no: int,
    ) -> int:
        """Search the index (and the restricted faces, which are out of it) with every query;
        new faces enter the review in tiers by their distance to the nearest query."""
        known = {c.face_id for c in review.candidates}
        nearest = self._nearest(queries, tiering, known)
        ranked = sorted(nearest.items(), key=lambda kv: kv[1])
        tiers = tiering.assign([d for _, d in ranked])
        chosen = {fid: (d, t) for (fid, d), t in zip(ranked, tiers, strict=True) if t}
        # A query that many strangers resemble (a blurred or tiny face) would bury the
        # reviewer: the nearest are shown, and confirming some searches on from them.
        possible = [f for f, (_, t) in chosen.items() if t == "possible"]
        for fid in possible[POSSIBLE_PER_ROUND:]:
            del chosen[fid]
        review.candidates += self._candidates(chosen, tiering, round_no)
        return len(chosen)

    def _add_linked(
        self,
        review: Review,
        fresh: list[int],
        confirmed: dict[int, npt.NDArray[np.float32]],
        tiering: Tiering,
        round_no: int,
    ) -> int:
        """Faces a person already linked to the subject of a confirmed face."""
        known = {c.face_id for c in review.candidates}
        subjects = {r.subject for r in self.catalog.face_records(fresh).values() if r.subject}
        linked = sorted(
            {f for s in subjects for f in self.catalog.subject_face_ids(s)} - known
        )
        if not linked:
            return 0
        person = self._person_template(review, confirmed)
        templates = self.catalog.templates_of(linked)
        chosen = {
            f: (_distance(person, _unit(templates[f])), "linked")
            for f in linked
            if f in templates
        }
        review.candidates += self._candidates(chosen, tiering, round_no)
        return len(chosen)

    def _nearest(
        self, queries: npt.NDArray[np.float32], tiering: Tiering, known: set[int]
    ) -> dict[int, float]:
        """Face id -> distance to the nearest query, for faces within the possible threshold
        and not `known`. Each query fetches until its last hit is past the threshold."""
        index = self.index
        out: dict[int, float] = {}
        total = len(index)
        k = min(total, 32 + len(known))
        pending = np.arange(len(queries))
        while k and len(pending):
            scores, ids = index.search(queries[pending].astype(np.float32), k)
            dists = np.sqrt(np.clip(2.0 - 2.0 * scores.astype(np.float64), 0.0, None))
            again = []
            for row, q in enumerate(pending.tolist()):
                for fid, d in zip(ids[row].tolist(), dists[row].tolist(), strict=True):
                    if fid < 0 or d > tiering.possible_threshold or fid in known:
                        continue
                    out[fid] = min(d, out.get(fid, d))
                last = dists[row][ids[row] >= 0]
                if len(last) and last[-1] <= tiering.possible_threshold and k < total:
                    again.append(q)
            pending = np.array(again, dtype=np.int64)
            k = min(total, k * 4)
        for fid, vec in self.catalog.restricted_templates():
            if fid in known:
                continue
            unit = _unit(vec)
            d = float(np.min(np.sqrt(np.clip(2.0 - 2.0 * (queries @ unit), 0.0, None))))
            if d <= tiering.possible_threshold:
                out[fid] = min(d, out.get(fid, d))
        return out

    def _candidates(
        self, chosen: Mapping[int, tuple[float, str]], tiering: Tiering, round_no: int
    ) -> list[Candidate]:
        records = self.catalog.face_records(list(chosen))
        others = self.catalog.image_faces(list({r.image_id for r in records.values()}))
        calibration = self.calibration
        out = []
        for fid, (dist, tier) in sorted(chosen.items(), key=lambda kv: kv[1][0]):
            rec = records.get(fid)
            if rec is None:
                continue  # erased meanwhile
            pair_fmr = float(calibration.fmr_at(dist))
            out.append(
                Candidate(
                    face_id=fid,
                    image_id=rec.image_id,
                    image_path=rec.image_path,
                    box=rec.box,
                    distance=round(dist, 4),
                    pair_fmr=pair_fmr,
                    odds=odds_in_words(
                        pair_fmr, tiering.gallery_size, floor=calibration.fmr_floor
                    ),
                    tier=tier,  # type: ignore[arg-type]
                    found_in_round=round_no,
                    other_faces=len([f for f in others[rec.image_id] if f != fid]),
                    restricted=rec.restricted,
                    subject=rec.subject,
                )
            )
        return out

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
                    self.index.add(chunk_ids, _unit(templates))
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

    # -- Art. 12(3): the request workflow --------------------------------------------------
    def photo_faces(self, photo: Path | bytes) -> PhotoFaces:
        """The usable faces in a photo, largest first: what a person chooses theirs from."""
        return _photo_faces(self.pipeline.analyse(photo))

    def face_choice(self, photo: bytes) -> tuple[bytes, PhotoFaces]:
        """A photo of several people as a working copy (upright, at most 1280 pixels a side)
        with its faces: shown to choose a face in, and sent back with the choice, which
        `intake_photo(copy, face=n)` then cuts out. Nothing is stored."""
        image = decode_image(photo, max_pixels=self.settings.max_pixels)
        copy = working_copy(image.rgb)
        found = self.photo_faces(copy)
        if not found.faces:
            raise RightsError(
                "the faces in this photo are too small to tell apart: send a photo of the "
                "person alone",
                code="several_faces",
            )
        return copy, found

    def intake_photo(self, photo: bytes, *, face: int | None = None) -> bytes:
        """The photo a request by selfie keeps. A photo of one person is kept as sent; of
        several, the face chosen by number (1 is the largest usable face) is cut out with a
        margin and the other faces painted over, so the request holds no one else's face.

        Refused (`RightsError`) with code `no_face` when no usable face shows, so nothing is
        stored that no review could use; `several_faces` when several show and none is chosen
        (see `face_choice`); `no_such_face` for a number the photo does not have."""
        analysed = self.pipeline.analyse(photo)
        found = _photo_faces(analysed)
        if not found.faces:
            blurry = f" ({found.unusable} too small or unclear)" if found.unusable else ""
            raise RightsError(
                f"no usable face in the photo{blurry}: a request needs a clear photo of the "
                "person's face; nothing was stored",
                code="no_face",
            )
        if face is None and len(found.faces) == 1:
            return photo
        if face is None:
            raise RightsError(
                f"the photo shows {len(found.faces)} faces: choose the person's (face 1 is the "
                "largest), or send a photo of the person alone",
                code="several_faces",
            )
        chosen = found.face(face)
        if chosen is None:
            raise RightsError(
                f"the photo has no face {face}: it shows {len(found.faces)}", code="no_such_face"
            )
        if len(found.faces) == 1 and not found.unusable:
            return photo
        others = [_box(f.box) for f in analysed.faces if _box(f.box) != chosen.box]
        rgb = decode_image(photo, max_pixels=self.settings.max_pixels).rgb
        for margin in MARGINS:
            crop = crop_face(rgb, chosen.box, others, margin=margin)
            if len(self.pipeline.analyse(crop).indexable) == 1:
                return crop
        raise RightsError(
            f"face {face} cannot be cut out of the photo on its own: send a photo of the "
            "person alone",
            code="several_faces",
        )

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
        """Record a request as received, due in one month. `selfie` is stored as given (and
        encrypted): the interfaces pass it through `intake_photo` first."""
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
                notes=_note(notes, actor, received) if notes else None,
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
        """Move a request along, or extend its deadline with reasons (Art. 12(3)). Closing it
        (done, or rejected: refused) destroys its photo: the review kept with it holds face
        ids and decisions, never a template. A closed request stays closed; setting the status
        it has already changes nothing."""
        if status is not None and status not in req.STATUSES:
            raise RightsError(f"unknown status {status!r}; one of: {', '.join(req.STATUSES)}")
        with self.catalog.session() as s, s.begin():
            request = _request_row(s, ref)
            if status == request.status and not extend_months:
                return request
            if request.status in req.CLOSED:
                raise RightsError(
                    f"request {ref} is {req.STATUS_LABELS[request.status]}: a closed request "
                    "stays closed; record a new one if the person asks again",
                    code="closed",
                )
            if extend_months:
                if not 0 < extend_months <= req.MAX_EXTENSION_MONTHS or not reason:
                    raise RightsError(
                        "Art. 12(3) allows extending by at most two further months, with reasons"
                    )
                request.extended_until = req.add_months(request.due_at, extend_months)
                request.extension_reason = reason
            destroyed = False
            if status is not None:
                request.status = status
                if status in req.CLOSED:
                    request.closed_at = now()
                    destroyed = request.selfie is not None
                    request.selfie = None
            self.audit.append(
                actions.REQUEST,
                actor=actor,
                details={
                    "request": ref,
                    "status": request.status,
                    "extended": extend_months,
                    **({"photo_destroyed": True} if destroyed else {}),
                },
                session=s,
            )
        if destroyed:
            self.catalog.scrub()
        return request

    def replace_request_photo(
        self, ref: str, photo: bytes, *, face: int | None = None, actor: str | None = None
    ) -> RightsRequest:
        """Give an open request a new photo (through `intake_photo`: one face, or the chosen
        one cut out). The review made from the old photo goes: its candidates came from it."""
        selfie = self.intake_photo(photo, face=face)
        with self.catalog.session() as s, s.begin():
            request = _open_row(s, ref)
            request.selfie = self.keyring.encrypt(selfie, REQUEST_AAD)
            request.review = None
            self.audit.append(
                actions.REQUEST,
                actor=actor,
                details={"request": ref, "event": "photo_replaced"},
                session=s,
            )
        self.catalog.scrub()
        return request

    def add_request_note(self, ref: str, text: str, *, actor: str | None = None) -> RightsRequest:
        """Add a dated note to a request's file (what was asked, answered, decided). The audit
        log records that a note was added, not its text."""
        text = text.strip()
        if not text:
            raise RightsError("a note needs some text", code="empty_note")
        with self.catalog.session() as s, s.begin():
            request = _request_row(s, ref)
            line = _note(text, actor, now())
            request.notes = f"{request.notes}\n{line}" if request.notes else line
            self.audit.append(
                actions.REQUEST,
                actor=actor,
                details={"request": ref, "event": "note"},
                session=s,
            )
        return request

    def requests(self, *, open_only: bool = True) -> list[RightsRequest]:
        with self.catalog.session() as s:
            q = select(RightsRequest).order_by(RightsRequest.due_at)
            if open_only:
                q = q.where(RightsRequest.status.in_(sorted(req.OPEN)))
            return list(s.scalars(q))

    def request_history(self, ref: str) -> list[AuditEntry]:
        """Every audit entry about the request, oldest first: received, reviewed, photo views,
        identity checks, restrictions, the erasure or the package, notes, status changes."""
        self.request(ref)
        return self.audit.entries(request=ref)

    def request_receipt(self, ref: str) -> dict[str, Any] | None:
        """The signed erasure receipt of the request, as written under `receipts/`; None when
        no erasure was made for it."""
        rid = self.request(ref).receipt_id
        if rid is None:
            return None
        path = self.settings.data_dir / "receipts" / f"{rid}.json"
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            return {"receipt_id": rid, "missing": True}
        return data

    def request_review(
        self,
        ref: str,
        *,
        verify_with: Path | bytes | None = None,
        reviewer: str | None = None,
        refresh: bool = False,
    ) -> Review:
        """The review of an open request by selfie: the stored one (decisions kept), or a new
        one from the request's photo. An identity check given now is recorded in it; with
        `refresh`, so are faces catalogued since that may be the person (`refresh_review`):
        for showing the review, never just before acting on it."""
        request = self.request(ref)
        _check_open(request)
        selfie = self.request_selfie(ref)
        if request.review is None:
            review = self.review_person(
                selfie,
                kind=request.kind,
                verify_with=verify_with,
                request_ref=ref,
                reviewer=reviewer,
            )
            self.record_review(ref, review, actor=reviewer)
            return review
        review = Review.from_json(request.review)
        review.template = self._selfie_template(selfie)
        # Restrictions placed or lifted since (this request's own, too) show as they are now.
        records = self.catalog.face_records([c.face_id for c in review.candidates])
        review.candidates = [
            replace(c, restricted=records[c.face_id].restricted) if c.face_id in records else c
            for c in review.candidates
        ]
        changed = refresh and self.refresh_review(review) > 0
        if verify_with is not None:
            review.identity_check = self._identity_check(
                review.template, verify_with, ref, reviewer
            )
            changed = True
        if changed:
            self.record_review(ref, review, actor=reviewer)
        return review

    def stored_review(self, ref: str) -> Review | None:
        """The review kept with a request, open or closed, without its photo: what was
        proposed and decided (None before the first review)."""
        request = self.request(ref)
        return Review.from_json(request.review) if request.review is not None else None

    def decide_request(
        self,
        ref: str,
        *,
        include: Iterable[int] = (),
        strike: Iterable[int] = (),
        version: str | None = None,
        verify_with: Path | bytes | None = None,
        reviewer: str | None = None,
    ) -> Review:
        """Record a reviewer's decisions on a request's review, with an identity check where
        an ID photo is given, then search again from the confirmed faces and keep the result.
        With `version` (`Review.version` as the reviewer saw it), refused with code
        `review_changed` if the stored review has changed since."""
        review = self.request_review(ref, reviewer=reviewer)
        _check_version(review, version)
        if verify_with is not None:
            review.identity_check = self._identity_check(
                review.template, verify_with, ref, reviewer
            )
        review.decide(include=include, strike=strike, reviewer=reviewer)
        review = self.expand_review(review)
        self.record_review(ref, review, actor=reviewer)
        return review

    def erase_request(
        self,
        ref: str,
        *,
        version: str | None = None,
        include: Iterable[int] = (),
        strike: Iterable[int] = (),
        expect: Iterable[int] | None = None,
        blur_originals: bool = False,
        actor: str | None = None,
    ) -> ErasureReceipt:
        """Erase the faces included in an erasure request's review (see `acting_review`),
        keep the receipt with the request and close it (its photo is destroyed).

        `expect`: the faces the reviewer means to erase; refused (`plan_changed`) unless the
        review includes exactly those."""
        review = self.acting_review(
            ref, "erasure", version=version, include=include, strike=strike, actor=actor
        )
        if expect is not None and set(expect) != set(review.face_ids):
            raise RightsError(
                f"the review includes {len(review.face_ids)} face(s), not the ones given: "
                "nothing was erased; look at the review again",
                code="plan_changed",
            )
        if not review.included:
            raise RightsError(
                f"{review.headline()} No face is included, so there is nothing to erase: "
                "close the request with an answer to the person",
                code="empty_plan",
            )
        # The erasure keeps its receipt's id with the request, in its own commit.
        receipt = self.erase(
            self.settle(review), request_ref=ref, blur_originals=blur_originals, actor=actor
        )
        self.update_request(ref, status="done", actor=actor)
        return receipt

    def access_request(
        self,
        ref: str,
        out: Path,
        *,
        version: str | None = None,
        include: Iterable[int] = (),
        strike: Iterable[int] = (),
        include_templates: bool = False,
        verify_with: Path | bytes | None = None,
        actor: str | None = None,
    ) -> tuple[Path, ErasurePlan]:
        """Write the access package of an access request from its reviewed review (see
        `acting_review`), after an identity check where an ID photo is given. The request
        stays open until it is marked done."""
        review = self.acting_review(
            ref,
            "access",
            version=version,
            include=include,
            strike=strike,
            verify_with=verify_with,
            actor=actor,
        )
        return self.access(review, out, include_templates=include_templates, actor=actor)

    def restrict_request(
        self,
        ref: str,
        *,
        lift: bool = False,
        version: str | None = None,
        include: Iterable[int] = (),
        strike: Iterable[int] = (),
        actor: str | None = None,
    ) -> list[int]:
        """Restrict (or lift the restriction of) the faces included in a restriction or
        objection request's review (see `acting_review`); returns those face ids."""
        review = self.acting_review(
            ref, "restriction", version=version, include=include, strike=strike, actor=actor
        )
        if review.face_ids:
            self.restrict(
                face_ids=review.face_ids,
                reason=f"request {ref}",
                lift=lift,
                request_ref=ref,
                actor=actor,
            )
        return review.face_ids

    def acting_review(
        self,
        ref: str,
        act: str,
        *,
        version: str | None = None,
        include: Iterable[int] = (),
        strike: Iterable[int] = (),
        verify_with: Path | bytes | None = None,
        actor: str | None = None,
    ) -> Review:
        """The stored review of an open request, checked before anything leaves or goes:

        - the request is of a kind the act fits (`wrong_kind`), open (`closed`) and has a photo;
        - with `version`, the review is still the one the reviewer saw (`review_changed`);
        - with `verify_with`, an ID photo, the identity check passes (`identity_check_failed`);
        - decisions given now are recorded and searched again from: a face confirmed now may
          bring new candidates, and then nothing is done until they are reviewed
          (`review_changed`); so may faces catalogued since the review;
        - no possible candidate is left undecided (`review_pending`)."""
        request = self.request(ref)
        if request.kind not in ACTS[act]:
            raise RightsError(
                f"request {ref} is a {request.kind} request, not {act}", code="wrong_kind"
            )
        review = self.request_review(ref, reviewer=actor)
        _check_version(review, version)
        seen = review.version
        if verify_with is not None:
            review.identity_check = self._identity_check(
                review.template, verify_with, ref, actor
            )
        include, strike = set(include), set(strike)
        known = {c.face_id for c in review.candidates}
        if include or strike:
            review.decide(include=include, strike=strike, reviewer=actor)
            review = self.expand_review(review)
        new = {c.face_id for c in review.candidates} - known
        new_ingested = self.refresh_review(review)
        if review.version != seen:
            self.record_review(ref, review, actor=actor)
        if new or new_ingested:
            n = len(new) + new_ingested
            raise RightsError(
                f"{n} new candidate{'s' if n != 1 else ''} to review "
                f"({'found from the faces confirmed' if new else 'among photos added since'}): "
                "nothing was done; look at them first",
                code="review_changed",
            )
        if review.to_check:
            n = len(review.to_check)
            raise RightsError(
                f"{n} possible match{'es' if n != 1 else ''} not yet decided: include or strike "
                "each before anything is done",
                code="review_pending",
            )
        return review

    def record_review(self, ref: str, review: Review, *, actor: str | None = None) -> None:
        """Keep the review with its request (face ids, tiers and decisions; no template), and
        move a received request into review."""
        with self.catalog.session() as s, s.begin():
            request = _open_row(s, ref)
            request.review = review.to_json()
            if request.status == "received":
                request.status = "in_review"
            self.audit.append(
                actions.REQUEST,
                actor=actor or review.reviewer,
                result_ids=[c.face_id for c in review.candidates],
                details={
                    "request": ref,
                    "event": "reviewed",
                    "candidates": len(review.candidates),
                    "included": review.face_ids,
                    "struck": [c.face_id for c in review.struck],
                    "rounds": review.rounds,
                    **({"identity_check": "passed"} if review.identity_check else {}),
                },
                session=s,
            )

    def request(self, ref: str) -> RightsRequest:
        with self.catalog.session() as s:
            return _request_row(s, ref)

    def request_selfie(self, ref: str) -> bytes:
        with self.catalog.session() as s:
            request = s.scalar(select(RightsRequest).where(RightsRequest.ref == ref))
        if request is None or request.selfie is None:
            raise NotFoundError(f"request {ref} holds no photo", code="no_photo")
        return bytes(self.keyring.decrypt(request.selfie, REQUEST_AAD))

    def view_request_photo(self, ref: str, *, actor: str | None = None) -> bytes:
        """The photo sent with a request, to look at: audited as a view of the request."""
        data = self.request_selfie(ref)
        self.audit.append(actions.VIEW, actor=actor, details={"request": ref, "photo": True})
        return data

    def restricted_faces(self, *, limit: int = 500) -> list[FaceRecord]:
        """Faces restricted (Arts. 18, 21): held, out of every search, until lifted."""
        return self.catalog.restricted_faces(limit=limit)


def _request_row(s: Session, ref: str) -> RightsRequest:
    request = s.scalar(select(RightsRequest).where(RightsRequest.ref == ref))
    if request is None:
        raise NotFoundError(f"no request {ref}")
    return request


def _open_row(s: Session, ref: str) -> RightsRequest:
    request = _request_row(s, ref)
    _check_open(request)
    return request


def _check_open(request: RightsRequest) -> None:
    """Nothing is done twice: a closed request is not reviewed or acted on again."""
    if request.status in req.CLOSED:
        raise RightsError(
            f"request {request.ref} is {req.STATUS_LABELS[request.status]}: nothing more is "
            "done for it",
            code="closed",
        )


def _check_version(review: Review, version: str | None) -> None:
    if version is not None and version != review.version:
        raise RightsError(
            "the review changed since it was shown (another reviewer, or new candidates): "
            "nothing was done; look at it again",
            code="review_changed",
        )


def _note(text: str, actor: str | None, at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} {actor or 'unknown'}: {' '.join(text.split())}"


def _box(box: Any) -> tuple[int, int, int, int]:
    return (int(box.left), int(box.top), int(box.right), int(box.bottom))


def _photo_faces(analysed: AnalysedImage) -> PhotoFaces:
    usable = analysed.indexable
    return PhotoFaces(
        width=analysed.width,
        height=analysed.height,
        faces=[PhotoFace(n, _box(f.box)) for n, f in enumerate(usable, start=1)],
        unusable=len(analysed.faces) - len(usable),
    )


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


def _distance(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * float(a @ b))))


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
