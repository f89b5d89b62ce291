"""Face tracks: the detections of one person's appearance in a video, linked across frames.

A detection joins a track when its box overlaps the track's last box and its template is
near the track's (the same face, moved a little), or, without overlap, when its template is
very near (the same face after a brief occlusion or a quick move). A track ends when it has
not been seen for `max_gap_s`, and every track ends at a scene cut: a face in the next shot
is a new appearance, even of the same person.

Each track keeps a quality-weighted fused template (large, frontal, confident faces count
most), its best detection, that frame's crop, and its boxes over time (to blur it in a stored
copy on erasure). Memory is the open tracks plus a few hundred bytes per finished one.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from PIL import Image

from vultus.pipeline.analyse import AnalysedFace
from vultus.pipeline.base import Box, RGBImage
from vultus.pipeline.quality import Quality

# The best frame's crop: the face box grown to CROP_GROWTH times its side (the context a
# person needs to judge it, and room for a detector to find it again at a re-embed), at
# most CROP_MAX_SIDE pixels a side.
CROP_GROWTH = 2.2
CROP_MAX_SIDE = 320


@dataclass(frozen=True)
class TrackRules:
    """When a detection continues a track. Distances are between unit templates (0..2)."""

    link_distance: float  # with overlapping boxes: the same face if at most this far
    relink_distance: float  # without overlap (after an occlusion, a quick move): stricter
    min_iou: float = 0.3
    max_gap_s: float = 1.5  # unseen longer than this, the appearance has ended


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a.right, b.right) - max(a.left, b.left))
    iy = max(0, min(a.bottom, b.bottom) - max(a.top, b.top))
    inter = ix * iy
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


def quality_weight(q: Quality) -> float:
    """How much a detection counts in its track's fused template and for its best frame:
    its size, times how frontal and how confident it is."""
    frontal = max(0.05, 1.0 - min(1.0, abs(q.yaw)))
    confident = min(3.0, max(0.1, q.det_score + 1.0))
    return float(q.box_size) * frontal * confident


def _unit(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    v64 = np.asarray(v, dtype=np.float64)
    return v64 / max(1e-12, float(np.linalg.norm(v64)))


def crop_around(rgb: RGBImage, box: Box) -> tuple[bytes, tuple[int, int, int, int]]:
    """A JPEG of the face with context (clipped to the frame), and the region it covers in
    frame pixels (left, top, right, bottom)."""
    height, width = rgb.shape[:2]
    side = max(box.width, box.height) * CROP_GROWTH
    cx, cy = (box.left + box.right) / 2, (box.top + box.bottom) / 2
    left, top = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
    right, bottom = min(width, int(cx + side / 2)), min(height, int(cy + side / 2))
    image = Image.fromarray(rgb[top:bottom, left:right])
    image.thumbnail((CROP_MAX_SIDE, CROP_MAX_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue(), (left, top, right, bottom)


@dataclass(eq=False)
class Track:
    start_s: float
    end_s: float
    best: AnalysedFace
    best_s: float
    best_weight: float
    crop: bytes
    crop_box: tuple[int, int, int, int]
    boxes: list[tuple[float, int, int, int, int]] = field(default_factory=list)
    detections: int = 0
    _sum: npt.NDArray[np.float64] | None = None
    _weights: float = 0.0
    _norms: list[float] = field(default_factory=list)

    @property
    def last_box(self) -> Box:
        _, left, top, right, bottom = self.boxes[-1]
        return Box(left, top, right, bottom)

    @property
    def direction(self) -> npt.NDArray[np.float64] | None:
        """The unit fused template so far, None while no detection had one."""
        return None if self._sum is None else _unit(self._sum.astype(np.float32))

    def add(self, t: float, face: AnalysedFace, rgb: RGBImage) -> None:
        self.end_s = t
        self.detections += 1
        b = face.box
        self.boxes.append((round(t, 3), b.left, b.top, b.right, b.bottom))
        weight = quality_weight(face.quality)
        if face.template is not None:
            unit = _unit(face.template) * weight
            self._sum = unit if self._sum is None else self._sum + unit
            self._weights += weight
            self._norms.append(float(np.linalg.norm(face.template)))
        # The best frame is the best detection with a template; one without never displaces one.
        better = (face.template is not None, weight) > (
            self.best.template is not None,
            self.best_weight,
        )
        if better:
            self.best, self.best_s, self.best_weight = face, t, weight
            self.crop, self.crop_box = crop_around(rgb, face.box)

    def fused(self) -> npt.NDArray[np.float32] | None:
        """The quality-weighted mean direction, at the typical length of the model's
        templates (so that it is an ordinary template to the index and the calibration)."""
        if self._sum is None:
            return None
        return (_unit(self._sum.astype(np.float32)) * float(np.mean(self._norms))).astype(
            np.float32
        )


class Tracker:
    """Feed it each sampled frame's faces in time order; take the finished tracks as they
    come (`finished`), and the rest at the end (`close`)."""

    def __init__(self, rules: TrackRules) -> None:
        self.rules = rules
        self.open: list[Track] = []
        self._done: list[Track] = []
        self.detections = 0

    def feed(self, t: float, faces: list[AnalysedFace], rgb: RGBImage, *, cut: bool) -> None:
        self.detections += len(faces)
        if cut:
            self._done.extend(self.open)
            self.open = []
        self._done.extend(tr for tr in self.open if t - tr.end_s > self.rules.max_gap_s)
        self.open = [tr for tr in self.open if t - tr.end_s <= self.rules.max_gap_s]
        pairs: list[tuple[float, int, int]] = []
        for ti, track in enumerate(self.open):
            direction = track.direction
            for fi, face in enumerate(faces):
                overlap = iou(track.last_box, face.box)
                d = (
                    None
                    if direction is None or face.template is None
                    else float(
                        np.sqrt(max(0.0, 2.0 - 2.0 * float(direction @ _unit(face.template))))
                    )
                )
                if overlap >= self.rules.min_iou and (d is None or d <= self.rules.link_distance):
                    pairs.append((overlap + 1.0 - (d or 0.0), ti, fi))
                elif d is not None and d <= self.rules.relink_distance:
                    pairs.append((1.0 - d, ti, fi))
        taken_tracks: set[int] = set()
        taken_faces: set[int] = set()
        for _, ti, fi in sorted(pairs, reverse=True):
            if ti in taken_tracks or fi in taken_faces:
                continue
            taken_tracks.add(ti)
            taken_faces.add(fi)
            self.open[ti].add(t, faces[fi], rgb)
        for fi, face in enumerate(faces):
            if fi not in taken_faces:
                # best_weight -1: `add` takes this first detection as the best, and crops it.
                track = Track(t, t, face, t, -1.0, b"", (0, 0, 0, 0))
                track.add(t, face, rgb)
                self.open.append(track)

    def finished(self) -> Iterator[Track]:
        done, self._done = self._done, []
        yield from done

    def close(self) -> list[Track]:
        self._done.extend(self.open)
        self.open = []
        return sorted(self.finished(), key=lambda tr: (tr.start_s, tr.best.box.left))
