"""Blur an erased person across their time span in a video file, by re-encoding it.

The track's boxes are sampled (twice a second by default), so each frame blurs every box
sampled within `PAD_S` of it, grown by a third: the face between two samples lies within the
union of its neighbours' boxes, and a little too much blur is the safe side of an erasure.
Audio is copied as it is. The new file replaces the old one atomically.
"""

from __future__ import annotations

import bisect
import logging
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

log = logging.getLogger(__name__)

PAD_S = 0.75
GROW = 1 / 3
# The codec each container is written back with (its own usual one).
_CODECS = {".webm": "libvpx-vp9", ".avi": "mpeg4"}


def blur_video(path: Path, boxes: list[list[float]]) -> bool:
    """Blur the timed boxes ([t, left, top, right, bottom], frame pixels) in a video file, in
    place. Returns False when the file is gone or cannot be rewritten (logged): the erasure in
    the catalog and the index is done by then and must not be undone by this."""
    timed = sorted((float(b[0]), [int(v) for v in b[1:5]]) for b in boxes if len(b) == 5)
    if not path.exists():
        return False
    tmp = path.with_name(f".{path.name}.blurring{path.suffix}")
    try:
        import av

        mode = stat.S_IMODE(path.stat().st_mode)
        _rewrite(av, path, tmp, timed)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except Exception as exc:  # a codec or container FFmpeg cannot write: say so, keep going
        log.error("could not blur the erased faces in %s: %s", path, exc)
        tmp.unlink(missing_ok=True)
        return False
    return True


def _rewrite(av: Any, src_path: Path, dst_path: Path, timed: list[tuple[float, list[int]]]) -> None:
    times = [t for t, _ in timed]
    with av.open(str(src_path)) as src, av.open(str(dst_path), "w") as dst:
        vin = src.streams.video[0]
        vout = dst.add_stream(
            _CODECS.get(src_path.suffix.lower(), "libx264"), rate=vin.average_rate or 25
        )
        vout.width, vout.height = vin.codec_context.width, vin.codec_context.height
        vout.pix_fmt = "yuv420p"
        vout.time_base = vin.time_base
        audio = {}
        for stream in src.streams.audio:
            audio[stream.index] = dst.add_stream_from_template(stream)
        for packet in src.demux(vin, *src.streams.audio):
            if packet.stream.index in audio:
                if packet.dts is None:
                    continue
                packet.stream = audio[packet.stream.index]
                dst.mux(packet)
                continue
            for frame in packet.decode():
                t = float(frame.time) if frame.time is not None else 0.0
                lo, hi = bisect.bisect_left(times, t - PAD_S), bisect.bisect_right(times, t + PAD_S)
                if lo < hi:
                    image = _blur(frame.to_image(), [box for _, box in timed[lo:hi]])
                    new = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")
                    new.pts, new.time_base = frame.pts, frame.time_base
                    frame = new
                for out in vout.encode(frame.reformat(format="yuv420p")):
                    dst.mux(out)
        for out in vout.encode():
            dst.mux(out)


def _blur(image: Image.Image, boxes: list[list[int]]) -> Image.Image:
    for left, top, right, bottom in boxes:
        gx, gy = int((right - left) * GROW), int((bottom - top) * GROW)
        region = (
            max(0, left - gx),
            max(0, top - gy),
            min(image.width, right + gx),
            min(image.height, bottom + gy),
        )
        if region[2] <= region[0] or region[3] <= region[1]:
            continue
        patch = image.crop(region)
        radius = max(8, (region[2] - region[0]) // 5)
        image.paste(patch.filter(ImageFilter.GaussianBlur(radius)), region[:2])
    return image
