"""Search and verify: every one states a purpose, is decided at a calibrated false-match rate,
and is audited."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from vultus import audit as actions
from vultus.accuracy.calibration import Calibration
from vultus.audit import face_hash
from vultus.engine.locking import locked
from vultus.engine.parts import EngineParts
from vultus.errors import (
    ConfigError,
    ForbiddenError,
    NoFaceError,
    NotFoundError,
    PurposeError,
    VultusError,
)
from vultus.index.base import normalise
from vultus.pipeline.analyse import AnalysedFace, AnalysedImage
from vultus.search.results import Box, QueryFace, SearchResult, Verification, rank
from vultus.storage import read_location


class Searching(EngineParts):
    def _check_query_model(self) -> None:
        """A query photo must be embedded by the catalog's model: another model's template,
        compared with the index or the catalog's calibration, would mean nothing."""
        if self.catalog.get_meta("model_id") is not None:
            self.catalog.check_model(self.pipeline.model_id)

    # -- search and verify -------------------------------------------------------------------
    @locked
    def analyse(self, photo: Path | bytes, *, detection: str = "standard") -> AnalysedImage:
        """The faces of a photo; `detection` "query" (a search's photo, detected as
        `Settings.query_detection` says) or "harder" find more faces at more cost."""
        return self.pipeline.analyse(photo, detection=self._detection(detection))

    def _detection(self, detection: str | None) -> str:
        if detection is None or detection == "query":
            return self.settings.query_detection
        return detection

    def check_purpose(self, purpose: str | None) -> str:
        """Every search states a purpose from the configured list (purpose limitation)."""
        allowed = ", ".join(repr(p) for p in self.settings.purposes)
        if not purpose or not purpose.strip():
            raise PurposeError(f"a search must state its purpose, one of: {allowed}")
        if purpose not in self.settings.purposes:
            raise PurposeError(
                f"{purpose!r} is not a configured purpose; use one of: {allowed} "
                "(the list is the `purposes` setting)",
                code="purpose_unknown",
            )
        return purpose

    @locked
    def search(
        self,
        photo: Path | bytes,
        *,
        purpose: str,
        case_ref: str | None = None,
        top_k: int = 10,
        face: int | None = None,
        fmr: float | None = None,
        margin: float | None = None,
        actor: str | None = None,
        detection: str | None = None,
    ) -> SearchResult:
        """Search with one face of a photo: by default the largest (faces are numbered from 1,
        largest first). Refused without a purpose; written to the audit log. The photo is
        detected as `detection` says ("standard", "thorough", "harder"; by default
        `Settings.query_detection`): face N is the Nth face of `analyse` with the same value.

        When no `face` is given and the largest faces are near-equal in size, face 1 (the one
        nearest the centre) is searched and `result.face_tie` names them all, so that the
        caller can ask which one was meant and search again with `face=N`."""
        self.check_purpose(purpose)
        self._check_query_model()
        analysed = self.pipeline.analyse(photo, detection=self._detection(detection))
        chosen = _pick_face(analysed, face or 1, photo)
        assert chosen.template is not None
        result = self._search(chosen.template, top_k=top_k, fmr=fmr, margin=margin)
        result.faces = [_query_face(i, f) for i, f in enumerate(analysed.faces, start=1)]
        result.query_face = result.faces[(face or 1) - 1]
        if face is None and analysed.near_equal > 1:
            result.face_tie = [
                q.number
                for q, f in zip(result.faces[: analysed.near_equal], analysed.faces, strict=False)
                if f.template is not None
            ]
            if len(result.face_tie) < 2:
                result.face_tie = []
        self._audit_search(result, chosen.template, "photo", purpose, case_ref, actor)
        return result

    @locked
    def search_face(
        self,
        face_id: int,
        *,
        purpose: str,
        case_ref: str | None = None,
        top_k: int = 10,
        fmr: float | None = None,
        margin: float | None = None,
        actor: str | None = None,
    ) -> SearchResult:
        """Where else does the person of this catalogued face appear?"""
        self.check_purpose(purpose)
        template = self.catalog.templates_of([face_id]).get(face_id)
        if template is None:
            raise NotFoundError(f"no indexed face with id {face_id}")
        result = self._search(template, top_k=top_k, fmr=fmr, margin=margin, exclude={face_id})
        self._audit_search(result, template, f"face:{face_id}", purpose, case_ref, actor)
        return result

    @locked
    def search_subject(
        self,
        name: str,
        *,
        purpose: str,
        case_ref: str | None = None,
        top_k: int = 10,
        fmr: float | None = None,
        margin: float | None = None,
        actor: str | None = None,
    ) -> SearchResult:
        """Search with the fused template of all the faces linked to a subject."""
        self.check_purpose(purpose)
        face_ids = self.catalog.subject_face_ids(name)
        if not face_ids:
            raise NotFoundError(f"subject {name!r} has no indexed faces linked to it")
        templates = normalise(np.stack(list(self.catalog.templates_of(face_ids).values())))
        fused = templates.mean(axis=0)
        result = self._search(fused, top_k=top_k, fmr=fmr, margin=margin)
        self._audit_search(result, fused, f"subject:{name}", purpose, case_ref, actor)
        return result

    def _search(
        self,
        template: npt.NDArray[np.float32],
        *,
        top_k: int = 10,
        fmr: float | None = None,
        margin: float | None = None,
        exclude: set[int] | None = None,
    ) -> SearchResult:
        exclude = exclude or set()
        query = normalise(np.asarray(template, dtype=np.float32)[None, :])
        index = self.index
        scores, ids = index.search(query, top_k + len(exclude))
        # The index may lag the catalog for a moment (Milvus reads without waiting for its
        # time tick; another process's erasure reaches this one's index at its next sync):
        # a hit the catalog no longer holds, or holds as restricted, is never returned.
        records = {
            fid: record
            for fid, record in self.catalog.face_records(
                [i for i in ids[0].tolist() if i >= 0]
            ).items()
            if record.searchable
        }
        try:
            calibration: Calibration | None = self.calibration
            uncalibrated = None
        except ConfigError as exc:
            if exc.code != "uncalibrated":
                raise
            calibration, uncalibrated = None, exc.message  # rank all the same: no decision
        return rank(
            scores[0],
            ids[0],
            records,
            calibration,
            uncalibrated=uncalibrated,
            gallery_size=len(index),
            fmr_target=fmr or self.settings.search_fmr,
            possible_fmr=self.settings.possible_fmr,
            possible_strangers=self.settings.possible_strangers,
            exclude=exclude,
            top_k=top_k,
            margin=self.settings.search_margin if margin is None else margin,
        )

    def _audit_search(
        self,
        result: SearchResult,
        template: npt.NDArray[np.float32],
        query: str,
        purpose: str,
        case_ref: str | None,
        actor: str | None,
    ) -> None:
        result.search_id = self.audit.append(
            actions.SEARCH,
            actor=actor,
            purpose=purpose,
            case_ref=case_ref,
            query_hash=face_hash(template),
            result_ids=[m.face_id for m in result.matches],
            details={"query": query, "found": result.found, "gallery_size": result.gallery_size},
        ).id

    def search_purpose(self, search_id: int, *, actor: str | None) -> tuple[str, str | None] | None:
        """The purpose and case reference search `search_id` stated, if `actor` made it (None
        otherwise): what a search form is filled with to run a forgotten search again. The
        query photo is never kept, so it cannot be run again without the user."""
        entry = self.audit.entry(search_id)
        if entry is None or entry.action != actions.SEARCH or entry.actor != actor:
            return None
        return entry.purpose or "", entry.case_ref

    def search_photos(self, search_id: int, *, actor: str | None) -> dict[int, bytes]:
        """The photos of one search's results, by image id, for its case sheet: only a search
        `actor` made, read once and audited as one export for that search's purpose and case.
        A photo no longer where it was is left out (the sheet says "image unavailable")."""
        entry = self.audit.entry(search_id)
        if entry is None or entry.action != actions.SEARCH or entry.actor != actor:
            raise ForbiddenError(
                f"search {search_id} is not a search made with this key; a case sheet is made "
                "only of one's own search",
                code="not_in_results",
            )
        records = self.catalog.face_records(list(entry.result_ids))
        photos: dict[int, bytes] = {}
        for record in records.values():
            if record.image_id in photos:
                continue
            try:
                photos[record.image_id] = read_location(
                    record.image_path, endpoint_url=self.settings.s3_endpoint_url
                )
            except VultusError:
                continue
        self.audit.append(
            actions.EXPORT,
            actor=actor,
            purpose=entry.purpose,
            case_ref=entry.case_ref,
            result_ids=sorted(records),
            details={"search": search_id, "export": "case sheet", "images": sorted(photos)},
        )
        return photos

    @locked
    def verify(
        self,
        a: Path | bytes,
        b: Path | bytes,
        *,
        purpose: str,
        case_ref: str | None = None,
        fmr: float = 1e-3,
        actor: str | None = None,
    ) -> Verification:
        """1:1: are the largest faces of two photos the same person, at a false-match rate?"""
        return self.verify_faces(
            a, b, purpose=purpose, case_ref=case_ref, fmr=fmr, actor=actor, detection="standard"
        )[0]

    @locked
    def verify_faces(
        self,
        a: Path | bytes,
        b: Path | bytes,
        *,
        purpose: str,
        case_ref: str | None = None,
        fmr: float = 1e-3,
        faces: tuple[int, int] = (1, 1),
        detection: tuple[str, str] | str = "query",
        actor: str | None = None,
    ) -> tuple[Verification, AnalysedImage, AnalysedImage]:
        """1:1 with a choice of face in each photo (`faces`, numbered from the largest as
        `analyse` with the same `detection` numbers them); also returns both photos' faces,
        for the page that outlines the two compared."""
        self.check_purpose(purpose)
        self._check_query_model()
        how = (detection, detection) if isinstance(detection, str) else detection
        found_a = self.analyse(a, detection=how[0])
        found_b = self.analyse(b, detection=how[1])
        ta = _pick_face(found_a, faces[0], a).template
        tb = _pick_face(found_b, faces[1], b).template
        assert ta is not None and tb is not None
        result = self.compare(ta, tb, fmr=fmr)
        self.audit.append(
            actions.VERIFY,
            actor=actor,
            purpose=purpose,
            case_ref=case_ref,
            query_hash=face_hash(ta),
            details={"other_hash": face_hash(tb), "same_person": result.same_person},
        )
        return result, found_a, found_b

    def compare(
        self, a: npt.NDArray[np.float32], b: npt.NDArray[np.float32], *, fmr: float
    ) -> Verification:
        qa, qb = normalise(np.stack([a, b]))
        similarity = float(np.dot(qa, qb))
        dist = float(np.sqrt(max(0.0, 2.0 - 2.0 * similarity)))
        threshold = self.calibration.threshold_for(fmr, gallery_size=1)
        return Verification(
            distance=round(dist, 4),
            similarity=round(similarity, 4),
            fmr=float(self.calibration.fmr_at(dist)),
            fmr_target=fmr,
            threshold=float(threshold),
            same_person=dist <= threshold,
        )


def _pick_face(analysed: AnalysedImage, number: int, photo: Path | bytes) -> AnalysedFace:
    name = str(photo) if isinstance(photo, Path | str) else "the uploaded photo"
    if not analysed.faces:
        raise NoFaceError(f"no face found in {name}")
    if not 1 <= number <= len(analysed.faces):
        raise NoFaceError(
            f"{name} has {len(analysed.faces)} face(s); face {number} does not exist",
            code="face_out_of_range",
        )
    chosen = analysed.faces[number - 1]
    if chosen.template is None:
        raise NoFaceError(
            f"face {number} in {name} cannot be used: {chosen.skip_reason}", code="face_unusable"
        )
    return chosen


def _query_face(number: int, face: AnalysedFace) -> QueryFace:
    return QueryFace(
        number=number,
        box=Box(face.box.left, face.box.top, face.box.right, face.box.bottom),
        det_score=face.quality.det_score,
        box_size=face.quality.box_size,
        detector=face.detector,
    )
