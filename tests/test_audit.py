"""The audit log on a real SQLite catalog: the chain, tampering found and named, exports, CLI."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from vultus import audit as audit_mod
from vultus.audit import (
    GENESIS_HASH,
    HEAD_KEY,
    SEARCH,
    AuditLog,
    entry_hash,
    face_hash,
    os_actor,
    verify_export,
)
from vultus.catalog import Catalog, open_catalog
from vultus.cli.common import state
from vultus.engine import Engine
from vultus.errors import ConfigError, VultusError

KEY = b"test-key"


def sign(msg: bytes) -> str:
    return hmac.new(KEY, msg, hashlib.sha256).hexdigest()


def check(msg: bytes, sig: str) -> bool:
    return hmac.compare_digest(sign(msg), sig)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "catalog.db"


@pytest.fixture
def catalog(db: Path) -> Iterator[Catalog]:
    cat = open_catalog(f"sqlite:///{db}")
    yield cat
    cat.close()


@pytest.fixture
def log(catalog: Catalog) -> AuditLog:
    return AuditLog(catalog)


def fill(log: AuditLog, n: int = 5) -> None:
    for i in range(1, n + 1):
        log.append(
            SEARCH,
            actor=f"key:user{i % 2}",
            purpose=f"case work {i}",
            case_ref=f"C-{i}",
            query_hash=f"{i:064x}",
            result_ids=[i, 10 * i],
            details={"top": i, "note": "ünïcode"},
        )


def raw(db: Path, sql: str, *params: object) -> None:
    """Tamper as an attacker with file access would: straight SQL, no Vultus code."""
    con = sqlite3.connect(db)
    with con:
        con.execute(sql, params)
    con.close()


def kinds(result: audit_mod.AuditVerification) -> list[tuple[str, int | None]]:
    return [(p.kind, p.seq) for p in result.problems]


# -- the chain -----------------------------------------------------------------------------


def test_chain_of_entries_verifies(log: AuditLog) -> None:
    assert log.verify().ok and log.verify().entries == 0
    fill(log, 5)
    entries = log.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    for prev, cur in zip(entries, entries[1:], strict=False):
        assert cur.prev_hash == prev.hash
    for e in entries:
        assert len(e.hash) == 64 and e.hash == entry_hash(
            {c: getattr(e, c) for c in audit_mod.EXPORT_FIELDS}
        )
    assert entries[2].details == {"top": 3, "note": "ünïcode"}
    assert log.head() == (5, entries[-1].hash)
    result = log.verify()
    assert result.ok and result.entries == 5 and result.problems == []


def test_actor_defaults_to_os_user(log: AuditLog) -> None:
    entry = log.append("config", details={"path": Path("/x"), "keys": ("a", "b")})
    assert entry.actor == os_actor() and entry.actor.startswith("os:")
    # Non-JSON details are stored as their JSON form, and the hash covers what is stored.
    assert log.entries()[0].details == {"path": "/x", "keys": ["a", "b"]}
    assert log.verify().ok


@pytest.mark.parametrize(
    ("column", "value"),
    [("purpose", "something innocent"), ("result_ids", "[3]"), ("actor", "os:nobody")],
)
def test_edited_entry_is_detected_and_named(
    log: AuditLog, db: Path, column: str, value: str
) -> None:
    fill(log, 5)
    target = log.entries()[2]
    raw(db, f"UPDATE audit_log SET {column} = ? WHERE seq = 3", value)
    result = log.verify()
    assert not result.ok
    assert kinds(result) == [("edited", 3)]
    assert result.problems[0].entry_id == target.id
    assert "seq 3" in result.problems[0].message


def test_rehashed_edit_breaks_the_chain_at_the_next_entry(log: AuditLog, db: Path) -> None:
    fill(log, 4)
    e = log.entries()[1]
    forged = {c: getattr(e, c) for c in audit_mod.EXPORT_FIELDS} | {"purpose": "forged"}
    raw(
        db,
        "UPDATE audit_log SET purpose = ?, hash = ? WHERE seq = 2",
        "forged",
        entry_hash(forged),
    )
    result = log.verify()
    assert ("deleted", 3) in kinds(result) and not result.ok


def test_deleted_middle_entry_names_the_missing_seq(log: AuditLog, db: Path) -> None:
    fill(log, 6)
    raw(db, "DELETE FROM audit_log WHERE seq IN (3, 4)")
    result = log.verify()
    assert kinds(result) == [("deleted", 3)]
    assert "seq 3-4" in result.problems[0].message
    assert result.entries == 4


def test_deleted_first_entry_is_detected(log: AuditLog, db: Path) -> None:
    fill(log, 3)
    raw(db, "DELETE FROM audit_log WHERE seq = 1")
    assert kinds(log.verify()) == [("deleted", 1)]


def test_deleted_last_entry_is_detected_via_the_head(log: AuditLog, db: Path) -> None:
    fill(log, 5)
    raw(db, "DELETE FROM audit_log WHERE seq = 5")
    result = log.verify()
    assert kinds(result) == [("head_mismatch", 5)]
    assert "seq 5" in result.problems[0].message


def test_append_after_deleting_the_end_keeps_the_gap_visible(log: AuditLog, db: Path) -> None:
    fill(log, 5)
    raw(db, "DELETE FROM audit_log WHERE seq >= 4")
    entry = log.append(SEARCH)
    # Chained from the head, not from the last surviving row: the deletion cannot be papered over.
    assert entry.seq == 6
    assert kinds(log.verify()) == [("deleted", 4)]


def test_everything_deleted_is_detected(log: AuditLog, db: Path) -> None:
    fill(log, 3)
    raw(db, "DELETE FROM audit_log")
    assert kinds(log.verify()) == [("head_mismatch", 3)]


def test_append_refuses_a_log_with_rows_beyond_its_head(log: AuditLog, db: Path) -> None:
    fill(log, 3)
    raw(db, "DELETE FROM meta WHERE key = ?", HEAD_KEY)
    assert kinds(log.verify()) == [("head_mismatch", None)]
    with pytest.raises(VultusError) as exc:
        log.append(SEARCH)
    assert exc.value.code == "audit_inconsistent"


def test_signed_head_detects_head_tampering(catalog: Catalog, db: Path) -> None:
    log = AuditLog(catalog, signer=sign, verifier=check)
    fill(log, 4)
    assert log.verify().ok
    head = json.loads(catalog.get_meta(HEAD_KEY) or "")
    assert head["seq"] == 4 and check(f"4|{head['hash']}".encode(), head["sig"])

    # Delete the last entry and point the head at the new last one: the chain is consistent
    # again, and only the signature gives it away.
    third = log.entries()[2]
    raw(db, "DELETE FROM audit_log WHERE seq = 4")
    fake = json.dumps({"seq": 3, "hash": third.hash, "sig": "0" * 64})
    raw(db, "UPDATE meta SET value = ? WHERE key = ?", fake, HEAD_KEY)
    assert kinds(log.verify()) == [("bad_signature", 3)]
    # Without the key the same tampering goes unseen: that is what the signature is for.
    assert AuditLog(catalog).verify().ok

    unsigned = json.dumps({"seq": 3, "hash": third.hash, "sig": None})
    raw(db, "UPDATE meta SET value = ? WHERE key = ?", unsigned, HEAD_KEY)
    assert kinds(log.verify()) == [("bad_signature", 3)]


def test_tampered_head_hash_is_a_mismatch(catalog: Catalog, db: Path) -> None:
    log = AuditLog(catalog, signer=sign, verifier=check)
    fill(log, 2)
    head = json.loads(catalog.get_meta(HEAD_KEY) or "")
    head["hash"] = "f" * 64
    raw(db, "UPDATE meta SET value = ? WHERE key = ?", json.dumps(head), HEAD_KEY)
    assert kinds(log.verify()) == [("head_mismatch", 2), ("bad_signature", 2)]


def test_append_in_a_rolled_back_session_leaves_nothing(log: AuditLog, catalog: Catalog) -> None:
    fill(log, 2)
    with catalog.session() as s, s.begin():
        entry = log.append("erasure", result_ids=[7], session=s)
        assert entry.seq == 3
        s.rollback()
    assert [e.seq for e in log.entries()] == [1, 2]
    assert log.head() is not None and log.head()[0] == 2  # type: ignore[index]
    assert log.verify().ok
    assert log.append("erasure").seq == 3
    assert log.verify().ok


def test_append_in_a_committed_session_commits_with_it(log: AuditLog, catalog: Catalog) -> None:
    with catalog.session() as s, s.begin():
        log.append("erasure", result_ids=[7], session=s)
        log.append("erasure", result_ids=[8], session=s)
    assert [(e.seq, e.result_ids) for e in log.entries()] == [(1, [7]), (2, [8])]
    assert log.verify().ok


def test_concurrent_appends_get_distinct_seqs(catalog: Catalog) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        log = AuditLog(catalog)
        try:
            for i in range(10):
                log.append(SEARCH, actor=f"key:t{n}", result_ids=[i])
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    log = AuditLog(catalog)
    assert [e.seq for e in log.entries()] == list(range(1, 41))
    assert log.verify().ok


# -- reading -------------------------------------------------------------------------------


def test_containing_face_finds_exactly_the_searches_that_returned_it(log: AuditLog) -> None:
    log.append(SEARCH, result_ids=[1, 12])  # seq 1
    log.append(SEARCH, result_ids=[123, 21])  # seq 2: text-matches 1 and 12, holds neither
    log.append("view", result_ids=[1])  # seq 3
    log.append(SEARCH, result_ids=[])  # seq 4
    log.append(SEARCH, result_ids=[5, 1])  # seq 5
    assert [e.seq for e in log.entries(containing_face=1)] == [1, 3, 5]
    assert [e.seq for e in log.entries(containing_face=12)] == [1]
    assert [e.seq for e in log.entries(containing_face=1, action=SEARCH)] == [1, 5]
    assert [e.seq for e in log.entries(containing_face=1, limit=2)] == [1, 3]
    assert log.entries(containing_face=2) == []


def test_entries_filters(log: AuditLog) -> None:
    fill(log, 6)
    assert [e.seq for e in log.entries(actor="key:user1")] == [1, 3, 5]
    assert [e.seq for e in log.entries(purpose="case work 2")] == [2]
    assert [e.seq for e in log.entries(limit=2, newest_first=True)] == [6, 5]
    assert log.entries(limit=0) == []


@pytest.fixture
def dated_log(log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> AuditLog:
    """Entries written on 1, 2, 3 and 4 March 2025 at noon."""
    day = iter(datetime(2025, 3, d, 12, 0, 0, 123456) for d in range(1, 5))
    monkeypatch.setattr(audit_mod, "now", lambda: next(day))
    for i in range(4):
        log.append(SEARCH, result_ids=[i])
    return log


def test_since_and_until_filter(dated_log: AuditLog) -> None:
    assert [e.seq for e in dated_log.entries(since=datetime(2025, 3, 3))] == [3, 4]
    assert [e.seq for e in dated_log.entries(until=datetime(2025, 3, 2, 12))] == [1]
    assert dated_log.entries()[0].at == datetime(2025, 3, 1, 12, 0, 0, 123456)
    assert dated_log.verify().ok

    buf = io.StringIO()
    assert dated_log.export(buf, since=datetime(2025, 3, 2)) == 3
    assert [json.loads(line)["seq"] for line in buf.getvalue().splitlines()] == [2, 3, 4]


# -- export --------------------------------------------------------------------------------


def test_export_jsonl_has_every_entry_and_verifies_offline(log: AuditLog, tmp_path: Path) -> None:
    fill(log, 5)
    out = tmp_path / "audit.jsonl"
    assert log.export(out) == 5
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert set(rows[0]) == set(audit_mod.EXPORT_FIELDS)
    assert rows[4]["hash"] == log.head()[1]  # type: ignore[index]
    assert rows[2]["details"]["note"] == "ünïcode"
    result = verify_export(out)
    assert result.ok and result.entries == 5

    # An edited line is found and named.
    rows[3]["result_ids"] = [999]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert kinds(verify_export(out)) == [("edited", 4)]

    # So is a line taken out of the middle.
    del rows[3]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert kinds(verify_export(out)) == [("deleted", 4)]


def test_partial_export_verifies_from_its_first_entry(dated_log: AuditLog, tmp_path: Path) -> None:
    out = tmp_path / "since.jsonl"
    dated_log.export(out, since=datetime(2025, 3, 3))
    assert verify_export(out).ok


def test_export_csv_cells_are_not_formulas_in_a_spreadsheet(log: AuditLog, tmp_path: Path) -> None:
    # Given entries whose typed fields a spreadsheet would run as formulas ...
    hostile = ['=HYPERLINK("http://x","y")', "+1", "-1", "@SUM(A1)", "\tx", "\rx", "'=x"]
    for text in hostile:
        log.append("search", actor=text, purpose=text, case_ref=text)
    log.append("search", actor="key:alice", purpose="fraud - check", case_ref="CASE-9")
    out = tmp_path / "audit.csv"
    log.export(out, fmt="csv")
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    # ... each is written behind an apostrophe, which a reader strips to get the value back ...
    for row, text in zip(rows, hostile, strict=False):
        for field in ("actor", "purpose", "case_ref"):
            assert row[field] == "'" + text
    # ... and harmless text is left as it is.
    assert (rows[-1]["actor"], rows[-1]["purpose"], rows[-1]["case_ref"]) == (
        "key:alice",
        "fraud - check",
        "CASE-9",
    )
    # The JSON-lines export, which the chain is checked on, keeps every value as it is.
    log.export(tmp_path / "audit.jsonl")
    assert verify_export(tmp_path / "audit.jsonl").ok


def test_export_csv_has_every_entry(log: AuditLog, tmp_path: Path) -> None:
    fill(log, 4)
    log.append("config", details={})  # empty optional fields still make a full row
    out = tmp_path / "audit.csv"
    assert log.export(out, fmt="csv") == 5
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(audit_mod.EXPORT_FIELDS)
    assert [int(r["seq"]) for r in rows] == [1, 2, 3, 4, 5]
    assert json.loads(rows[1]["result_ids"]) == [2, 20]
    assert json.loads(rows[1]["details"]) == {"note": "ünïcode", "top": 2}
    assert rows[4]["purpose"] == ""
    # Each CSV row carries enough to recompute its hash.
    for r, e in zip(rows, log.entries(), strict=True):
        assert r["hash"] == e.hash and r["prev_hash"] == e.prev_hash


def test_unknown_export_format_is_a_config_error(log: AuditLog, tmp_path: Path) -> None:
    fill(log, 1)
    with pytest.raises(ConfigError):
        log.export(tmp_path / "x.xml", fmt="xml")
    assert not (tmp_path / "x.xml").exists()


# -- the query hash ------------------------------------------------------------------------


def test_face_hash_is_stable_and_distinguishes_templates() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=128).astype(np.float32)
    b = rng.normal(size=128).astype(np.float32)
    h = face_hash(a)
    assert len(h) == 64 and int(h, 16) >= 0
    assert face_hash(a.copy()) == h
    assert face_hash(a.astype(np.float64)) == h
    assert face_hash(a * 4) == h  # the scale of a template is not part of the face
    assert face_hash(b) != h
    unit = (a / np.linalg.norm(a.astype(np.float64))).astype(np.float32)
    assert h == hashlib.sha256(unit.astype("<f4").tobytes()).hexdigest()
    with pytest.raises(ValueError):
        face_hash(np.zeros(128, dtype=np.float32))


# -- command line --------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    """The real `vultus` command line."""
    from vultus.cli import app

    monkeypatch.setitem(state, "data_dir", None)
    monkeypatch.setenv("COLUMNS", "200")  # Rich reads it on each print: no wrapped cells
    return app


def test_cli_verify_list_export(cli: typer.Typer, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Engine.open(data) as engine:
        fill(engine.audit, 3)
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        r = runner.invoke(cli, ["--data-dir", str(data), "audit", *args])
        return r.exit_code, r.output

    code, out = run("verify")
    assert code == 0, out
    # The engine's first open logs its settings (a configuration entry), then the three.
    assert "intact" in out and "4 entries" in out

    code, out = run("list", "--actor", "key:user1")
    assert code == 0, out
    assert "case work 1" in out and "case work 3" in out and "case work 2" not in out

    code, out = run("export", "--format", "jsonl")
    assert code == 0, out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["seq"] for r in lines] == [1, 2, 3, 4]
    assert [r["action"] for r in lines][0] == "config"

    future = (datetime.now() + timedelta(days=2)).strftime("%Y-%m-%d")
    code, out = run(
        "export", "--since", future, "--format", "csv", "--out", str(tmp_path / "a.csv")
    )
    assert code == 0, out
    assert (tmp_path / "a.csv").read_text().strip().splitlines() == [
        ",".join(audit_mod.EXPORT_FIELDS)
    ]

    # A VultusError becomes one line and exit code 2.
    code, out = run("export", "--format", "xml")
    assert code == 2 and "jsonl" in out

    raw(data / "catalog.db", "UPDATE audit_log SET purpose = 'nothing to see' WHERE seq = 3")
    code, out = run("verify")
    assert code == 1, out
    assert "edited" in out and "seq 3" in out
