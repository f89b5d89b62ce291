"""Videos into catalog records: one image row of kind "video" per file, one face per track.

A video is written in one transaction with all its tracks, like a photo with its faces: a
run killed in the middle of a video leaves nothing of it, and the next run (which finds its
hash unknown) analyses it again from the start. No track is ever written twice.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from vultus.errors import VultusError
from vultus.ingest.batches import new_face
from vultus.pipeline.analyse import FacePipeline
from vultus.pipeline.footage import AnalysedVideo, VideoProgress, analyse_video
from vultus.pipeline.tracking import TrackRules
from vultus.pipeline.video import is_video, looks_like_video

if TYPE_CHECKING:
    from vultus.catalog import NewImage


def is_video_work(location: str, data: bytes | None) -> bool:
    """A video by its name, or (bytes fetched without a telling name) by its signature."""
    return is_video(location) or (data is not None and looks_like_video(data))


def to_new_video(location: str, analysed: AnalysedVideo) -> NewImage:
    from vultus.catalog import NewImage
    from vultus.catalog.records import NewTrack

    faces = []
    for track in analysed.tracks:
        best, fused = track.best, track.fused()
        span = NewTrack(
            start_s=round(track.start_s, 3),
            end_s=round(track.end_s, 3),
            best_s=round(track.best_s, 3),
            detections=track.detections,
            boxes=[list(b) for b in track.boxes],
            crop=track.crop,
            crop_box=track.crop_box,
        )
        faces.append(new_face(best, fused, None if fused is not None else best.skip_reason, span))
    info = analysed.info
    return NewImage(
        path=location,
        sha256=info.sha256,
        size_bytes=info.size_bytes,
        width=info.width,
        height=info.height,
        format=info.format,
        faces=faces,
        kind="video",
        duration_s=round(info.duration_s if info.duration_s else analysed.seconds, 3),
    )


def ingest_video(
    pipeline: FacePipeline,
    location: str,
    data: bytes | None,
    *,
    rules: TrackRules,
    every_s: float,
    cut_threshold: float,
    on_progress: Callable[[VideoProgress], None] | None = None,
    guard: Callable[[], AbstractContextManager[object]],
) -> tuple[NewImage | None, list[tuple[str, str, str]]]:
    """The video's record, and the (location, code, message) of what went wrong: a file that
    cannot be read gives no record; one whose data is damaged part-way gives the record of
    what decoded before the damage, and an error that says where it stopped."""
    try:
        analysed = analyse_video(
            pipeline,
            data if data is not None else Path(location),
            rules=rules,
            every_s=every_s,
            cut_threshold=cut_threshold,
            location=location,
            on_progress=on_progress,
            guard=guard,
        )
    except VultusError as exc:
        message = exc.message.replace("the video data", location, 1)
        return None, [(location, exc.code, message)]
    except Exception:  # one bad file must never stop a run
        return None, [(location, "internal_error", f"{location}: unexpected failure")]
    errors = []
    if analysed.stopped_at is not None:
        of = f" of {analysed.info.duration_s:.1f} s" if analysed.info.duration_s else ""
        errors.append(
            (
                location,
                "video_truncated",
                f"{location}: damaged data stopped decoding at {analysed.stopped_at:.1f} s{of} "
                f"({analysed.stop_reason}); the faces before that point are indexed, the rest "
                "of the file is not",
            )
        )
    return to_new_video(location, analysed), errors
