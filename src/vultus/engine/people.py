"""People: who, among the faces no one has named, may be one person; what reviewers decide
about those proposals, remembered so that discovery run again never undoes it; and, on a named
person's page, more faces that may be them, with calibrated odds.

Nothing here links a face by itself: a person accepts every name. Pages that show faces are
audited once per page view, listing the faces shown; the pictures on that page are then drawn
against that entry (`face_photo_in_view`), not audited one thumbnail at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from vultus import audit as actions
from vultus.accuracy.calibration import similarity_to_distance
from vultus.catalog import FaceRecord
from vultus.catalog.models import Subject
from vultus.catalog.people import APART, HIDDEN, NOT_SUBJECT
from vultus.engine.locking import locked
from vultus.engine.parts import EngineParts
from vultus.errors import ConfigError, ForbiddenError, NotFoundError, SourceError
from vultus.index.base import normalise
from vultus.people.clustering import Proposal, default_max_distance, discover
from vultus.search.tiers import TIER_LABELS, Tiering, odds_in_words
from vultus.storage import read_location

DISCOVERY = "discovery"
# Audit action of the naming work (created, linked, set apart ...), shared with the library.
SUBJECT = "subject"
# Two faces make a proposal (one alone is an unnamed face): on lfw-a this finds 527 people for
# 5.8 faces looked at per person, against 183 people and 11.7 faces at four (docs/people.md).
DEFAULT_MIN_FACES = 2
# Candidates looked at per face of the person; enough for the few that come close.
SUGGEST_K = 50


@dataclass(frozen=True)
class Suggestion:
    """An unnamed face that may be a named person: its closest distance to any of their faces,
    the tier it falls in ("match" or "possible, check by eye") and its odds in words."""

    face: FaceRecord
    distance: float
    tier: str
    odds: str


class People(EngineParts):
    # -- discovery ---------------------------------------------------------------------------
    @locked
    def discover_people(
        self,
        *,
        max_distance: float | None = None,
        min_faces: int = DEFAULT_MIN_FACES,
        actor: str | None = None,
    ) -> list[Proposal]:
        """Propose people among the searchable faces no one has named or hidden, for a person
        to review; a proposal holds at least `min_faces` faces. Faces set apart stay apart.
        Nothing is linked: a wrong merge would attach a name to a stranger's face."""
        if min_faces < 2:
            raise ConfigError(
                "min_faces counts faces: a proposed person needs at least 2",
                code="min_faces_too_small",
            )
        skip = np.unique(
            np.fromiter(
                self.catalog.linked_face_ids() | self.catalog.hidden_face_ids(), dtype=np.int64
            )
        )
        # Discovery reads and compares every unnamed template: seconds at 10k faces. Between
        # two page views nothing usually changed, which this key tells cheaply: the searchable
        # faces (the index's fingerprint), the faces named or hidden, the decisions and the
        # calibration the distance comes from.
        key = (
            self.index.fingerprint(),
            hashlib.sha256(skip.tobytes()).hexdigest(),
            self.catalog.decisions_version(),
            max_distance if max_distance is not None else self.calibration,
            min_faces,
        )
        cached: tuple[Any, list[Proposal], float, int] | None = getattr(
            self, "_people_discovered", None
        )
        if cached is not None and cached[0] == key:
            _, proposals, distance, n_faces = cached
        else:
            proposals, distance, n_faces = self._discover(skip, max_distance, min_faces)
            self._people_discovered = (key, proposals, distance, n_faces)
        self.audit.append(
            DISCOVERY,
            actor=actor,
            details={
                "max_distance": distance,
                "min_faces": min_faces,
                "faces": n_faces,
                "proposals": len(proposals),
            },
        )
        return [Proposal(list(p.face_ids), list(p.core_face_ids), p.cohesion) for p in proposals]

    def _discover(
        self, skip: npt.NDArray[np.int64], max_distance: float | None, min_faces: int
    ) -> tuple[list[Proposal], float, int]:
        chunks = [
            (ids[keep], templates[keep])
            for ids, templates in self.catalog.iter_templates()
            if (keep := ~np.isin(ids, skip)).any()
        ]
        if not chunks:
            return [], max_distance or 0.0, 0
        ids = np.concatenate([i for i, _ in chunks])
        templates = np.concatenate([t for _, t in chunks])
        distance = (
            max_distance
            if max_distance is not None
            else default_max_distance(len(ids), self.calibration)
        )
        found = discover(
            ids,
            templates,
            max_distance=distance,
            min_faces=min_faces,
            apart=self.catalog.faces_apart(),
        )
        return found, distance, len(ids)

    # -- decisions ---------------------------------------------------------------------------
    def accept_person(
        self,
        face_ids: Sequence[int],
        *,
        name: str | None = None,
        subject: str | None = None,
        left_out: Sequence[int] = (),
        actor: str | None = None,
    ) -> Subject:
        """Name the faces of a proposal (or of several, merged): a new person `name`, or an
        existing `subject`. Faces `left_out` of the proposal are remembered as not this person,
        so the person's page never suggests them."""
        faces = _ids(face_ids)
        if not faces:
            raise ConfigError("choose at least one face to name", code="no_faces")
        if (name is None) == (subject is None):
            raise ConfigError(
                "name a new person or choose an existing one (not both)", code="name_or_subject"
            )
        self._check_faces([*faces, *left_out])
        if name is not None:
            person = self.create_subject(name.strip(), faces, actor=actor)
        else:
            assert subject is not None
            self.link_faces(subject, faces, actor=actor)
            person = self.subject(subject)
        if left_out:
            self.not_this_person(person.name, left_out, actor=actor)
        return person

    def set_apart(
        self, face_ids: Sequence[int], from_faces: Sequence[int], *, actor: str | None = None
    ) -> int:
        """ "Not this person" for one face, "split off" for several: `face_ids` are not the
        person of `from_faces` (the rest of their proposal). Remembered: discovery never
        proposes them together again; faces split off together may still be proposed together."""
        faces = _ids(face_ids)
        others = sorted(set(_ids(from_faces)) - set(faces))
        if not faces or not others:
            raise ConfigError(
                "choose the faces to set apart and leave at least one in the proposal",
                code="no_faces",
            )
        self._check_faces([*faces, *others])
        n = self.catalog.add_decisions(APART, faces, others=others, actor=actor)
        self._audit_decision("set_apart", actor, faces=faces, apart_from=others)
        return n

    def hide_faces(self, face_ids: Sequence[int], *, actor: str | None = None) -> int:
        """Hide faces from proposals (people no one needs to name: passers-by, crowds). They
        stay in the catalog and in search, and are listed among hidden faces to bring back."""
        faces = sorted(set(_ids(face_ids)) - self.catalog.hidden_face_ids())
        self._check_faces(faces)
        n = self.catalog.add_decisions(HIDDEN, faces, actor=actor)
        self._audit_decision("hidden", actor, faces=faces)
        return n

    def unhide_faces(self, face_ids: Sequence[int], *, actor: str | None = None) -> int:
        faces = _ids(face_ids)
        n = self.catalog.unhide_faces(faces)
        self._audit_decision("unhidden", actor, faces=faces)
        return n

    def not_this_person(
        self, subject: str, face_ids: Sequence[int], *, actor: str | None = None
    ) -> int:
        """Faces that are not the named `subject`: never suggested on their page again."""
        person = self.subject(subject)
        faces = _ids(face_ids)
        self._check_faces(faces)
        n = self.catalog.add_decisions(NOT_SUBJECT, faces, subject_id=person.id, actor=actor)
        self._audit_decision("not_subject", actor, subject=person.name, faces=faces)
        return n

    def faces_by_id(self, face_ids: Sequence[int]) -> dict[int, FaceRecord]:
        """The records of the faces of proposals, by id (those no longer held are left out)."""
        return self.catalog.face_records(_ids(face_ids))

    def unnamed_faces(
        self, *, hidden: bool = False, offset: int = 0, limit: int = 60
    ) -> tuple[list[FaceRecord], int]:
        """Faces no one has named, newest first, and how many: those hidden from proposals
        with `hidden`, else the others."""
        return self.catalog.unnamed_faces(hidden=hidden, offset=offset, limit=limit)

    # -- suggestions on a named person's page ------------------------------------------------
    @locked
    def suggestions(self, subject: str, *, limit: int = 24) -> list[Suggestion]:
        """Unnamed faces that may be `subject`, closest first, each in its tier with its odds.
        Every face of the person searches; a face counts by its closest distance. The tiers are
        a search's (see search/tiers.py), the budget of strangers shared among those searches;
        faces once said not to be this person, hidden or restricted never come back."""
        person = self.subject(subject)
        face_ids = self.catalog.subject_face_ids(person.name)
        if not face_ids:
            return []
        templates = self.catalog.templates_of(face_ids)
        queries = normalise(np.stack([templates[f] for f in face_ids if f in templates]))
        index = self.index
        gallery = len(index)
        calibration = self.calibration
        tiering = Tiering.of(
            calibration,
            fmr=self.settings.search_fmr,
            gallery_size=gallery,
            possible_fmr=self.settings.possible_fmr,
            possible_strangers=self.settings.possible_strangers,
            queries=len(queries),
        )
        scores, ids = index.search(queries, min(SUGGEST_K, max(1, gallery)))
        closest: dict[int, float] = {}
        for score, fid in zip(scores.ravel().tolist(), ids.ravel().tolist(), strict=True):
            if fid < 0:
                continue
            d = float(similarity_to_distance(score))
            if d <= tiering.possible_threshold and d < closest.get(fid, np.inf):
                closest[fid] = d
        refused = self.catalog.not_subject_face_ids(person.id) | self.catalog.hidden_face_ids()
        records = self.catalog.face_records([f for f in closest if f not in refused])
        unnamed = sorted(
            (r for r in records.values() if r.subject is None and not r.restricted),
            key=lambda r: closest[r.face_id],
        )[:limit]
        out = []
        for record in unnamed:
            d = closest[record.face_id]
            tier = tiering.tier(d) or "possible"
            odds = odds_in_words(float(calibration.fmr_at(d)), gallery, floor=calibration.fmr_floor)
            out.append(Suggestion(record, d, TIER_LABELS[tier], odds))
        return out

    # -- page views --------------------------------------------------------------------------
    def view_faces(
        self,
        face_ids: Sequence[int],
        *,
        page: str,
        actor: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> int:
        """Audit one view of a page that shows `face_ids` (a page of proposals, a person's
        faces and suggestions); returns the entry's id, which the page's pictures are drawn
        against (`face_photo_in_view`)."""
        entry = self.audit.append(
            actions.VIEW,
            actor=actor,
            result_ids=_ids(face_ids),
            details={"page": page, **(details or {})},
        )
        return entry.id

    def face_photo_in_view(
        self, face_id: int, view_id: int, *, actor: str | None = None
    ) -> tuple[FaceRecord, bytes]:
        """The photo that holds `face_id`, to draw its thumbnail on a page whose view
        (`view_faces`, entry `view_id`, made by `actor`) listed it: already audited with that
        view. Refused (`not_in_view`) otherwise."""
        entry = self.audit.entry(view_id)
        who = actor or actions.os_actor()
        if (
            entry is None
            or entry.action != actions.VIEW
            or entry.actor != who
            or "page" not in (entry.details or {})
            or face_id not in set(entry.result_ids)
        ):
            raise ForbiddenError(
                f"face {face_id} was not shown on a page you viewed; open the page again",
                code="not_in_view",
            )
        record = self.catalog.face_records([face_id]).get(face_id)
        if record is None:
            raise NotFoundError(f"no face with id {face_id}")
        try:
            data = read_location(record.image_path, endpoint_url=self.settings.s3_endpoint_url)
        except SourceError as exc:
            if exc.code in ("file_not_found", "object_not_found"):
                raise NotFoundError(
                    f"the file of image {record.image_id} is no longer at {record.image_path}",
                    code="file_missing",
                ) from None
            raise
        return record, data

    # -- shared ------------------------------------------------------------------------------
    def _check_faces(self, face_ids: Sequence[int]) -> None:
        missing = set(face_ids) - set(self.catalog.face_records(list(face_ids)))
        if missing:
            raise NotFoundError(f"no face with id {', '.join(map(str, sorted(missing)))}")

    def _audit_decision(self, event: str, actor: str | None, **details: Any) -> None:
        # What a reviewer decided about whose face is whose shapes what is proposed later.
        self.audit.append(SUBJECT, actor=actor, details={"event": event, **details})


def _ids(face_ids: Sequence[int]) -> list[int]:
    return sorted({int(f) for f in face_ids})
