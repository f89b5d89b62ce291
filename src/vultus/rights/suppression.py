"""The suppression list across face models: erased people stay erased after a model change.

A suppression entry is a template of the model the catalog used when the person was erased,
and their photos are gone, so it cannot be re-embedded with a new model. Entries of the
catalog's current model are compared with new templates directly (`ingest.drop_suppressed`).
Entries of an earlier model are checked the only way that stays sound: the photo is analysed
with that earlier model as well, and a new face overlapping a face that matches an entry is
dropped. That costs a second analysis per ingested photo for as long as such entries exist.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from vultus.accuracy.calibration import Calibration
from vultus.catalog import Catalog, NewImage
from vultus.catalog.models import Suppression
from vultus.catalog.store import SUPPRESSION_AAD
from vultus.errors import VultusError
from vultus.index.base import normalise
from vultus.pipeline.analyse import FacePipeline
from vultus.pipeline.base import Box
from vultus.pipeline.packs import BUILT_IN_IDS
from vultus.storage import local_path, read_location

# Meta key: which `model` setting built each model id the catalog has used, so that an earlier
# model's pipeline can be built again for its suppression entries.
MODEL_SETTINGS_KEY = "model_settings"
# Lenient on purpose: a face from another detector that merely overlaps a suppressed face is
# dropped, because letting an erased person back in is the worse error.
SUPPRESS_IOU = 0.2


def iou(a: Box, b: Box) -> float:
    w = min(a.right, b.right) - max(a.left, b.left)
    h = min(a.bottom, b.bottom) - max(a.top, b.top)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / (a.width * a.height + b.width * b.height - inter)


def model_settings(catalog: Catalog) -> dict[str, str]:
    return dict(json.loads(catalog.get_meta(MODEL_SETTINGS_KEY) or "{}"))


def remember_model_setting(catalog: Catalog, model_id: str, setting: str) -> None:
    known = model_settings(catalog)
    if known.get(model_id) != setting:
        known[model_id] = setting
        catalog.set_meta(MODEL_SETTINGS_KEY, json.dumps(known, sort_keys=True))


def entries_by_model(catalog: Catalog) -> dict[str, list[bytes]]:
    with catalog.session() as s:
        rows = s.execute(select(Suppression.model_id, Suppression.template)).all()
    out: dict[str, list[bytes]] = {}
    for model_id, blob in rows:
        out.setdefault(model_id, []).append(blob)
    return out


@dataclass
class _Entries:
    matrix: npt.NDArray[np.float32]
    threshold: float
    pipeline: FacePipeline


def decrypt_list(
    catalog: Catalog, blobs: list[bytes], calibration: Calibration, fmr: float
) -> tuple[npt.NDArray[np.float32], float]:
    """One model's suppression entries, decrypted, with the distance under which a new face
    counts as one of those people: per new face, the chance of wrongly refusing a stranger
    stays at `fmr` however long the list grows."""
    matrix = normalise(np.stack([catalog.open_template(b, SUPPRESSION_AAD) for b in blobs]))
    return matrix, float(calibration.threshold_for(fmr, gallery_size=len(blobs)))


class EarlierModels:
    """Suppression entries of models other than `current`, each with a pipeline of its model."""

    def __init__(
        self,
        catalog: Catalog,
        current: str,
        *,
        pipeline_for: Callable[[str], FacePipeline],
        calibration_for: Callable[[str], Calibration],
        fmr: float,
        endpoint_url: str | None = None,
        entries: dict[str, list[bytes]] | None = None,
    ) -> None:
        self._entries: dict[str, _Entries] = {}
        self._endpoint_url = endpoint_url
        settings = {**BUILT_IN_IDS, **model_settings(catalog)}
        # `entries`: the suppression list by model, when the caller has read it already.
        by_model = entries_by_model(catalog) if entries is None else entries
        for model_id, blobs in by_model.items():
            if model_id == current:
                continue
            setting = settings.get(model_id)
            if setting is None:
                raise VultusError(
                    f"{len(blobs)} suppression entries are templates of model {model_id!r}, "
                    "and this catalog does not record which `model` setting built it; without "
                    "it, erased people could come back, so nothing is ingested",
                    code="suppression_model_unknown",
                )
            matrix, threshold = decrypt_list(catalog, blobs, calibration_for(model_id), fmr)
            self._entries[model_id] = _Entries(matrix, threshold, pipeline_for(setting))

    def __bool__(self) -> bool:
        return bool(self._entries)

    def suppressed_boxes(self, photo: Path | bytes) -> list[Box]:
        """Boxes of the faces in the photo that an earlier model says are suppressed people."""
        boxes: list[Box] = []
        for entries in self._entries.values():
            analysed = entries.pipeline.analyse(photo)
            for face in analysed.indexable:
                assert face.template is not None
                unit = face.template / np.linalg.norm(face.template)
                best = float((entries.matrix @ unit).max())
                if np.sqrt(max(0.0, 2.0 - 2.0 * best)) <= entries.threshold:
                    boxes.append(face.box)
        return boxes

    def _read(self, location: str) -> Path | bytes:
        path = local_path(location)
        return (
            path if path is not None else read_location(location, endpoint_url=self._endpoint_url)
        )

    def drop(self, batch: list[NewImage]) -> tuple[list[NewImage], int]:
        """Like `ingest.drop_suppressed`, for the earlier models' entries."""
        if not self._entries:
            return batch, 0
        kept: list[NewImage] = []
        dropped = 0
        for image in batch:
            boxes = self.suppressed_boxes(self._read(image.path)) if image.faces else []
            faces = [
                f
                for f in image.faces
                if not any(iou(Box(*f.box), b) >= SUPPRESS_IOU for b in boxes)
            ]
            dropped += len(image.faces) - len(faces)
            if image.faces and not faces:
                continue  # as in drop_suppressed: nothing about an erased person re-enters
            kept.append(dataclasses.replace(image, faces=faces))
        return kept, dropped
