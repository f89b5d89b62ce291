"""Subjects: named people, and the faces linked to them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, joinedload

from vultus.catalog.models import (
    Face,
    Image,
    Source,
    Subject,
)
from vultus.catalog.records import FaceRecord, face_record_of
from vultus.clock import now
from vultus.errors import ConfigError, NotFoundError


class SubjectQueries:
    if TYPE_CHECKING:

        def session(self) -> Session: ...

    # -- subjects ----------------------------------------------------------------------------
    def create_subject(self, name: str) -> Subject:
        if not name.strip():
            raise ConfigError("a subject needs a name", code="subject_name_empty")
        with self.session() as s, s.begin():
            if s.scalar(select(Subject).where(Subject.name == name)) is not None:
                raise ConfigError(f"a subject named {name!r} already exists", code="exists")
            subject = Subject(name=name, created_at=now())
            s.add(subject)
        return subject

    def get_subject(self, name: str) -> Subject:
        with self.session() as s:
            subject = s.scalar(select(Subject).where(Subject.name == name))
        if subject is None:
            raise NotFoundError(f"no subject named {name!r}")
        return subject

    def link_faces(self, subject_name: str, face_ids: Sequence[int]) -> int:
        subject = self.get_subject(subject_name)
        with self.session() as s, s.begin():
            found = set(s.scalars(select(Face.id).where(Face.id.in_(list(face_ids)))))
            missing = set(face_ids) - found
            if missing:
                raise NotFoundError(f"no face with id {', '.join(map(str, sorted(missing)))}")
            s.execute(update(Face).where(Face.id.in_(list(face_ids))).values(subject_id=subject.id))
        return len(found)

    def subject_face_ids(self, subject_name: str) -> list[int]:
        subject = self.get_subject(subject_name)
        with self.session() as s:
            return list(
                s.scalars(
                    select(Face.id)
                    .where(Face.subject_id == subject.id, Face.status == "indexed")
                    .order_by(Face.id)
                )
            )

    def unlink_faces(self, face_ids: Sequence[int]) -> int:
        """Faces back to no subject; returns how many were linked to one."""
        ids = list(face_ids)
        with self.session() as s, s.begin():
            found = set(s.scalars(select(Face.id).where(Face.id.in_(ids))))
            missing = set(ids) - found
            if missing:
                raise NotFoundError(f"no face with id {', '.join(map(str, sorted(missing)))}")
            result = s.execute(
                update(Face)
                .where(Face.id.in_(ids), Face.subject_id.is_not(None))
                .values(subject_id=None)
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def rename_subject(self, old: str, new: str) -> Subject:
        if not new.strip():
            raise ConfigError("a subject needs a name", code="subject_name_empty")
        subject = self.get_subject(old)
        with self.session() as s, s.begin():
            if old != new and s.scalar(select(Subject.id).where(Subject.name == new)) is not None:
                raise ConfigError(f"a subject named {new!r} already exists", code="exists")
            s.execute(update(Subject).where(Subject.id == subject.id).values(name=new))
        return self.get_subject(new)

    def merge_subjects(self, into: str, other: str) -> int:
        """Move every face of `other` to `into` and remove `other`; returns faces moved."""
        target, merged = self.get_subject(into), self.get_subject(other)
        if target.id == merged.id:
            raise ConfigError("a subject cannot be merged into itself", code="merge_self")
        with self.session() as s, s.begin():
            moved = s.execute(
                update(Face).where(Face.subject_id == merged.id).values(subject_id=target.id)
            )
            s.execute(delete(Subject).where(Subject.id == merged.id))
        return int(moved.rowcount or 0)  # type: ignore[attr-defined]

    def delete_subject(self, name: str) -> int:
        """Remove the subject, its name and its links; its faces stay, unnamed. Returns how many
        faces were unlinked."""
        subject = self.get_subject(name)
        with self.session() as s, s.begin():
            unlinked = s.execute(
                update(Face).where(Face.subject_id == subject.id).values(subject_id=None)
            )
            s.execute(delete(Subject).where(Subject.id == subject.id))
        return int(unlinked.rowcount or 0)  # type: ignore[attr-defined]

    def linked_faces(
        self,
        *,
        subject: str | None = None,
        source: str | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[FaceRecord], int]:
        """Searchable faces linked to a subject (to `subject`, when named; from photos of
        `source`, when named), oldest first: one page of them, and how many there are in all.
        Restricted faces are left out."""
        where = [
            Face.subject_id.is_not(None),
            Face.status == "indexed",
            Face.restricted.is_(False),
        ]
        if subject is not None:
            where.append(Face.subject_id == self.get_subject(subject).id)
        if source is not None:
            where.append(
                Face.image_id.in_(
                    select(Image.id)
                    .join(Source, Image.source_id == Source.id)
                    .where(Source.name == source)
                )
            )
        with self.session() as s:
            total = int(s.scalar(select(func.count(Face.id)).where(*where)) or 0)
            faces = s.scalars(
                select(Face)
                .where(*where)
                .options(joinedload(Face.image).joinedload(Image.source), joinedload(Face.subject))
                .order_by(Face.id)
                .offset(max(0, offset))
                .limit(max(0, limit))
            ).unique()
            return [face_record_of(f) for f in faces], total

    def subject_faces(self, name: str) -> list[FaceRecord]:
        subject = self.get_subject(name)
        with self.session() as s:
            faces = s.scalars(
                select(Face)
                .where(Face.subject_id == subject.id)
                .options(joinedload(Face.image).joinedload(Image.source), joinedload(Face.subject))
                .order_by(Face.id)
            ).all()
            return [face_record_of(f) for f in faces]

    def list_subjects(self) -> list[tuple[Subject, int]]:
        with self.session() as s:
            rows = s.execute(
                select(Subject, func.count(Face.id))
                .outerjoin(Face, Face.subject_id == Subject.id)
                .group_by(Subject.id)
                .order_by(Subject.name)
            ).all()
        return [(subj, n) for subj, n in rows]
