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
from vultus.errors import ConfigError, VultusError
from vultus.pipeline.align import FivePointAligner
from vultus.pipeline.augment import MirrorAveraged
from vultus.pipeline.base import Aligner, Box, Detection, Detector, Embedder, RGBImage
from vultus.pipeline.decode import decode_image, downscale
from vultus.pipeline.detect import HogDetector, make_detector
from vultus.pipeline.embed import make_embedder
from vultus.pipeline.packs import DLIB_PLAIN, load_pack, pack_folder
from vultus.pipeline.quality import Quality, measure, skip_reason
from vultus.pipeline.query_detect import QUERY_DETECTION, QueryDetector

# Faces whose area is within this fraction of the largest's are near-equal in size: the
# detector's box jitters by a few pixels (88×88 against 88×87), so "the largest" among them is
# chance. On LFW, taking it picks the wrong person in about 0.25% of photos.
NEAR_TIE_AREA = 0.9
# The score of a face the caller vouches for (a crop taken as one face): the detector's mark for
# a clear detection, since no detector judged it.
WHOLE_IMAGE_SCORE = 1.0


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
        # Built on first use: most processes (ingest workers) never detect a query photo.
        self._query_detectors: dict[str, Detector] = {}
        self.aligner: Aligner
        self.embedder: Embedder
        folder = pack_folder(settings.model, settings.data_dir)
        self._pack = folder is not None
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
            max_side=settings.detect_max_side,
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

    def query_detector(self, detection: str) -> Detector:
        """The detector for a query photo: "standard" (the ingest detector), "thorough" (HOG
        and MMOD merged) or "harder" (more scales as well); see query_detect.py. A model pack
        has its own detector, used for every mode."""
        if detection not in QUERY_DETECTION:
            raise ConfigError(
                f"unknown query detection {detection!r}; choose one of: "
                f"{', '.join(QUERY_DETECTION)} (the `query_detection` setting)"
            )
        if detection == "standard" or self._pack:
            return self.detector
        if detection not in self._query_detectors:
            from vultus.pipeline.mmod import MmodOnnxDetector  # imports onnx: only when used

            hog = HogDetector(upsample_retry=False, models_dir=self.settings.models_dir)
            mmod = MmodOnnxDetector(self.settings.models_dir)
            self._query_detectors[detection] = QueryDetector(
                hog, mmod, harder=detection == "harder"
            )
        return self._query_detectors[detection]

    def detect(self, rgb: RGBImage, detector: Detector | None = None) -> list[Detection]:
        """Detect on a copy no larger than `detect_max_side`; boxes come back in original pixels.
        A detector that shrinks the photo itself (BlazeFace, to 192 px) gets it whole: a second
        resize would only cost time."""
        detector = detector or self.detector
        if getattr(detector, "scales_itself", False):
            return detector.detect(rgb)
        small, scale = downscale(rgb, self.settings.detect_max_side)
        found = detector.detect(small)
        if scale == 1.0:
            return found
        return [d.scaled(scale) for d in found]

    def analyse(
        self,
        source: Path | bytes,
        *,
        keep_chips: bool = False,
        whole_image: bool = False,
        detection: str = "standard",
    ) -> AnalysedImage:
        """With `whole_image`, no detector runs: the photo is taken as one face, cropped by
        the caller (the aligner still finds its landmarks within it). `detection` other than
        "standard" is for query photos (query_detector)."""
        detector = None if whole_image else self.query_detector(detection)
        result = self.analyse_many(
            [source], keep_chips=keep_chips, whole_image=whole_image, detector=detector
        )[0]
        if isinstance(result, VultusError):
            raise result
        return result

    def locate(self, source: Path | bytes) -> AnalysedImage:
        """Everything `analyse` does but the embedding (every template is None; a face's
        `skip_reason` says whether it would get one): whether a photo holds a usable face, for
        about half the cost, where the photo is analysed again on its way in (an upload)."""
        return self._locate(source, keep_chips=False)[0]

    def analyse_many(
        self,
        sources: Sequence[Path | bytes],
        *,
        keep_chips: bool = False,
        whole_image: bool = False,
        detector: Detector | None = None,
    ) -> list[AnalysedImage | VultusError]:
        """Analyse several images, embedding all their faces in ONE batch: a batch of one
        costs ONNX Runtime about three times as much per face as a batch of sixteen. A file
        that fails gives its error in its place; the others go on."""
        located: list[tuple[AnalysedImage, list[int], npt.NDArray[np.uint8]] | VultusError] = []
        for source in sources:
            try:
                located.append(
                    self._locate(
                        source, keep_chips=keep_chips, whole=whole_image, detector=detector
                    )
                )
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
        self,
        source: Path | bytes,
        *,
        keep_chips: bool,
        whole: bool = False,
        detector: Detector | None = None,
    ) -> tuple[AnalysedImage, list[int], npt.NDArray[np.uint8]]:
        """Decode, detect, align and measure: everything but the embedding."""
        image = decode_image(source, max_pixels=self.settings.max_pixels)
        faces, keep, chips, near_equal = self._locate_rgb(
            image.rgb, keep_chips=keep_chips, whole=whole, detector=detector
        )
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

    def analyse_frames(self, frames: Sequence[RGBImage]) -> list[list[AnalysedFace]]:
        """The faces of several video frames, all embedded in one batch (see `analyse_many`)."""
        located = [self._locate_rgb(rgb, keep_chips=False) for rgb in frames]
        batches = [chips[keep] for _, keep, chips, _ in located if keep]
        if batches:
            templates = iter(self.embedder.embed(np.concatenate(batches)))
            for faces, keep, _, _ in located:
                for i in keep:
                    faces[i].template = np.asarray(next(templates), dtype=np.float32)
        return [faces for faces, _, _, _ in located]

    def _locate_rgb(
        self,
        rgb: RGBImage,
        *,
        keep_chips: bool,
        whole: bool = False,
        detector: Detector | None = None,
    ) -> tuple[list[AnalysedFace], list[int], npt.NDArray[np.uint8], int]:
        # Largest face first (near-ties: nearest the centre): the one a search uses by default.
        height, width = rgb.shape[:2]
        if whole:
            if self.aligner.layout != "dlib5":
                # SCRFD's aligner takes the detector's keypoints: without a detector, none.
                raise ConfigError(
                    "this model aligns faces on its detector's keypoints: a photo cannot be "
                    "taken as one face without running the detector",
                    code="whole_image_unsupported",
                )
            found = [Detection(Box(0, 0, width, height), WHOLE_IMAGE_SCORE, "given")]
        else:
            found = self.detect(rgb, detector)
        detections, near_equal = order_faces(found, width, height)
        points, chips = self.aligner.align(rgb, detections)
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
        return faces, keep, chips, near_equal
