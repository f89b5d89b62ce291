"""The catalog's tables: the source of truth. The vector index is derived from `faces`.

Schema changes go through Alembic migrations in `migrations/versions/`; a test checks that the
migrations and these models agree.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Catalog-wide facts, such as the face model every template must come from."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Source(Base):
    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    lawful_basis: Mapped[str] = mapped_column(String(64))  # GDPR Art. 6(1)
    special_condition: Mapped[str] = mapped_column(String(64))  # GDPR Art. 9(2)
    legal_reference: Mapped[str | None] = mapped_column(Text, nullable=True)
    purpose: Mapped[str] = mapped_column(Text)
    retention_days: Mapped[int] = mapped_column(Integer)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # The operator declares that Vultus may delete this source's original files on erasure;
    # off by default, when originals outside the data directory are left in place (and said so).
    originals_deletable: Mapped[bool] = mapped_column(Boolean, default=False)


class Image(Base):
    __tablename__ = "images"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    added_at: Mapped[datetime] = mapped_column(DateTime)
    retain_until: Mapped[datetime] = mapped_column(DateTime, index=True)
    status: Mapped[str] = mapped_column(String(16))  # "indexed" | "no_faces"
    ingest_run_id: Mapped[int | None] = mapped_column(ForeignKey("ingest_runs.id"), nullable=True)
    consent_id: Mapped[int | None] = mapped_column(
        ForeignKey("consents.id"), nullable=True, index=True
    )
    # An upload's file name as sent (its stored copy is named by content), and the id the
    # integrator gave the photo at upload. None for photos ingested where they lie.
    original_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    # "photo", or "video": then each face is a face track (see FaceTrack) and the video's
    # length is `duration_s`. A video is an image to everything that works per image
    # (retention, erasure, access, listings), so that each covers videos as it does photos.
    kind: Mapped[str] = mapped_column(String(8), default="photo", server_default="photo")
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)

    source: Mapped[Source] = relationship()
    faces: Mapped[list[Face]] = relationship(
        back_populates="image", cascade="all, delete-orphan", passive_deletes=True
    )


class Subject(Base):
    __tablename__ = "subjects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # Art. 18/21: a restricted subject's faces stay stored but never appear in search results.
    restricted: Mapped[bool] = mapped_column(Boolean, default=False)


class Face(Base):
    __tablename__ = "faces"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    left: Mapped[int] = mapped_column(Integer)
    top: Mapped[int] = mapped_column(Integer)
    right: Mapped[int] = mapped_column(Integer)
    bottom: Mapped[int] = mapped_column(Integer)
    landmarks: Mapped[list[list[float]]] = mapped_column(JSON)
    detector: Mapped[str] = mapped_column(String(32))
    det_score: Mapped[float] = mapped_column(Float)
    box_size: Mapped[int] = mapped_column(Integer)
    sharpness: Mapped[float] = mapped_column(Float)
    yaw: Mapped[float] = mapped_column(Float)
    # "indexed": template present and in the vector index; "skipped": failed the quality gate.
    status: Mapped[str] = mapped_column(String(16))
    skip_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    template: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    subject_id: Mapped[int | None] = mapped_column(
        ForeignKey("subjects.id", ondelete="SET NULL"), nullable=True, index=True
    )
    restricted: Mapped[bool] = mapped_column(Boolean, default=False, index=True)

    image: Mapped[Image] = relationship(back_populates="faces")
    subject: Mapped[Subject | None] = relationship()
    # Loaded with the faces, in one query for all of them: None for a photo's face.
    track: Mapped[FaceTrack | None] = relationship(
        lazy="selectin", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (Index("ix_faces_status", "status"),)


class FaceTrack(Base):
    """What makes a face of a video a face track: one person's appearance, from `start_s` to
    `end_s`. The face row holds the track's fused template and its best frame's box; this row
    the times, the sampled boxes over the span (to blur the person in a stored copy on
    erasure) and the best frame's crop, sealed like a template (it shows a face), which
    thumbnails, access packages and `reembed` read instead of decoding the video again."""

    __tablename__ = "face_tracks"
    face_id: Mapped[int] = mapped_column(
        ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True
    )
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    best_s: Mapped[float] = mapped_column(Float)
    detections: Mapped[int] = mapped_column(Integer)
    # [[t, left, top, right, bottom], ...] at each sampled frame the person was seen in.
    boxes: Mapped[list[list[float]]] = mapped_column(JSON)
    crop: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted JPEG
    # The crop's region in frame pixels (left, top, right, bottom), before any shrinking.
    crop_box: Mapped[list[int]] = mapped_column(JSON)


class IndexChange(Base):
    """The change feed of `faces` for the vector index, written by triggers (see
    `vultus.catalog.changes`): "I" added, "D" deleted, "U" searchability changed."""

    __tablename__ = "index_changes"
    __table_args__ = {"sqlite_autoincrement": True}  # a seq is never reused after pruning
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    face_id: Mapped[int] = mapped_column(Integer)
    op: Mapped[str] = mapped_column(String(1))


class IngestRun(Base):
    __tablename__ = "ingest_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # "running" | "finished" | "interrupted"
    images_added: Mapped[int] = mapped_column(Integer, default=0)
    images_duplicate: Mapped[int] = mapped_column(Integer, default=0)
    images_no_face: Mapped[int] = mapped_column(Integer, default=0)
    faces_indexed: Mapped[int] = mapped_column(Integer, default=0)
    faces_skipped: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    # Faces refused because they match the suppression list (erased people stay erased).
    faces_suppressed: Mapped[int] = mapped_column(Integer, default=0)
    # The lock file (DATA_DIR/runs/OWNER.lock) its process holds while it runs: free, the
    # process died, and the next ingest closes the run. None: a run from before 0006.
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)


class IngestError(Base):
    __tablename__ = "ingest_errors"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("ingest_runs.id", ondelete="CASCADE"), index=True
    )
    path: Mapped[str] = mapped_column(Text)
    code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)


class AuditEntry(Base):
    """Append-only and hash-chained: each entry's hash covers its content and the previous
    entry's hash, so an edited or deleted entry breaks the chain where it happened."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64), index=True)
    purpose: Mapped[str | None] = mapped_column(String(200), nullable=True)
    case_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)
    query_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    result_ids: Mapped[list[int]] = mapped_column(JSON)
    details: Mapped[dict[str, object]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Suppression(Base):
    """A minimal template of an erased person, kept only so they stay erased."""

    __tablename__ = "suppression"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    template: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted
    model_id: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(32))  # always "suppress"
    created_at: Mapped[datetime] = mapped_column(DateTime)
    request_ref: Mapped[str | None] = mapped_column(String(32), nullable=True)  # who asked


class Consent(Base):
    """A person's consent under a consent-based source; withdrawal erases what rests on it."""

    __tablename__ = "consents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    person: Mapped[str] = mapped_column(String(200))
    given_at: Mapped[datetime] = mapped_column(DateTime)
    notice_version: Mapped[str] = mapped_column(String(64))
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class RightsRequest(Base):
    """A data-subject request (Arts. 15-21) with its Art. 12(3) one-month deadline."""

    __tablename__ = "rights_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ref: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # access | erasure | restriction | objection
    status: Mapped[str] = mapped_column(String(16))  # received | in_review | done | rejected
    received_at: Mapped[datetime] = mapped_column(DateTime)
    due_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    extended_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    extension_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    contact: Mapped[str | None] = mapped_column(String(320), nullable=True)
    selfie: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # encrypted
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # The review of the candidates (vultus.rights.review.Review.to_json): face ids, tiers,
    # distances and the reviewer's decisions; never templates.
    review: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    receipt_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ApiKey(Base):
    """An API key: only a hash of its secret is stored. Keys expire and can be revoked."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # One role, or several joined by "+" ("operator+investigator"): see engine/roles.py.
    role: Mapped[str] = mapped_column(String(100))
    # The secret's first characters, stored in clear to find the row; the rest only hashed.
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    searches_per_day: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # What the key is bound to, for clients that cannot state it on each call (CompreFace,
    # Rekognition): the purpose and case of its searches, and the source of the photos it adds.
    purpose: Mapped[str | None] = mapped_column(String(200), nullable=True)
    case_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)
    source: Mapped[str | None] = mapped_column(String(200), nullable=True)

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.role.split("+"))


class Job(Base):
    """Long work (folder ingest, index rebuild, key rotation) run in the background. Persisted,
    so a server restart neither loses nor duplicates it: every kind is safe to run again."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, object]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued|running|done|failed
    actor: Mapped[str] = mapped_column(String(200))
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    result: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class StagedFace(Base):
    """A face as the model that `vultus reembed` migrates to sees it, waiting for the swap.
    Never searched: the catalog's model and the index change only when every image is staged.
    `kind` is "face", or "no_face" / "file_missing" for an image that gave none."""

    __tablename__ = "reembed_staging"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # No foreign keys: an image or face deleted meanwhile is skipped at the swap, not cascaded.
    image_id: Mapped[int] = mapped_column(Integer, index=True)
    face_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # matched by IoU
    expect_faces: Mapped[list[int]] = mapped_column(JSON)  # the image's faces when staged
    kind: Mapped[str] = mapped_column(String(16))
    face: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    template: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # encrypted
    model_id: Mapped[str] = mapped_column(String(64))


class PersonDecision(Base):
    """What a reviewer decided about a face while naming people, kept so that discovery run
    again never proposes what was turned down. `kind`: "apart" (not the person of the faces in
    `others`), "not_subject" (not the named subject `subject_id`), "hidden" (not to be
    proposed). Goes with its face (erasure) or its subject."""

    __tablename__ = "person_decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    face_id: Mapped[int] = mapped_column(ForeignKey("faces.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    subject_id: Mapped[int | None] = mapped_column(
        ForeignKey("subjects.id", ondelete="CASCADE"), nullable=True, index=True
    )
    others: Mapped[list[int]] = mapped_column(JSON, default=list)
    actor: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class AwsCredential(Base):
    """An API key's AWS-style credential, for clients that sign with SigV4 (boto3). Checking a
    signature needs the secret itself, so it is kept sealed under the master key (re-sealed by
    a key rotation), never in clear; the access key id finds the row."""

    __tablename__ = "aws_credentials"
    key_id: Mapped[int] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    access_key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted


class Collection(Base):
    """A named set of faces, as AWS Rekognition clients keep them. It belongs to one source
    (the lawful basis of every photo in it) and holds faces of that source's photos."""

    __tablename__ = "collections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)

    source: Mapped[Source] = relationship()


class CollectionFace(Base):
    """A face in a collection, under the random id its clients know it by. An erased face takes
    its memberships with it (the foreign key cascades)."""

    __tablename__ = "collection_faces"
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), index=True
    )
    face_id: Mapped[int] = mapped_column(ForeignKey("faces.id", ondelete="CASCADE"), index=True)
    image_uuid: Mapped[str] = mapped_column(String(36))
    external_image_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    user_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    added_at: Mapped[datetime] = mapped_column(DateTime)

    face: Mapped[Face] = relationship()

    __table_args__ = (UniqueConstraint("collection_id", "face_id", name="uq_collection_face"),)


class CollectionUser(Base):
    """A user of a collection: the client's id for one person, grouping faces of the
    collection. Not a Vultus subject: it names nobody, and lives and goes with its collection."""

    __tablename__ = "collection_users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (UniqueConstraint("collection_id", "user_id", name="uq_collection_user"),)


class CollectionRequest(Base):
    """The answer given to a request that carried a `ClientRequestToken`, so that the same
    request sent again (a client's retry) gets the same answer and has no second effect. Kept
    a day (`IDEMPOTENCY_HOURS`), and goes with its collection."""

    __tablename__ = "collection_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), index=True
    )
    key_name: Mapped[str] = mapped_column(String(200))  # tokens are each caller's own
    operation: Mapped[str] = mapped_column(String(64))
    token: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))  # sha256 of the request, token left out
    answer: Mapped[dict[str, object]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)

    __table_args__ = (
        UniqueConstraint("key_name", "operation", "token", name="uq_collection_request"),
    )
