"""Face detection: dlib's HOG first, slower passes only where HOG finds nothing; or BlazeFace.

HOG takes ~13 ms on a 250 px image; upsampling once finds small faces at ~4x the cost. The MMOD
CNN (mmod.py, in ONNX Runtime; dlib's own CPU code is ten times slower) is an optional fallback,
off by default, or the only detector with `detector = "mmod"`. On LFW, HOG alone finds 99.55%
of faces. `detector = "blazeface"` (blazeface.py) runs MediaPipe's BlazeFace full range on a
192x192 copy of the whole photo: its cost does not grow with the photo, so large query photos
gain the most (docs/models.md has the figures).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import dlib

from vultus.errors import ConfigError
from vultus.pipeline.base import Box, Detection, Detector, RGBImage
from vultus.pipeline.decode import downscale
from vultus.pipeline.onnx_cache import CACHE_FORMAT, load_or_build

if TYPE_CHECKING:  # the MMOD graph is loaded only where it is configured
    from vultus.pipeline.mmod import MmodOnnxDetector

DETECTORS = ("hog", "mmod", "blazeface")

# Upsampling doubles each side, so it costs ~4x a plain pass: worth it on small images, where
# faces near HOG's 80 px window are common (LFW-sized photos), not on large ones that already
# had their full resolution available before downscaling.
UPSAMPLE_MAX_SIDE = 640
HOG_FILENAME = "dlib_frontal_face_detector.svm"


def _save_frontal_face_detector(path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        dlib.get_frontal_face_detector().save(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def frontal_face_detector(models_dir: Path | None = None) -> dlib.fhog_object_detector:
    """dlib's built-in HOG detector. dlib builds it from a compressed text copy compiled into
    the library, which takes 0.3-0.5 s every time; its binary form, kept in the models folder,
    loads in 2 ms and detects exactly the same."""
    if models_dir is None:
        return dlib.get_frontal_face_detector()
    path = Path(models_dir) / HOG_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    load_or_build(path, f"{CACHE_FORMAT}\ndlib {dlib.__version__}", _save_frontal_face_detector)
    return dlib.fhog_object_detector(str(path))


def _clip(rect: dlib.rectangle, width: int, height: int) -> Box:
    return Box(
        max(0, rect.left()),
        max(0, rect.top()),
        min(width, rect.right() + 1),
        min(height, rect.bottom() + 1),
    )


class HogDetector:
    """dlib's frontal HOG detector, with an optional upsampled retry and an MMOD fallback."""

    name = "hog"

    def __init__(
        self,
        *,
        upsample_retry: bool = True,
        fallback: MmodOnnxDetector | None = None,
        models_dir: Path | None = None,
    ) -> None:
        self._hog = frontal_face_detector(models_dir)
        self._upsample_retry = upsample_retry
        self._fallback = fallback

    def detect(self, image: RGBImage) -> list[Detection]:
        height, width = image.shape[:2]
        passes: list[tuple[str, int]] = [("hog", 0)]
        if self._upsample_retry and max(height, width) <= UPSAMPLE_MAX_SIDE:
            passes.append(("hog-upsampled", 1))
        for label, upsample in passes:
            found = self._run(image, label, upsample)
            if found:
                return found
        if self._fallback is not None:
            return self._fallback.detect(image)
        return []

    def upsampled(self, image: RGBImage) -> list[Detection]:
        """One pass on the image doubled in each side, whatever its size: faces down to about
        40 px. A query photo's "look harder" runs it; ingest keeps it for small photos."""
        return self._run(image, "hog-upsampled", 1)

    def _run(self, image: RGBImage, label: str, upsample: int) -> list[Detection]:
        height, width = image.shape[:2]
        rects, scores, _ = self._hog.run(image, upsample, 0.0)
        found = [
            Detection(_clip(r, width, height), float(s), label)
            for r, s in zip(rects, scores, strict=True)
        ]
        return [d for d in found if d.box.width > 0 and d.box.height > 0]


class FirstFound:
    """`first`'s faces (it is given the whole photo and scales it itself), or where it finds
    none, `then`'s on a copy no larger than `max_side`: a fallback for the photos (about 1 in
    200 on LFW) where a fast detector misses what a slow one finds."""

    scales_itself = True

    def __init__(self, first: Detector, then: Detector, max_side: int) -> None:
        self.name = first.name
        self.first, self.then, self.max_side = first, then, max_side

    def detect(self, image: RGBImage) -> list[Detection]:
        found = self.first.detect(image)
        if found:
            return found
        small, scale = downscale(image, self.max_side)
        return [d.scaled(scale) for d in self.then.detect(small)]


def make_detector(
    name: str,
    models_dir: Path,
    *,
    upsample_retry: bool = True,
    cnn_fallback: bool = False,
    max_side: int = 800,
) -> Detector:
    """The configured detector. "mmod" runs the CNN alone, at dlib's scale (no upsampling):
    it finds faces from about 80 px, including faces cut by the image edge that HOG misses;
    "hog" and "blazeface" may fall back to it where they find nothing (on a copy no larger than
    `max_side`: BlazeFace takes whole photos, see `scales_itself`)."""
    if name not in DETECTORS:
        raise ConfigError(f"unknown face detector {name!r}; choose one of: {', '.join(DETECTORS)}")
    if name == "blazeface":
        from vultus.pipeline.blazeface import BlazeFaceDetector  # builds its graph: only here

        blazeface = BlazeFaceDetector(models_dir)
        if not cnn_fallback:
            return blazeface
        from vultus.pipeline.mmod import MmodOnnxDetector

        return FirstFound(blazeface, MmodOnnxDetector(models_dir), max_side)
    if name == "hog" and not cnn_fallback:
        return HogDetector(upsample_retry=upsample_retry, models_dir=models_dir)
    from vultus.pipeline.mmod import MmodOnnxDetector  # imports onnx: only where configured

    if name == "hog":
        fallback = MmodOnnxDetector(models_dir)
        return HogDetector(upsample_retry=upsample_retry, fallback=fallback, models_dir=models_dir)
    return MmodOnnxDetector(models_dir)
