"""Data subjects' requests: reviews, erasures, restrictions, objections, suppression."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vultus.api.schemas.common import Box, Id, RequestStatus, Timestamp
from vultus.clock import now
from vultus.engine.records import RightsRequest
from vultus.rights import requests as req
from vultus.rights.erasure import ErasurePlan, ErasureReceipt
from vultus.rights.review import Review


class RequestOut(BaseModel):
    ref: str
    kind: str
    status: str
    received_at: Timestamp
    due_at: Timestamp
    extended_until: Timestamp | None
    extension_reason: str | None
    deadline: Timestamp = Field(description="The deadline in force: extended or not.")
    days_left: int
    overdue: bool
    contact: str | None
    has_selfie: bool
    notes: str | None
    closed_at: Timestamp | None
    receipt_id: str | None = Field(
        None, description="The signed receipt of the erasure made for this request, if any."
    )
    reviewed: bool = Field(
        False, description="A review of the candidates is kept with the request."
    )

    @classmethod
    def of(cls, r: RightsRequest) -> RequestOut:
        deadline = r.extended_until or r.due_at
        open_ = r.status in {"received", "in_review"}
        return cls(
            ref=r.ref,
            kind=r.kind,
            status=r.status,
            received_at=r.received_at,
            due_at=r.due_at,
            extended_until=r.extended_until,
            extension_reason=r.extension_reason,
            deadline=deadline,
            days_left=(deadline - now()).days,
            overdue=open_ and deadline < now(),
            contact=r.contact,
            has_selfie=r.selfie is not None,
            notes=r.notes,
            closed_at=r.closed_at,
            receipt_id=r.receipt_id,
            reviewed=r.review is not None,
        )


class PhotoFaceOut(BaseModel):
    number: int = Field(description="1 is the largest usable face: send as `face`.")
    box: Box


class PhotoFacesOut(BaseModel):
    """The usable faces of a photo, for choosing the person's among several."""

    width: int
    height: int
    faces: list[PhotoFaceOut]
    unusable: int = Field(description="Faces seen but too small or unclear to be used.")


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=5000)


class CandidateOut(BaseModel):
    face_id: int
    image_id: int
    image_path: str
    box: Box
    tier: Literal["match", "possible", "linked"] = Field(
        description="match: the calibrated decision, pre-included; possible: check by eye, "
        "included only when a reviewer includes it; linked: tied to the same named person as "
        "a confirmed face."
    )
    label: str = Field(description="The tier in words.")
    distance: float = Field(description="To the nearest query: the selfie or a confirmed face.")
    pair_fmr: float = Field(description="The chance that one stranger's face is this close.")
    odds: str = Field(description="`pair_fmr` in words, for the reviewer.")
    found_in_round: int = Field(description="0: from the selfie; n: the n-th search again.")
    other_faces: int = Field(description="Other people's faces in the photo: an erasure keeps.")
    restricted: bool
    subject: str | None
    decision: Literal["include", "strike"] | None
    included: bool


class ReviewOut(BaseModel):
    """The candidates of a request by selfie, as a reviewer settles them. Nothing leaves or
    goes (access package, erasure, restriction) but the included faces of this review."""

    request: str | None
    kind: str
    headline: str = Field(description="Never says nothing is held while candidates exist.")
    version: str = Field(
        description="Send back as `review_version` to act only on the review as seen."
    )
    candidates: list[CandidateOut]
    included: list[int] = Field(description="The face ids an act would use.")
    to_check: list[int] = Field(
        description="Possible candidates no one has decided on: acting is refused until "
        "each is included or struck."
    )
    match_threshold: float
    possible_threshold: float
    fmr_target: float
    gallery_size: int
    rounds: int = Field(description="Searches again from confirmed faces so far.")
    reviewer: str | None
    identity_check: str | None = Field(
        description="The result of the check against an ID photo, when one was made."
    )

    @classmethod
    def of(cls, review: Review) -> ReviewOut:
        return cls(
            request=review.request_ref,
            kind=review.kind,
            headline=review.headline(),
            version=review.version,
            candidates=[
                CandidateOut(
                    face_id=c.face_id,
                    image_id=c.image_id,
                    image_path=c.image_path,
                    box=Box.of(c.box),
                    tier=c.tier,
                    label=c.label,
                    distance=c.distance,
                    pair_fmr=c.pair_fmr,
                    odds=c.odds,
                    found_in_round=c.found_in_round,
                    other_faces=c.other_faces,
                    restricted=c.restricted,
                    subject=c.subject,
                    decision=c.decision,
                    included=c.included,
                )
                for c in review.candidates
            ],
            included=review.face_ids,
            to_check=[c.face_id for c in review.to_check],
            match_threshold=review.match_threshold,
            possible_threshold=review.possible_threshold,
            fmr_target=review.fmr_target,
            gallery_size=review.gallery_size,
            rounds=review.rounds,
            reviewer=review.reviewer,
            identity_check=review.identity_check,
        )


class RequestRestrictionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lift: bool = Field(False, description="Lift the restriction of the reviewed faces instead.")
    review_version: str | None = Field(
        None, max_length=64, description="The review's `version` as seen; refused if changed."
    )


class RequestRestrictionOut(BaseModel):
    face_ids: list[int] = Field(description="The included faces of the review, acted on.")
    lifted: bool


class RequestUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: RequestStatus | None = None
    extend_months: int = Field(0, ge=0, le=req.MAX_EXTENSION_MONTHS)
    reason: str | None = Field(None, max_length=2000, description="Required to extend.")


class PersonMatchOut(BaseModel):
    face_id: int
    image_id: int
    box: Box
    distance: float
    fmr: float
    other_faces: int = Field(description="Other people's faces in the photo: it is kept.")
    restricted: bool


class ErasurePreviewOut(BaseModel):
    """The included faces of the request's review, as an erasure would act on them."""

    request: str
    matches: list[PersonMatchOut]
    face_ids: list[int] = Field(description="Send these back to erase exactly this plan.")
    threshold: float
    fmr_target: float
    gallery_size: int
    images_removed: int
    headline: str = Field(description="The review's headline: what was found, in tiers.")
    review_version: str = Field(description="Send back to erase only the review as seen.")
    to_check: list[int] = Field(
        description="Possible candidates still undecided: the erasure is refused until each "
        "is decided (POST the review)."
    )

    @classmethod
    def of(cls, ref: str, plan: ErasurePlan, review: Review) -> ErasurePreviewOut:
        return cls(
            headline=review.headline(),
            review_version=review.version,
            to_check=[c.face_id for c in review.to_check],
            request=ref,
            matches=[
                PersonMatchOut(
                    face_id=m.face_id,
                    image_id=m.image_id,
                    box=Box.of(m.box),
                    distance=m.distance,
                    fmr=m.fmr,
                    other_faces=m.other_faces,
                    restricted=m.restricted,
                )
                for m in plan.matches
            ],
            face_ids=plan.face_ids,
            threshold=plan.threshold,
            fmr_target=plan.fmr_target,
            gallery_size=plan.gallery_size,
            images_removed=plan.images_removed,
        )


class ErasureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    confirm: bool = Field(description="Must be true: an erasure cannot be undone.")
    face_ids: list[Id] | None = Field(
        None,
        max_length=100_000,
        description="The faces of the reviewed preview. When given, the erasure goes ahead only "
        "if the review still includes exactly these (minus `exclude`).",
    )
    review_version: str | None = Field(
        None, max_length=64, description="The review's `version` as seen; refused if changed."
    )
    exclude: list[Id] = Field(
        default_factory=list,
        max_length=100_000,
        description="Candidates judged not the person: struck in the review before erasing.",
    )
    blur_originals: bool = Field(False, description="Blur the operator's original files too.")


class LeftInPlaceOut(BaseModel):
    location: str
    reason: str


class CollectionMembershipOut(BaseModel):
    collection: str
    face_id: str = Field(description="The FaceId the collection's clients knew the face by.")


class ReceiptOut(BaseModel):
    """What the erasure did, exactly. Original files outside the data directory are deleted
    only where their source has `originals_deletable`; the others are in `left_in_place`."""

    receipt_id: str
    at: Timestamp
    request_ref: str | None
    faces_erased: int = Field(description="Faces removed from the catalog and the index.")
    images_erased: int = Field(description="Images removed from the catalog.")
    images_kept_with_others: int
    copies_blurred: int
    suppression_added: bool
    image_hashes: list[str]
    stored_copies_deleted: list[str] = Field(description="Uploads in the data directory.")
    originals_deleted: list[str]
    blurred: list[str] = Field(description="Files in which the erased face was blurred.")
    left_in_place: list[LeftInPlaceOut] = Field(
        description="Files that may still show the person, each with the reason it stays."
    )
    collection_memberships: list[CollectionMembershipOut] = Field(
        default_factory=list,
        description="Collection memberships (Rekognition-compatible API) that went with the faces.",
    )
    signature: str

    @classmethod
    def of(cls, r: ErasureReceipt) -> ReceiptOut:
        return cls(
            receipt_id=r.receipt_id,
            at=r.at,
            request_ref=r.request_ref,
            faces_erased=r.faces_erased,
            images_erased=r.images_erased,
            images_kept_with_others=r.images_kept_with_others,
            copies_blurred=r.copies_blurred,
            suppression_added=r.suppression_added,
            image_hashes=r.image_hashes,
            stored_copies_deleted=r.stored_copies_deleted,
            originals_deleted=r.originals_deleted,
            blurred=r.blurred,
            left_in_place=[LeftInPlaceOut(**item) for item in r.left_in_place],
            collection_memberships=[
                CollectionMembershipOut(**item) for item in r.collection_memberships
            ],
            signature=r.signature,
        )


class RestrictionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    face_ids: list[Id] | None = Field(None, max_length=100_000)
    subject: str | None = Field(None, max_length=200)
    reason: str = Field(min_length=1, max_length=2000)
    lift: bool = False


class ObjectionOut(BaseModel):
    request: RequestOut
    faces_restricted: int


class SuppressionOut(BaseModel):
    id: int
    created_at: Timestamp
    request_ref: str | None = Field(description="The request that erased the person, if any.")


class UnsuppressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)
