"""Encryption at rest: blobs, keys, key files, the canary, rotation of tables and files."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import (
    Column,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    Table,
    create_engine,
    insert,
    select,
)
from sqlalchemy.orm import Session, sessionmaker

from vultus import crypto
from vultus.crypto import (
    KeyRing,
    WrongKeyError,
    check_canary,
    finish_rotation,
    load_keyring,
    make_canary,
    read_encrypted_file,
    read_key_file,
    reencrypt_file,
    reencrypt_table,
    rotated,
    write_encrypted_file,
    write_key_file,
)
from vultus.errors import VultusError

PLAIN = b"a face template, 512 bytes of float32 in real life" * 4


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- blobs ----------------------------------------------------------------------------------------


def test_round_trip_and_aad_binding() -> None:
    ring = KeyRing.generate()
    blob = ring.encrypt(PLAIN, b"faces:7")
    assert ring.decrypt(blob, b"faces:7") == PLAIN
    assert blob[:3] == b"VT1" and len(blob) == len(PLAIN) + crypto.OVERHEAD
    assert ring.key_id_of(blob) == ring.active_id
    # A value copied to another row no longer opens.
    with pytest.raises(WrongKeyError):
        ring.decrypt(blob, b"faces:8")
    assert ring.decrypt(ring.encrypt(b""), b"") == b""


def test_ciphertext_hides_plaintext_and_is_randomised() -> None:
    ring = KeyRing.generate()
    a, b = ring.encrypt(PLAIN), ring.encrypt(PLAIN)
    assert a != b  # fresh nonce each time
    for window in (PLAIN[i : i + 8] for i in range(0, len(PLAIN) - 8, 8)):
        assert window not in a


def test_tampering_with_any_byte_is_detected() -> None:
    ring = KeyRing.generate()
    blob = ring.encrypt(PLAIN, b"ctx")
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(VultusError) as info:
            ring.decrypt(bytes(bad), b"ctx")
        # The magic is a format marker; everything after it is authenticated.
        expected = "corrupt_ciphertext" if i < 3 else "wrong_key"
        assert info.value.code == expected, i
        if i >= 3:
            assert isinstance(info.value, WrongKeyError)
    with pytest.raises(VultusError) as info:
        ring.decrypt(blob[: crypto.OVERHEAD - 1])
    assert info.value.code == "corrupt_ciphertext"
    with pytest.raises(WrongKeyError):
        ring.decrypt(blob[:-1], b"ctx")


def test_blob_under_another_key_names_that_key() -> None:
    mine, theirs = KeyRing.generate(), KeyRing.generate()
    blob = theirs.encrypt(PLAIN)
    with pytest.raises(WrongKeyError) as info:
        mine.decrypt(blob)
    assert info.value.code == "wrong_key"
    assert theirs.active_id in info.value.message
    assert "VULTUS_KEY" in info.value.message  # says where keys come from


def test_key_id_is_sha256_prefix_and_repr_hides_keys() -> None:
    ring = KeyRing.generate()
    key = ring.keys[0]
    assert ring.active_id == hashlib.sha256(b"vultus-key-id" + key).hexdigest()[:8]
    assert ring.encrypt(b"x")[3:7] == bytes.fromhex(ring.active_id)
    text = repr(ring)
    assert ring.active_id in text
    assert key.hex() not in text and crypto._encode_key(key) not in text


def test_bad_key_length_refused() -> None:
    with pytest.raises(VultusError) as info:
        KeyRing(b"short")
    assert info.value.code == "key_invalid"


def test_retired_keys_decrypt_but_need_reencrypt() -> None:
    old = KeyRing.generate()
    blob = old.encrypt(PLAIN, b"a")
    new = rotated(old)
    assert new.active_id != old.active_id
    assert new.retired_ids == [old.active_id]
    assert new.decrypt(blob, b"a") == PLAIN
    assert new.needs_reencrypt(blob)
    assert not new.needs_reencrypt(new.encrypt(PLAIN))
    done = finish_rotation(new)
    assert done.retired_ids == [] and done.active_id == new.active_id
    with pytest.raises(WrongKeyError):
        done.decrypt(blob, b"a")


def test_sign_and_verify() -> None:
    ring = KeyRing.generate()
    sig = ring.sign(b"audit entry 1")
    assert len(sig) == 64 and int(sig, 16) >= 0
    assert ring.verify(b"audit entry 1", sig)
    assert not ring.verify(b"audit entry 2", sig)
    assert not KeyRing.generate().verify(b"audit entry 1", sig)
    # Signed with the raw key instead of the derived subkey: must not verify.
    import hmac

    raw = hmac.new(ring.keys[0], b"audit entry 1", hashlib.sha256).hexdigest()
    assert not ring.verify(b"audit entry 1", raw)
    # Old signatures stay valid during a rotation.
    new = rotated(ring)
    assert new.verify(b"audit entry 1", sig)
    assert new.sign(b"audit entry 1") != sig
    assert not finish_rotation(new).verify(b"audit entry 1", sig)


# -- key files ------------------------------------------------------------------------------------


def test_key_file_written_0600_and_read_back(tmp_path: Path) -> None:
    ring = rotated(KeyRing.generate())
    path = tmp_path / "cfg" / "vultus" / "master.key"
    old_umask = os.umask(0o022)
    try:
        assert write_key_file(path, ring)
    finally:
        os.umask(old_umask)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    back = read_key_file(path)
    assert back.keys == ring.keys
    assert back.active_id == ring.active_id and back.retired_ids == ring.retired_ids
    assert str(path) in back.source
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]  # no temp left behind
    # Overwrite is atomic and in place; overwrite=False keeps what is there.
    other = KeyRing.generate()
    assert not write_key_file(path, other, overwrite=False)
    assert read_key_file(path).keys == ring.keys
    assert write_key_file(path, finish_rotation(ring))
    assert read_key_file(path).keys == ring.keys[:1]


def test_group_readable_key_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    write_key_file(path, KeyRing.generate())
    path.chmod(0o640)
    with pytest.raises(VultusError) as info:
        read_key_file(path)
    assert info.value.code == "key_permissions"
    assert f"chmod 600 {path}" in info.value.message


def test_malformed_key_file_refused_without_echo(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    secretish = "A" * 43
    path.write_text(f"# comment\n\n{secretish}\n")
    path.chmod(0o600)
    with pytest.raises(VultusError) as info:
        read_key_file(path)
    assert info.value.code == "key_invalid"
    assert "line 3" in info.value.message and secretish not in info.value.message
    path.write_text("# only comments\n")
    with pytest.raises(VultusError) as info:
        read_key_file(path)
    assert info.value.code == "key_invalid"


def test_key_file_inside_data_dir_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    inside = data / "keys" / "master.key"
    write_key_file(inside, KeyRing.generate())
    with pytest.raises(VultusError) as info:
        load_keyring(data, key_file=inside, env={})
    assert info.value.code == "key_location"
    assert "backup" in info.value.message
    # Also when reached through a path that only resolves to inside.
    with pytest.raises(VultusError):
        load_keyring(tmp_path / "other" / ".." / "data", key_file=inside, env={})
    # Beside the data directory is fine.
    beside = tmp_path / "master.key"
    write_key_file(beside, KeyRing.generate())
    assert load_keyring(data, key_file=beside, env={}).active_id


def test_env_key_wins_over_file(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    in_file = KeyRing.generate()
    write_key_file(path, in_file)
    in_env = rotated(KeyRing.generate())
    ring = load_keyring(tmp_path / "data", key_file=path, env={"VULTUS_KEY": in_env.to_env()})
    assert ring.keys == in_env.keys
    assert "VULTUS_KEY" in ring.source
    # And VULTUS_KEY_FILE names the file when no key_file is given.
    ring = load_keyring(tmp_path / "data", env={"VULTUS_KEY_FILE": str(path)})
    assert ring.keys == in_file.keys
    with pytest.raises(VultusError) as info:
        load_keyring(tmp_path / "data", env={"VULTUS_KEY": "not-a-key"})
    assert info.value.code == "key_invalid" and "not-a-key" not in info.value.message


def test_missing_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cfg" / "master.key"
    with pytest.raises(VultusError) as info:
        load_keyring(tmp_path / "data", key_file=path, env={})
    assert info.value.code == "key_missing"
    assert str(path) in info.value.message
    assert not path.exists()
    with caplog.at_level(logging.WARNING, logger="vultus.crypto"):
        ring = load_keyring(tmp_path / "data", key_file=path, env={}, create=True)
    assert mode(path) == 0o600
    assert str(path) in caplog.text and "back it up" in caplog.text.lower()
    # The second run reads the key the first one created.
    again = load_keyring(tmp_path / "data", key_file=path, env={}, create=True)
    assert again.keys == ring.keys


def test_default_key_file(tmp_path: Path) -> None:
    assert crypto.default_key_file({"VULTUS_KEY_FILE": str(tmp_path / "k")}) == tmp_path / "k"
    assert crypto.default_key_file({"XDG_CONFIG_HOME": str(tmp_path)}) == (
        tmp_path / "vultus" / "master.key"
    )
    assert crypto.default_key_file({}) == Path.home() / ".config" / "vultus" / "master.key"


# -- canary ---------------------------------------------------------------------------------------


def test_canary_detects_wrong_key() -> None:
    ring = KeyRing.generate()
    canary = make_canary(ring)
    check_canary(ring, canary)
    check_canary(rotated(ring), canary)  # mid-rotation: the retired key still opens it
    with pytest.raises(WrongKeyError) as info:
        check_canary(KeyRing.generate(), canary)
    assert "does not open this data directory" in info.value.message
    assert ring.active_id in info.value.message
    # A canary is not any blob: same key, other context.
    with pytest.raises(WrongKeyError):
        check_canary(ring, ring.encrypt(b"vultus canary v1"))


# -- rotating a table -----------------------------------------------------------------------------

ROWS = 1234


def _row_aad(row: Row[Any]) -> bytes:
    return b"templates:%d" % row.id


def _plain(i: int) -> bytes:
    return b"template %05d " % i + bytes([i % 256]) * 40


@pytest.fixture
def table_db(tmp_path: Path) -> Iterator[tuple[sessionmaker[Session], Table, KeyRing]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'catalog.db'}")
    meta = MetaData()
    table = Table(
        "templates",
        meta,
        Column("id", Integer, primary_key=True),
        Column("template", LargeBinary, nullable=True),
    )
    meta.create_all(engine)
    old = KeyRing.generate()
    rows = [
        {"id": i, "template": None if i % 10 == 0 else old.encrypt(_plain(i), b"templates:%d" % i)}
        for i in range(1, ROWS + 1)
    ]
    with engine.begin() as conn:
        conn.execute(insert(table), rows)
    yield sessionmaker(engine), table, old
    engine.dispose()


def _blobs(factory: sessionmaker[Session], table: Table) -> dict[int, bytes | None]:
    with factory() as s:
        return {r.id: r.template for r in s.execute(select(table))}


def test_reencrypt_table_is_resumable_and_loses_nothing(
    table_db: tuple[sessionmaker[Session], Table, KeyRing],
) -> None:
    factory, table, old = table_db
    new = rotated(old)
    before = _blobs(factory, table)
    non_null = sum(1 for b in before.values() if b is not None)
    assert non_null == ROWS - ROWS // 10

    calls: list[tuple[int, int]] = []

    def killed(seen: int, rewritten: int) -> None:
        calls.append((seen, rewritten))
        raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        reencrypt_table(
            factory, table, "id", "template", new, aad=_row_aad, batch=100, on_progress=killed
        )
    # Exactly the first batch is done and committed; the rest is untouched.
    assert calls == [(100, 100)]
    mid = _blobs(factory, table)
    done = [i for i, b in mid.items() if b is not None and not new.needs_reencrypt(b)]
    assert len(done) == 100 and max(done) < min(
        i for i, b in mid.items() if b is not None and new.needs_reencrypt(b)
    )

    progress: list[tuple[int, int]] = []
    n = reencrypt_table(
        factory,
        table,
        "id",
        "template",
        new,
        aad=_row_aad,
        batch=100,
        on_progress=lambda s, r: progress.append((s, r)),
    )
    assert n == non_null - 100
    assert progress[-1] == (non_null, n)

    after = _blobs(factory, table)
    assert after.keys() == before.keys()
    for i, blob in after.items():
        if before[i] is None:
            assert blob is None
            continue
        assert blob is not None
        assert new.key_id_of(blob) == new.active_id
        # Readable with the new key alone, so the old one can go.
        assert finish_rotation(new).decrypt(blob, b"templates:%d" % i) == _plain(i)

    assert reencrypt_table(factory, table, "id", "template", new, aad=_row_aad) == 0


def test_reencrypt_table_with_wrong_key_changes_nothing(
    table_db: tuple[sessionmaker[Session], Table, KeyRing],
) -> None:
    factory, table, _old = table_db
    before = _blobs(factory, table)
    stranger = KeyRing.generate()
    with pytest.raises(WrongKeyError) as info:
        reencrypt_table(factory, table, "id", "template", rotated(stranger), aad=_row_aad)
    assert "templates row 1" in info.value.message
    assert _blobs(factory, table) == before


def test_reencrypt_table_with_wrong_aad_changes_nothing(
    table_db: tuple[sessionmaker[Session], Table, KeyRing],
) -> None:
    factory, table, old = table_db
    before = _blobs(factory, table)
    with pytest.raises(WrongKeyError):
        reencrypt_table(factory, table, "id", "template", rotated(old), aad=b"fixed", batch=50)
    assert _blobs(factory, table) == before


def test_reencrypt_table_encrypts_legacy_plaintext(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'legacy.db'}")
    meta = MetaData()
    table = Table("t", meta, Column("id", Integer, primary_key=True), Column("b", LargeBinary))
    meta.create_all(engine)
    ring = KeyRing.generate()
    # One plaintext happens to start like a blob: only the caller's predicate can tell.
    plains = {1: b"\x00" * 16, 2: b"VT1" + b"\x01" * 13, 3: b"\x02" * 16}
    with engine.begin() as conn:
        conn.execute(insert(table), [{"id": i, "b": p} for i, p in plains.items()])
    factory = sessionmaker(engine)
    n = reencrypt_table(factory, table, "id", "b", ring, is_plaintext=lambda b: len(b) == 16)
    assert n == 3
    with factory() as s:
        for i, blob in s.execute(select(table.c.id, table.c.b)):
            assert ring.decrypt(blob) == plains[i]
    assert (
        reencrypt_table(factory, table, "id", "b", ring, is_plaintext=lambda b: len(b) == 16) == 0
    )
    engine.dispose()


def test_reencrypt_table_on_the_catalog_suppression_table(tmp_path: Path) -> None:
    from datetime import datetime

    from vultus.catalog.models import Suppression

    engine = create_engine(f"sqlite:///{tmp_path / 's.db'}")
    table = cast(Table, Suppression.__table__)
    table.create(engine)
    factory = sessionmaker(engine)
    old = KeyRing.generate()
    with factory() as s, s.begin():
        s.add(
            Suppression(
                id=1,
                template=old.encrypt(PLAIN, b"suppression"),
                model_id="m",
                purpose="suppress",
                created_at=datetime(2024, 1, 1),
            )
        )
    new = rotated(old)
    # Passed as the ORM gives it (typed FromClause), with fixed aad.
    rewritten = reencrypt_table(
        factory, Suppression.__table__, "id", "template", new, aad=b"suppression"
    )
    assert rewritten == 1
    with factory() as s:
        blob = s.scalars(select(Suppression.template)).one()
    assert finish_rotation(new).decrypt(blob, b"suppression") == PLAIN
    engine.dispose()


# -- encrypted files ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 64 * 5, 1000])
def test_encrypted_file_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr(crypto, "_FILE_CHUNK", 64)  # many chunks from a small payload
    ring = KeyRing.generate()
    data = os.urandom(size)
    path = tmp_path / "index.faiss"
    write_encrypted_file(path, data, ring, aad=b"index")
    assert mode(path) == 0o600
    assert crypto.is_encrypted_file(path)
    assert read_encrypted_file(path, ring, aad=b"index") == data
    if size >= 16:
        assert data[:16] not in path.read_bytes()


def test_encrypted_file_detects_tampering_truncation_and_wrong_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crypto, "_FILE_CHUNK", 64)
    ring = KeyRing.generate()
    path = tmp_path / "index.faiss"
    write_encrypted_file(path, os.urandom(300), ring)
    sealed = path.read_bytes()
    chunk = 64 + 16
    head = crypto._FILE_HEAD.size
    cases = {
        "flip": sealed[:100] + bytes([sealed[100] ^ 1]) + sealed[101:],
        "drop last chunk": sealed[: head + 3 * chunk],
        "drop a middle chunk": sealed[: head + chunk] + sealed[head + 2 * chunk :],
        "swap chunks": sealed[:head]
        + sealed[head + chunk : head + 2 * chunk]
        + sealed[head : head + chunk]
        + sealed[head + 2 * chunk :],
        "appended": sealed + b"\x00" * 20,
    }
    for name, bad in cases.items():
        path.write_bytes(bad)
        with pytest.raises(VultusError, match=str(path)):
            read_encrypted_file(path, ring)
        assert name
    path.write_bytes(sealed)
    with pytest.raises(WrongKeyError) as info:
        read_encrypted_file(path, KeyRing.generate())
    assert ring.active_id in info.value.message
    path.write_bytes(b"FAISS-ish plaintext")
    assert not crypto.is_encrypted_file(path)
    with pytest.raises(VultusError) as err:
        read_encrypted_file(path, ring)
    assert err.value.code == "corrupt_ciphertext"


def test_reencrypt_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crypto, "_FILE_CHUNK", 64)
    old = KeyRing.generate()
    data = os.urandom(500)
    path = tmp_path / "index.faiss"
    write_encrypted_file(path, data, old, aad=b"index")
    new = rotated(old)
    assert reencrypt_file(path, new, aad=b"index")
    assert crypto.encrypted_file_key_id(path) == new.active_id
    assert read_encrypted_file(path, finish_rotation(new), aad=b"index") == data
    assert not reencrypt_file(path, new, aad=b"index")
