"""The Engine's request workflow (Art. 12(3)): a request's photo checked at intake, its life
(received, in review, done, refused) with notes, history and receipt, its stored review, and
acting on it (erasure, access, restriction) only from that review.

`Engine` mixes this class in beside `engine.finding` and `engine.rights`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vultus import audit as actions
from vultus.catalog.models import (
    AuditEntry,
    RightsRequest,
)
from vultus.catalog.records import FaceRecord
from vultus.clock import now
from vultus.engine.parts import EngineParts
from vultus.errors import NotFoundError, RightsError
from vultus.pipeline.analyse import AnalysedImage
from vultus.pipeline.decode import decode_image
from vultus.rights import requests as req
from vultus.rights.erasure import (
    ErasurePlan,
    ErasureReceipt,
)
from vultus.rights.intake import MARGINS, PhotoFace, PhotoFaces, crop_face, working_copy
from vultus.rights.review import Review

REQUEST_AAD = b"rights_requests.selfie"
# What a request by selfie acts on, by request kind; restriction covers objections too.
ACTS = {"erasure": {"erasure"}, "access": {"access"}, "restriction": {"restriction", "objection"}}


class Requests(EngineParts):
    """Mixed into `Engine`; every method's `self` is the engine."""

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
