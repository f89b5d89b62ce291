"""Searches (1:N) and verifications (1:1)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vultus.api.schemas.common import Box, Id
from vultus.search.results import SearchResult, Verification

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
