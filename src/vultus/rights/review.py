"""The review of a rights request: the candidates a person checks before anything leaves or
goes.

A selfie search proposes candidates in tiers (`vultus.search.tiers`): matches come
pre-included, possible ones do not; faces linked to a subject come along with a confirmed face
of that subject. The reviewer includes or strikes each. Confirming faces reruns the search from
them (the Engine's `expand_review`), so photos that look more like the person's other photos
than like the selfie are found too. An access package or an erasure is made only from the
included faces, and the package says what was reviewed, by whom, with what identity check.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from vultus.errors import RightsError
from vultus.rights.erasure import ErasurePlan, PersonMatch
from vultus.search.tiers import TIER_LABELS

CandidateTier = Literal["match", "possible", "linked"]
Decision = Literal["include", "strike"]
KINDS = ("access", "erasure", "restriction", "objection")
CANDIDATE_LABELS: dict[str, str] = {**TIER_LABELS, "linked": "linked to the same person"}


@dataclass(frozen=True)
class Candidate:
    face_id: int
    image_id: int
    image_path: str
    box: tuple[int, int, int, int]
    distance: float  # to the nearest query: the selfie or a confirmed face
    pair_fmr: float  # chance that one stranger's face is this close
    odds: str  # pair_fmr in words, for the reviewer
    tier: CandidateTier
    found_in_round: int  # 0: the selfie's own search; n: the n-th expansion
    other_faces: int  # faces of other people in the same image, which an erasure keeps
    restricted: bool
    subject: str | None = None
    decision: Decision | None = None

    @property
    def included(self) -> bool:
        """Matches and linked faces count unless struck; possible ones only when included."""
        if self.decision is not None:
            return self.decision == "include"
        return self.tier != "possible"

    @property
    def label(self) -> str:
        return CANDIDATE_LABELS[self.tier]


@dataclass
class Review:
    kind: str
    candidates: list[Candidate]
    match_threshold: float
    possible_threshold: float
    fmr_target: float
    gallery_size: int
    rounds: int = 0
    request_ref: str | None = None
    reviewer: str | None = None
    identity_check: str | None = None
    # Faces whose templates have already been searched from (the expansion's bookkeeping).
    searched_from: list[int] = field(default_factory=list)
    # The newest catalogued face when the review last searched: faces added after it are
    # looked at before anything is done (None: a review stored before this was kept).
    newest_face: int | None = None
    # The selfie's template: the first query. Never shown, exported or stored with the review
    # (the request keeps the selfie itself, encrypted, until it closes).
    template: Any = field(repr=False, default=None)

    # -- what the reviewer sees ---------------------------------------------------------------
    @property
    def included(self) -> list[Candidate]:
        return [c for c in self.candidates if c.included]

    @property
    def struck(self) -> list[Candidate]:
        return [c for c in self.candidates if c.decision == "strike"]

    @property
    def to_check(self) -> list[Candidate]:
        """Possible candidates nobody has decided on yet."""
        return [c for c in self.candidates if c.tier == "possible" and c.decision is None]

    @property
    def face_ids(self) -> list[int]:
        return [c.face_id for c in self.included]

    @property
    def version(self) -> str:
        """A short digest of what the reviewer sees and decides: the candidates, their tiers
        and decisions, and the identity check. A form carries it, so that acting on a review
        that changed since it was shown (another reviewer, new candidates) is refused."""
        seen = [
            self.kind,
            [[c.face_id, c.tier, c.decision] for c in self.candidates],
            self.identity_check,
        ]
        digest = hashlib.sha256(json.dumps(seen, separators=(",", ":")).encode())
        return digest.hexdigest()[:16]

    def headline(self) -> str:
        """One line for the top of the review. Never "nothing held" while candidates exist."""
        matches = sum(c.tier != "possible" for c in self.candidates)
        possible = len(self.to_check)
        if not self.candidates:
            return "No face of this person is held, and no possible match."
        if not possible and any(c.decision for c in self.candidates):
            included = len(self.included)
            return (
                f"Reviewed: {included} face{'s' if included != 1 else ''} judged to be this "
                f"person, {len(self.candidates) - included} not."
            )
        to_check = f"{possible} possible match{'es' if possible != 1 else ''} to check"
        if not matches:
            return f"No certain match; {to_check}."
        head = f"{matches} match{'es' if matches != 1 else ''}"
        return f"{head}; {to_check}." if possible else f"{head}."

    # -- the reviewer's decisions -------------------------------------------------------------
    def decide(
        self,
        *,
        include: Iterable[int] = (),
        strike: Iterable[int] = (),
        reviewer: str | None = None,
    ) -> Review:
        """Record decisions by face id; a face named in both is struck (the safer reading for
        an erasure is to keep asking). Unknown face ids are an error."""
        include, strike = set(include), set(strike)
        known = {c.face_id for c in self.candidates}
        unknown = (include | strike) - known
        if unknown:
            raise RightsError(
                f"face(s) {', '.join(map(str, sorted(unknown)))} are not candidates of this "
                "review",
                code="not_a_candidate",
            )
        self.candidates = [
            replace(c, decision="strike")
            if c.face_id in strike
            else replace(c, decision="include")
            if c.face_id in include
            else c
            for c in self.candidates
        ]
        if reviewer:
            self.reviewer = reviewer
        return self

    def plan(self, template: Any = None) -> ErasurePlan:
        """The included faces, as what an erasure or a package acts on; `template` is the
        person's fused template (the suppression entry), which the Engine computes."""
        return ErasurePlan(
            [
                PersonMatch(
                    face_id=c.face_id,
                    image_id=c.image_id,
                    image_path=c.image_path,
                    box=c.box,
                    distance=c.distance,
                    fmr=c.pair_fmr,
                    other_faces=c.other_faces,
                    restricted=c.restricted,
                )
                for c in self.included
            ],
            threshold=self.match_threshold,
            fmr_target=self.fmr_target,
            gallery_size=self.gallery_size,
            template=template,
        )

    # -- storage and output -------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("template")
        for c, out in zip(self.candidates, data["candidates"], strict=True):
            out["box"] = list(c.box)
            out["included"] = c.included
            out["label"] = c.label
        data["headline"] = self.headline()
        data["version"] = self.version
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Review:
        fields = {k: v for k, v in data.items() if k not in {"headline", "candidates", "version"}}
        candidates = [
            Candidate(
                **{
                    **{k: v for k, v in c.items() if k not in {"included", "label"}},
                    "box": tuple(c["box"]),
                }
            )
            for c in data["candidates"]
        ]
        return cls(candidates=candidates, **fields)
