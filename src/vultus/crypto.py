"""Encryption at rest for biometric templates (GDPR Art. 32): AES-256-GCM under a master key.

Every encrypted value is self-describing: it names the key it was sealed under. That is what
makes key rotation safe to kill and resume: a rotation only rewrites values that do not yet name
the active key, so running it again finishes the job and never touches a value twice.

The key lives outside the data directory (a key file with 0600 permissions, or the VULTUS_KEY
environment variable), so that a copy or backup of the data directory does not carry its key.

A rotation, as the Engine runs it:

1. ``new = rotated(old)`` and ``write_key_file(path, new)`` BEFORE any data changes: from then on
   the key file opens both old and new data, so a crash at any later point loses nothing.
2. ``reencrypt_table`` for every encrypted column, ``reencrypt_file`` for the index file, and a
   fresh canary (``make_canary``).
3. Once nothing needs the old keys: ``write_key_file(path, finish_rotation(new))``.

Resuming a killed rotation is step 2 and 3 again, with the key ring read from the file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import CursorResult, Row, TableClause, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import FromClause

from vultus.errors import VultusError
from vultus.files import atomic_file, fsync_dir

log = logging.getLogger(__name__)

KEY_BYTES = 32  # AES-256
KEY_ENV = "VULTUS_KEY"
KEY_FILE_ENV = "VULTUS_KEY_FILE"

MAGIC = b"VT1"
_KEY_ID_BYTES = 4
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HEADER_BYTES = len(MAGIC) + _KEY_ID_BYTES + _NONCE_BYTES
OVERHEAD = _HEADER_BYTES + _TAG_BYTES  # bytes an encrypted blob adds to its plaintext

# Files (the vector index) can outgrow what one AES-GCM call accepts (2**31 - 1 bytes), so they
# are sealed in chunks. Each chunk's nonce holds its position and its AAD says whether it is the
# last, so reordered, dropped or truncated chunks fail authentication.
FILE_MAGIC = b"VTF1"
_FILE_HEAD = struct.Struct(">4s4sI8s")  # magic, key id, chunk size, nonce prefix
_FILE_CHUNK = 8 * 1024 * 1024
_MAX_FILE_CHUNK = 1 << 30

CANARY_AAD = b"vultus-canary"
_CANARY_PLAINTEXT = b"vultus canary v1: this data directory opens with this key"
_SIGNING_INFO = b"vultus-signing"
_KEY_ID_PREFIX = b"vultus-key-id"

_WHERE_KEYS_COME_FROM = (
    f"Vultus reads keys from ${KEY_ENV} if set, else from the key file named by ${KEY_FILE_ENV}, "
    "else ~/.config/vultus/master.key"
)


class WrongKeyError(VultusError):
    """Data was sealed under a key that is not in use, or failed authentication."""

    code = "wrong_key"


def key_id(key: bytes) -> str:
    """A short public name for a key: safe to log and to store beside the data."""
    return hashlib.sha256(_KEY_ID_PREFIX + key).hexdigest()[: 2 * _KEY_ID_BYTES]


def _corrupt(what: str) -> VultusError:
    return VultusError(f"encrypted data is damaged: {what}", code="corrupt_ciphertext")


def _parse_header(blob: bytes) -> tuple[bytes, bytes]:
    """(raw key id, nonce) of a blob; raises corrupt_ciphertext for anything not a blob."""
    if len(blob) < OVERHEAD:
        raise _corrupt(f"{len(blob)} bytes is shorter than the smallest encrypted value")
    if bytes(blob[: len(MAGIC)]) != MAGIC:
        raise _corrupt("it does not start with the Vultus ciphertext marker")
    kid = bytes(blob[len(MAGIC) : len(MAGIC) + _KEY_ID_BYTES])
    nonce = bytes(blob[len(MAGIC) + _KEY_ID_BYTES : _HEADER_BYTES])
    return kid, nonce


class KeyRing:
    """One active key, which seals everything new, and retired keys, which only open old data
    while a rotation is under way."""

    def __init__(
        self, active: bytes, retired: Sequence[bytes] = (), *, source: str = "an in-memory key"
    ) -> None:
        keys: list[bytes] = []
        for key in (active, *retired):
            if len(key) != KEY_BYTES:
                raise VultusError(
                    f"a key must be {KEY_BYTES} bytes, not {len(key)}", code="key_invalid"
                )
            if key not in keys:
                keys.append(bytes(key))
        self._keys = tuple(keys)
        self._by_id: dict[bytes, bytes] = {}
        for key in self._keys:
            raw_id = bytes.fromhex(key_id(key))
            if raw_id in self._by_id:
                # 1 in 4 billion, but a blob must never be ambiguous about its key.
                raise VultusError(
                    f"two different keys share the id {raw_id.hex()}; generate another key",
                    code="key_invalid",
                )
            self._by_id[raw_id] = key
        self._active_raw_id = bytes.fromhex(key_id(self._keys[0]))
        self._aead: dict[bytes, AESGCM] = {}
        self._signing: dict[bytes, bytes] = {}
        self.source = source

    @classmethod
    def generate(cls) -> KeyRing:
        return cls(AESGCM.generate_key(bit_length=8 * KEY_BYTES), source="a newly generated key")

    # -- identity ----------------------------------------------------------------------------
    @property
    def active_id(self) -> str:
        return self._active_raw_id.hex()

    @property
    def retired_ids(self) -> list[str]:
        return [key_id(k) for k in self._keys[1:]]

    @property
    def keys(self) -> tuple[bytes, ...]:
        """Raw key material, active first. Only for writing the key file."""
        return self._keys

    def __repr__(self) -> str:
        # Never the key material: a key ring ends up in tracebacks and debug logs.
        return f"KeyRing(active={self.active_id}, retired={self.retired_ids}, source={self.source})"

    def to_env(self) -> str:
        """The key ring as a VULTUS_KEY value."""
        return ",".join(_encode_key(k) for k in self._keys)

    # -- blobs -------------------------------------------------------------------------------
    def _cipher(self, raw_id: bytes) -> AESGCM:
        aead = self._aead.get(raw_id)
        if aead is None:
            aead = self._aead[raw_id] = AESGCM(self._by_id[raw_id])
        return aead

    def _unknown_key(self, needed: str, what: str = "this data") -> WrongKeyError:
        return WrongKeyError(
            f"{what} was encrypted under key id {needed}, which is not among the keys in use "
            f"({', '.join(key_id(k) for k in self._keys)}, from {self.source}). "
            f"{_WHERE_KEYS_COME_FROM}; point it at the key with id {needed} (from your backup)."
        )

    def _failed_auth(self, kid: str, what: str = "this data") -> WrongKeyError:
        return WrongKeyError(
            f"{what} names key id {kid} but does not authenticate under it: it was altered or "
            f"damaged, or the key from {self.source} is not the key it was written with. "
            f"{_WHERE_KEYS_COME_FROM}."
        )

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        """Seal under the active key. `aad` binds the value to its context (e.g. its row), so a
        sealed value copied elsewhere no longer opens; the same `aad` must be given to decrypt."""
        nonce = os.urandom(_NONCE_BYTES)
        header = MAGIC + self._active_raw_id + nonce
        try:
            sealed = self._cipher(self._active_raw_id).encrypt(nonce, plaintext, header + aad)
        except OverflowError as exc:
            raise VultusError(
                f"{len(plaintext)} bytes is too large for one encrypted value; "
                "use write_encrypted_file",
                code="too_large",
            ) from exc
        return header + sealed

    def decrypt(self, blob: bytes, aad: bytes = b"") -> bytes:
        raw_id, nonce = _parse_header(blob)
        if raw_id not in self._by_id:
            raise self._unknown_key(raw_id.hex())
        try:
            return self._cipher(raw_id).decrypt(
                nonce, bytes(blob[_HEADER_BYTES:]), bytes(blob[:_HEADER_BYTES]) + aad
            )
        except InvalidTag:
            raise self._failed_auth(raw_id.hex()) from None

    def _key(self, raw_id: bytes) -> bytes | None:
        return self._by_id.get(raw_id)

    def key_id_of(self, blob: bytes) -> str:
        return _parse_header(blob)[0].hex()

    def needs_reencrypt(self, blob: bytes) -> bool:
        return _parse_header(blob)[0] != self._active_raw_id

    def can_open(self, blob: bytes) -> bool:
        """Whether `blob` is a Vultus blob under one of these keys (no authentication)."""
        try:
            raw_id, _ = _parse_header(blob)
        except VultusError:
            return False
        return raw_id in self._by_id

    # -- signatures --------------------------------------------------------------------------
    def _signing_key(self, key: bytes) -> bytes:
        # A derived subkey: the AES key itself is never used for a second purpose.
        sub = self._signing.get(key)
        if sub is None:
            hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SIGNING_INFO)
            sub = self._signing[key] = hkdf.derive(key)
        return sub

    def sign(self, data: bytes) -> str:
        return hmac.new(self._signing_key(self._keys[0]), data, hashlib.sha256).hexdigest()

    def verify(self, data: bytes, signature: str) -> bool:
        ok = False
        for key in self._keys:
            expected = hmac.new(self._signing_key(key), data, hashlib.sha256).hexdigest()
            # No early exit: the time taken must not say which key matched.
            ok |= hmac.compare_digest(expected, signature)
        return ok


# -- key files and the environment ---------------------------------------------------------------


def _encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode("ascii")


def _decode_key(text: str) -> bytes | None:
    if len(text) != 44:
        return None
    try:
        key = base64.b64decode(text, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == KEY_BYTES else None


def default_key_file(env: Mapping[str, str] = os.environ) -> Path:
    """$VULTUS_KEY_FILE, else master.key in the user's config directory (never the data dir)."""
    named = env.get(KEY_FILE_ENV)
    if named:
        return Path(named).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "vultus" / "master.key"


def _key_file_text(keyring: KeyRing) -> str:
    lines = [
        "# Vultus master key. Back it up apart from the data directory: without it the",
        "# templates cannot be read. First key: active; any others: retired (kept while a",
        "# key rotation is under way, to read data not yet re-encrypted).",
    ]
    for i, key in enumerate(keyring.keys):
        lines.append(f"# key id {key_id(key)} ({'active' if i == 0 else 'retired'})")
        lines.append(_encode_key(key))
    return "\n".join(lines) + "\n"


def write_key_file(path: Path, keyring: KeyRing, *, overwrite: bool = True) -> bool:
    """Write the key file atomically: readers see the old file or the new one, never a part.

    With `overwrite=False` an existing file is left alone and False is returned: two processes
    creating a key at once must not each seal data under a key only one of them kept.
    """
    path = Path(path).expanduser()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), 0o600)  # mkstemp already does; the umask never widens it
            fh.write(_key_file_text(keyring))
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic create-if-absent, unlike os.replace
            except FileExistsError:
                return False
        fsync_dir(path.parent)
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def read_key_file(path: Path) -> KeyRing:
    path = Path(path).expanduser()
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise VultusError(f"the key file {path} does not exist", code="key_missing") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise VultusError(f"cannot read the key file {path}: {exc}", code="key_invalid") from exc
    if os.name == "posix" and st.st_mode & 0o077:
        raise VultusError(
            f"the key file {path} can be read by other users (mode {st.st_mode & 0o777:o}); "
            f"run `chmod 600 {path}`",
            code="key_permissions",
        )
    keys: list[bytes] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key = _decode_key(line)
        if key is None:
            # Never echo the line: it may be (most of) a key.
            raise VultusError(
                f"line {number} of the key file {path} is not a key: expected 44 characters of "
                f"urlsafe base64 ({KEY_BYTES} bytes)",
                code="key_invalid",
            )
        keys.append(key)
    if not keys:
        raise VultusError(f"the key file {path} holds no key", code="key_invalid")
    return KeyRing(keys[0], keys[1:], source=f"the key file {path}")


def _keys_from_env(value: str) -> KeyRing:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    keys: list[bytes] = []
    for number, part in enumerate(parts, start=1):
        key = _decode_key(part)
        if key is None:
            raise VultusError(
                f"key {number} in ${KEY_ENV} is not a key: expected 44 characters of urlsafe "
                f"base64 ({KEY_BYTES} bytes), comma-separated, active key first",
                code="key_invalid",
            )
        keys.append(key)
    if not keys:
        raise VultusError(f"${KEY_ENV} is set but holds no key", code="key_invalid")
    return KeyRing(keys[0], keys[1:], source=f"the environment variable {KEY_ENV}")


def _inside(path: Path, directory: Path) -> bool:
    # Both the path as written and as resolved: a symlink must not smuggle either way.
    for p, d in ((path.absolute(), directory.absolute()), (path.resolve(), directory.resolve())):
        if p == d or p.is_relative_to(d):
            return True
    return False


def load_keyring(
    data_dir: Path,
    *,
    key_file: Path | None = None,
    env: Mapping[str, str] = os.environ,
    create: bool = False,
) -> KeyRing:
    """The key ring for a data directory: $VULTUS_KEY if set, else the key file.

    With `create`, a missing key file is generated (a new data directory's first run).
    """
    if env.get(KEY_ENV):
        return _keys_from_env(env[KEY_ENV])
    path = Path(key_file).expanduser() if key_file is not None else default_key_file(env)
    data_dir = Path(data_dir).expanduser()
    if _inside(path, data_dir):
        raise VultusError(
            f"the key file {path} is inside the data directory {data_dir}. The key must be kept "
            "apart from the data it protects, or every copy and backup of the data directory "
            f"carries its own key. Move it elsewhere (default: ~/.config/vultus/master.key) and "
            f"set ${KEY_FILE_ENV} to it.",
            code="key_location",
        )
    if path.exists():
        return read_key_file(path)
    if not create:
        raise VultusError(
            f"no encryption key: {path} does not exist and ${KEY_ENV} is not set. "
            f"{_WHERE_KEYS_COME_FROM}. If this data directory was encrypted elsewhere, restore "
            "its key file from your backup.",
            code="key_missing",
        )
    if write_key_file(path, KeyRing.generate()):
        log.warning(
            "created a new encryption key at %s. Back it up now, apart from the data directory: "
            "losing it loses every template encrypted under it.",
            path,
        )
    return read_key_file(path)  # whichever key won a creation race


# -- canary ---------------------------------------------------------------------------------------


def make_canary(keyring: KeyRing) -> bytes:
    """A small known value sealed under the active key, stored with the data, so that a wrong
    key is noticed before anything is read, written or re-encrypted."""
    return keyring.encrypt(_CANARY_PLAINTEXT, CANARY_AAD)


def check_canary(keyring: KeyRing, blob: bytes) -> None:
    kid = keyring.key_id_of(blob)
    message = (
        f"the key in use does not open this data directory; it was encrypted under key id "
        f"{kid}, and the keys in use are {', '.join(key_id(k) for k in keyring.keys)} (from "
        f"{keyring.source}). {_WHERE_KEYS_COME_FROM}; point it at the key with id {kid}. "
        "Nothing was changed."
    )
    try:
        plain = keyring.decrypt(blob, CANARY_AAD)
    except WrongKeyError:
        raise WrongKeyError(message) from None
    if not hmac.compare_digest(plain, _CANARY_PLAINTEXT):
        raise _corrupt("the key check value holds unexpected content")


# -- rotation -------------------------------------------------------------------------------------


def rotated(keyring: KeyRing) -> KeyRing:
    """A new active key; every current key retired, so that all existing data still opens."""
    fresh = KeyRing.generate()
    return KeyRing(fresh.keys[0], keyring.keys, source=keyring.source)


def finish_rotation(keyring: KeyRing) -> KeyRing:
    """Only the active key. Call once nothing is sealed under a retired key any more."""
    return KeyRing(keyring.keys[0], source=keyring.source)


def reencrypt_table(
    session_factory: Callable[[], Session],
    table: FromClause,
    pk_column: str,
    blob_column: str,
    keyring: KeyRing,
    *,
    aad: Callable[[Row[Any]], bytes] | bytes = b"",
    batch: int = 500,
    on_progress: Callable[[int, int], None] | None = None,
    is_plaintext: Callable[[bytes], bool] | None = None,
) -> int:
    """Re-encrypt under the active key every non-null `blob_column` value that is not under it.

    Walks rows by primary key, one transaction per batch, so a kill loses at most the batch in
    flight and a rerun finishes the job (done rows already name the active key). Returns the
    number of values rewritten. `aad` is fixed bytes or a function of the row (then the whole row
    is read). `on_progress(values_seen, rewritten)` runs after each committed batch.

    `is_plaintext` marks values still stored in the clear (a catalog written before encryption),
    which are sealed as they are. It must be exact, e.g. `lambda b: len(b) == 4 * dim`: a guess
    from the content alone would mistake about one template in 2**24 for ciphertext.
    """
    if not isinstance(table, TableClause):
        raise TypeError(f"reencrypt_table needs a table, not {type(table).__name__}")
    if batch < 1:
        raise ValueError("batch must be at least 1")
    pk, col = table.c[pk_column], table.c[blob_column]
    columns: Iterable[Any] = [table] if callable(aad) else [pk, col]
    seen = rewritten = 0
    last: Any = None
    while True:
        with session_factory() as session, session.begin():
            query = select(*columns).where(col.is_not(None)).order_by(pk).limit(batch)
            if last is not None:
                query = query.where(pk > last)
            rows = session.execute(query).all()
            if not rows:
                break
            for row in rows:
                key, old = row._mapping[pk], row._mapping[col]
                plaintext = is_plaintext is not None and is_plaintext(bytes(old))
                if not plaintext and keyring.can_open(old) and not keyring.needs_reencrypt(old):
                    continue
                row_aad = aad(row) if callable(aad) else aad
                try:
                    plain = bytes(old) if plaintext else keyring.decrypt(old, row_aad)
                except VultusError as exc:
                    # Same error, with the row that has it; the batch rolls back, nothing changes.
                    raise type(exc)(
                        f"{table.name} row {key}: {exc.message}", code=exc.code
                    ) from exc
                # Compare-and-set: a value a concurrent writer replaced meanwhile is its to keep.
                result = session.execute(
                    update(table)
                    .where(pk == key, col == old)
                    .values({blob_column: keyring.encrypt(plain, row_aad)})
                )
                rewritten += cast("CursorResult[Any]", result).rowcount
            seen += len(rows)
            last = rows[-1]._mapping[pk]
        if on_progress is not None:
            on_progress(seen, rewritten)
    return rewritten


# -- encrypted files (the vector index) -----------------------------------------------------------


def _chunk_aad(head: bytes, aad: bytes, index: int, final: bool) -> bytes:
    return head + aad + struct.pack(">I?", index, final)


def write_encrypted_file(
    path: Path, data: bytes | bytearray | memoryview, keyring: KeyRing, *, aad: bytes = b""
) -> None:
    """Seal `data` under the active key into `path`, atomically (a 0600 temp file, fsynced,
    renamed over the old one), so a crash leaves the old file or the new one."""
    path = Path(path)
    view = memoryview(data).cast("B")
    raw_id = bytes.fromhex(keyring.active_id)
    prefix = os.urandom(8)
    head = _FILE_HEAD.pack(FILE_MAGIC, raw_id, _FILE_CHUNK, prefix)
    aead = AESGCM(keyring.keys[0])
    with atomic_file(path) as fh:
        fh.write(head)
        # Always at least one chunk, so that an empty file body cannot pass as empty data.
        n = max(1, -(-len(view) // _FILE_CHUNK))
        for i in range(n):
            part = view[i * _FILE_CHUNK : (i + 1) * _FILE_CHUNK]
            nonce = prefix + struct.pack(">I", i)
            fh.write(aead.encrypt(nonce, bytes(part), _chunk_aad(head, aad, i, i == n - 1)))


def is_encrypted_file(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(FILE_MAGIC)) == FILE_MAGIC


def _read_file_head(path: Path, fh: Any) -> tuple[bytes, bytes, int, bytes]:
    head = fh.read(_FILE_HEAD.size)
    if len(head) < _FILE_HEAD.size or head[: len(FILE_MAGIC)] != FILE_MAGIC:
        raise _corrupt(f"{path} is not a Vultus encrypted file")
    _, raw_id, chunk, prefix = _FILE_HEAD.unpack(head)
    if not 0 < chunk <= _MAX_FILE_CHUNK:
        raise _corrupt(f"{path} has an impossible chunk size")
    return head, raw_id, chunk, prefix


def encrypted_file_key_id(path: Path) -> str:
    with open(path, "rb") as fh:
        return _read_file_head(Path(path), fh)[1].hex()


def read_encrypted_file(path: Path, keyring: KeyRing, *, aad: bytes = b"") -> bytearray:
    """Decrypt a file written by write_encrypted_file into memory (never to disk). Holds the
    plaintext plus one chunk."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head, raw_id, chunk, prefix = _read_file_head(path, fh)
        key = keyring._key(raw_id)
        if key is None:
            raise keyring._unknown_key(raw_id.hex(), what=str(path))
        aead = AESGCM(key)
        body = size - _FILE_HEAD.size
        sealed_chunk = chunk + _TAG_BYTES
        n = max(1, -(-body // sealed_chunk))
        last_len = body - (n - 1) * sealed_chunk
        if last_len < _TAG_BYTES:
            raise _corrupt(f"{path} is truncated")
        out = bytearray(body - n * _TAG_BYTES)
        for i in range(n):
            sealed = fh.read(sealed_chunk if i < n - 1 else last_len)
            try:
                plain = aead.decrypt(
                    prefix + struct.pack(">I", i), sealed, _chunk_aad(head, aad, i, i == n - 1)
                )
            except InvalidTag:
                raise keyring._failed_auth(raw_id.hex(), what=str(path)) from None
            out[i * chunk : i * chunk + len(plain)] = plain
    return out


def reencrypt_file(path: Path, keyring: KeyRing, *, aad: bytes = b"") -> bool:
    """Re-seal a file under the active key if it is not already; True if it was rewritten."""
    if encrypted_file_key_id(path) == keyring.active_id:
        return False
    write_encrypted_file(path, read_encrypted_file(path, keyring, aad=aad), keyring, aad=aad)
    return True
