"""Video files as a stream of sampled frames: a configurable rate plus every scene cut.

Decoding goes through PyAV, which ships FFmpeg's decoders inside its wheel: nothing is fetched
at run time and no system FFmpeg is needed. Frames stream one at a time, so a four-hour file
takes the memory of a few frames, never of the file.

Every rejection is a `DecodeError` with a code a caller can act on and a message that names the
file, like a photo's: `video_support_missing`, `file_not_found`, `empty_file`, `corrupt_video`,
`no_video_stream` (an audio-only file), `video_too_large`.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vultus.errors import DecodeError
from vultus.pipeline.base import RGBImage

VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"})

# FFmpeg's demuxer names for the containers we accept, and the name we record.
_FORMATS = {"mov": "MP4", "mp4": "MP4", "matroska": "MKV", "webm": "WEBM", "avi": "AVI"}

# Scene cuts: the mean absolute difference of two consecutive frames shrunk to CUT_SIZE grey
# pixels, out of 255. A cut between two shots is far above it; camera motion and lighting
# changes within a shot stay below (on the Hamilton clip: its three cuts 27-30, motion within
# its shots at most 13).
CUT_SIZE = (64, 36)
DEFAULT_CUT_THRESHOLD = 20.0


@dataclass(frozen=True)
class VideoInfo:
    sha256: str
    size_bytes: int
    width: int
    height: int
    format: str  # "MP4", "MKV", "WEBM" or "AVI"
    duration_s: float | None  # as the container states it; None when it does not
    fps: float | None  # average frame rate; variable-rate files have none that holds


@dataclass(frozen=True)
class SampledFrame:
    t: float  # seconds from the start, from the frame's own timestamp (right for VFR files)
    rgb: RGBImage
    cut: bool  # the first frame of a new shot


def player_time(seconds: float) -> str:
    """A time in a video as a player shows it: 1:05.5, or 1:02:03.0 past an hour."""
    minutes, secs = divmod(max(0.0, float(seconds)), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:04.1f}" if hours else f"{minutes}:{secs:04.1f}"


def is_video(name: str) -> bool:
    return Path(name).suffix.lower() in VIDEO_SUFFIXES


def looks_like_video(data: bytes) -> bool:
    """Container signatures, for bytes that come without a name (an upload)."""
    head = data[:16]
    return (
        head[4:8] == b"ftyp"  # MP4, MOV
        or head[:4] == b"\x1a\x45\xdf\xa3"  # Matroska, WebM
        or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
    )


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise DecodeError(
            "video support is not installed: install it with `pip install 'vultus[video]'` "
            "(PyAV, which brings its own FFmpeg decoders)",
            code="video_support_missing",
        ) from None
    return av


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class VideoReader:
    """One video file opened for reading: its facts (`info`) and its sampled frames.

    >>> with VideoReader(Path("talk.mp4")) as video:
    ...     for frame in video.frames(every_s=0.5): ...
    """

    def __init__(self, source: Path | bytes, *, max_pixels: int = 50_000_000) -> None:
        av = _av()
        handle: str | io.BytesIO
        if isinstance(source, bytes | bytearray):
            self.label = "the video data"
            if not source:
                raise DecodeError("Cannot decode the video data: it is empty.", code="empty_file")
            sha, size, handle = hashlib.sha256(source).hexdigest(), len(source), io.BytesIO(source)
        else:
            path = Path(source)
            self.label = str(path)
            if not path.is_file():
                raise DecodeError(f"Cannot decode {path}: no such file.", code="file_not_found")
            size = path.stat().st_size
            if not size:
                raise DecodeError(
                    f"Cannot decode {path}: it is empty (0 bytes).", code="empty_file"
                )
            sha, handle = file_sha256(path), str(path)
        try:
            self._container = av.open(handle, mode="r", metadata_errors="ignore")
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
            raise DecodeError(
                f"Cannot decode {self.label}: not a video FFmpeg can read, or damaged "
                f"({getattr(exc, 'strerror', None) or exc}).",
                code="corrupt_video",
            ) from None
        if not self._container.streams.video:
            kinds = sorted({s.type for s in self._container.streams}) or ["no"]
            self._container.close()
            raise DecodeError(
                f"Cannot use {self.label}: it holds {', '.join(kinds)} stream(s) but no "
                "picture (an audio-only file?), so no face to find.",
                code="no_video_stream",
            )
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"  # frame threads: decoding keeps up with analysis
        ctx = self._stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width * height > max_pixels:
            self._container.close()
            raise DecodeError(
                f"Cannot use {self.label}: its frames are {width}x{height}, over the "
                f"{max_pixels:,}-pixel limit.",
                code="video_too_large",
            )
        # Times are on the container's clock, as a player's are (a `#t=5.5` in a browser): a
        # video stream may start later than the file (the Hamilton clip's at 0.85 s).
        duration = None
        if self._container.duration is not None:
            duration = self._container.duration / 1_000_000
        elif self._stream.duration is not None and self._stream.time_base is not None:
            duration = float(self._stream.duration * self._stream.time_base)
        rate = self._stream.average_rate
        self.info = VideoInfo(
            sha256=sha,
            size_bytes=size,
            width=width,
            height=height,
            format=self._format_name(),
            duration_s=duration,
            fps=float(rate) if rate else None,
        )
        # Where decoding stopped on damaged data, and why: the frames before it are used.
        self.stopped_at: float | None = None
        self.stop_reason: str | None = None
        self.frames_decoded = 0

    def _format_name(self) -> str:
        name = _FORMATS.get(self._container.format.name.split(",")[0], "VIDEO")
        # FFmpeg reads WebM as Matroska (it is a subset): told apart by its codecs.
        if name == "MKV" and self._stream.codec_context.name in {"vp8", "vp9", "av1"}:
            return "WEBM"
        return name

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def frames(
        self,
        *,
        every_s: float = 0.5,
        cut_threshold: float = DEFAULT_CUT_THRESHOLD,
        start_s: float = 0.0,
    ) -> Iterator[SampledFrame]:
        """One frame every `every_s` seconds, plus the first frame after each scene cut.
        Damaged data ends the stream: `stopped_at` then says where (and `stop_reason` why);
        what decoded before it is kept."""
        av = _av()
        if every_s <= 0:
            raise ValueError(f"every_s must be positive, got {every_s}")
        next_due = start_s
        previous: npt.NDArray[np.int16] | None = None
        last_t = 0.0
        fps = self.info.fps or 25.0
        try:
            for index, frame in enumerate(self._container.decode(self._stream)):
                self.frames_decoded += 1
                t = float(frame.time) if frame.time is not None else index / fps
                if t < last_t - 1.0:  # a timestamp jump backwards (a damaged index): carry on
                    t = last_t + 1 / fps
                last_t = t
                small = frame.reformat(width=CUT_SIZE[0], height=CUT_SIZE[1], format="gray")
                grey = small.to_ndarray().astype(np.int16)
                cut = previous is not None and float(np.abs(grey - previous).mean()) > cut_threshold
                previous = grey
                if t < start_s:
                    continue
                if cut or t >= next_due:
                    rgb = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
                    yield SampledFrame(t=t, rgb=rgb, cut=cut)
                    while next_due <= t:
                        next_due += every_s
        except (av.error.FFmpegError, ValueError) as exc:
            self.stopped_at = last_t
            self.stop_reason = str(exc)
            return
        # A file cut short (a copy that did not finish) ends quietly, well before the length
        # its header states: said as clearly as damaged data.
        duration, gap = self.info.duration_s, 1.0 / (self.info.fps or 1.0)
        if duration is not None and last_t < duration - max(1.0, 3 * gap):
            self.stopped_at = last_t
            self.stop_reason = f"the file ends early: its header says {duration:.1f} s"


    def frame_at(self, t: float) -> RGBImage:
        """The frame shown at `t` seconds (the last one at or before it), upright RGB."""
        av = _av()
        stream = self._stream
        try:
            if t > 1.0 and stream.time_base is not None:
                # Seek to the keyframe before t, then decode forwards to it.
                self._container.seek(int(max(0.0, t - 0.5) / stream.time_base), stream=stream)
        except av.error.FFmpegError:
            pass
        best: RGBImage | None = None
        try:
            for frame in self._container.decode(stream):
                if frame.time is not None and frame.time > t + 1e-3 and best is not None:
                    break
                best = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
        except (av.error.FFmpegError, ValueError):
            pass
        if best is None:
            raise DecodeError(
                f"Cannot decode a frame of {self.label} at {t:.2f} s.", code="corrupt_video"
            )
        return best


def frame_at(source: Path | bytes, t: float, *, max_pixels: int = 50_000_000) -> RGBImage:
    """The frame of a video file (or its bytes) shown at `t` seconds: see `VideoReader`."""
    with VideoReader(source, max_pixels=max_pixels) as video:
        return video.frame_at(t)
