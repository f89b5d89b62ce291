"""Collections: named sets of faces, each face under a random id, as clients of AWS Rekognition
keep them. A collection belongs to one source; its faces are the catalog's own faces, so an
erasure or a restriction reaches them as it reaches any face."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from vultus.catalog.models import (
    Collection,
    CollectionFace,
    CollectionRequest,
    CollectionUser,
    Face,
    Image,
    Source,
)
from vultus.clock import now
from vultus.errors import ConfigError, NotFoundError

# How long the answer to a request with a ClientRequestToken is kept for its retries. AWS names
# no period; a day covers any client's retries, and holds the answers (which may carry a
# client's UserId) no longer than that.
IDEMPOTENCY_HOURS = 24

# What a collection shows: faces whose template is searchable (indexed, not restricted).
SHOWN = (Face.status == "indexed") & Face.restricted.is_(False)


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    source: str
    created_at: datetime
    faces: int
    users: int


@dataclass(frozen=True)
class Member:
    """A face of a collection with what its clients are told about it."""

    uuid: str
    face_id: int
    image_uuid: str
    external_image_id: str | None
    user_id: str | None
    box: tuple[int, int, int, int]
    image_size: tuple[int, int]  # width, height
    det_score: float


@dataclass(frozen=True)
class Membership:
    """A face's place in a collection, as its clients know it: what an access package tells
    the person and an erasure's receipt says went."""

    collection: str
    uuid: str  # the FaceId
    image_uuid: str  # the ImageId
    external_image_id: str | None
    user_id: str | None


@dataclass(frozen=True)
class PhotoFace:
    """A face the catalog holds for one photo, searchable or not, with why not."""

    face_id: int
    box: tuple[int, int, int, int]
    landmarks: list[list[float]]
    det_score: float
    status: str
    skip_reason: str | None
    restricted: bool


class CollectionQueries:
    if TYPE_CHECKING:

        def session(self) -> Session: ...

    def create_collection(self, name: str, source: str) -> None:
        with self.session() as s, s.begin():
            src = s.scalar(select(Source).where(Source.name == source))
            if src is None:
                raise NotFoundError(f"no source named {source!r}")
            if s.scalar(select(Collection.id).where(Collection.name == name)) is not None:
                raise ConfigError(f"collection {name!r} already exists", code="collection_exists")
            s.add(Collection(name=name, source_id=src.id, created_at=now()))

    def collection_info(self, name: str) -> CollectionInfo:
        with self.session() as s:
            row = s.execute(
                select(Collection, Source.name)
                .join(Source, Source.id == Collection.source_id)
                .where(Collection.name == name)
            ).one_or_none()
            if row is None:
                raise NotFoundError(f"no collection named {name!r}", code="collection_not_found")
            collection, source = row
            faces = s.scalar(
                select(func.count(CollectionFace.uuid))
                .join(Face, Face.id == CollectionFace.face_id)
                .where(CollectionFace.collection_id == collection.id, SHOWN)
            )
            users = s.scalar(
                select(func.count(CollectionUser.id)).where(
                    CollectionUser.collection_id == collection.id
                )
            )
            return CollectionInfo(name, source, collection.created_at, int(faces or 0), users or 0)

    def collection_names(
        self, *, after: str | None = None, limit: int = 1000, source: str | None = None
    ) -> list[str]:
        """Names in order, paged by `after`; those of one source's collections with `source`."""
        with self.session() as s:
            query = select(Collection.name).order_by(Collection.name).limit(limit)
            if after is not None:
                query = query.where(Collection.name > after)
            if source is not None:
                query = query.join(Source, Source.id == Collection.source_id).where(
                    Source.name == source
                )
            return list(s.scalars(query))

    def _collection_id(self, s: Session, name: str) -> int:
        found = s.scalar(select(Collection.id).where(Collection.name == name))
        if found is None:
            raise NotFoundError(f"no collection named {name!r}", code="collection_not_found")
        return found

    def drop_collection(self, name: str) -> list[int]:
        """Delete a collection; returns its faces that no other collection holds."""
        with self.session() as s, s.begin():
            cid = self._collection_id(s, name)
            held = set(
                s.scalars(select(CollectionFace.face_id).where(CollectionFace.collection_id == cid))
            )
            s.execute(delete(CollectionFace).where(CollectionFace.collection_id == cid))
            s.execute(delete(CollectionUser).where(CollectionUser.collection_id == cid))
            s.execute(delete(Collection).where(Collection.id == cid))
            return sorted(held - self._held_elsewhere(s, held))

    def _held_elsewhere(self, s: Session, face_ids: set[int]) -> set[int]:
        return set(
            s.scalars(select(CollectionFace.face_id).where(CollectionFace.face_id.in_(face_ids)))
        )

    def memberships_of(self, face_ids: Sequence[int]) -> dict[int, list[Membership]]:
        """Every collection membership of these faces, restricted ones too, by face id."""
        out: dict[int, list[Membership]] = {}
        with self.session() as s:
            for start in range(0, len(face_ids), 500):  # SQLite bounds a statement's variables
                rows = s.execute(
                    select(CollectionFace, Collection.name)
                    .join(Collection, Collection.id == CollectionFace.collection_id)
                    .where(CollectionFace.face_id.in_(list(face_ids[start : start + 500])))
                    .order_by(Collection.name, CollectionFace.uuid)
                ).all()
                for m, name in rows:
                    out.setdefault(m.face_id, []).append(
                        Membership(name, m.uuid, m.image_uuid, m.external_image_id, m.user_id)
                    )
        return out

    def photo_faces(self, image_id: int) -> list[PhotoFace]:
        with self.session() as s:
            faces = s.scalars(select(Face).where(Face.image_id == image_id).order_by(Face.id))
            return [
                PhotoFace(
                    f.id,
                    (f.left, f.top, f.right, f.bottom),
                    f.landmarks,
                    f.det_score,
                    f.status,
                    f.skip_reason,
                    f.restricted,
                )
                for f in faces
            ]

    def add_members(
        self, name: str, face_ids: Sequence[int], *, external_image_id: str | None
    ) -> dict[int, str]:
        """Put faces of one photo in a collection: face id -> its id in the collection (a face
        already there keeps the one it has)."""
        image_uuid = str(uuid.uuid4())
        out: dict[int, str] = {}
        with self.session() as s, s.begin():
            cid = self._collection_id(s, name)
            held = dict(
                s.execute(
                    select(CollectionFace.face_id, CollectionFace.uuid).where(
                        CollectionFace.collection_id == cid,
                        CollectionFace.face_id.in_(list(face_ids)),
                    )
                ).all()
            )
            stamp = now()
            for fid in face_ids:
                if fid in held:
                    out[fid] = held[fid]
                    continue
                out[fid] = str(uuid.uuid4())
                s.add(
                    CollectionFace(
                        uuid=out[fid],
                        collection_id=cid,
                        face_id=fid,
                        image_uuid=image_uuid,
                        external_image_id=external_image_id,
                        added_at=stamp,
                    )
                )
        return out

    def members(
        self,
        name: str,
        *,
        after: str | None = None,
        limit: int | None = None,
        uuids: Sequence[str] | None = None,
        user_id: str | None = None,
        face_ids: Sequence[int] | None = None,
    ) -> list[Member]:
        """The collection's shown faces by id order, paged by `after` (an id)."""
        with self.session() as s:
            cid = self._collection_id(s, name)
            query = (
                select(CollectionFace, Face, Image.width, Image.height)
                .join(Face, Face.id == CollectionFace.face_id)
                .join(Image, Image.id == Face.image_id)
                .where(CollectionFace.collection_id == cid, SHOWN)
                .order_by(CollectionFace.uuid)
            )
            if after is not None:
                query = query.where(CollectionFace.uuid > after)
            if uuids is not None:
                query = query.where(CollectionFace.uuid.in_(list(uuids)))
            if user_id is not None:
                query = query.where(CollectionFace.user_id == user_id)
            if face_ids is not None:
                query = query.where(CollectionFace.face_id.in_(list(face_ids)))
            if limit is not None:
                query = query.limit(limit)
            return [
                Member(
                    m.uuid,
                    f.id,
                    m.image_uuid,
                    m.external_image_id,
                    m.user_id,
                    (f.left, f.top, f.right, f.bottom),
                    (int(w), int(h)),
                    f.det_score,
                )
                for m, f, w, h in s.execute(query).all()
            ]

    def member_face_ids(self, name: str) -> list[int]:
        """The catalog ids of the collection's faces, restricted ones too: what a search of it
        hands the vector index as the faces allowed, which holds no restricted face anyway.
        Read from the membership's own index alone (reading each face's row, to leave out the
        restricted, took most of a search's time at 30,000 faces)."""
        with self.session() as s:
            cid = self._collection_id(s, name)
            query = select(CollectionFace.face_id).where(CollectionFace.collection_id == cid)
            return list(s.connection().execute(query).scalars())

    def remove_members(self, name: str, uuids: Sequence[str]) -> tuple[list[str], list[int]]:
        """Take faces out of a collection: the ids removed, and the faces no other collection
        holds now. A face a user holds stays (its client must disassociate it first)."""
        with self.session() as s, s.begin():
            cid = self._collection_id(s, name)
            rows = s.execute(
                select(CollectionFace.uuid, CollectionFace.face_id).where(
                    CollectionFace.collection_id == cid,
                    CollectionFace.uuid.in_(list(uuids)),
                    CollectionFace.user_id.is_(None),
                )
            ).all()
            removed = [u for u, _ in rows]
            faces = {f for _, f in rows}
            s.execute(delete(CollectionFace).where(CollectionFace.uuid.in_(removed)))
            return removed, sorted(faces - self._held_elsewhere(s, faces))

    def create_user(self, name: str, user_id: str) -> None:
        with self.session() as s, s.begin():
            cid = self._collection_id(s, name)
            exists = s.scalar(
                select(CollectionUser.id).where(
                    CollectionUser.collection_id == cid, CollectionUser.user_id == user_id
                )
            )
            if exists is not None:
                raise ConfigError(
                    f"user {user_id!r} already exists in collection {name!r}", code="user_exists"
                )
            s.add(CollectionUser(collection_id=cid, user_id=user_id, created_at=now()))

    def associate(
        self, name: str, user_id: str, uuids: Sequence[str]
    ) -> tuple[list[str], dict[str, str]]:
        """Tie faces of a collection to one of its users: the ids tied, and for each other id
        why not (`FACE_NOT_FOUND`, `ASSOCIATED_TO_A_DIFFERENT_USER`)."""
        return self._retie(name, user_id, uuids, tie=True)

    def _user_row(self, s: Session, cid: int, name: str, user_id: str) -> int:
        found = s.scalar(
            select(CollectionUser.id).where(
                CollectionUser.collection_id == cid, CollectionUser.user_id == user_id
            )
        )
        if found is None:
            raise NotFoundError(
                f"no user {user_id!r} in collection {name!r}", code="user_not_found"
            )
        return found

    def check_user(self, name: str, user_id: str) -> None:
        """NotFoundError unless the collection has this user."""
        with self.session() as s:
            self._user_row(s, self._collection_id(s, name), name, user_id)

    def delete_user(self, name: str, user_id: str) -> int:
        """Delete a user of a collection; its faces stay, tied to nobody. Returns how many."""
        with self.session() as s, s.begin():
            cid = self._collection_id(s, name)
            row = self._user_row(s, cid, name, user_id)
            theirs = (CollectionFace.collection_id == cid) & (CollectionFace.user_id == user_id)
            untied = s.scalar(select(func.count(CollectionFace.uuid)).where(theirs))
            s.execute(update(CollectionFace).where(theirs).values(user_id=None))
            s.execute(delete(CollectionUser).where(CollectionUser.id == row))
            return int(untied or 0)

    def disassociate(
        self, name: str, user_id: str, uuids: Sequence[str]
    ) -> tuple[list[str], dict[str, str]]:
        """Untie faces of a collection from one of its users: the ids untied (a face tied to
        nobody counts: it is as asked), and for each other id why not (`FACE_NOT_FOUND`,
        `ASSOCIATED_TO_A_DIFFERENT_USER`)."""
        return self._retie(name, user_id, uuids, tie=False)

    def _retie(
        self, name: str, user_id: str, uuids: Sequence[str], *, tie: bool
    ) -> tuple[list[str], dict[str, str]]:
        """Tie (or untie) faces to `user_id`. A face tied to nobody or to this user may be
        either; one tied to another user is refused, as is one the collection does not show."""
        with self.session() as s, s.begin():
            cid = self._collection_id(s, name)
            self._user_row(s, cid, name, user_id)
            held = dict(
                s.execute(
                    select(CollectionFace.uuid, CollectionFace.user_id)
                    .join(Face, Face.id == CollectionFace.face_id)
                    .where(
                        CollectionFace.collection_id == cid,
                        CollectionFace.uuid.in_(list(uuids)),
                        SHOWN,
                    )
                ).all()
            )
            done: list[str] = []
            refused: dict[str, str] = {}
            for u in uuids:
                if u not in held:
                    refused[u] = "FACE_NOT_FOUND"
                elif held[u] not in (None, user_id):
                    refused[u] = "ASSOCIATED_TO_A_DIFFERENT_USER"
                else:
                    done.append(u)
            if done:
                s.execute(
                    update(CollectionFace)
                    .where(CollectionFace.uuid.in_(done))
                    .values(user_id=user_id if tie else None)
                )
            return done, refused

    def user_ids(self, name: str, *, after: str | None = None, limit: int = 500) -> list[str]:
        """The collection's users by id order, paged by `after` (a user id)."""
        with self.session() as s:
            cid = self._collection_id(s, name)
            query = (
                select(CollectionUser.user_id)
                .where(CollectionUser.collection_id == cid)
                .order_by(CollectionUser.user_id)
                .limit(limit)
            )
            if after is not None:
                query = query.where(CollectionUser.user_id > after)
            return list(s.scalars(query))

    def answered(
        self, key_name: str, operation: str, token: str
    ) -> tuple[str, dict[str, object]] | None:
        """The digest and answer of an earlier request with this token, if kept (whichever
        collection it named: the digest covers that)."""
        with self.session() as s:
            row = s.scalar(
                select(CollectionRequest).where(
                    CollectionRequest.key_name == key_name,
                    CollectionRequest.operation == operation,
                    CollectionRequest.token == token,
                    CollectionRequest.at > now() - timedelta(hours=IDEMPOTENCY_HOURS),
                )
            )
            return None if row is None else (row.digest, row.answer)

    def remember_answer(
        self,
        name: str,
        key_name: str,
        operation: str,
        token: str,
        digest: str,
        answer: dict[str, object],
    ) -> None:
        """Keep a request's answer for its retries; those older than a day go."""
        stamp = now()
        with self.session() as s, s.begin():
            s.execute(
                delete(CollectionRequest).where(
                    (CollectionRequest.at <= stamp - timedelta(hours=IDEMPOTENCY_HOURS))
                    | (
                        (CollectionRequest.key_name == key_name)
                        & (CollectionRequest.operation == operation)
                        & (CollectionRequest.token == token)
                    )
                )
            )
            cid = s.scalar(select(Collection.id).where(Collection.name == name))
            if cid is None:  # DeleteCollection raced it: nothing to keep an answer for
                return
            s.add(
                CollectionRequest(
                    collection_id=cid,
                    key_name=key_name,
                    operation=operation,
                    token=token,
                    digest=digest,
                    answer=answer,
                    at=stamp,
                )
            )
