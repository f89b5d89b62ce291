"""Template arithmetic every layer shares: the index, calibration and the audit log all
normalise templates the same way, so that one face gives one vector everywhere."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def normalise(X: npt.ArrayLike) -> FloatArray:
    """Rows of ``X`` scaled to unit L2 norm, as a new float64 array.

    A single vector (1-d input) is normalised as a 1-d array. A zero or non-finite row is an
    error: such a template cannot come out of a working model.
    """
    arr = np.array(X, dtype=np.float64, copy=True)
    if arr.ndim not in (1, 2):
        raise ValueError(f"expected a vector or a 2-d array of rows, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("templates contain NaN or infinite values")
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("cannot normalise a zero template")
    arr /= norms
    return arr
