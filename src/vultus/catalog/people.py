"""What reviewers decided while naming people (see `PersonDecision`), and the faces no one has
named yet."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, joinedload

from vultus.catalog.models import Face, Image, PersonDecision
from vultus.catalog.records import FaceRecord, face_record_of
from vultus.clock import now

APART = "apart"
NOT_SUBJECT = "not_subject"
HIDDEN = "hidden"

# Faces people name: usable ones that no restriction (Art. 18/21) keeps out of sight.
NAMEABLE = (Face.status == "indexed") & Face.restricted.is_(False)


class PersonDecisionQueries:
    if TYPE_CHECKING:

        def session(self) -> Session: ...

    def add_decisions(
        self,
        kind: str,
        face_ids: Sequence[int],
        *,
        others: Sequence[int] = (),
        subject_id: int | None = None,
        actor: str | None = None,
    ) -> int:
        """One decision per face, all written or none."""
        at = now()
        with self.session() as s, s.begin():
            s.add_all(
                PersonDecision(
                    face_id=int(f),
                    kind=kind,
                    subject_id=subject_id,
                    others=sorted({int(o) for o in others} - {int(f)}),
                    actor=actor,
                    created_at=at,
                )
                for f in face_ids
            )
        return len(face_ids)

    def decisions_version(self) -> tuple[int, int]:
        """Changes whenever a decision is added or removed: (how many, the highest id)."""
        with self.session() as s:
            count, top = s.execute(
                select(func.count(PersonDecision.id), func.max(PersonDecision.id))
            ).one()
        return int(count or 0), int(top or 0)

    def faces_apart(self) -> dict[int, set[int]]:
        """Each face set apart, with every face it was said not to be the same person as."""
        out: dict[int, set[int]] = {}
        with self.session() as s:
            for face, others in s.execute(
                select(PersonDecision.face_id, PersonDecision.others).where(
                    PersonDecision.kind == APART
                )
            ):
                out.setdefault(int(face), set()).update(int(o) for o in others)
        return out

    def hidden_face_ids(self) -> set[int]:
        with self.session() as s:
            return set(
                s.scalars(select(PersonDecision.face_id).where(PersonDecision.kind == HIDDEN))
            )

    def unhide_faces(self, face_ids: Sequence[int]) -> int:
        with self.session() as s, s.begin():
            gone = s.execute(
                delete(PersonDecision).where(
                    PersonDecision.kind == HIDDEN, PersonDecision.face_id.in_(list(face_ids))
                )
            )
        return int(gone.rowcount or 0)  # type: ignore[attr-defined]

    def not_subject_face_ids(self, subject_id: int) -> set[int]:
        with self.session() as s:
            return set(
                s.scalars(
                    select(PersonDecision.face_id).where(
                        PersonDecision.kind == NOT_SUBJECT, PersonDecision.subject_id == subject_id
                    )
                )
            )

    def unnamed_faces(
        self, *, hidden: bool = False, offset: int = 0, limit: int = 60
    ) -> tuple[list[FaceRecord], int]:
        """Faces tied to no subject, newest first, and how many there are: those hidden from
        proposals, or (by default) the others."""
        hidden_ids = select(PersonDecision.face_id).where(PersonDecision.kind == HIDDEN)
        where = NAMEABLE & Face.subject_id.is_(None)
        where = where & (Face.id.in_(hidden_ids) if hidden else Face.id.not_in(hidden_ids))
        with self.session() as s:
            total = s.scalar(select(func.count(Face.id)).where(where)) or 0
            faces = s.scalars(
                select(Face)
                .where(where)
                .options(joinedload(Face.image).joinedload(Image.source), joinedload(Face.subject))
                .order_by(Face.id.desc())
                .offset(max(0, offset))
                .limit(max(0, limit))
            ).unique()
            return [face_record_of(f) for f in faces], int(total)
