"""A video end to end: sampled frames, their faces (detected and embedded in batches), and the
face tracks that link them. The video's counterpart of `FacePipeline.analyse`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from vultus.pipeline.analyse import AnalysedFace, FacePipeline
from vultus.pipeline.tracking import Track, Tracker, TrackRules
from vultus.pipeline.video import SampledFrame, VideoInfo, VideoReader

# Sampled frames detected and embedded together: one embedding batch for their faces, and
# the memory of a few frames.
FRAME_BATCH = 4


@dataclass(frozen=True)
class VideoProgress:
    location: str
    seconds_done: float
    duration_s: float | None


@dataclass
class AnalysedVideo:
    info: VideoInfo
    tracks: list[Track]
    frames_decoded: int
    frames_analysed: int
    detections: int  # faces found in the sampled frames, before linking
    cuts: int
    seconds: float  # the last decoded frame's time: the span the tracks cover
    # Where damaged data stopped decoding, and why; what came before it was analysed.
    stopped_at: float | None = None
    stop_reason: str | None = None


def analyse_video(
    pipeline: FacePipeline,
    source: Path | bytes,
    *,
    rules: TrackRules,
    every_s: float,
    cut_threshold: float,
    location: str = "",
    on_progress: Callable[[VideoProgress], None] | None = None,
    guard: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
) -> AnalysedVideo:
    """Sample, detect, embed and track. `guard` is held around each batch's detection and
    embedding (the engine's lock, where the pipeline is shared with searches), never across
    the whole file."""
    tracker = Tracker(rules)
    analysed = cuts = 0
    last_t = 0.0
    with VideoReader(source, max_pixels=pipeline.settings.max_pixels) as video:
        batch: list[SampledFrame] = []

        def run(frames: list[SampledFrame]) -> None:
            nonlocal analysed
            with guard():
                faces: list[list[AnalysedFace]] = pipeline.analyse_frames([f.rgb for f in frames])
            for frame, found in zip(frames, faces, strict=True):
                tracker.feed(frame.t, found, frame.rgb, cut=frame.cut)
            analysed += len(frames)
            if on_progress is not None:
                on_progress(VideoProgress(location, frames[-1].t, video.info.duration_s))

        for frame in video.frames(every_s=every_s, cut_threshold=cut_threshold):
            cuts += frame.cut
            last_t = frame.t
            batch.append(frame)
            if len(batch) >= FRAME_BATCH:
                run(batch)
                batch = []
        if batch:
            run(batch)
        return AnalysedVideo(
            info=video.info,
            tracks=tracker.close(),
            frames_decoded=video.frames_decoded,
            frames_analysed=analysed,
            detections=tracker.detections,
            cuts=cuts,
            seconds=max(last_t, video.stopped_at or 0.0),
            stopped_at=video.stopped_at,
            stop_reason=video.stop_reason,
        )
