"""Test-time augmentation: embed each chip and its mirror image, and keep the mean direction.

A face and its mirror show the same person, but the network sees two different inputs; the
mean of the two unit descriptors cancels part of the noise that is specific to one view. On
lfw-a (HOG, 5-point alignment) it raised TAR at FAR 1e-4 from 77.9% to 81.8% and rank-1 with
2,842 gallery faces from 90.6% to 92.3%, for twice the embedding time (see docs/accuracy.md).

The result is a different template, so it is a different model: its `model_id` carries the
suffix `-flip`, and a catalog of plain templates refuses flipped ones (and the other way round).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vultus.pipeline.base import Embedder, Templates

FLIP_SUFFIX = "-flip"


class MirrorAveraged:
    """Wraps an embedder: template = normalise(unit(embed(chip)) + unit(embed(mirror(chip))))."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id + FLIP_SUFFIX
        self.dim = inner.dim
        self.chip_size = inner.chip_size

    def embed(self, chips: npt.NDArray[np.uint8]) -> Templates:
        chips = np.asarray(chips)
        n = len(chips)
        if n == 0:
            return self.inner.embed(chips)
        # One batch for both views: batching is where ONNX Runtime's speed comes from.
        both = self.inner.embed(np.concatenate([chips, chips[:, :, ::-1]]))
        units = both / np.linalg.norm(both, axis=1, keepdims=True)
        mean = units[:n] + units[n:]
        out: Templates = (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)
        return out
