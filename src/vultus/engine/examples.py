"""Named examples and face-by-face answers: what clients built around a face collection
(CompreFace's "subject examples") ask of the engine.

An example is a catalogued face linked to a subject. Adding one ingests the photo under a
source, like any upload, and links its largest face; the answers compare every face of a photo
(largest first) with the gallery or with one example, each comparison audited as a search or a
verification with its purpose. Restricted and erased faces are never among the examples shown
or compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vultus import audit as actions
from vultus.audit import face_hash
from vultus.catalog import FaceRecord
from vultus.engine.locking import locked
from vultus.engine.parts import EngineParts
from vultus.engine.searching import _query_face as query_face
from vultus.errors import ConfigError, NoFaceError, NotFoundError, VultusError
from vultus.index.base import normalise
from vultus.pipeline.analyse import AnalysedFace
from vultus.search.results import QueryFace, SearchResult, Verification
from vultus.search.tiers import Tiering

NO_FACE = "no face found in the uploaded photo"


@dataclass(frozen=True)
class DecisionPoints:
    """The distances at which a comparison becomes a calibrated match, and a possible one worth
    a look, for a gallery of a given size (1 for a 1:1 comparison)."""

    match: float
    possible: float


@dataclass
class FaceAnswer:
    """One face of a query photo: where it is, with its landmarks, and what it was compared
    with (a search of the gallery, or one verification)."""

    face: QueryFace
    landmarks: list[list[float]]
    search: SearchResult | None = None
    verification: Verification | None = None


class Examples(EngineParts):
    def add_example(
        self,
        data: bytes,
        filename: str | None,
        *,
        subject: str,
        source: str,
        min_det_score: float | None = None,
        actor: str | None = None,
    ) -> FaceRecord:
        """Keep the photo under `source` and link its largest face to `subject` (made when
        new). A photo with no usable face (above `min_det_score`) is refused before anything
        is written."""
        if not subject.strip():
            raise ConfigError("an example needs a subject name", code="subject_required")
        # Detection only: the upload below analyses the photo in full, embedding included.
        usable = self._usable(self.pipeline.locate(data).faces, min_det_score)
        if not usable:
            raise NoFaceError(NO_FACE)
        summary, image_id = self.upload(data, filename, source=source, actor=actor)
        held = [] if image_id is None else self.catalog.faces_of_image(image_id)
        faces = self._searchable(held)
        if not faces:
            raise VultusError(
                f"{filename or 'the photo'}: its face was not kept ({summary})",
                code="face_not_kept",
            )
        largest = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        known = {s.name for s, _ in self.catalog.list_subjects()}
        if subject in known:
            self.link_faces(subject, [largest.face_id], actor=actor)
        else:
            self.create_subject(subject, [largest.face_id], actor=actor)
        return self.face(largest.face_id)

    def examples(
        self,
        *,
        subject: str | None = None,
        source: str | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[FaceRecord], int]:
        """Faces linked to a subject (to `subject`, when named; from photos of `source`, when
        named), oldest first, and how many there are in all."""
        return self.catalog.linked_faces(subject=subject, source=source, offset=offset, limit=limit)

    def example(self, face_id: int) -> FaceRecord:
        """A face linked to a subject; NotFoundError for any other, and for a restricted one."""
        record = self.catalog.face_records([face_id]).get(face_id)
        if record is None or record.subject is None or not self._searchable([record]):
            raise NotFoundError(f"no example with id {face_id}", code="example_not_found")
        return record

    @locked
    def delete_examples(
        self, face_ids: Sequence[int], *, source: str | None = None, actor: str | None = None
    ) -> list[FaceRecord]:
        """Delete these examples (faces linked to a subject, from photos of `source` when
        named; others are passed over), and the photos left with no face. Returns the
        examples deleted."""
        records = self.catalog.face_records(list(face_ids))
        chosen = [
            r
            for r in records.values()
            if r.subject is not None and not r.restricted and source in (None, r.source)
        ]
        if chosen:
            self.delete_faces([r.face_id for r in chosen], actor=actor)
        return sorted(chosen, key=lambda r: r.face_id)

    @locked
    def delete_subject_examples(
        self, subject: str, *, source: str | None = None, actor: str | None = None
    ) -> tuple[int, bool]:
        """Delete a subject's examples (from photos of `source`, when named), then the subject
        itself when no face is left linked to it. Returns the faces deleted and whether the
        subject went."""
        self.subject(subject)  # NotFoundError for an unknown name
        ids = self.catalog.subject_face_ids(subject)
        deleted = self.delete_examples(ids, source=source, actor=actor)
        if self.catalog.subject_faces(subject):  # faces of other sources keep the name
            return len(deleted), False
        self.delete_subject(subject, actor=actor)
        return len(deleted), True

    def detect_faces(
        self, photo: Path | bytes, *, limit: int = 0, min_det_score: float | None = None
    ) -> list[FaceAnswer]:
        """The faces of a photo, largest first: no comparison, so nothing to audit."""
        analysed = self.pipeline.analyse(photo)
        return self._answers(analysed.faces, limit, min_det_score, need_template=False)

    @locked
    def recognise(
        self,
        photo: Path | bytes,
        *,
        purpose: str,
        case_ref: str | None = None,
        limit: int = 0,
        top_k: int = 10,
        min_det_score: float | None = None,
        whole_image: bool = False,
        actor: str | None = None,
    ) -> list[FaceAnswer]:
        """Search the gallery with every usable face of a photo (the `limit` largest; 0 for
        all), one audited search each. With `whole_image`, the photo is one face, cropped by
        the caller: no detector runs (nor its score's threshold)."""
        self.check_purpose(purpose)
        self._check_query_model()
        analysed = self.pipeline.analyse(photo, whole_image=whole_image)
        if whole_image:
            min_det_score = None
        answers = self._answers(analysed.faces, limit, min_det_score)
        for answer, face in zip(
            answers, self._kept(analysed.faces, limit, min_det_score), strict=True
        ):
            assert face.template is not None
            result = self._search(face.template, top_k=top_k)
            result.query_face = answer.face
            self._audit_search(result, face.template, "photo", purpose, case_ref, actor)
            answer.search = result
        return answers

    @locked
    def verify_example(
        self,
        face_id: int,
        photo: Path | bytes,
        *,
        purpose: str,
        case_ref: str | None = None,
        limit: int = 0,
        fmr: float | None = None,
        min_det_score: float | None = None,
        actor: str | None = None,
    ) -> list[FaceAnswer]:
        """Compare every usable face of a photo with one example, one audited verification
        for the request."""
        self.check_purpose(purpose)
        record = self.example(face_id)
        template = self.catalog.templates_of([face_id]).get(face_id)
        if template is None:
            raise NotFoundError(f"no example with id {face_id}", code="example_not_found")
        analysed = self.pipeline.analyse(photo)
        answers = self._compare(template, analysed.faces, limit, fmr, min_det_score)
        self._audit_verify(
            template, answers, purpose, case_ref, actor, details={"face": record.face_id}
        )
        return answers

    @locked
    def compare_photos(
        self,
        source: Path | bytes,
        target: Path | bytes,
        *,
        purpose: str,
        case_ref: str | None = None,
        limit: int = 0,
        fmr: float | None = None,
        min_det_score: float | None = None,
        actor: str | None = None,
    ) -> tuple[FaceAnswer, list[FaceAnswer]]:
        """The largest face of `source` against every usable face of `target`; audited as one
        verification."""
        self.check_purpose(purpose)
        self._check_query_model()
        analysed = self.pipeline.analyse(source)
        kept = self._kept(analysed.faces, 1, min_det_score)
        if not kept:
            raise NoFaceError(NO_FACE)
        assert kept[0].template is not None
        first = self._answers(analysed.faces, 1, min_det_score)[0]
        answers = self._compare(
            kept[0].template, self.pipeline.analyse(target).faces, limit, fmr, min_det_score
        )
        self._audit_verify(kept[0].template, answers, purpose, case_ref, actor, details={})
        return first, answers

    @locked
    def recognise_embeddings(
        self,
        embeddings: Sequence[Sequence[float]],
        *,
        purpose: str,
        case_ref: str | None = None,
        top_k: int = 10,
        actor: str | None = None,
    ) -> list[SearchResult]:
        """Search the gallery with embeddings the client computed with this model (for the
        dlib models, `face_recognition.face_encodings`); one audited search each."""
        self.check_purpose(purpose)
        results = []
        for values in embeddings:
            template = embedding_of(values, self.index.dim)
            result = self._search(template, top_k=top_k)
            self._audit_search(result, template, "embedding", purpose, case_ref, actor)
            results.append(result)
        return results

    @locked
    def verify_embeddings(
        self,
        source: Sequence[float] | int,
        targets: Sequence[Sequence[float]],
        *,
        purpose: str,
        case_ref: str | None = None,
        fmr: float | None = None,
        actor: str | None = None,
    ) -> list[Verification]:
        """Compare embeddings with one source: an embedding, or an example's face id."""
        self.check_purpose(purpose)
        dim = self.index.dim
        if isinstance(source, int):
            self.example(source)
            template = self.catalog.templates_of([source]).get(source)
            if template is None:
                raise NotFoundError(f"no example with id {source}", code="example_not_found")
        else:
            template = embedding_of(source, dim)
        results = [
            self.compare(template, embedding_of(t, dim), fmr=fmr or self.settings.search_fmr)
            for t in targets
        ]
        self.audit.append(
            actions.VERIFY,
            actor=actor,
            purpose=purpose,
            case_ref=case_ref,
            query_hash=face_hash(template),
            details={
                "embeddings": len(results),
                "same_person": [r.same_person for r in results],
                **({"face": source} if isinstance(source, int) else {}),
            },
        )
        return results

    def decision_points(self, gallery_size: int, fmr: float | None = None) -> DecisionPoints:
        """Where the calibrated match and the possible match begin, as search ranks them."""
        tiering = Tiering.of(
            self.calibration,
            fmr=fmr or self.settings.search_fmr,
            gallery_size=max(1, gallery_size),
            possible_fmr=self.settings.possible_fmr,
            possible_strangers=self.settings.possible_strangers,
        )
        return DecisionPoints(tiering.match_threshold, tiering.possible_threshold)

    # -- helpers -------------------------------------------------------------------------------
    def _compare(
        self,
        template: npt.NDArray[np.float32],
        faces: list[AnalysedFace],
        limit: int,
        fmr: float | None,
        min_det_score: float | None,
    ) -> list[FaceAnswer]:
        answers = self._answers(faces, limit, min_det_score)
        for answer, face in zip(answers, self._kept(faces, limit, min_det_score), strict=True):
            assert face.template is not None
            answer.verification = self.compare(
                template, face.template, fmr=fmr or self.settings.search_fmr
            )
        return answers

    def _audit_verify(
        self,
        template: npt.NDArray[np.float32],
        answers: list[FaceAnswer],
        purpose: str,
        case_ref: str | None,
        actor: str | None,
        *,
        details: dict[str, object],
    ) -> None:
        self.audit.append(
            actions.VERIFY,
            actor=actor,
            purpose=purpose,
            case_ref=case_ref,
            query_hash=face_hash(template),
            details={
                **details,
                "faces": len(answers),
                "same_person": [
                    bool(a.verification and a.verification.same_person) for a in answers
                ],
            },
        )

    def _kept(
        self, faces: list[AnalysedFace], limit: int, min_det_score: float | None
    ) -> list[AnalysedFace]:
        usable = self._usable(faces, min_det_score)
        return usable[:limit] if limit > 0 else usable

    def _answers(
        self,
        faces: list[AnalysedFace],
        limit: int,
        min_det_score: float | None,
        *,
        need_template: bool = True,
    ) -> list[FaceAnswer]:
        numbered = {id(f): n for n, f in enumerate(faces, start=1)}
        chosen = (
            self._kept(faces, limit, min_det_score)
            if need_template
            else [f for f in faces if min_det_score is None or f.quality.det_score >= min_det_score]
        )
        if not need_template and limit > 0:
            chosen = chosen[:limit]
        return [FaceAnswer(query_face(numbered[id(f)], f), f.landmarks) for f in chosen]

    @staticmethod
    def _usable(faces: list[AnalysedFace], min_det_score: float | None) -> list[AnalysedFace]:
        return [
            f
            for f in faces
            if f.skip_reason is None  # a template, once embedded
            and (min_det_score is None or f.quality.det_score >= min_det_score)
        ]

    @staticmethod
    def _searchable(records: Sequence[FaceRecord]) -> list[FaceRecord]:
        return [r for r in records if r.status == "indexed" and not r.restricted]


def embedding_of(values: Sequence[float], dimension: int) -> npt.NDArray[np.float32]:
    """A client's embedding as a unit vector of the model's dimension."""
    vector = np.asarray(values, dtype=np.float32)
    if vector.shape != (dimension,) or not np.isfinite(vector).all() or not vector.any():
        raise ConfigError(
            f"an embedding is {dimension} finite numbers, not all zero (the model's dimension)",
            code="embedding_invalid",
        )
    return normalise(vector[None, :])[0]
