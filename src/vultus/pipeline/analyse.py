"""The face pipeline end to end: decode, detect (on a downscaled copy), align, measure, embed.

One `FacePipeline` per process: dlib and ONNX Runtime objects cannot be shared between processes,
so each ingest worker builds its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vultus.config import Settings
from vultus.errors import VultusError
from vultus.pipeline.align import FivePointAligner
from vultus.pipeline.augment import MirrorAveraged
from vultus.pipeline.base import Aligner, Box, Detection, Detector, Embedder
from vultus.pipeline.decode import DecodedImage, decode_image, downscale
from vultus.pipeline.detect import make_detector
from vultus.pipeline.embed import make_embedder
from vultus.pipeline.packs import DLIB_PLAIN, load_pack, pack_folder
from vultus.pipeline.quality import Quality, measure, skip_reason

# Faces whose area is within this fraction of the largest's are near-equal in size: the
# detector's box jitters by a few pixels (88×88 against 88×87), so "the largest" among them is
# chance. On LFW, taking it picks the wrong person in about 0.25% of photos.
NEAR_TIE_AREA = 0.9


def order_faces(
    detections: Sequence[Detection], width: int, height: int
) -> tuple[list[Detection], int]:
    """Largest face first; among faces near-equal in size to the largest, the one nearest the
    centre of the photo first (where a photographer puts the subject). Returns the order and
    how many faces lead near-equal in size (1 when the largest is clear)."""
    by_area = sorted(detections, key=lambda d: d.box.width * d.box.height, reverse=True)
    if not by_area:
        return [], 0
    largest = by_area[0].box.width * by_area[0].box.height
    n_tied = sum(d.box.width * d.box.height >= NEAR_TIE_AREA * largest for d in by_area)
    cx, cy = width / 2, height / 2

    def off_centre(d: Detection) -> float:
        bx, by = (d.box.left + d.box.right) / 2, (d.box.top + d.box.bottom) / 2
        return float((bx - cx) ** 2 + (by - cy) ** 2)

    return sorted(by_area[:n_tied], key=off_centre) + by_area[n_tied:], n_tied


@dataclass
class AnalysedFace:
    box: Box
    detector: str
    landmarks: list[list[float]]
    quality: Quality
    model_id: str
    # Raw descriptor; None when the face was skipped by the quality gate.
    template: npt.NDArray[np.float32] | None
    skip_reason: str | None = None
    chip: npt.NDArray[np.uint8] | None = field(default=None, repr=False)


@dataclass
class AnalysedImage:
    sha256: str
    width: int
    height: int
    format: str
    size_bytes: int
    faces: list[AnalysedFace]
    # How many faces lead near-equal in size (faces 1..n, see `order_faces`): above 1, which
    # one a search means is the user's call, not the pipeline's.
    near_equal: int = 1
    # Frames or pages in the file, of which only the first was analysed (see decode_image).
    frames: int = 1

    @property
    def indexable(self) -> list[AnalysedFace]:
        return [f for f in self.faces if f.template is not None]


class FacePipeline:
    def __init__(self, settings: Settings, *, embed_threads: int = 1) -> None:
        self.settings = settings
        self.detector: Detector
        self.aligner: Aligner
        self.embedder: Embedder
        folder = pack_folder(settings.model, settings.data_dir)
        if folder is not None:
            from vultus.pipeline.arcface import ArcFaceAligner, ArcFaceEmbedder
            from vultus.pipeline.scrfd import ScrfdDetector

            pack = load_pack(folder)
            self.detector = ScrfdDetector(pack.detector)
            self.aligner = ArcFaceAligner()
            self.embedder = ArcFaceEmbedder(pack.recognizer, pack.model_id, threads=embed_threads)
            return
        self.detector = make_detector(
            settings.detector,
            settings.models_dir,
            upsample_retry=settings.detect_upsample_retry,
            cnn_fallback=settings.detect_cnn_fallback,
        )
        self.aligner = FivePointAligner()
        self.embedder = make_embedder(
            settings.engine,
            settings.models_dir,
            threads=embed_threads,
            precision=settings.embed_precision,
        )
        if settings.model != DLIB_PLAIN:
            self.embedder = MirrorAveraged(self.embedder)

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def detect(self, image: DecodedImage) -> list[Detection]:
        """Detect on a copy no larger than `detect_max_side`; boxes come back in original pixels."""
        small, scale = downscale(image.rgb, self.settings.detect_max_side)
        found = self.detector.detect(small)
        if scale == 1.0:
            return found
        return [d.scaled(scale) for d in found]

    def analyse(self, source: Path | bytes, *, keep_chips: bool = False) -> AnalysedImage:
        result = self.analyse_many([source], keep_chips=keep_chips)[0]
        if isinstance(result, VultusError):
            raise result
        return result

    def analyse_many(
        self, sources: Sequence[Path | bytes], *, keep_chips: bool = False
    ) -> list[AnalysedImage | VultusError]:
        """Analyse several images, embedding all their faces in ONE batch: a batch of one
        costs ONNX Runtime about three times as much per face as a batch of sixteen. A file
        that fails gives its error in its place; the others go on."""
        located: list[tuple[AnalysedImage, list[int], npt.NDArray[np.uint8]] | VultusError] = []
        for source in sources:
            try:
                located.append(self._locate(source, keep_chips=keep_chips))
            except VultusError as exc:
                located.append(exc)
        batches = [item[2][item[1]] for item in located if not isinstance(item, VultusError)]
        if batches and sum(len(b) for b in batches):
            templates = iter(self.embedder.embed(np.concatenate(batches)))
            for item in located:
                if isinstance(item, VultusError):
                    continue
                image, keep, _ = item
                for i in keep:
                    image.faces[i].template = np.asarray(next(templates), dtype=np.float32)
        return [item if isinstance(item, VultusError) else item[0] for item in located]

    def _locate(
        self, source: Path | bytes, *, keep_chips: bool
    ) -> tuple[AnalysedImage, list[int], npt.NDArray[np.uint8]]:
        """Decode, detect, align and measure: everything but the embedding."""
        image = decode_image(source, max_pixels=self.settings.max_pixels)
        # Largest face first (near-ties: nearest the centre): the one a search uses by default.
        height, width = image.rgb.shape[:2]
        detections, near_equal = order_faces(self.detect(image), width, height)
        points, chips = self.aligner.align(image.rgb, detections)
        faces: list[AnalysedFace] = []
        for det, pts, chip in zip(detections, points, chips, strict=True):
            quality = measure(det.box, det.score, chip, pts, layout=self.aligner.layout)
            faces.append(
                AnalysedFace(
                    box=det.box,
                    detector=det.detector,
                    landmarks=pts.round(1).tolist(),
                    quality=quality,
                    model_id=self.model_id,
                    template=None,
                    skip_reason=skip_reason(quality, min_face_px=self.settings.min_face_px),
                    chip=chip if keep_chips else None,
                )
            )
        keep = [i for i, f in enumerate(faces) if f.skip_reason is None]
        analysed = AnalysedImage(
            sha256=image.sha256,
            width=image.width,
            height=image.height,
            format=image.format,
            size_bytes=image.size_bytes,
            faces=faces,
            near_equal=max(1, near_equal),
            frames=image.frames,
        )
        return analysed, keep, chips
