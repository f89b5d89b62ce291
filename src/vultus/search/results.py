"""What a search or a verification answers: matches with calibrated false-match rates, and a
decision ("this person is in the gallery, here" or "no match at the chosen rate").

`SearchResult.to_json()` is the one shape of a search result: the REST API answers it (its
`SearchOut` model describes exactly this), `vultus search --json` prints it, and the Python
API's attributes carry the same names.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from vultus.accuracy.calibration import Calibration, Threshold, similarity_to_distance
from vultus.catalog import FaceRecord
from vultus.search.tiers import Tiering, odds_in_words

# Under this HOG detector margin, a face is "low quality". Measured on lfw-a at the FAR 1e-3
# threshold, pairs with such a face (the lowest tenth) were missed four times as often as the
# rest (FNMR 14.8% against 3.6%), while their false-match rate hardly moved (1.15e-3 against
# 0.97e-3): so such a query is flagged ("no match" is weak evidence), not held to a stricter
# threshold. Each detector scores on its own scale: BlazeFace's is a probability, and its
# lowest tenth of lfw-a faces lies under BLAZEFACE_LOW (`vultus eval`'s quality bins: FNMR
# 9.4% against 5.1% for the rest, FMR 1.03e-3 against 0.99e-3).
LOW_QUALITY_DET_SCORE = 1.0
BLAZEFACE_LOW = 0.70
_LOW_BY_DETECTOR = {"hog": LOW_QUALITY_DET_SCORE, "blazeface": BLAZEFACE_LOW}


def low_confidence(detector: str, det_score: float) -> bool:
    """Whether a face's detector score is in the lowest tenth its detector gives lfw-a faces.
    A pass's label names its detector first ("hog-upsampled", "blazeface-framed")."""
    family = detector.split("-", 1)[0]
    return det_score < _LOW_BY_DETECTOR.get(family, LOW_QUALITY_DET_SCORE)


class Box(NamedTuple):
    """A face's box in the image's upright pixels: `box.left`, or `left, top, right, bottom =
    box`; in JSON an object with these four keys."""

    left: int
    top: int
    right: int
    bottom: int

    def to_json(self) -> dict[str, int]:
        return self._asdict()


@dataclass(frozen=True)
class VideoMoment:
    """Where a face track is in its video (seconds): the span it appears in, and its best
    frame's time, the moment to play the video from and the frame a thumbnail shows."""

    start_s: float
    end_s: float
    best_s: float

    def to_json(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class QueryFace:
    number: int  # 1-based, largest face first
    box: Box
    det_score: float
    box_size: int
    detector: str = "hog"  # the pass that found it: det_score is on its scale

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "box": self.box.to_json()}


@dataclass(frozen=True)
class Match:
    face_id: int
    image_id: int
    # Where the photo lies (a path or an s3:// URI). The REST API shows it only to roles that
    # manage the library; everyone sees `file_name` and `external_id`.
    image_path: str
    box: Box
    distance: float
    similarity: float
    # Chance that a face of someone else, anywhere in a gallery of this size, scores this close.
    fmr: float
    is_match: bool
    source: str
    lawful_basis: str
    subject: str | None
    # "match" (the calibrated decision) or "possible" (check by eye; see vultus.search.tiers),
    # the chance that one stranger's face is this close, and that chance in words.
    tier: str = "match"
    pair_fmr: float = 1.0
    odds: str = ""
    # The photo as its sender named it (the upload's file name, else the file's own name),
    # and the id an integrator gave it at upload.
    file_name: str = ""
    external_id: str | None = None
    # A face track of a video: when it appears. None for a photo's face.
    video: VideoMoment | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "face_id": self.face_id,
            "image_id": self.image_id,
            "file_name": self.file_name,
            "external_id": self.external_id,
            "image_path": self.image_path,
            "box": self.box.to_json(),
            "tier": self.tier,
            "is_match": self.is_match,
            "distance": self.distance,
            "similarity": self.similarity,
            "fmr": self.fmr,
            "pair_fmr": self.pair_fmr,
            "odds": self.odds,
            "source": self.source,
            "lawful_basis": self.lawful_basis,
            "subject": self.subject,
            "video": None if self.video is None else self.video.to_json(),
        }


@dataclass
class SearchResult:
    gallery_size: int
    fmr_target: float
    threshold: float
    matches: list[Match]
    # True when fmr_target is below what the calibration data can resolve: the threshold is then
    # the edge of the measured range, and its true false-match rate may exceed the target.
    beyond_calibration: bool = False
    # Why no match was decided: the model has no calibration yet (the message says how to fit
    # one). The matches are still ranked by distance.
    uncalibrated: str | None = None
    # The face searched with, and every face seen in the query photo (a photo search).
    query_face: QueryFace | None = None
    # Below the match threshold, candidates down to this distance are shown as "possible".
    possible_threshold: float = 0.0
    faces: list[QueryFace] = field(default_factory=list)
    # Open-set answer by subject: the nearest named subject among the accepted matches, and how
    # much nearer it is than the nearest *other* subject among the results (a distance; None
    # when no other subject came back). Below `margin_required`, a match is flagged ambiguous.
    best_subject: str | None = None
    subject_margin: float | None = None
    margin_required: float = 0.0
    # The faces of the query photo near-equal in size to the largest (numbers, face 1 first)
    # when the search was not told which face: face 1 was searched, but which face was meant
    # is for the user to say (`face=N`). Empty when the choice was clear or given.
    face_tie: list[int] = field(default_factory=list)
    # The search's entry in the audit log: a view of a result's photo names it (an
    # investigator may see only the photos of their own results). None until audited.
    search_id: int | None = None

    @property
    def found(self) -> bool:
        return any(m.is_match for m in self.matches)

    @property
    def faces_seen(self) -> int:
        return len(self.faces)

    @property
    def other_faces(self) -> list[QueryFace]:
        """The faces of the query photo not searched with: `face=N` searches with one."""
        return [f for f in self.faces if f != self.query_face]

    @property
    def low_quality_query(self) -> bool:
        face = self.query_face
        return face is not None and low_confidence(face.detector, face.det_score)

    @property
    def ambiguous(self) -> bool:
        """A match whose best subject barely beats another subject: a reviewer must decide."""
        return (
            self.found
            and self.subject_margin is not None
            and self.subject_margin < self.margin_required
        )

    @property
    def decision(self) -> str:
        if self.uncalibrated:
            return f"no decision: {self.uncalibrated}"
        if self.found:
            n = sum(m.is_match for m in self.matches)
            text = f"match: {n} face(s) at or under the threshold for FMR {self.fmr_target:g}"
            if self.ambiguous:
                assert self.subject_margin is not None
                text += (
                    f"; ambiguous: {self.best_subject!r} is only {self.subject_margin:.3f} nearer "
                    f"than another subject (margin required {self.margin_required:.3f})"
                )
        else:
            text = (
                f"no match at FMR {self.fmr_target:g} in a gallery of {self.gallery_size:,} faces"
            )
            possible = len(self.matches)
            if possible:
                text += f"; {possible} possible match{'es' if possible != 1 else ''} to check"
        if self.beyond_calibration:
            text += " (the target is below what the calibration data resolves)"
        if self.face_tie:
            numbers = ", ".join(map(str, self.face_tie[:-1])) + f" and {self.face_tie[-1]}"
            text += (
                f"; faces {numbers} are near-equal in size: searched with face "
                f"{self.face_tie[0]}, the nearest the centre; say which with face=N"
            )
        if self.low_quality_query and not self.found:
            text += (
                "; the query face is of low quality, so photos of the same person are often "
                "missed: this is weak evidence of absence"
            )
        return text

    def to_json(self) -> dict[str, Any]:
        """The one shape of a search result, in JSON's own types (see the module's doc)."""
        return {
            "search_id": self.search_id,
            "found": self.found,
            "decision": self.decision,
            "gallery_size": self.gallery_size,
            "fmr_target": self.fmr_target,
            "threshold": self.threshold,
            # Without a calibration every candidate is "possible": no distance bounds the tier.
            "possible_threshold": (
                self.possible_threshold if math.isfinite(self.possible_threshold) else None
            ),
            "beyond_calibration": self.beyond_calibration,
            "uncalibrated": self.uncalibrated,
            "best_subject": self.best_subject,
            "subject_margin": self.subject_margin,
            "margin_required": self.margin_required,
            "ambiguous": self.ambiguous,
            "low_quality_query": self.low_quality_query,
            "query_face": self.query_face.to_json() if self.query_face else None,
            "faces": [f.to_json() for f in self.faces],
            "face_tie": list(self.face_tie),
            "matches": [m.to_json() for m in self.matches],
        }


@dataclass(frozen=True)
class Verification:
    distance: float
    similarity: float
    fmr: float  # 1:1 false-match rate at this distance
    fmr_target: float
    threshold: float
    same_person: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def rank(
    scores: npt.NDArray[np.float32],
    ids: npt.NDArray[np.int64],
    records: dict[int, FaceRecord],
    calibration: Calibration | None,
    *,
    gallery_size: int,
    fmr_target: float,
    possible_fmr: float,
    possible_strangers: float,
    exclude: set[int] | frozenset[int] = frozenset(),
    top_k: int,
    uncalibrated: str | None = None,
    margin: float = 0.0,
) -> SearchResult:
    """Matches best first, in tiers: the calibrated matches, then the possible ones to check
    by eye (`vultus.search.tiers`); nothing further down is shown. Without a calibration there
    is no decision and no tier: the nearest `top_k` are listed, every false-match rate reads
    1.0, because a distance alone says nothing about how likely a stranger is that close."""
    distances = similarity_to_distance(scores)
    gallery = max(1, gallery_size)
    if calibration is None:
        threshold = Threshold(
            0.0, fmr_target=fmr_target, gallery_size=gallery, floor_reached=False, expected_fmr=1.0
        )
        fmrs = pair_fmrs = np.ones(len(distances))
        tiers: list[str | None] = ["possible"] * len(distances)
        possible_threshold = float("inf")
    else:
        tiering = Tiering.of(
            calibration,
            fmr=fmr_target,
            gallery_size=gallery,
            possible_fmr=possible_fmr,
            possible_strangers=possible_strangers,
        )
        threshold = calibration.threshold_for(fmr_target, gallery_size=gallery)
        possible_threshold = tiering.possible_threshold
        fmrs = np.atleast_1d(calibration.fmr_at_gallery(distances, gallery))
        pair_fmrs = np.atleast_1d(calibration.fmr_at(distances))
        tiers = list(tiering.assign(distances))
    ranked: list[Match] = []
    rows = zip(ids.tolist(), scores.tolist(), distances, fmrs, pair_fmrs, tiers, strict=True)
    for fid, score, dist, fmr, pair_fmr, tier in rows:
        record = records.get(fid)
        if fid < 0 or fid in exclude or record is None:
            continue
        ranked.append(
            Match(
                face_id=fid,
                image_id=record.image_id,
                image_path=record.image_path,
                box=Box(*record.box),
                distance=round(float(dist), 4),
                similarity=round(float(score), 4),
                fmr=float(fmr),
                is_match=tier == "match",
                source=record.source,
                lawful_basis=f"{record.lawful_basis} / {record.special_condition}",
                subject=record.subject,
                tier=tier or "",
                pair_fmr=float(pair_fmr),
                odds=""
                if calibration is None
                else odds_in_words(float(pair_fmr), gallery, floor=calibration.fmr_floor),
                file_name=record.file_name,
                external_id=record.external_id,
                video=None
                if record.track is None
                else VideoMoment(record.track.start_s, record.track.end_s, record.track.best_s),
            )
        )
    # The subject margin looks past what is shown: the nearest other subject may be a stranger
    # too far away to be a candidate, and that distance is the evidence of a clear answer.
    best_subject, subject_gap = subject_margin(ranked)
    matches = [m for m in ranked if m.tier][:top_k]
    return SearchResult(
        gallery_size=gallery_size,
        fmr_target=fmr_target,
        threshold=float(threshold),
        matches=matches,
        beyond_calibration=threshold.floor_reached,
        uncalibrated=uncalibrated,
        possible_threshold=possible_threshold,
        best_subject=best_subject,
        subject_margin=subject_gap,
        margin_required=margin,
    )


def subject_margin(matches: list[Match]) -> tuple[str | None, float | None]:
    """The nearest subject among the accepted matches, and its distance margin over the
    nearest different subject among all the results (accepted or not).

    Faces with no subject are left out: who they show is unknown, so they can neither confirm
    nor contradict a subject. Matches are ordered by distance, so each subject's first face is
    its nearest."""
    nearest: dict[str, Match] = {}
    for m in matches:
        if m.subject is not None and m.subject not in nearest:
            nearest[m.subject] = m
    ranked = sorted(nearest.values(), key=lambda m: m.distance)
    if not ranked or not ranked[0].is_match:
        return None, None
    if len(ranked) == 1:
        return ranked[0].subject, None
    return ranked[0].subject, round(ranked[1].distance - ranked[0].distance, 4)
