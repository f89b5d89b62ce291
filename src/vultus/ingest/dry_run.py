"""`vultus add --dry-run`: what an ingest would read, skip and find already held, counted from
the files and their headers alone. No face model is loaded and nothing is written, so that a
dry run over a large folder takes the time to hash it, not the time to analyse it.

What it cannot know without analysing (faces found, faces refused by the suppression list,
damage past an image's header) is left to the real run, and its summary says so.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vultus.errors import DecodeError, SourceError
from vultus.ingest.batches import (
    BadItem,
    IngestSummary,
    Item,
    Progress,
    chunked,
    item_error,
)
from vultus.pipeline.decode import inspect_image, read_file
from vultus.storage import is_s3, read_location


@dataclass
class _Count:
    files: int = 0
    new: int = 0
    held: int = 0
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    multi_frame: list[tuple[str, int]] = field(default_factory=list)


def count_items(
    items: Iterable[Item | BadItem],
    sources: Sequence[str],
    *,
    known_hashes: Callable[[Iterable[str]], set[str]],
    max_pixels: int,
    endpoint_url: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    total: int | None = None,
    origin: str | None = None,
) -> list[IngestSummary]:
    """One summary per source (in `sources`' order): files seen, photos that would be read
    (`images_added`), photos already held by content hash (`images_duplicate`, a copy met
    twice in the run counts once), and what would be skipped, each with its reason."""
    counts = {name: _Count() for name in sources}
    progress = Progress(files_total=total)
    seen: set[str] = set()
    for chunk in chunked(items):
        read: list[tuple[Item, str, int]] = []
        for item in chunk:
            count = counts[item.source if item.source in counts else sources[0]]
            count.files += 1
            progress.files_done += 1
            if isinstance(item, BadItem):
                count.errors.append(item_error(item, origin))
                continue
            try:
                data = (
                    read_location(item.location, endpoint_url=endpoint_url)
                    if is_s3(item.location)
                    else read_file(Path(item.location))
                )
                header = inspect_image(data, item.location, max_pixels=max_pixels)
            except (DecodeError, SourceError) as exc:
                failure = (item.location, exc.code, exc.message)
                count.errors.append(item_error(item, origin, failure))
                continue
            read.append((item, hashlib.sha256(data).hexdigest(), header.frames))
        held = known_hashes(sha for _, sha, _ in read)
        for item, sha, frames in read:
            count = counts[item.source if item.source in counts else sources[0]]
            if sha in held or sha in seen:
                count.held += 1
                continue
            seen.add(sha)
            count.new += 1
            if frames > 1:
                count.multi_frame.append((item.location, frames))
        if on_progress:
            on_progress(progress)
    seconds = max(1e-9, time.monotonic() - progress.started)
    return [
        IngestSummary(
            run_id=None,
            source=name,
            files_seen=c.files,
            images_added=c.new,
            images_duplicate=c.held,
            images_no_face=0,
            faces_indexed=0,
            faces_skipped=0,
            faces_suppressed=0,
            skip_reasons={},
            errors=c.errors,
            seconds=seconds,
            dry_run=True,
            multi_frame=c.multi_frame,
        )
        for name, c in counts.items()
    ]
