"""File downloads built on demand (access packages): written to a private temporary folder,
streamed to the client, and removed once sent, so no copy of a person's data stays behind."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from fastapi.responses import FileResponse
from starlette.background import BackgroundTask


def temporary_download(
    build: Callable[[Path], Path], *, filename: str, media_type: str
) -> FileResponse:
    """`build(folder)` writes the file inside `folder` and returns its path."""
    folder = Path(tempfile.mkdtemp(prefix="vultus-download-"))
    try:
        path = build(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        path,
        media_type=media_type,
        filename=filename,
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
