"""Synthetic videos for the tests and the benchmark, encoded with PyAV: face photos pasted
onto plain backgrounds, in shots (a cut between two), with occlusions and drift; variable
frame rates; audio-only and damaged files. Nothing here needs a real recording."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

SIZE = (480, 360)


@dataclass(frozen=True)
class Person:
    photo: Path
    x: int  # where the photo's left edge is at the start of the shot
    y: int
    height: int = 200  # the photo is scaled to this height
    drift: float = 0.0  # pixels a second to the right


@dataclass(frozen=True)
class Shot:
    seconds: float
    people: list[Person]
    background: tuple[int, int, int] = (90, 90, 90)
    # Spans (from the shot's start) in which a grey board hides the first person: an
    # occlusion, which leaves the rest of the picture as it was (no cut).
    hidden: list[tuple[float, float]] = field(default_factory=list)


def _sprites(shots: list[Shot]) -> dict[tuple[Path, int], Image.Image]:
    out = {}
    for shot in shots:
        for p in shot.people:
            if (p.photo, p.height) not in out:
                with Image.open(p.photo) as im:
                    rgb = im.convert("RGB")
                    width = round(rgb.width * p.height / rgb.height)
                    out[p.photo, p.height] = rgb.resize((width, p.height))
    return out


def render(shot: Shot, t: float, sprites: dict[tuple[Path, int], Image.Image]) -> np.ndarray:
    frame = Image.new("RGB", SIZE, shot.background)
    for p in shot.people:
        frame.paste(sprites[p.photo, p.height], (round(p.x + p.drift * t), p.y))
    if shot.people and any(a <= t < b for a, b in shot.hidden):
        p = shot.people[0]
        sprite = sprites[p.photo, p.height]
        left = round(p.x + p.drift * t)
        frame.paste((128, 128, 128), (left, p.y, left + sprite.width, p.y + sprite.height))
    return np.asarray(frame)


def write_video(
    path: Path,
    shots: list[Shot],
    *,
    fps: float = 10.0,
    codec: str = "libx264",
    jitter: float = 0.0,
    seed: int = 0,
) -> list[float]:
    """Encode the shots one after another; returns the times (seconds) of the cuts. `jitter`:
    each frame's gap varies by up to this fraction (a variable-frame-rate file)."""
    sprites = _sprites(shots)
    rng = np.random.default_rng(seed)
    cuts: list[float] = []
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(round(fps * 1000), 1000))
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 1000)
        start, last = 0.0, -1
        for n, shot in enumerate(shots):
            if n:
                cuts.append(start)
            t = 0.0
            while t < shot.seconds - 1e-9:
                frame = av.VideoFrame.from_ndarray(render(shot, t, sprites), format="rgb24")
                # Strictly increasing: a shot of a fractional length may end a hair before
                # the next one's first frame, at the same millisecond.
                frame.pts = last = max(round((start + t) * 1000), last + 1)
                frame.time_base = Fraction(1, 1000)
                for packet in stream.encode(frame):
                    out.mux(packet)
                t += (1.0 / fps) * (1.0 + jitter * float(rng.uniform(-1, 1)))
            start += shot.seconds
        for packet in stream.encode():
            out.mux(packet)
    return cuts


def write_long_blank(path: Path, *, hours: float, every_s: float = 10.0) -> None:
    """A long but tiny video: 64x48 frames, one every `every_s` seconds, `hours` long."""
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=Fraction(1, round(every_s)))
        stream.width, stream.height = 64, 48
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 1000)
        frames = round(hours * 3600 / every_s)
        pixels = np.full((48, 64, 3), 100, np.uint8)
        for i in range(frames + 1):
            pixels[:, :, 0] = (i * 7) % 50 + 80  # a slow change, never a cut
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = round(i * every_s * 1000)
            frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_audio_only(path: Path, seconds: float = 2.0) -> None:
    """An MP4 holding only an AAC sound track."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44100)
        samples = 1024
        for i in range(int(seconds * 44100 / samples)):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, samples), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate = 44100
            frame.pts = i * samples
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
