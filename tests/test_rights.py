"""Data protection by design, as a data subject and a DPO meet it: purpose-bound search, access
and erasure by selfie, suppression, restriction, objection, retention, consent, requests, key
rotation and reports, on the dev photos."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sqlite3
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from conftest import CONTROLLER, PURPOSE, add_test_source, name_controller
from vultus.clock import now
from vultus.crypto import WrongKeyError, read_encrypted_file, read_key_file
from vultus.engine import Engine
from vultus.errors import (
    ConsentRequiredError,
    NotFoundError,
    PurposeError,
    RightsError,
    VultusError,
)
from vultus.index.backends import INDEX_AAD
from vultus.rights.erasure import ErasureReceipt

KIT_SELFIE = "images/Kit_Harington/Kit_Harington_1.jpeg"


@pytest.fixture(scope="session")
def rights_dir(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    """Every dev photo but Kit Harington's selfie, plus Kit and Rose Leslie together in a
    stored copy (an upload Vultus keeps under its data directory)."""
    data_dir = name_controller(tmp_path_factory.mktemp("rights"))
    dev = faces_dir / "dev"
    stored = data_dir / "images"
    stored.mkdir()
    shutil.copy(dev / "extra" / "kit_with_rose.jpg", stored / "kit_with_rose.jpg")
    photos = [p for p in (dev / "images").rglob("*.*") if p != dev / KIT_SELFIE]
    with Engine.open(data_dir, workers=1) as engine:
        add_test_source(engine)
        summary = engine.add([*photos, stored / "kit_with_rose.jpg"], source="test")
        assert summary.errors == [] and summary.images_added == 57
    return data_dir


@pytest.fixture
def engine(rights_dir: Path, tmp_path: Path) -> Iterator[Engine]:
    copy = tmp_path / "data"
    shutil.copytree(rights_dir, copy)
    # The copy's stored photo must live in the copy, as it would in a real data directory.
    db = sqlite3.connect(copy / "catalog.db")
    db.execute("UPDATE images SET path = replace(path, ?, ?)", (str(rights_dir), str(copy)))
    db.commit()
    db.close()
    with Engine.open(copy, workers=1) as e:
        yield e


@pytest.fixture
def own_key(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The engine's data directory under a key file of its own: for tests that rotate keys,
    which must not change the key every other test directory was sealed with."""
    shutil.copy(os.environ["VULTUS_KEY_FILE"], tmp_path / "own.key")
    os.chmod(tmp_path / "own.key", 0o600)
    monkeypatch.setenv("VULTUS_KEY_FILE", str(tmp_path / "own.key"))
    data_dir = engine.settings.data_dir
    engine.close()
    with Engine.open(data_dir, workers=1) as e:
        yield e


@pytest.fixture
def selfie(faces_dir: Path) -> Path:
    return faces_dir / "dev" / KIT_SELFIE


def kit_faces(engine: Engine, selfie: Path) -> list[int]:
    result = engine.search(selfie, purpose=PURPOSE, top_k=10)
    return [m.face_id for m in result.matches if m.is_match]


def test_a_search_must_state_a_configured_purpose(engine: Engine, selfie: Path) -> None:
    with pytest.raises(PurposeError, match="must state its purpose"):
        engine.search(selfie, purpose="")
    with pytest.raises(PurposeError, match="not a configured purpose") as info:
        engine.search(selfie, purpose="curiosity")
    assert info.value.code == "purpose_unknown"

    result = engine.search(selfie, purpose=PURPOSE, case_ref="case-7", top_k=5)
    entry = engine.audit.entries(action="search")[-1]
    assert entry.purpose == PURPOSE and entry.case_ref == "case-7"
    assert entry.result_ids == [m.face_id for m in result.matches]
    assert entry.query_hash and len(entry.query_hash) == 64
    assert engine.audit.verify().ok


def test_access_package_holds_exactly_that_persons_images(
    engine: Engine, selfie: Path, faces_dir: Path, tmp_path: Path
) -> None:
    kit = kit_faces(engine, selfie)  # an audited search that disclosed Kit's faces
    assert len(kit) == 3
    out = tmp_path / "package.zip"
    review = engine.review_person(
        selfie, kind="access", verify_with=faces_dir / "dev" / KIT_SELFIE, reviewer="dpo"
    )
    assert review.identity_check and "matched the second photo" in review.identity_check
    path, plan = engine.access(review, out)
    assert sorted(plan.face_ids) == sorted(kit)
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        data = json.loads(z.read("data.json"))
    assert {"report.html", "data.json", "README.txt"} <= names
    assert {n for n in names if n.startswith("crops/")} == {f"crops/{f}.jpg" for f in kit}
    assert sorted(f["face_id"] for img in data["images"] for f in img["faces"]) == sorted(kit)
    assert "template" not in json.dumps(data)
    recipients = data["recipients"]
    assert any(r["purpose"] == PURPOSE and set(r["face_ids"]) == set(kit) for r in recipients)
    # The package says who reviewed the candidates and how the person was identified.
    assert data["reviewed_by"] == "dpo" and "3 were judged to be you" in data["review"]
    assert data["verification"] == review.identity_check

    rose = faces_dir / "dev" / "images" / "Rose_Leslie" / "Rose_Leslie_1.jpg"
    with pytest.raises(RightsError, match="identity check failed"):
        engine.review_person(selfie, kind="access", verify_with=rose)
    assert not (tmp_path / "no.zip").exists()


def _sqlite_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.glob("catalog.db*") if p.is_file())


def test_erasure_removes_exactly_that_person_and_leaves_no_bytes(
    engine: Engine, selfie: Path, faces_dir: Path
) -> None:
    data_dir = engine.settings.data_dir
    rose = faces_dir / "dev" / "images" / "Rose_Leslie" / "Rose_Leslie_1.jpg"
    rose_before = {m.face_id for m in engine.search(rose, purpose=PURPOSE).matches if m.is_match}
    total_before = engine.catalog.counts()["faces_indexed"]
    stored = data_dir / "images" / "kit_with_rose.jpg"
    pixels_before = np.asarray(PILImage.open(stored)).copy()

    plan = engine.find_person(selfie)
    kit = plan.face_ids
    assert len(kit) == 3 and sum(m.other_faces for m in plan.matches) == 1
    plain = engine.catalog.templates_of(kit)
    db = sqlite3.connect(data_dir / "catalog.db")
    sealed = [
        row[0]
        for row in db.execute(f"SELECT template FROM faces WHERE id IN ({','.join(map(str, kit))})")
    ]
    db.close()

    receipt = engine.erase(plan, request_ref="R-TEST")
    assert (receipt.faces_erased, receipt.images_erased, receipt.images_kept_with_others) == (
        3,
        2,
        1,
    )
    assert receipt.verify(engine.keyring)
    assert (data_dir / "receipts" / f"{receipt.receipt_id}.json").exists()
    # Rose stays, in the shared photo too; nobody else lost a face.
    assert {m.face_id for m in engine.search(rose, purpose=PURPOSE).matches if m.is_match} == (
        rose_before
    )
    assert engine.catalog.counts()["faces_indexed"] == total_before - 3
    # Kit's face is blurred in the stored copy; the rest of the photo is untouched.
    after = np.asarray(PILImage.open(stored))
    changed = np.argwhere(np.abs(after.astype(int) - pixels_before.astype(int)).sum(axis=2) > 30)
    kit_box = next(m.box for m in plan.matches if m.other_faces)
    assert len(changed) > 1000
    assert changed[:, 1].min() >= kit_box[0] - kit_box[2] and changed[:, 1].mean() > kit_box[0]

    assert not engine.search(selfie, purpose=PURPOSE).found
    engine.close()
    with Engine.open(data_dir, workers=1) as reopened:
        assert not reopened.search(selfie, purpose=PURPOSE).found
        index_plain = bytes(
            read_encrypted_file(reopened.settings.index_path, reopened.keyring, aad=INDEX_AAD)
        )
    on_disk = _sqlite_bytes(data_dir)
    index_file = reopened.settings.index_path.read_bytes()
    for fid, template in plain.items():
        unit = (template / np.linalg.norm(template)).astype(np.float32)
        for needle in (template.tobytes(), unit.tobytes()):
            assert needle not in on_disk and needle not in index_plain, fid
            assert needle not in index_file
    for blob in sealed:
        assert blob not in on_disk


def test_an_erased_person_stays_erased(
    engine: Engine, selfie: Path, faces_dir: Path, tmp_path: Path
) -> None:
    engine.erase(engine.find_person(selfie))
    kit_dir = faces_dir / "dev" / "images" / "Kit_Harington"
    again = engine.add([kit_dir], source="test")
    assert again.faces_suppressed == 3 and again.images_added == 0
    # Each refused photo is named, so that an operator can check a wrong refusal.
    kit_photos = sorted(str(p) for p in kit_dir.iterdir())
    assert sorted(again.suppressed_photos) == kit_photos
    ingest = engine.audit.entries(action="ingest")[-1].details
    assert ingest["faces_suppressed"] == 3 and sorted(ingest["suppressed_photos"]) == kit_photos
    assert not engine.search(selfie, purpose=PURPOSE).found

    ((entry_id, _, request_ref),) = engine.suppression_list()
    assert request_ref is None  # erased without a request
    with pytest.raises(RightsError, match="reason"):
        engine.remove_suppression(entry_id, reason=" ")
    engine.remove_suppression(entry_id, reason="the person asked to be included again")
    assert engine.audit.entries(action="suppression_removed")
    assert engine.add([kit_dir], source="test").faces_indexed == 3


def test_a_restricted_face_never_appears_until_lifted(engine: Engine, selfie: Path) -> None:
    kit = kit_faces(engine, selfie)
    assert engine.restrict(face_ids=kit, reason="accuracy contested") == 3
    assert not set(kit) & {m.face_id for m in engine.search(selfie, purpose=PURPOSE).matches}
    data_dir = engine.settings.data_dir
    engine.close()
    with Engine.open(data_dir, workers=1) as reopened:
        hits = {m.face_id for m in reopened.search(selfie, purpose=PURPOSE, top_k=50).matches}
        assert not set(kit) & hits
        # Still held: an access request finds restricted faces too.
        assert set(reopened.find_person(selfie).face_ids) == set(kit)
        reopened.restrict(face_ids=kit, reason="resolved", lift=True)
        assert set(kit_faces(reopened, selfie)) == set(kit)


def test_an_objection_restricts_at_once_and_queues_a_review(engine: Engine, selfie: Path) -> None:
    request, restricted = engine.object_to_processing(selfie, contact="kit@example.org")
    assert restricted == 3
    assert not engine.search(selfie, purpose=PURPOSE).found
    (queued,) = engine.requests()
    assert (queued.ref, queued.kind, queued.status) == (request.ref, "objection", "in_review")


def test_retention_purges_only_what_has_expired(
    empty_engine: Engine, gallery_split: tuple[list[Path], list]
) -> None:
    photos = gallery_split[0]
    empty_engine.add_source(
        "short",
        lawful_basis_code="consent",
        special_condition="explicit_consent",
        purpose="event photos",
        retention_days=1,
    )
    consent = empty_engine.add_consent("short", "guests", notice_version="v1")
    empty_engine.add(photos[:3], source="short", consent=consent)
    empty_engine.add(photos[3:6], source="test")  # 30 days
    later = now() + timedelta(days=2)
    report = empty_engine.retention_report(later)
    assert len(report) == 3 and empty_engine.catalog.counts()["images"] == 6
    purged = empty_engine.retention_run(later)
    assert {p.image_id for p in purged} == {p.image_id for p in report}
    assert empty_engine.catalog.counts()["images"] == 3
    assert len(empty_engine.index) == 3
    assert empty_engine.retention_run(later) == []


def test_withdrawing_consent_erases_the_faces_resting_on_it(
    empty_engine: Engine, gallery_split: tuple[list[Path], list]
) -> None:
    empty_engine.add_source(
        "event",
        lawful_basis_code="consent",
        special_condition="explicit_consent",
        purpose="event photos",
        retention_days=30,
    )
    consent = empty_engine.add_consent("event", "guest 0042", notice_version="v3")
    with pytest.raises(RightsError, match="not given for source"):
        empty_engine.add(gallery_split[0][:1], source="test", consent=consent)
    empty_engine.add(gallery_split[0][:2], source="event", consent=consent)
    # A consent source takes no photo without the consent it rests on.
    with pytest.raises(ConsentRequiredError):
        empty_engine.add(gallery_split[0][2:4], source="event")
    empty_engine.add(gallery_split[0][2:4], source="test")
    assert empty_engine.withdraw_consent(consent) == 2
    assert empty_engine.catalog.counts()["images"] == 2 and len(empty_engine.index) == 2
    with pytest.raises(RightsError, match="withdrawn"):
        empty_engine.add(gallery_split[0][4:5], source="event", consent=consent)


def test_requests_carry_the_one_month_deadline(empty_engine: Engine) -> None:
    r = empty_engine.create_request(
        "erasure", contact="a@example.org", received_at=datetime(2026, 1, 31), selfie=b"jpeg"
    )
    assert r.due_at == datetime(2026, 2, 28)
    assert empty_engine.request_selfie(r.ref) == b"jpeg"
    with pytest.raises(RightsError, match="two further months"):
        empty_engine.update_request(r.ref, extend_months=3, reason="complex")
    r = empty_engine.update_request(r.ref, extend_months=2, reason="many sources to search")
    assert r.extended_until == datetime(2026, 4, 28)
    empty_engine.create_request("access", received_at=datetime(2026, 1, 5))
    assert [q.kind for q in empty_engine.requests()] == ["access", "erasure"]
    empty_engine.update_request(r.ref, status="done")
    assert [q.kind for q in empty_engine.requests()] == ["access"]
    # Closed: its photo is destroyed, and it stays closed.
    with pytest.raises(NotFoundError, match="holds no photo"):
        empty_engine.request_selfie(r.ref)
    assert empty_engine.update_request(r.ref, status="done").status == "done"  # no change
    with pytest.raises(RightsError, match="stays closed"):
        empty_engine.update_request(r.ref, status="in_review")
    with pytest.raises(RightsError, match="stays closed"):
        empty_engine.update_request(r.ref, extend_months=1, reason="late")
    entry = empty_engine.request_history(r.ref)[-1]
    assert entry.details["status"] == "done" and entry.details["photo_destroyed"] is True


def test_key_rotation_preserves_every_search_result_and_a_wrong_key_changes_nothing(
    own_key: Engine, selfie: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = own_key
    key_file = Path(os.environ["VULTUS_KEY_FILE"])
    before = [(m.face_id, m.distance) for m in engine.search(selfie, purpose=PURPOSE).matches]
    old_id = engine.keyring.active_id
    old_key = read_key_file(key_file).to_env()
    counts = engine.rotate_keys()
    assert counts["templates"] == engine.catalog.counts()["faces_indexed"]
    assert engine.keyring.active_id != old_id and not engine.keyring.retired_ids
    assert [(m.face_id, m.distance) for m in engine.search(selfie, purpose=PURPOSE).matches] == (
        before
    )
    data_dir = engine.settings.data_dir
    engine.close()
    with Engine.open(data_dir, workers=1) as reopened:
        assert [
            (m.face_id, m.distance) for m in reopened.search(selfie, purpose=PURPOSE).matches
        ] == before

    def state() -> str:
        db = sqlite3.connect(data_dir / "catalog.db")
        dump = "\n".join(db.iterdump())
        db.close()
        index = (data_dir / "index.faiss").read_bytes()
        return hashlib.sha256(dump.encode() + index).hexdigest()

    fingerprint = state()
    monkeypatch.setenv("VULTUS_KEY", old_key)
    with pytest.raises(WrongKeyError, match="does not open this data directory"):
        Engine.open(data_dir, workers=1)
    assert state() == fingerprint


def test_keys_from_the_environment_rotate_when_both_are_given(
    own_key: Engine, selfie: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vultus.crypto import KeyRing

    data_dir = own_key.settings.data_dir
    before = [(m.face_id, m.distance) for m in own_key.search(selfie, purpose=PURPOSE).matches]
    old = read_key_file(Path(os.environ["VULTUS_KEY_FILE"])).to_env()
    own_key.close()
    monkeypatch.setenv("VULTUS_KEY", old)
    with Engine.open(data_dir, workers=1) as engine, pytest.raises(VultusError, match="NEW,OLD"):
        engine.rotate_keys()
    new = KeyRing.generate().to_env()
    monkeypatch.setenv("VULTUS_KEY", f"{new},{old}")
    with Engine.open(data_dir, workers=1) as engine:
        engine.rotate_keys()
    monkeypatch.setenv("VULTUS_KEY", new)
    with Engine.open(data_dir, workers=1) as engine:
        after = [(m.face_id, m.distance) for m in engine.search(selfie, purpose=PURPOSE).matches]
    assert after == before
    monkeypatch.setenv("VULTUS_KEY", old)
    with pytest.raises(WrongKeyError):
        Engine.open(data_dir, workers=1)


def test_a_killed_key_rotation_finishes_on_the_next_run(
    own_key: Engine, selfie: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = own_key
    import vultus.engine.governance as facade

    before = [(m.face_id, m.distance) for m in engine.search(selfie, purpose=PURPOSE).matches]
    real = facade.reencrypt_table
    calls = {"n": 0}

    def dies_on_the_second_table(*args: object, **kwargs: object) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(facade, "reencrypt_table", dies_on_the_second_table)
    with pytest.raises(KeyboardInterrupt):
        engine.rotate_keys()
    monkeypatch.setattr(facade, "reencrypt_table", real)
    data_dir = engine.settings.data_dir
    engine.close()
    with Engine.open(data_dir, workers=1) as resumed:
        assert len(resumed.keyring.retired_ids) == 1  # mid-rotation: both keys in the file
        assert [
            (m.face_id, m.distance) for m in resumed.search(selfie, purpose=PURPOSE).matches
        ] == (before)
        resumed.rotate_keys()
        assert not resumed.keyring.retired_ids
        assert [
            (m.face_id, m.distance) for m in resumed.search(selfie, purpose=PURPOSE).matches
        ] == (before)


def test_an_erasure_killed_after_its_commit_finishes_on_the_next_open(
    engine: Engine, selfie: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = engine.find_person(selfie)
    data_dir = engine.settings.data_dir
    stored = data_dir / "images" / "kit_with_rose.jpg"
    before = stored.read_bytes()

    def killed() -> None:
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(engine, "save_index", killed)
    with pytest.raises(KeyboardInterrupt):
        engine.erase(plan)
    assert stored.read_bytes() == before  # the file work had not run yet
    engine.close()
    with Engine.open(data_dir, workers=1) as reopened:
        assert stored.read_bytes() != before  # finished on open
        assert not reopened.search(selfie, purpose=PURPOSE).found
        assert len(reopened.index) == reopened.catalog.counts()["faces_indexed"]
        assert reopened.audit.verify().ok


def test_an_erasure_says_which_originals_it_left_in_place(
    engine: Engine, selfie: Path, faces_dir: Path
) -> None:
    """The dev photos are the operator's originals under a source that does not let Vultus
    delete them: the erasure leaves them and says so, file by file, in the signed receipt."""
    data_dir = engine.settings.data_dir
    kit_dir = faces_dir / "dev" / "images" / "Kit_Harington"
    originals = sorted(str(p) for p in kit_dir.iterdir() if p != faces_dir / "dev" / KIT_SELFIE)
    stored = str(data_dir / "images" / "kit_with_rose.jpg")

    receipt = engine.erase(engine.find_person(selfie), request_ref="R-TEST")

    assert receipt.faces_erased == 3 and receipt.images_erased == 2
    assert receipt.originals_deleted == [] and receipt.stored_copies_deleted == []
    assert receipt.blurred == [stored] and receipt.copies_blurred == 1
    left = {item["location"]: item["reason"] for item in receipt.left_in_place}
    assert sorted(left) == originals
    assert all("originals_deletable is off" in why for why in left.values())
    assert all(Path(p).exists() for p in originals)  # the operator's files, untouched
    # The file on disk says the same, and its signature covers what was left.
    on_disk = json.loads((data_dir / "receipts" / f"{receipt.receipt_id}.json").read_text())
    assert sorted(i["location"] for i in on_disk["left_in_place"]) == originals
    assert receipt.verify(engine.keyring)
    hidden = dataclasses.replace(receipt, left_in_place=[])
    assert not hidden.verify(engine.keyring)


def test_a_source_that_lets_vultus_delete_originals_loses_them_on_erasure(
    empty_engine: Engine, faces_dir: Path, tmp_path: Path
) -> None:
    """Copies of the photos stand in for an operator's archive that allows deletion."""
    dev = faces_dir / "dev"
    archive = tmp_path / "archive"
    archive.mkdir()
    for name in ("Kit_Harington_2.jpeg", "Kit_Harington_3.jpg"):
        shutil.copy(dev / "images" / "Kit_Harington" / name, archive / name)
    shutil.copy(dev / "extra" / "kit_with_rose.jpg", archive / "kit_with_rose.jpg")
    for person in ("Rose_Leslie", "Alex_Lacamoire"):
        for photo in (dev / "images" / person).iterdir():
            shutil.copy(photo, archive / photo.name)
    empty_engine.add_source(
        "own-archive",
        lawful_basis_code="legitimate_interests",
        special_condition="archiving_research",
        purpose="our own archive",
        retention_days=30,
        originals_deletable=True,
    )
    assert empty_engine.add([archive], source="own-archive").errors == []
    (src,) = [s for s, _, _ in empty_engine.sources() if s.name == "own-archive"]
    assert src.originals_deletable

    receipt = empty_engine.erase(empty_engine.find_person(dev / KIT_SELFIE))

    solo = sorted(str(archive / n) for n in ("Kit_Harington_2.jpeg", "Kit_Harington_3.jpg"))
    assert sorted(receipt.originals_deleted) == solo
    assert not any(Path(p).exists() for p in solo)
    # The photo with Rose stays for her: left in place, and the receipt says why.
    ((item),) = receipt.left_in_place
    assert item["location"] == str(archive / "kit_with_rose.jpg")
    assert "other people" in item["reason"]
    assert (archive / "kit_with_rose.jpg").exists()
    assert len(list(archive.iterdir())) == 1 + 2 + len(
        list((dev / "images" / "Alex_Lacamoire").iterdir())
    )
    assert receipt.verify(empty_engine.keyring)


def test_an_erasure_killed_right_after_its_commit_leaves_its_receipt_on_the_next_open(
    engine: Engine, selfie: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = engine.settings.data_dir
    request = engine.create_request("erasure", contact="kit@example.org")
    plan = engine.find_person(selfie)
    db = sqlite3.connect(data_dir / "catalog.db")
    ids = ",".join(map(str, plan.face_ids))
    sealed = [row[0] for row in db.execute(f"SELECT template FROM faces WHERE id IN ({ids})")]
    db.close()
    commit = engine.catalog.erase_faces

    def commit_then_die(*args: object, **kwargs: object) -> object:
        commit(*args, **kwargs)  # type: ignore[arg-type]
        raise KeyboardInterrupt("killed right after the commit")

    monkeypatch.setattr(engine.catalog, "erase_faces", commit_then_die)
    with pytest.raises(KeyboardInterrupt):
        engine.erase(plan, request_ref=request.ref)
    assert not list((data_dir / "receipts").glob("*.json"))  # nothing written yet
    engine.close()

    with Engine.open(data_dir, workers=1) as reopened:
        (path,) = (data_dir / "receipts").glob("*.json")
        receipt = ErasureReceipt.from_json(json.loads(path.read_text()))
        assert receipt.verify(reopened.keyring)
        assert (receipt.faces_erased, receipt.images_erased, receipt.images_kept_with_others) == (
            3,
            2,
            1,
        )
        assert receipt.request_ref == request.ref and len(receipt.left_in_place) == 2
        assert reopened.request(request.ref).receipt_id == receipt.receipt_id
        db = sqlite3.connect(data_dir / "catalog.db")
        assert db.execute("SELECT request_ref FROM suppression").fetchall() == [(request.ref,)]
        db.close()
        assert not reopened.find_person(selfie).matches
        assert reopened.audit.verify().ok
        on_disk = _sqlite_bytes(data_dir)  # scrubbed on open, as the erasure would have
        assert not any(blob in on_disk for blob in sealed)
    with Engine.open(data_dir, workers=1):  # opened again: still the one receipt
        assert list((data_dir / "receipts").glob("*.json")) == [path]
        assert ErasureReceipt.from_json(json.loads(path.read_text())) == receipt


def test_a_tampered_audit_log_is_detected(engine: Engine, selfie: Path) -> None:
    for _ in range(3):
        engine.search(selfie, purpose=PURPOSE)
    assert engine.audit.verify().ok
    db = sqlite3.connect(engine.settings.data_dir / "catalog.db")
    seq = db.execute("SELECT max(seq) - 1 FROM audit_log").fetchone()[0]
    db.execute("UPDATE audit_log SET result_ids = '[]' WHERE seq = ?", (seq,))
    db.commit()
    db.close()
    report = engine.audit.verify()
    assert not report.ok and any(p.seq == seq and p.kind == "edited" for p in report.problems)


def test_records_of_processing_and_dpia_state_the_facts(engine: Engine, tmp_path: Path) -> None:
    engine.search(engine.settings.data_dir / "images" / "kit_with_rose.jpg", purpose=PURPOSE)
    ropa = engine.report("ropa", tmp_path)
    dpia = engine.report("dpia", tmp_path)
    assert {p.suffix for p in ropa + dpia} == {".md", ".html"}
    text = (tmp_path / "ropa.md").read_text()
    assert "test" in text and "legitimate" in text.lower() and "Art. 9" in text
    draft = (tmp_path / "dpia.md").read_text()
    assert (
        f"{engine.catalog.counts()['faces_indexed']:,}" in draft
        or str(engine.catalog.counts()["faces_indexed"]) in draft
    )
    assert PURPOSE in draft


OLD_PLACEHOLDER = "the controller (set `controller` in vultus.toml)"


def test_packages_and_reports_name_the_controller_or_are_refused(
    engine: Engine, selfie: Path, tmp_path: Path
) -> None:
    """Named in vultus.toml, the controller is what a person reads in every document; unset,
    no document is written, and the operator is told what to set."""
    package, _ = engine.access(engine.review_person(selfie), tmp_path / "package.zip")
    with zipfile.ZipFile(package) as z:
        texts = {name: z.read(name).decode() for name in ("report.html", "README.txt", "data.json")}
    for kind in ("ropa", "dpia"):
        for path in engine.report(kind, tmp_path / "reports"):
            texts[path.name] = path.read_text()
    for name, text in texts.items():
        assert CONTROLLER in text, name
        assert OLD_PLACEHOLDER not in text and "set `controller`" not in text, name

    data_dir = engine.settings.data_dir
    engine.close()
    (data_dir / "vultus.toml").unlink()
    with Engine.open(data_dir, workers=1) as unset:
        assert unset.settings.controller == ""
        exports = len(unset.audit.entries(action="export"))
        with pytest.raises(VultusError) as caught:
            unset.access(unset.review_person(selfie), tmp_path / "unset.zip")
        assert caught.value.code == "controller_unset" and "vultus.toml" in caught.value.message
        with pytest.raises(VultusError) as caught:
            unset.report("dpia", tmp_path / "unset")
        assert caught.value.code == "controller_unset"
        assert not (tmp_path / "unset.zip").exists() and not (tmp_path / "unset").exists()
        assert len(unset.audit.entries(action="export")) == exports


def test_the_dpia_counts_the_faces_erased_not_the_erasures(
    engine: Engine, selfie: Path, tmp_path: Path
) -> None:
    engine.erase(engine.find_person(selfie))  # one erasure of Kit's three faces
    engine.report("dpia", tmp_path)
    assert "Faces erased on request: 3 (in 1 erasure(s))" in (tmp_path / "dpia.md").read_text()


def test_errors_of_rights_requests_are_clear(engine: Engine, faces_dir: Path) -> None:
    with pytest.raises(VultusError, match="2 faces"):
        engine.find_person(faces_dir / "dev" / "extra" / "kit_with_rose.jpg")
    with pytest.raises(VultusError, match="no usable face"):
        engine.find_person(faces_dir / "dev" / "extra" / "dogs.jpg")


def test_configuration_changes_are_audited(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "d", workers=1) as engine:
        assert engine.audit.entries(action="config")[-1].details["change"] == "first_open"
    with Engine.open(tmp_path / "d", workers=1) as engine:  # same settings: nothing new
        assert len(engine.audit.entries(action="config")) == 1
    with Engine.open(tmp_path / "d", workers=1, search_fmr=1e-4) as engine:
        entry = engine.audit.entries(action="config")[-1]
        assert entry.details["settings"] == {"search_fmr": {"from": "0.001", "to": "0.0001"}}
        assert engine.audit.verify().ok


def test_credentials_in_a_server_address_never_reach_the_audit_log(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "d", workers=1) as engine:
        pass
    uri = "https://vultus:s3cret-token@milvus.example:19530"
    with Engine.open(tmp_path / "d", workers=1, index_uri=uri) as engine:
        entry = engine.audit.entries(action="config")[-1]
        assert entry.details["settings"]["index_uri"]["to"] == "https://***@milvus.example:19530"
        assert "s3cret" not in json.dumps([e.details for e in engine.audit.entries()])
