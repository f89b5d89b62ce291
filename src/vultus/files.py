"""Writing files whole or not at all. Every file Vultus writes (index, calibration, reports,
packages, uploads, receipts, models) goes through here, so a crash leaves the old file or the
new one, never half of either."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (the rename lives in the directory's entry)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the rename still happened
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: Path, *, mode: int = 0o600) -> Iterator[BinaryIO]:
    """Yield a private temporary file beside `path`; on success it is fsynced and renamed over
    `path`. The default 0600 suits what Vultus mostly writes: biometric and personal data."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if mode != 0o600:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes | str, *, mode: int = 0o600) -> None:
    with atomic_file(path, mode=mode) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)


def private_dir(path: Path) -> Path:
    """Create a folder that only its owner can enter (personal data lies below it). An
    existing folder keeps the mode its operator gave it."""
    path = Path(path)
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass  # made by a process beside this one
        else:
            os.chmod(path, 0o700)  # mkdir's mode is narrowed by the umask, never widened: exact
    return path


def private_file(path: Path) -> Path:
    """Create an empty file only its owner can read, unless it exists: a database that its
    library would otherwise create with the umask's mode (often world-readable)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    os.close(fd)
    return path


@contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[int]:
    """Hold an advisory lock on `path` (created 0600) between processes: exclusive, or shared
    with other shared holders. Blocks until it is granted; the kernel releases it if the
    process dies. Per open file, so two holders in one process exclude each other too."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def build_in_private_folder(build: Callable[[Path], Path]) -> tuple[Path, Path]:
    """Run `build(folder)` in a new private temporary folder and return (the file it wrote,
    the folder). For downloads built on demand (access packages): the caller removes the
    folder once the file is sent, so no copy of a person's data stays behind; a failed build
    removes it at once."""
    folder = Path(tempfile.mkdtemp(prefix="vultus-download-"))
    try:
        return build(folder), folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
