"""Collections of faces, as clients of AWS Rekognition use them: a named set of faces of one
source, searched by photo or by one of its faces. Photos added to a collection are uploads of
its source (lawful basis and retention as any upload); searches state a purpose and are audited
as any search; erased and restricted faces leave every collection's answers.

A collection is searched through the vector index restricted to the collection's faces (the
index's filtered search), not the whole gallery filtered afterwards, which could miss them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from vultus import audit as actions
from vultus.accuracy.calibration import Calibration
from vultus.audit import face_hash
from vultus.catalog.collections import CollectionInfo, Member, PhotoFace
from vultus.engine.locking import locked
from vultus.engine.parts import EngineParts
from vultus.errors import ConfigError, NoFaceError, NotFoundError, SourceError
from vultus.index.base import normalise
from vultus.pipeline.analyse import AnalysedFace, AnalysedImage
from vultus.search.results import SearchResult, Verification, rank

COLLECTION = "collection"  # audit action: a collection made or deleted, faces taken out
DETECT = "detect"  # audit action: faces found and measured in a photo, nothing kept
# A face not indexed because the photo had more faces than asked for (largest kept).
EXCEEDS_MAX_FACES = "exceeds_max_faces"


@dataclass(frozen=True)
class IndexedFace:
    face: PhotoFace
    # Its id in the collection; None with `reason` when it was not indexed.
    uuid: str | None
    reason: str | None = None


@dataclass(frozen=True)
class IndexedPhoto:
    width: int
    height: int
    image_uuid: str | None
    faces: list[IndexedFace]
    suppressed: int = 0  # faces refused as matching the suppression list (erased people)


@dataclass
class CollectionSearch:
    result: SearchResult
    members: dict[int, Member]  # by face id, for every match
    # The photo searched with (a photo search): its size, all its faces, the one searched.
    width: int = 0
    height: int = 0
    faces: list[AnalysedFace] = field(default_factory=list)
    query: AnalysedFace | None = None


@dataclass(frozen=True)
class PhotoComparison:
    source: AnalysedImage
    source_face: AnalysedFace
    target: AnalysedImage
    # Each usable face of the target, with its comparison to the source face.
    compared: list[tuple[AnalysedFace, Verification]]
    possible_threshold: float  # the edge of the "possible" tier, one pair


class Collections(EngineParts):
    def create_collection(self, name: str, *, source: str, actor: str | None = None) -> None:
        self.catalog.create_collection(name, source)
        self.audit.append(
            COLLECTION,
            actor=actor,
            details={"collection": name, "source": source, "event": "created"},
        )

    def collection(self, name: str) -> CollectionInfo:
        return self.catalog.collection_info(name)

    def collection_names(
        self, *, after: str | None = None, limit: int = 1000, source: str | None = None
    ) -> list[str]:
        return self.catalog.collection_names(after=after, limit=limit, source=source)

    @locked
    def drop_collection(self, name: str, *, actor: str | None = None) -> int:
        """Delete a collection and the faces it alone held (as `vultus faces delete` does):
        its client asked for them to go. Returns the faces deleted."""
        orphans = self.catalog.drop_collection(name)
        self.audit.append(COLLECTION, actor=actor, details={"collection": name, "event": "deleted"})
        return self.delete_faces(orphans, actor=actor) if orphans else 0

    def collection_faces(
        self,
        name: str,
        *,
        after: str | None = None,
        limit: int | None = None,
        uuids: list[str] | None = None,
        user_id: str | None = None,
    ) -> list[Member]:
        return self.catalog.members(name, after=after, limit=limit, uuids=uuids, user_id=user_id)

    @locked
    def remove_from_collection(
        self, name: str, uuids: list[str], *, actor: str | None = None
    ) -> list[str]:
        """Take faces out of a collection, deleting those no other collection holds. Returns
        the ids taken out (a face tied to a user stays)."""
        removed, orphans = self.catalog.remove_members(name, uuids)
        self.audit.append(
            COLLECTION,
            actor=actor,
            details={"collection": name, "event": "faces_removed", "count": len(removed)},
        )
        if orphans:
            self.delete_faces(orphans, actor=actor)
        return removed

    def create_collection_user(self, name: str, user_id: str, *, actor: str | None = None) -> None:
        self.catalog.create_user(name, user_id)
        self.audit.append(
            COLLECTION, actor=actor, details={"collection": name, "event": "user_created"}
        )

    def user_distances(self, name: str, user_id: str, uuids: list[str]) -> dict[str, float]:
        """For each face of the collection in `uuids`, its distance to the nearest face already
        tied to the user; empty while the user has none (a first face ties to anyone)."""
        theirs = self.catalog.members(name, user_id=user_id)
        if not theirs:
            return {}
        asked = self.catalog.members(name, uuids=uuids)
        templates = self.catalog.templates_of([m.face_id for m in [*theirs, *asked]])
        held = normalise(np.stack([templates[m.face_id] for m in theirs]))
        out: dict[str, float] = {}
        for m in asked:
            if m.user_id == user_id:
                continue
            scores = held @ normalise(templates[m.face_id][None, :])[0]
            out[m.uuid] = float(np.sqrt(max(0.0, 2.0 - 2.0 * float(scores.max()))))
        return out

    def associate_faces(
        self, name: str, user_id: str, uuids: list[str], *, actor: str | None = None
    ) -> tuple[list[str], dict[str, str]]:
        tied, refused = self.catalog.associate(name, user_id, uuids)
        self.audit.append(
            COLLECTION,
            actor=actor,
            details={"collection": name, "event": "faces_associated", "count": len(tied)},
        )
        return tied, refused

    @locked
    def idempotent_request(
        self,
        name: str,
        *,
        key_name: str,
        operation: str,
        token: str,
        request: dict[str, Any],
        run: Callable[[], dict[str, Any]],
    ) -> dict[str, Any]:
        """Run a collection request that carries a client token once: the same token with the
        same request (a retry) gets the first answer and does nothing again; with another
        request it is refused (`token_mismatch`). Holding the lock, no retry slips in between
        the check and the run. A request that failed left no answer: its retry runs."""
        digest = hashlib.sha256(
            json.dumps(request, sort_keys=True, default=str).encode()
        ).hexdigest()
        earlier = self.catalog.answered(key_name, operation, token)
        if earlier is not None:
            if earlier[0] != digest:
                raise ConfigError(
                    f"ClientRequestToken {token!r} was used with another {operation} request",
                    code="token_mismatch",
                )
            return dict(earlier[1])
        answer = run()
        self.catalog.remember_answer(name, key_name, operation, token, digest, answer)
        return answer

    def disassociate_faces(
        self, name: str, user_id: str, uuids: list[str], *, actor: str | None = None
    ) -> tuple[list[str], dict[str, str]]:
        untied, refused = self.catalog.disassociate(name, user_id, uuids)
        self.audit.append(
            COLLECTION,
            actor=actor,
            details={"collection": name, "event": "faces_disassociated", "count": len(untied)},
        )
        return untied, refused

    def delete_collection_user(self, name: str, user_id: str, *, actor: str | None = None) -> None:
        """A user goes; its faces stay in the collection, tied to nobody."""
        untied = self.catalog.delete_user(name, user_id)
        self.audit.append(
            COLLECTION,
            actor=actor,
            details={"collection": name, "event": "user_deleted", "faces_untied": untied},
        )

    def collection_users(
        self, name: str, *, after: str | None = None, limit: int = 500
    ) -> list[str]:
        return self.catalog.user_ids(name, after=after, limit=limit)

    @locked
    def index_photo(
        self,
        name: str,
        data: bytes,
        *,
        source: str,
        external_image_id: str | None = None,
        max_faces: int | None = None,
        actor: str | None = None,
    ) -> IndexedPhoto:
        """Upload a photo under the collection's source and put its usable faces, the largest
        `max_faces` of them, in the collection."""
        info = self.catalog.collection_info(name)
        if source != info.source:
            raise SourceError(
                f"collection {name!r} holds photos of source {info.source!r}; this caller adds "
                f"photos to source {source!r}",
                code="source_mismatch",
            )
        summary, image_id = self.upload(data, None, source=source, actor=actor)
        if image_id is None:
            return IndexedPhoto(0, 0, None, [], suppressed=summary.faces_suppressed)
        image = self.catalog.image_summary(image_id)
        if image.source != source:
            raise SourceError(
                f"this photo is held already, under source {image.source!r}; a collection of "
                f"{source!r} cannot hold it",
                code="source_mismatch",
            )
        faces = sorted(
            self.catalog.photo_faces(image_id),
            key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]),
            reverse=True,
        )
        usable = [f for f in faces if f.status == "indexed" and not f.restricted]
        kept = usable[:max_faces] if max_faces is not None else usable
        ids = self.catalog.add_members(
            name, [f.face_id for f in kept], external_image_id=external_image_id
        )
        excess = [f.face_id for f in usable if f.face_id not in ids]
        if excess and summary.images_added:
            # The client asked for fewer faces of a photo new to the catalog: the others are
            # not kept where nobody asked for them.
            self.delete_faces(excess, actor=actor)
        out: list[IndexedFace] = []
        for f in faces:
            if f.face_id in ids:
                out.append(IndexedFace(f, ids[f.face_id]))
            elif f in usable:
                out.append(IndexedFace(f, None, EXCEEDS_MAX_FACES))
            elif not f.restricted:  # a restricted face is never shown, not even as refused
                out.append(IndexedFace(f, None, f.skip_reason or "unusable"))
        members = self.catalog.members(name, uuids=list(ids.values()))
        image_uuid = members[0].image_uuid if members else None
        return IndexedPhoto(
            image.width, image.height, image_uuid, out, suppressed=summary.faces_suppressed
        )

    @locked
    def search_collection(
        self,
        name: str,
        *,
        purpose: str,
        photo: bytes | None = None,
        face_uuid: str | None = None,
        user_id: str | None = None,
        case_ref: str | None = None,
        top_k: int = 80,
        actor: str | None = None,
    ) -> CollectionSearch:
        """Search a collection with the largest face of a photo, with one of its faces
        (`face_uuid`, itself left out of the answer), or with one of its users (`user_id`: the
        mean of its faces' templates, its faces left out). Refused without a purpose; audited."""
        self.check_purpose(purpose)
        # The gallery's size counts restricted members too: a stricter threshold, never looser.
        face_ids = self.catalog.member_face_ids(name)
        out = CollectionSearch(SearchResult(0, 0.0, 0.0, []), {})
        exclude: set[int] = set()
        if photo is not None:
            self._check_query_model()
            analysed = self.pipeline.analyse(photo)
            out.width, out.height, out.faces = analysed.width, analysed.height, analysed.faces
            if not analysed.faces:
                raise NoFaceError("no face found in the photo")
            out.query = analysed.faces[0]
            if out.query.template is None:
                raise NoFaceError(
                    f"the largest face in the photo cannot be used: {out.query.skip_reason}",
                    code="face_unusable",
                )
            template = out.query.template
            query = f"collection:{name}"
        elif user_id is not None:
            theirs = self.catalog.members(name, user_id=user_id)
            if not theirs:
                self.catalog.check_user(name, user_id)
                return out  # a user with no searchable face matches nobody
            exclude = {m.face_id for m in theirs}
            held = self.catalog.templates_of(sorted(exclude))
            template = normalise(np.stack([held[f] for f in sorted(exclude)])).mean(axis=0)
            query = f"collection:{name}:faces:{','.join(map(str, sorted(exclude)))}"
        else:
            found = self.catalog.members(name, uuids=[face_uuid or ""])
            if not found:
                raise NotFoundError(
                    f"no face {face_uuid} in collection {name!r}", code="face_not_found"
                )
            exclude = {found[0].face_id}
            template = self.catalog.templates_of([found[0].face_id])[found[0].face_id]
            query = f"collection:{name}:face:{found[0].face_id}"
        out.result = self._search_among(template, face_ids, top_k=top_k, exclude=exclude)
        matched = [m.face_id for m in out.result.matches]
        out.members = {m.face_id: m for m in self.catalog.members(name, face_ids=matched)}
        self._audit_search(out.result, template, query, purpose, case_ref, actor)
        return out

    def _search_among(
        self,
        template: npt.NDArray[np.float32],
        face_ids: list[int],
        *,
        top_k: int,
        exclude: set[int],
    ) -> SearchResult:
        query = normalise(np.asarray(template, dtype=np.float32)[None, :])
        if face_ids:
            allowed = np.asarray(face_ids, dtype=np.int64)
            scores, found = self.index.search(query, top_k + len(exclude), allowed=allowed)
            ids, scores = found[0], scores[0]
        else:
            ids, scores = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        calibration: Calibration | None
        try:
            calibration, uncalibrated = self.calibration, None
        except ConfigError as exc:
            if exc.code != "uncalibrated":
                raise
            calibration, uncalibrated = None, exc.message
        return rank(
            scores,
            ids,
            self.catalog.face_records(ids.tolist()),
            calibration,
            uncalibrated=uncalibrated,
            gallery_size=len(face_ids),
            fmr_target=self.settings.search_fmr,
            possible_fmr=self.settings.possible_fmr,
            possible_strangers=self.settings.possible_strangers,
            exclude=exclude,
            top_k=top_k,
            margin=self.settings.search_margin,
        )

    @locked
    def measure_faces(
        self,
        photo: bytes,
        *,
        purpose: str,
        case_ref: str | None = None,
        actor: str | None = None,
    ) -> AnalysedImage:
        """The faces of a photo, measured; nothing is kept, and the call is audited (it reads
        people's faces) with the purpose it was made for."""
        self.check_purpose(purpose)
        analysed = self.pipeline.analyse(photo)
        self.audit.append(
            DETECT,
            actor=actor,
            purpose=purpose,
            case_ref=case_ref,
            details={"faces": len(analysed.faces)},
        )
        return analysed

    @locked
    def compare_photo_faces(
        self,
        source: bytes,
        target: bytes,
        *,
        purpose: str,
        case_ref: str | None = None,
        actor: str | None = None,
    ) -> PhotoComparison:
        """1:1 between the largest face of `source` and each face of `target`, at the search
        false-match rate for one pair; audited as one verification."""
        self.check_purpose(purpose)
        self._check_query_model()
        src = self.pipeline.analyse(source)
        if not src.faces:
            raise NoFaceError("no face found in the source image")
        face = src.faces[0]
        if face.template is None:
            raise NoFaceError(
                f"the largest face of the source image cannot be used: {face.skip_reason}",
                code="face_unusable",
            )
        tgt = self.pipeline.analyse(target)
        fmr = self.settings.search_fmr
        compared = [
            (f, self.compare(face.template, f.template, fmr=fmr))
            for f in tgt.faces
            if f.template is not None
        ]
        possible = self.decision_points(1, fmr).possible
        self.audit.append(
            actions.VERIFY,
            actor=actor,
            purpose=purpose,
            case_ref=case_ref,
            query_hash=face_hash(face.template),
            details={
                "target_faces": len(compared),
                "same_person": sum(v.same_person for _, v in compared),
            },
        )
        return PhotoComparison(src, face, tgt, compared, possible)
