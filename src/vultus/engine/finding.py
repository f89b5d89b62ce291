"""Finding a person by selfie: the candidates of a request in tiers (match, possible: check by
eye; `vultus.search.tiers`), the review a person settles (`vultus.rights.review`), and the
expansion that searches again from every face the reviewer confirms.

`Engine` mixes this class in; access, erasure and restriction (`engine.rights`) and the request
workflow (`engine.requests`) act on what it finds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vultus import audit as actions
from vultus.engine.parts import EngineParts
from vultus.errors import RightsError
from vultus.index.base import normalise
from vultus.rights.erasure import (
    ErasurePlan,
)
from vultus.rights.review import KINDS, Candidate, Review
from vultus.search.tiers import Tiering, odds_in_words

# The stricter 1:1 check behind `--verify-with`: an access package goes only to the person.
IDENTITY_CHECK_FMR = 1e-4
# A round of expansion searches from the fused person and at most this many templates in all.
MAX_QUERIES_PER_ROUND = 8
# At most this many possible candidates enter a review per round, nearest first.
POSSIBLE_PER_ROUND = 25


class Finding(EngineParts):
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
                key=lambda f: _distance(person, normalise(confirmed[f])),
                reverse=True,
            )[: MAX_QUERIES_PER_ROUND - 1]
            review.searched_from += fresh
            queries = [normalise(confirmed[f]) for f in fresh] + [person]
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
        rows += [normalise(confirmed[f]) for f in review.face_ids if f in confirmed]
        if not rows:
            return 0
        queries = np.stack([*rows, self._person_template(review, confirmed)])
        tiering = self._tiering(queries=len(queries))
        known = {c.face_id for c in review.candidates}
        nearest: dict[int, float] = {}
        for ids, templates in self.catalog.iter_templates(after=since):
            dists = np.sqrt(np.clip(2.0 - 2.0 * (normalise(templates) @ queries.T), 0.0, None))
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
            return normalise(selfie)
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
        template = usable[0].template
        assert template is not None
        return normalise(template)

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
        rows += [normalise(confirmed[f]) for f in review.face_ids if f in confirmed]
        return normalise(np.mean(np.stack(rows), axis=0))

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
            f: (_distance(person, normalise(templates[f])), "linked")
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
            unit = normalise(vec)
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
                # Erased meanwhile, or still in an index that lags the catalog (a Milvus read
                # does not wait for the server's time tick): never proposed. A restricted face
                # stays a candidate: a rights request must reach it.
                continue
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


def _distance(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * float(a @ b))))
