"""Writing files whole or not at all. Every file Vultus writes (index, calibration, reports,
packages, uploads, receipts, models) goes through here, so a crash leaves the old file or the
new one, never half of either."""

from __future__ import annotations

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
