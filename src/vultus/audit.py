"""The audit log: who searched, viewed, exported, erased, ingested or reconfigured what, and why.

Append-only and tamper-evident. Each entry's ``hash`` is the SHA-256 of a canonical JSON of its
content and ``prev_hash`` (the hash of the entry before it), so editing an entry breaks its own
hash and removing one breaks the sequence and the chain. Removing the *last* entries leaves a
valid chain, so every append also records the chain head (seq and hash) in ``meta``; with a
signer (the key ring's HMAC) the head is signed, so that rewriting the whole chain and its head
needs the key.

What gets logged about a query face is :func:`face_hash`, never the template itself: the log
must not become a second copy of the biometric data it accounts for.
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, Text, bindparam, cast, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from vultus.catalog.models import AuditEntry, Meta
from vultus.catalog.store import Catalog
from vultus.clock import now
from vultus.errors import ConfigError, VultusError
from vultus.vectors import normalise

# The known actions. Actions are plain strings, so a new kind of event needs no schema change.
SEARCH = "search"
VERIFY = "verify"
VIEW = "view"
EXPORT = "export"
ERASURE = "erasure"
INGEST = "ingest"
CONFIG = "config"
KEY_CHANGE = "key_change"
ACCESS = "access"
RESTRICTION = "restriction"
SUPPRESSION_REMOVED = "suppression_removed"
RETENTION = "retention"
CONSENT = "consent"
REQUEST = "request"
ACTIONS: tuple[str, ...] = (
    SEARCH,
    VIEW,
    EXPORT,
    ERASURE,
    INGEST,
    CONFIG,
    KEY_CHANGE,
    ACCESS,
    RESTRICTION,
    SUPPRESSION_REMOVED,
    RETENTION,
    CONSENT,
    REQUEST,
)

GENESIS_HASH = "0" * 64
HEAD_KEY = "audit_head"
# Built once: SQLAlchemy's compiled cache then serves every append.
_LOCK_HEAD = update(Meta).where(Meta.key == HEAD_KEY).values(value=Meta.value)
_READ_HEAD = select(
    select(Meta.value).where(Meta.key == HEAD_KEY).scalar_subquery(),
    select(func.max(AuditEntry.seq)).scalar_subquery(),
)
_INSERT_ENTRY = insert(AuditEntry).returning(AuditEntry.id)
_WRITE_HEAD = update(Meta).where(Meta.key == HEAD_KEY).values(value=bindparam("head"))
_INSERT_HEAD = insert(Meta).values(key=HEAD_KEY, value=bindparam("head"))
EXPORT_FORMATS: tuple[str, ...] = ("jsonl", "csv")
# Every exported field, so that an export can be checked offline against its own hashes.
EXPORT_FIELDS: tuple[str, ...] = (
    "id",
    "seq",
    "at",
    "actor",
    "action",
    "purpose",
    "case_ref",
    "query_hash",
    "result_ids",
    "details",
    "prev_hash",
    "hash",
)
# Rows read per query when streaming: a log of millions of entries is never held at once.
CHUNK = 5_000
# Two writers racing for the same seq (only possible for the first entry, see _next_link) or
# timing out on the write lock: the unique seq lets one win, and the other retries.
APPEND_ATTEMPTS = 5

Signer = Callable[[bytes], str]
Verifier = Callable[[bytes, str], bool]


def os_actor() -> str:
    """The actor for commands run at the machine: the operating-system user."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name (some containers): still log something stable
        user = "unknown"
    return f"os:{user}"


def face_hash(template: npt.ArrayLike) -> str:
    """SHA-256 (hex) of the L2-normalised float32 template: what the log records about a query.

    Normalised the way the engine normalises templates, so the same face gives the same hash
    whether or not the caller already normalised it (up to float32 rounding); stored
    little-endian, so the hash does not depend on the machine.
    """
    vec = normalise(np.asarray(template).ravel()).astype("<f4")
    return hashlib.sha256(np.ascontiguousarray(vec).tobytes()).hexdigest()


def _like(text: str) -> str:
    """`text` matched literally by LIKE (escape character: backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _iso(at: datetime | str) -> str:
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at.isoformat(timespec="microseconds")


def canonical(fields: Mapping[str, Any]) -> str:
    """The exact text an entry's hash covers: sorted keys, no whitespace, ASCII only."""
    body = {
        "seq": int(fields["seq"]),
        "at": _iso(fields["at"]),
        "actor": fields["actor"],
        "action": fields["action"],
        "purpose": fields["purpose"],
        "case_ref": fields["case_ref"],
        "query_hash": fields["query_hash"],
        "result_ids": list(fields["result_ids"]),
        "details": fields["details"],
        "prev_hash": fields["prev_hash"],
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def entry_hash(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(fields).encode("utf-8")).hexdigest()


def _as_dict(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "seq": entry.seq,
        "at": _iso(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "purpose": entry.purpose,
        "case_ref": entry.case_ref,
        "query_hash": entry.query_hash,
        "result_ids": list(entry.result_ids),
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def _head_message(seq: int, hash_: str) -> bytes:
    return f"{seq}|{hash_}".encode()


def _naive_utc(dt: datetime | None) -> datetime | None:
    # Stored times are naive UTC (see catalog.records.now); an aware bound is converted to match.
    if dt is None or dt.tzinfo is None:
        return dt
    return dt.astimezone(UTC).replace(tzinfo=None)


def _seq_span(first: int, last: int) -> str:
    if first == last:
        return f"seq {first}"
    return f"seq {first}-{last} ({last - first + 1} entries)"


@dataclass(frozen=True)
class AuditProblem:
    seq: int | None
    entry_id: int | None
    kind: str  # "edited" | "deleted" | "out_of_order" | "head_mismatch" | "bad_signature"
    message: str


@dataclass
class AuditVerification:
    ok: bool
    entries: int
    problems: list[AuditProblem] = field(default_factory=list)


class _ChainChecker:
    """Walks entries in write order and records where the chain breaks.

    Shared by the catalog check and the offline export check, so both judge alike.
    """

    def __init__(self, *, anchored: bool) -> None:
        # anchored: the first entry must be seq 1 (a whole log). An export filtered with
        # --since starts mid-chain, so its first entry is trusted as the anchor instead.
        self.anchored = anchored
        self.count = 0
        self.last_seq: int | None = None
        self.last_hash: str | None = None
        self.problems: list[AuditProblem] = []

    def _problem(self, seq: int | None, entry_id: int | None, kind: str, msg: str) -> None:
        self.problems.append(AuditProblem(seq, entry_id, kind, msg))

    def feed(self, row: Mapping[str, Any]) -> None:
        self.count += 1
        seq, entry_id = int(row["seq"]), row.get("id")
        where = f"seq {seq} (id {entry_id})"
        hash_ok = entry_hash(row) == row["hash"]
        if not hash_ok:
            self._problem(seq, entry_id, "edited", f"{where} was edited: its hash does not match")

        if self.last_seq is None:
            if seq > 1 and self.anchored:
                self._problem(1, None, "deleted", f"{_seq_span(1, seq - 1)} missing before {where}")
            elif seq == 1 and row["prev_hash"] != GENESIS_HASH and hash_ok:
                self._problem(seq, entry_id, "edited", f"{where} does not start the chain (forged)")
        else:
            expected = self.last_seq + 1
            if seq < expected:
                # Not a continuation: a row re-inserted or inserted out of turn. Leave the
                # chain state alone so the entries after it are still checked against it.
                self._problem(
                    seq,
                    entry_id,
                    "out_of_order",
                    f"{where} appears after seq {self.last_seq}: inserted out of turn",
                )
                return
            if seq > expected:
                self._problem(
                    expected,
                    None,
                    "deleted",
                    f"{_seq_span(expected, seq - 1)} missing before {where}",
                )
            elif row["prev_hash"] != self.last_hash:
                self._problem(
                    seq,
                    entry_id,
                    "deleted",
                    f"{where} does not follow seq {self.last_seq}: the chain is broken there "
                    "(entries removed and renumbered, or seq "
                    f"{self.last_seq} replaced)",
                )
        self.last_seq, self.last_hash = seq, row["hash"]

    def result(self) -> AuditVerification:
        return AuditVerification(not self.problems, self.count, self.problems)


class AuditLog:
    """The catalog's audit log. The engine builds one with the key ring's HMAC sign/verify."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        signer: Signer | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.catalog = catalog
        self.signer = signer
        self.verifier = verifier

    # -- writing -------------------------------------------------------------------------------
    def append(
        self,
        action: str,
        *,
        actor: str | None = None,
        purpose: str | None = None,
        case_ref: str | None = None,
        query_hash: str | None = None,
        result_ids: Iterable[int] = (),
        details: Mapping[str, Any] | None = None,
        session: Session | None = None,
    ) -> AuditEntry:
        """Append one entry. With `session`, inside the caller's transaction, so that what is
        logged and the logged change commit together or not at all; else in its own."""
        if not action or len(action) > 64:
            raise ValueError("an audit action is a non-empty string of at most 64 characters")
        fields: dict[str, Any] = {
            "actor": actor or os_actor(),
            "action": action,
            "purpose": purpose,
            "case_ref": case_ref,
            "query_hash": query_hash,
            "result_ids": [int(i) for i in result_ids],
            # Through JSON and back: what is hashed is exactly what the JSON column returns
            # (tuples become lists, keys become strings, paths and dates become text).
            "details": json.loads(json.dumps(dict(details or {}), default=str)),
        }
        if session is not None:
            # The caller's pending objects are written first, as the ORM entry used to make
            # happen: callers read the ids of what they added after logging it.
            session.flush()
            return self._append_in(session, fields)

        for attempt in range(APPEND_ATTEMPTS):
            try:
                with self.catalog.session() as s, s.begin():
                    return self._append_in(s, fields)
            except (IntegrityError, OperationalError):
                # Lost the race for the next seq (or the write lock): retry on the new head.
                if attempt == APPEND_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _append_in(self, s: Session, fields: Mapping[str, Any]) -> AuditEntry:
        # Core statements on the session's connection, not ORM objects: every search writes
        # one entry before it answers, and the ORM's unit of work cost more than the search
        # itself (3-4 ms of a 5 ms target; benchmarks/engine_search.py).
        conn = s.connection()
        seq, prev_hash, head_exists = self._next_link(conn)
        at = now()
        digest = entry_hash({**fields, "seq": seq, "at": at, "prev_hash": prev_hash})
        row = {**fields, "seq": seq, "at": at, "prev_hash": prev_hash, "hash": digest}
        entry_id = conn.execute(_INSERT_ENTRY, row).scalar_one()
        sig = self.signer(_head_message(seq, digest)) if self.signer else None
        head = json.dumps({"seq": seq, "hash": digest, "sig": sig})
        conn.execute(_WRITE_HEAD if head_exists else _INSERT_HEAD, {"head": head})
        return AuditEntry(id=int(entry_id), **row)

    def _next_link(self, conn: Connection) -> tuple[int, str, bool]:
        """The seq and prev_hash of the next entry, and whether a head is held: from the head,
        not the last row.

        Chaining from the last row would let someone delete the final entries and have the next
        append paper over the gap; chaining from the head keeps the gap visible to `verify`.
        """
        # A no-op write on the head row takes the write lock (SQLite) or the row lock
        # (PostgreSQL) before the head is read, so concurrent appenders queue up instead of
        # racing for the same seq. Only the very first append can still race; the unique seq
        # settles that one (IntegrityError, retried by `append`).
        conn.execute(_LOCK_HEAD)
        value, last_seq = conn.execute(_READ_HEAD).one()
        head = _parse_head(value)
        if head is None:
            if last_seq is not None:
                raise _inconsistent("entries exist but the chain head is missing")
            return 1, GENESIS_HASH, False
        head_seq, head_hash = head
        if last_seq is not None and last_seq > head_seq:
            raise _inconsistent(f"entries exist past the chain head (seq {head_seq})")
        return head_seq + 1, head_hash, True

    # -- checking ------------------------------------------------------------------------------
    def verify(self) -> AuditVerification:
        """Walk the whole chain and the head; name every edited, missing or forged entry."""
        checker = _ChainChecker(anchored=True)
        for entry in self._stream():
            checker.feed(_as_dict(entry))
        result = checker.result()
        with self.catalog.session() as s:
            meta = s.get(Meta, HEAD_KEY)
        result.problems.extend(self._check_head(meta, checker.last_seq, checker.last_hash))
        result.ok = not result.problems
        return result

    def _check_head(
        self, meta: Meta | None, last_seq: int | None, last_hash: str | None
    ) -> list[AuditProblem]:
        problems: list[AuditProblem] = []
        if meta is None:
            if last_seq is not None:
                problems.append(
                    AuditProblem(None, None, "head_mismatch", "the chain head is missing")
                )
            return problems
        try:
            data = json.loads(meta.value)
            head_seq, head_hash, sig = int(data["seq"]), str(data["hash"]), data.get("sig")
        except (ValueError, KeyError, TypeError):
            return [AuditProblem(None, None, "head_mismatch", "the chain head is unreadable")]

        if last_seq is None:
            problems.append(
                AuditProblem(
                    head_seq,
                    None,
                    "head_mismatch",
                    f"the log is empty but its head is seq {head_seq}: "
                    f"{_seq_span(1, head_seq)} deleted",
                )
            )
        elif head_seq > last_seq:
            problems.append(
                AuditProblem(
                    last_seq + 1,
                    None,
                    "head_mismatch",
                    f"{_seq_span(last_seq + 1, head_seq)} deleted from the end of the log",
                )
            )
        elif head_seq < last_seq:
            problems.append(
                AuditProblem(
                    head_seq + 1,
                    None,
                    "head_mismatch",
                    f"{_seq_span(head_seq + 1, last_seq)} past the head: written outside "
                    "Vultus, or the head was rolled back",
                )
            )
        elif head_hash != last_hash:
            problems.append(
                AuditProblem(
                    head_seq,
                    None,
                    "head_mismatch",
                    f"the head does not match seq {head_seq}: the head or that entry was altered",
                )
            )

        if self.verifier is not None:
            if not sig:
                problems.append(
                    AuditProblem(head_seq, None, "bad_signature", "the chain head is not signed")
                )
            elif not self.verifier(_head_message(head_seq, head_hash), str(sig)):
                problems.append(
                    AuditProblem(
                        head_seq, None, "bad_signature", "the chain head's signature is invalid"
                    )
                )
        return problems

    # -- reading -------------------------------------------------------------------------------
    def _stream(
        self, *where: ColumnElement[bool], newest_first: bool = False
    ) -> Iterator[AuditEntry]:
        """Entries in write (id) order, a chunk per query, by keyset so that no offset scan
        grows with the log."""
        last: int | None = None
        while True:
            q = select(AuditEntry).where(*where)
            if last is not None:
                q = q.where(AuditEntry.id < last if newest_first else AuditEntry.id > last)
            q = q.order_by(AuditEntry.id.desc() if newest_first else AuditEntry.id).limit(CHUNK)
            with self.catalog.session() as s:
                rows = list(s.scalars(q))
            if not rows:
                return
            yield from rows
            if len(rows) < CHUNK:
                return
            last = rows[-1].id

    def entries(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        action: str | None = None,
        actor: str | None = None,
        purpose: str | None = None,
        containing_face: int | None = None,
        request: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[AuditEntry]:
        """Entries matching every given filter (`since` inclusive, `until` exclusive, naive
        UTC). `containing_face`: entries whose results included that face, i.e. everyone who
        received that person's data. `request`: entries about a rights request (its history)."""
        where: list[ColumnElement[bool]] = []
        since, until = _naive_utc(since), _naive_utc(until)
        if since is not None:
            where.append(AuditEntry.at >= since)
        if until is not None:
            where.append(AuditEntry.at < until)
        if action is not None:
            where.append(AuditEntry.action == action)
        if actor is not None:
            where.append(AuditEntry.actor == actor)
        if purpose is not None:
            where.append(AuditEntry.purpose == purpose)
        if containing_face is not None:
            # A text match narrows in SQL (it also hits 12 for 1 and 123); the exact list
            # membership check below decides.
            where.append(cast(AuditEntry.result_ids, Text).like(f"%{int(containing_face)}%"))
        if request is not None:
            # Narrowed in SQL by the reference's text; the exact field is checked below.
            where.append(cast(AuditEntry.details, Text).like(f"%{_like(request)}%", escape="\\"))
        out: list[AuditEntry] = []
        if limit is not None and limit <= 0:
            return out
        for entry in self._stream(*where, newest_first=newest_first):
            if containing_face is not None and containing_face not in entry.result_ids:
                continue
            if request is not None and entry.details.get("request") != request:
                continue
            out.append(entry)
            if limit is not None and len(out) >= limit:
                break
        return out

    def entry(self, entry_id: int) -> AuditEntry | None:
        """One entry by its id (the id a search's answer names as `search_id`)."""
        with self.catalog.session() as s:
            return s.get(AuditEntry, int(entry_id))

    def head(self) -> tuple[int, str] | None:
        """(seq, hash) of the last entry as the head records it; None for an empty log."""
        with self.catalog.session() as s:
            return _parse_head(s.scalar(select(Meta.value).where(Meta.key == HEAD_KEY)))

    # -- export --------------------------------------------------------------------------------
    def export(
        self, out: Path | IO[str], *, since: datetime | None = None, fmt: str = "jsonl"
    ) -> int:
        """Write entries (all, or from `since`) as JSON lines or CSV; returns how many.

        Every field is written, hashes included, so an export can be checked offline with
        :func:`verify_export`.
        """
        if fmt not in EXPORT_FORMATS:
            raise ConfigError(
                f"unknown audit export format {fmt!r}; choose one of: " + ", ".join(EXPORT_FORMATS),
                code="bad_format",
            )
        since = _naive_utc(since)
        where = [AuditEntry.at >= since] if since is not None else []
        if isinstance(out, Path):
            with out.open("w", encoding="utf-8", newline="") as fh:
                return _write(fh, self._stream(*where), fmt)
        return _write(out, self._stream(*where), fmt)


# A spreadsheet reads a cell that starts with one of these as a formula (or, for tab and CR,
# after trimming them); an actor, purpose or case reference is typed by someone. A cell that
# starts with the apostrophe itself gets one too, so that the rule reverses exactly: a cell
# that starts with "'" is the value after it.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def spreadsheet_safe(cell: object) -> object:
    """A CSV cell that a spreadsheet shows as text: a leading apostrophe before a formula.

    >>> spreadsheet_safe("=SUM(A1:A9)")
    "'=SUM(A1:A9)"
    """
    if isinstance(cell, str) and cell.startswith(_FORMULA_START):
        return "'" + cell
    return cell


def _write(fh: IO[str], entries: Iterator[AuditEntry], fmt: str) -> int:
    n = 0
    if fmt == "jsonl":
        for entry in entries:
            fh.write(json.dumps(_as_dict(entry), ensure_ascii=False, sort_keys=False) + "\n")
            n += 1
        return n
    writer = csv.writer(fh)
    writer.writerow(EXPORT_FIELDS)
    for entry in entries:
        row = _as_dict(entry)
        row["result_ids"] = json.dumps(row["result_ids"], separators=(",", ":"))
        row["details"] = json.dumps(row["details"], separators=(",", ":"), sort_keys=True)
        writer.writerow(["" if row[k] is None else spreadsheet_safe(row[k]) for k in EXPORT_FIELDS])
        n += 1
    return n


def verify_export(path: Path | str) -> AuditVerification:
    """Check a JSON-lines export offline: every hash, and the chain between entries.

    An export holds no head, so entries cut from its end cannot be seen; an export that starts
    at seq 1 must start the chain, one cut with --since is checked from its first entry on.
    """
    checker = _ChainChecker(anchored=False)
    bad: list[AuditProblem] = []
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                checker.feed(row)
            except (ValueError, KeyError, TypeError) as exc:
                bad.append(AuditProblem(None, None, "edited", f"line {lineno} unreadable: {exc}"))
    result = checker.result()
    result.problems.extend(bad)
    result.ok = not result.problems
    return result


def _parse_head(value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    try:
        data = json.loads(value)
        return int(data["seq"]), str(data["hash"])
    except (ValueError, KeyError, TypeError):
        raise _inconsistent("the chain head is unreadable") from None


def _inconsistent(why: str) -> VultusError:
    # Fail closed: appending to a log that was tampered with would chain onto the tampering
    # and hide it. Nothing is logged (nor done, where the caller logs inside its transaction)
    # until an operator has looked at `vultus audit verify`.
    return VultusError(
        f"the audit log is inconsistent ({why}); run `vultus audit verify`",
        code="audit_inconsistent",
    )
