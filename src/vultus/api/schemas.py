"""What the REST API reads and writes, as Pydantic models: kept apart from the catalog's tables,
so that a column can change without changing the API, and nothing leaks by accident (a stored
selfie, a key's hash, a template)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from vultus.audit import AuditVerification
from vultus.clock import now
from vultus.engine.apikeys import ROLES
from vultus.engine.records import (
    ApiKey,
    FaceRecord,
    ImageSummary,
    Job,
    RightsRequest,
    Source,
    Subject,
)
from vultus.ingest.batches import IngestSummary
from vultus.rights import requests as req
from vultus.rights.erasure import ErasurePlan, ErasureReceipt
from vultus.rights.review import Review
from vultus.search.results import SearchResult, Verification

Role = Literal["admin", "operator", "investigator", "dpo", "auditor"]
assert set(Role.__args__) == set(ROLES)  # type: ignore[attr-defined]

RequestKind = Literal["access", "erasure", "restriction", "objection"]
RequestStatus = Literal["received", "in_review", "done", "rejected"]
assert set(RequestKind.__args__) == set(req.KINDS)  # type: ignore[attr-defined]
assert set(RequestStatus.__args__) == set(req.STATUSES)  # type: ignore[attr-defined]

NameStr = Annotated[str, Field(min_length=1, max_length=200)]
# Ids are SQLite integers, never near 2^53; past it a JSON number is not exact (a client may
# read 2^63 - 1 as 2^63), so the document bounds ids where every client reads them alike.
MAX_ID = 2**53 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


def _naive_utc(value: datetime | None) -> datetime | None:
    """Times are stored as naive UTC; a time with an offset is converted, if it can be."""
    if value is None or value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise ValueError("this time is out of range once converted to UTC") from None


UtcTime = Annotated[datetime | None, AfterValidator(_naive_utc)]


def _aware_utc(value: datetime) -> datetime:
    """Stored times are naive UTC; answered, they carry their offset (RFC 3339 needs one)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Every time the API answers with: `2026-11-22T10:15:00Z`, never a time without an offset.
Timestamp = Annotated[datetime, AfterValidator(_aware_utc)]


class Error(BaseModel):
    """Every error the API returns: a stable machine code and a sentence for people."""

    code: str = Field(examples=["purpose_required"])
    message: str = Field(examples=["a search must state its purpose, one of: ..."])


class Box(BaseModel):
    """A face's box in the image's upright pixels."""

    left: int
    top: int
    right: int
    bottom: int

    @classmethod
    def of(cls, box: tuple[int, int, int, int] | list[int]) -> Box:
        left, top, right, bottom = box
        return cls(left=left, top=top, right=right, bottom=bottom)


class Count(BaseModel):
    count: int


# -- sources --------------------------------------------------------------------------------------
class SourceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: NameStr
    lawful_basis: str = Field(description="GDPR Art. 6(1) basis, e.g. `legitimate_interests`.")
    special_condition: str = Field(
        description="GDPR Art. 9(2) condition, e.g. `archiving_research`."
    )
    purpose: str = Field(min_length=1, description="Why these photos are held.")
    retention_days: int = Field(gt=0, le=36500)
    kind: str = Field("folder", description="folder, upload, archive, video or object_storage.")
    legal_reference: str | None = Field(None, description="The law a condition rests on.")
    notes: str | None = None
    originals_deletable: bool = Field(
        False,
        description="Let an erasure delete this source's original files (photos that showed "
        "only the erased person; objects only in buckets that keep no versions). Off: "
        "originals are left in place, and the receipt names them.",
    )


class SourceOut(BaseModel):
    name: str
    kind: str
    lawful_basis: str
    special_condition: str
    legal_reference: str | None
    purpose: str
    retention_days: int
    originals_deletable: bool
    created_at: Timestamp
    images: int = 0
    faces: int = 0

    @classmethod
    def of(cls, source: Source, images: int = 0, faces: int = 0) -> SourceOut:
        return cls(
            name=source.name,
            kind=source.kind,
            lawful_basis=source.lawful_basis,
            special_condition=source.special_condition,
            legal_reference=source.legal_reference,
            purpose=source.purpose,
            retention_days=source.retention_days,
            originals_deletable=bool(source.originals_deletable),
            created_at=source.created_at,
            images=images,
            faces=faces,
        )


# -- ingest and images ----------------------------------------------------------------------------
class IngestErrorOut(BaseModel):
    path: str
    code: str
    message: str


class MultiFrameOut(BaseModel):
    path: str
    frames: int = Field(description="Frames or pages in the file; only the first was read.")


class IngestSummaryOut(BaseModel):
    run_id: int | None
    source: str
    files_seen: int
    images_added: int
    images_duplicate: int
    images_no_face: int
    faces_indexed: int
    faces_skipped: int
    faces_suppressed: int
    skip_reasons: dict[str, int]
    errors: list[IngestErrorOut]
    seconds: float
    suppressed_photos: list[str] = Field(
        description="The photos in which faces were refused as on the suppression list."
    )
    multi_frame: list[MultiFrameOut] = Field(
        description="Animated images and multi-page files: only their first frame or page was "
        "read and indexed. Split them into single images to add the others."
    )

    @classmethod
    def of(cls, s: IngestSummary) -> IngestSummaryOut:
        return cls(
            run_id=s.run_id,
            source=s.source,
            files_seen=s.files_seen,
            images_added=s.images_added,
            images_duplicate=s.images_duplicate,
            images_no_face=s.images_no_face,
            faces_indexed=s.faces_indexed,
            faces_skipped=s.faces_skipped,
            faces_suppressed=s.faces_suppressed,
            skip_reasons=s.skip_reasons,
            errors=[IngestErrorOut(path=p, code=c, message=m) for p, c, m in s.errors],
            seconds=round(s.seconds, 3),
            suppressed_photos=s.suppressed_photos,
            multi_frame=[MultiFrameOut(path=p, frames=n) for p, n in s.multi_frame],
        )


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, description="A photo on the server; folders go to a job.")
    source: NameStr
    consent: Id | None = Field(
        None, description="The consent record the photo rests on; required by consent sources."
    )


# An integrator's id for a photo: printable, as search results and listings show it.
ExternalId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
EXTERNAL_ID_HELP = (
    "Your own id for the photo (1 to 200 characters): search results and listings carry it. "
    "A photo already held under another external id is refused (`external_id_conflict`)."
)


class ImageUploadFields(BaseModel):
    """An upload's fields beside the photo (`file`)."""

    model_config = ConfigDict(extra="forbid")

    source: NameStr = Field(description="A registered source.")
    consent: Id | None = Field(
        None, description="The consent record the photo rests on; required by consent sources."
    )
    external_id: ExternalId | None = Field(None, description=EXTERNAL_ID_HELP)
    filename: str | None = Field(
        None,
        max_length=255,
        description="The photo's file name, as search results show it (the stored copy is named "
        "by its content). Multipart: defaults to the file part's name.",
    )


class ImageOut(BaseModel):
    id: int
    file_name: str = Field(
        description="The name the photo was uploaded with, else the name of its file."
    )
    external_id: str | None = Field(description="The id given at upload.")
    path: str
    source: str
    width: int
    height: int
    format: str
    added_at: Timestamp
    retain_until: Timestamp
    status: str
    faces: int

    @classmethod
    def of(cls, i: ImageSummary) -> ImageOut:
        return cls(
            id=i.id,
            file_name=i.file_name,
            external_id=i.external_id,
            path=i.path,
            source=i.source,
            width=i.width,
            height=i.height,
            format=i.format,
            added_at=i.added_at,
            retain_until=i.retain_until,
            status=i.status,
            faces=i.faces,
        )


class IngestOut(BaseModel):
    """An ingested photo: its image id (None when every face in it was suppressed)."""

    image_id: int | None
    image: ImageOut | None = Field(
        None, description="The photo as held, with the names search results give it."
    )
    summary: IngestSummaryOut


class FaceOut(BaseModel):
    id: int
    image_id: int
    box: Box
    status: str
    source: str
    lawful_basis: str
    special_condition: str
    subject: str | None
    restricted: bool
    added_at: Timestamp
    retain_until: Timestamp

    @classmethod
    def of(cls, r: FaceRecord) -> FaceOut:
        return cls(
            id=r.face_id,
            image_id=r.image_id,
            box=Box.of(r.box),
            status=r.status,
            source=r.source,
            lawful_basis=r.lawful_basis,
            special_condition=r.special_condition,
            subject=r.subject,
            restricted=r.restricted,
            added_at=r.added_at,
            retain_until=r.retain_until,
        )


class ImageDetailOut(BaseModel):
    image: ImageOut
    faces: list[FaceOut]


# -- subjects -------------------------------------------------------------------------------------
class SubjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: NameStr
    face_ids: list[Id] = Field(default_factory=list, max_length=10_000)


class SubjectRename(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: NameStr


class SubjectMerge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    other: str = Field(min_length=1, max_length=200, description="Its faces move; it goes.")


class FaceIds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    face_ids: list[Id] = Field(min_length=1, max_length=10_000)


class SubjectOut(BaseModel):
    name: str
    created_at: Timestamp
    restricted: bool
    faces: int

    @classmethod
    def of(cls, subject: Subject, faces: int) -> SubjectOut:
        return cls(
            name=subject.name,
            created_at=subject.created_at,
            restricted=bool(subject.restricted),
            faces=faces,
        )


class SubjectDetailOut(BaseModel):
    subject: SubjectOut
    faces: list[FaceOut]


# -- search and verify ----------------------------------------------------------------------------
MARGIN_HELP = (
    "Flag a match as ambiguous when its subject is not this much nearer (distance) than the "
    "next subject. Default: the search_margin setting."
)


class SearchBy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purpose: str = Field(
        min_length=1, max_length=200, description="Why you search: one of the configured purposes."
    )
    case_ref: str | None = Field(None, max_length=200, description="A case reference.")
    top_k: int = Field(10, ge=1, le=1000, description="At most this many candidates.")
    fmr: float | None = Field(
        None, gt=0, lt=1, description="False-match rate of the match decision."
    )
    margin: float | None = Field(None, ge=0, le=2, description=MARGIN_HELP)


class SearchByFace(SearchBy):
    face_id: Id


class SearchBySubject(SearchBy):
    subject: str = Field(min_length=1, max_length=200)


class SearchPhotoFields(SearchBy):
    """A photo search's fields beside the photo."""

    face: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Which face (1 = largest). Without it, the largest; when faces are "
        "near-equal in size, `face_tie` in the answer names them.",
    )
    detection: Literal["standard", "thorough", "harder"] | None = Field(
        None,
        description='How hard the photo is searched for faces: "thorough" (HOG and MMOD), '
        '"harder" (more scales as well: for a face the others miss; a few seconds), '
        '"standard" (the ingest detector). Default: the `query_detection` setting. Face '
        "numbers refer to the faces found this way.",
    )


class VerifyFields(BaseModel):
    """A verification's fields beside the two photos."""

    model_config = ConfigDict(extra="forbid")

    purpose: str = Field(
        min_length=1, max_length=200, description="Why you compare: one of the configured purposes."
    )
    case_ref: str | None = Field(None, max_length=200, description="A case reference.")
    fmr: float = Field(1e-3, gt=0, lt=1, description="False-match rate of the decision.")


class VideoMomentOut(BaseModel):
    """Where a face track lies in its video, in seconds from the start."""

    model_config = ConfigDict(extra="forbid")

    start_s: float = Field(description="The person's first appearance in the span.")
    end_s: float = Field(description="Their last sampled appearance in it.")
    best_s: float = Field(description="The best frame: where to play from; the thumbnail.")


class MatchOut(BaseModel):
    """One candidate face. The same shape as `vultus search --json` and the Python API's
    `Match.to_json()`."""

    model_config = ConfigDict(extra="forbid")

    face_id: int
    image_id: int = Field(description="See the photo at `/v1/images/{image_id}/file`.")
    file_name: str = Field(description="The photo's name: as uploaded, else the name of its file.")
    external_id: str | None = Field(description="The id given to the photo at upload.")
    image_path: str | None = Field(
        description="Where the photo lies on the server: only for roles that manage the "
        "library (operator), else null."
    )
    box: Box
    tier: Literal["match", "possible"] = Field(
        description='"match" (the calibrated decision) or "possible" (check by eye); '
        "faces further away are not returned."
    )
    is_match: bool = Field(description='tier == "match".')
    distance: float
    similarity: float
    fmr: float = Field(
        description="Estimated chance that someone else, anywhere in a gallery "
        "of this size, comes this close."
    )
    pair_fmr: float = Field(description="Chance that one stranger's face is this close.")
    odds: str = Field(description="pair_fmr in words, for a reviewer.")
    source: str
    lawful_basis: str = Field(description="The source's Art. 6 basis / Art. 9 condition.")
    subject: str | None
    video: VideoMomentOut | None = Field(
        description="For a face track of a video: when in the video the person appears; "
        "null for a photo's face."
    )


class QueryFaceOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: int = Field(description="1 = the largest face in the photo.")
    box: Box
    det_score: float = Field(description="The detector's confidence, on its own scale.")
    box_size: int = Field(description="The face's size in pixels.")
    detector: str = Field(
        description="The detector pass that found the face: hog, hog-upsampled, mmod, "
        "blazeface, blazeface-framed or scrfd."
    )


class SearchOut(BaseModel):
    """A search's answer: the same shape as `vultus search --json` and the Python API's
    `SearchResult.to_json()`."""

    model_config = ConfigDict(extra="forbid")

    search_id: int | None = Field(
        description="The search's audit entry: an investigator names it (`search`) to view "
        "the photos and faces of these results."
    )
    found: bool = Field(description="A face in the match tier.")
    decision: str = Field(description="The answer in words.")
    gallery_size: int
    fmr_target: float
    threshold: float = Field(description="The match tier's distance threshold.")
    possible_threshold: float | None = Field(
        description="The possible tier's distance threshold (null without a calibration)."
    )
    beyond_calibration: bool
    uncalibrated: str | None = Field(
        description="Why there is no decision: the model has no calibration yet."
    )
    best_subject: str | None = Field(
        description="The nearest named subject among the accepted matches."
    )
    subject_margin: float | None = Field(
        description="How much nearer (distance) the best subject is than the next subject."
    )
    margin_required: float
    ambiguous: bool = Field(description="A match whose subject margin is under the required one.")
    low_quality_query: bool = Field(
        description="The query face is of low quality: a 'no match' is weak evidence."
    )
    query_face: QueryFaceOut | None = Field(description="The face searched with (photo search).")
    faces: list[QueryFaceOut] = Field(description="Every face seen in the query photo.")
    face_tie: list[int] = Field(
        description="Faces near-equal in size to the largest when no `face` was sent: face 1 "
        "(nearest the centre) was searched; ask which was meant and send it as `face`."
    )
    matches: list[MatchOut]

    @classmethod
    def of(cls, r: SearchResult, *, paths: bool) -> SearchOut:
        """`paths`: whether the caller may see where photos lie on the server."""
        out = cls.model_validate(r.to_json())
        if not paths:
            for m in out.matches:
                m.image_path = None
        return out


class VerifyOut(BaseModel):
    same_person: bool
    distance: float
    similarity: float
    fmr: float = Field(description="1:1 false-match rate at this distance.")
    fmr_target: float
    threshold: float

    @classmethod
    def of(cls, v: Verification) -> VerifyOut:
        return cls(
            same_person=v.same_person,
            distance=v.distance,
            similarity=v.similarity,
            fmr=v.fmr,
            fmr_target=v.fmr_target,
            threshold=v.threshold,
        )


# -- rights ---------------------------------------------------------------------------------------
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


# -- audit ----------------------------------------------------------------------------------------
class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    seq: int
    at: Timestamp
    actor: str
    action: str
    purpose: str | None
    case_ref: str | None
    query_hash: str | None
    result_ids: list[int]
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditProblemOut(BaseModel):
    seq: int | None
    entry_id: int | None
    kind: str
    message: str


class AuditVerifyOut(BaseModel):
    ok: bool
    entries: int
    problems: list[AuditProblemOut]

    @classmethod
    def of(cls, v: AuditVerification) -> AuditVerifyOut:
        return cls(
            ok=v.ok,
            entries=v.entries,
            problems=[
                AuditProblemOut(seq=p.seq, entry_id=p.entry_id, kind=p.kind, message=p.message)
                for p in v.problems
            ],
        )


# -- keys and jobs --------------------------------------------------------------------------------
def exactly_one_of(*fields: str) -> dict[str, Any]:
    """The JSON Schema of "exactly one of these fields, not null": what a model validator
    checks, written into the document so that clients (and schemathesis) can read it."""
    return {
        "oneOf": [
            {"required": [f], "properties": {f: {"not": {"type": "null"}}}} for f in fields
        ]
    }


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=exactly_one_of("role", "roles"))

    name: NameStr
    role: Role | None = Field(None, description="One role; or give several as `roles`.")
    roles: list[Role] | None = Field(
        None,
        min_length=1,
        max_length=len(ROLES),
        description="Several roles for one key: only operator and investigator may share one "
        "(separation of duties).",
    )
    expires_days: int | None = Field(None, gt=0, le=36500)
    searches_per_day: int | None = Field(None, ge=0, le=1_000_000)
    purpose: str | None = Field(
        None,
        max_length=200,
        description="Bind the key's searches to this configured purpose (investigator).",
    )
    case_ref: str | None = Field(
        None, max_length=200, description="Bind the key's searches to this case reference."
    )
    source: str | None = Field(
        None, max_length=200, description="Bind the photos the key adds to this source (operator)."
    )
    aws: bool = Field(
        False,
        description="Also give the key an AWS-style credential, for Rekognition clients (boto3) "
        "at /rekognition: its access key id and secret are answered once.",
    )

    @model_validator(mode="after")
    def one_way_to_name_roles(self) -> KeyIn:
        if (self.role is None) == (self.roles is None):
            raise ValueError("give the key's role as `role`, or its roles as `roles`: one of them")
        return self

    @property
    def all_roles(self) -> list[str]:
        return [self.role] if self.role is not None else list(self.roles or [])


class KeyOut(BaseModel):
    name: str
    role: str = Field(description='The key\'s roles, joined by "+" where it has several.')
    roles: list[str]
    created_at: Timestamp
    expires_at: Timestamp | None
    revoked_at: Timestamp | None
    last_used_at: Timestamp | None
    searches_per_day: int | None
    purpose: str | None = None
    case_ref: str | None = None
    source: str | None = None
    aws_access_key_id: str | None = Field(
        None, description="The access key id of the key's AWS credential, if it has one."
    )

    @classmethod
    def of(cls, k: ApiKey, aws_access_key_id: str | None = None) -> KeyOut:
        return cls(
            aws_access_key_id=aws_access_key_id,
            name=k.name,
            role=k.role,
            roles=list(k.roles),
            created_at=k.created_at,
            expires_at=k.expires_at,
            revoked_at=k.revoked_at,
            last_used_at=k.last_used_at,
            searches_per_day=k.searches_per_day,
            purpose=k.purpose,
            case_ref=k.case_ref,
            source=k.source,
        )


class KeyCreatedOut(BaseModel):
    key: KeyOut
    secret: str = Field(description="Shown only now: only a hash of it is stored.")
    aws_access_key_id: str | None = Field(
        default=None, description="With `aws`: for SigV4 clients."
    )
    aws_secret_access_key: str | None = Field(
        default=None, description="With `aws`: shown only now (kept sealed under the master key)."
    )


class IngestJobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, description="A folder (walked recursively) or file.")
    source: NameStr
    consent: Id | None = Field(
        None, description="The consent record the photos rest on; required by consent sources."
    )


class RebuildJobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    factory: str | None = Field(
        None, max_length=200, description="A FAISS factory string, or `auto`."
    )


class JobOut(BaseModel):
    id: int
    kind: str
    status: str = Field(description="queued, running, done or failed.")
    params: dict[str, Any]
    actor: str
    done: int
    total: int | None
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None

    @classmethod
    def of(cls, j: Job) -> JobOut:
        return cls(
            id=j.id,
            kind=j.kind,
            status=j.status,
            params=dict(j.params or {}),
            actor=j.actor,
            done=j.done or 0,
            total=j.total,
            result=j.result,
            error=j.error,
            attempts=j.attempts or 0,
            created_at=j.created_at,
            started_at=j.started_at,
            finished_at=j.finished_at,
        )


# -- health ---------------------------------------------------------------------------------------
class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyOut(BaseModel):
    status: Literal["ready"] = "ready"
    images: int
    faces_indexed: int
    index_size: int
    model: str | None
