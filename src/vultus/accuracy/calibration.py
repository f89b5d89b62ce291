"""Distances between templates, and thresholds calibrated to false-match rates.

Vultus's one definition of distance: the Euclidean distance between L2-normalised templates,
``d = sqrt(max(0, 2 - 2 * cos))``, with similarity ``cos`` (what the vector index returns).
Distances run from 0 (identical direction) to 2 (opposite).

Thresholds are never the folklore 0.6. A :class:`Calibration` holds, on a grid of distances, the
measured false-match rate (FMR: the fraction of pairs of *different* people at or under the
distance) and true-accept rate (TAR: the same for pairs of the *same* person). At 1:N the chance
that at least one of N gallery faces of other people falls under a threshold ``t`` is
``1 - (1 - FMR(t))**N``, so the threshold for a target rate tightens as the gallery grows:
:meth:`Calibration.threshold_for` does that arithmetic.

Calibrations are fitted with :func:`fit_calibration` on labelled templates (every genuine and
every impostor pair among at most ``max_per_identity`` templates per identity, histogrammed in
chunks so that no pair list is ever held in memory) and shipped as
``vultus/data/calibration_<model_id>.json``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from vultus.errors import ConfigError
from vultus.files import atomic_write
from vultus.vectors import normalise

FloatArray = npt.NDArray[np.float64]

DEFAULT_MODEL_ID = "dlib-resnet-v1"
CALIBRATION_FORMAT = "vultus-calibration"
CALIBRATION_VERSION = 1

#: The default grid: 0.000, 0.005, ..., 2.000 (401 points). ``i / 200`` is the closest double to
#: each nominal value, so grid points such as 0.6 compare exactly.
DEFAULT_GRID: FloatArray = np.arange(401, dtype=np.float64) / 200.0
DEFAULT_GRID.setflags(write=False)

# Pair distances are computed in row blocks of about this many entries (float64: 8 bytes each).
_BLOCK_ENTRIES = 4_000_000

_MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# --------------------------------------------------------------------------------------------
# Distances


def pairwise_distances(A: npt.ArrayLike, B: npt.ArrayLike) -> FloatArray:
    """Distances between every row of ``A`` (m, d) and every row of ``B`` (n, d): (m, n).

    Rows must already be L2-normalised (see :func:`normalise`); this is not checked, for speed.
    ``2 - 2 cos`` is clipped at 0 before the square root, so rounding never yields NaN.
    """
    a = np.asarray(A, dtype=np.float64)
    b = np.asarray(B, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected (m, d) and (n, d) arrays, got {a.shape} and {b.shape}")
    sq = a @ b.T
    sq *= -2.0
    sq += 2.0
    np.maximum(sq, 0.0, out=sq)
    np.sqrt(sq, out=sq)
    return sq


def distance(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """The distance between two templates. Both are normalised here, so raw descriptors work."""
    va = normalise(np.asarray(a, dtype=np.float64).ravel())
    vb = normalise(np.asarray(b, dtype=np.float64).ravel())
    if va.shape != vb.shape:
        raise ValueError(f"templates differ in length: {va.shape[0]} and {vb.shape[0]}")
    return math.sqrt(max(0.0, 2.0 - 2.0 * float(va @ vb)))


def similarity_to_distance(similarity: npt.ArrayLike) -> FloatArray:
    """Cosine similarity (what the index returns) to distance: ``sqrt(max(0, 2 - 2 s))``."""
    s = np.asarray(similarity, dtype=np.float64)
    out: FloatArray = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * s))
    return out


def distance_to_similarity(d: npt.ArrayLike) -> FloatArray:
    """Distance to cosine similarity: ``1 - d**2 / 2``."""
    dd = np.asarray(d, dtype=np.float64)
    out: FloatArray = 1.0 - dd * dd / 2.0
    return out


# --------------------------------------------------------------------------------------------
# Pairs among labelled templates


def encode_labels(labels: Sequence[str]) -> npt.NDArray[np.int64]:
    """Identity strings to integer codes (in order of first appearance)."""
    codes: dict[str, int] = {}
    out = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(labels):
        out[i] = codes.setdefault(str(label), len(codes))
    return out


def select_per_identity(
    label_codes: npt.ArrayLike, max_per_identity: int, seed: int | None = None
) -> npt.NDArray[np.int64]:
    """Indices of at most ``max_per_identity`` templates of each identity, in ascending order.

    With ``seed=None`` the first ones (in the given order) are kept; with a seed, a random subset
    of each identity that has more than ``max_per_identity``.
    """
    if max_per_identity < 1:
        raise ValueError("max_per_identity must be at least 1")
    codes = np.asarray(label_codes)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    ends = np.r_[starts[1:], len(codes)]
    rng = np.random.default_rng(seed) if seed is not None else None
    keep: list[npt.NDArray[np.int64]] = []
    for start, end in zip(starts, ends, strict=True):
        members = order[start:end]
        if len(members) > max_per_identity:
            if rng is None:
                members = members[:max_per_identity]
            else:
                members = rng.choice(members, size=max_per_identity, replace=False)
        keep.append(members.astype(np.int64))
    return np.sort(np.concatenate(keep))


def count_pairs(label_codes: npt.ArrayLike) -> tuple[int, int]:
    """(genuine, impostor) pair counts among templates with these identity codes."""
    codes = np.asarray(label_codes)
    n = len(codes)
    _, counts = np.unique(codes, return_counts=True)
    genuine = int(np.sum(counts * (counts - 1) // 2))
    return genuine, n * (n - 1) // 2 - genuine


def iter_pair_distances(
    X: npt.ArrayLike, label_codes: npt.ArrayLike, *, block_entries: int = _BLOCK_ENTRIES
) -> Iterator[tuple[FloatArray, FloatArray]]:
    """Yield ``(genuine, impostor)`` distance arrays, block by block, over all pairs i < j.

    ``X`` must hold normalised rows. Every unordered pair appears exactly once across the blocks;
    at most about ``block_entries`` distances are held at a time.
    """
    x = np.asarray(X, dtype=np.float64)
    codes = np.asarray(label_codes)
    n = x.shape[0]
    if codes.shape != (n,):
        raise ValueError(f"{len(codes)} labels for {n} templates")
    rows = max(1, block_entries // max(n, 1))
    for start in range(0, max(n - 1, 0), rows):
        stop = min(start + rows, n)
        d = pairwise_distances(x[start:stop], x[start:])
        col = np.arange(start, n)
        valid = col[None, :] > np.arange(start, stop)[:, None]
        same = codes[start:stop, None] == codes[None, start:]
        yield d[valid & same], d[valid & ~same]


# --------------------------------------------------------------------------------------------
# Calibration


class Threshold(float):
    """A distance threshold (a float) that remembers what it was asked for.

    ``floor_reached`` is True when the requested rate lies below what the calibration data can
    resolve (see :meth:`Calibration.threshold_for`); ``expected_fmr`` is the calibrated
    gallery-level false-match rate at this distance.
    """

    fmr_target: float
    gallery_size: int
    floor_reached: bool
    expected_fmr: float

    def __new__(
        cls,
        value: float,
        *,
        fmr_target: float,
        gallery_size: int,
        floor_reached: bool,
        expected_fmr: float,
    ) -> Threshold:
        obj = super().__new__(cls, value)
        obj.fmr_target = fmr_target
        obj.gallery_size = gallery_size
        obj.floor_reached = floor_reached
        obj.expected_fmr = expected_fmr
        return obj

    def __repr__(self) -> str:
        flag = ", floor_reached" if self.floor_reached else ""
        return (
            f"Threshold({float(self)!r}, fmr_target={self.fmr_target!r}, "
            f"gallery_size={self.gallery_size}{flag})"
        )


def _readonly(values: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.array(values, dtype=np.float64, copy=True)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class Calibration:
    """Measured FMR and TAR on a sorted grid of distances, for one face model.

    ``fmr[k]`` is the fraction of the ``n_impostor`` pairs of different people with distance
    ``<= distances[k]``; ``tar[k]`` the same over the ``n_genuine`` pairs of the same person.
    Arrays are stored read-only.
    """

    model_id: str
    distances: FloatArray
    fmr: FloatArray
    tar: FloatArray
    n_genuine: int
    n_impostor: int
    source: str

    def __post_init__(self) -> None:
        distances = _readonly(self.distances, "distances")
        fmr = _readonly(self.fmr, "fmr")
        tar = _readonly(self.tar, "tar")
        if not (len(distances) == len(fmr) == len(tar)) or len(distances) < 2:
            raise ValueError("distances, fmr and tar must have the same length, at least 2")
        if np.any(np.diff(distances) <= 0):
            raise ValueError("distances must be strictly increasing")
        for name, arr in (("fmr", fmr), ("tar", tar)):
            if np.any(arr < 0) or np.any(arr > 1) or np.any(np.diff(arr) < 0):
                raise ValueError(f"{name} must be non-decreasing and within [0, 1]")
        if int(self.n_impostor) < 1 or int(self.n_genuine) < 0:
            raise ValueError("a calibration needs at least one impostor pair")
        object.__setattr__(self, "distances", distances)
        object.__setattr__(self, "fmr", fmr)
        object.__setattr__(self, "tar", tar)
        object.__setattr__(self, "n_genuine", int(self.n_genuine))
        object.__setattr__(self, "n_impostor", int(self.n_impostor))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Calibration):
            return NotImplemented
        return (
            self.model_id == other.model_id
            and self.source == other.source
            and self.n_genuine == other.n_genuine
            and self.n_impostor == other.n_impostor
            and np.array_equal(self.distances, other.distances)
            and np.array_equal(self.fmr, other.fmr)
            and np.array_equal(self.tar, other.tar)
        )

    def __hash__(self) -> int:
        return hash(
            (self.model_id, self.source, self.n_genuine, self.n_impostor, self.fmr.tobytes())
        )

    # ---- rates -------------------------------------------------------------------------------

    @property
    def fmr_floor(self) -> float:
        """The smallest FMR this calibration reports: ``0.5 / n_impostor``.

        Where no impostor pair was observed the true rate is unknown, not zero; half a pair is a
        point estimate below the measurement resolution ``1 / n_impostor`` (it is *not* an upper
        confidence bound: with zero of n observed, the 95% upper bound is about ``3 / n``).
        """
        return 0.5 / self.n_impostor

    @overload
    def fmr_at(self, d: float) -> float: ...
    @overload
    def fmr_at(self, d: npt.ArrayLike) -> float | FloatArray: ...
    def fmr_at(self, d: npt.ArrayLike) -> float | FloatArray:
        """Per-pair false-match rate at distance ``d`` (linear between grid points; clamped at
        the grid's ends; never below :attr:`fmr_floor`). Scalar in, float out; array in, array
        out."""
        dd = np.asarray(d, dtype=np.float64)
        out = np.maximum(np.interp(dd, self.distances, self.fmr), self.fmr_floor)
        return float(out) if out.ndim == 0 else out

    @overload
    def fmr_at_gallery(self, d: float, gallery_size: int) -> float: ...
    @overload
    def fmr_at_gallery(self, d: npt.ArrayLike, gallery_size: int) -> float | FloatArray: ...
    def fmr_at_gallery(self, d: npt.ArrayLike, gallery_size: int) -> float | FloatArray:
        """Chance that at least one of ``gallery_size`` faces of other people is at or under
        ``d``: ``1 - (1 - fmr_at(d))**gallery_size``, computed with log1p/expm1."""
        if gallery_size < 1:
            raise ValueError("gallery_size must be at least 1")
        p = np.asarray(self.fmr_at(d), dtype=np.float64)
        with np.errstate(divide="ignore"):
            out = -np.expm1(gallery_size * np.log1p(-p))
        return float(out) if out.ndim == 0 else out

    @overload
    def tar_at(self, d: float) -> float: ...
    @overload
    def tar_at(self, d: npt.ArrayLike) -> float | FloatArray: ...
    def tar_at(self, d: npt.ArrayLike) -> float | FloatArray:
        """True-accept rate at distance ``d`` (linear between grid points, clamped at the ends)."""
        out = np.interp(np.asarray(d, dtype=np.float64), self.distances, self.tar)
        return float(out) if np.ndim(out) == 0 else out

    def threshold_for(self, fmr: float, gallery_size: int = 1) -> Threshold:
        """The largest grid distance whose gallery-level FMR is at most ``fmr``.

        Equivalently the per-pair target is ``1 - (1 - fmr)**(1 / gallery_size)``, so the
        threshold gets smaller as the gallery grows. The result is a :class:`Threshold` (a
        float) with ``floor_reached`` set when the target is below what the data can resolve
        (the gallery-level rate at :attr:`fmr_floor`). Then no grid distance meets the target,
        and the value returned is the edge of the resolvable range: the largest grid distance at
        which *no* impostor pair was observed. Its true rate is unknown and may exceed the
        target; callers must check ``floor_reached`` (and say so to the user), or fit the
        calibration on more impostor pairs.
        """
        if not (0.0 < fmr <= 1.0) or math.isnan(fmr):
            raise ValueError(f"fmr must be in (0, 1], got {fmr!r}")
        if gallery_size < 1:
            raise ValueError("gallery_size must be at least 1")
        rates = np.asarray(self.fmr_at_gallery(self.distances, gallery_size))
        ok = np.flatnonzero(rates <= fmr)
        if len(ok):
            k = int(ok[-1])  # rates are non-decreasing, so `ok` is a prefix
            floor = False
        else:
            zero = np.flatnonzero(self.fmr == 0.0)
            k = int(zero[-1]) if len(zero) else 0
            floor = True
        return Threshold(
            float(self.distances[k]),
            fmr_target=float(fmr),
            gallery_size=int(gallery_size),
            floor_reached=floor,
            expected_fmr=float(rates[k]),
        )

    # ---- persistence -------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; floats are written with ``repr`` precision, so round-trips are
        exact."""
        return {
            "format": CALIBRATION_FORMAT,
            "version": CALIBRATION_VERSION,
            "model_id": self.model_id,
            "source": self.source,
            "n_genuine": self.n_genuine,
            "n_impostor": self.n_impostor,
            "distances": [float(x) for x in self.distances],
            "fmr": [float(x) for x in self.fmr],
            "tar": [float(x) for x in self.tar],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
            raise ConfigError("not a Vultus calibration (missing format 'vultus-calibration')")
        if data.get("version") != CALIBRATION_VERSION:
            raise ConfigError(
                f"unsupported calibration version {data.get('version')!r} "
                f"(this Vultus reads version {CALIBRATION_VERSION})"
            )
        try:
            return cls(
                model_id=str(data["model_id"]),
                distances=np.asarray(data["distances"], dtype=np.float64),
                fmr=np.asarray(data["fmr"], dtype=np.float64),
                tar=np.asarray(data["tar"], dtype=np.float64),
                n_genuine=int(data["n_genuine"]),
                n_impostor=int(data["n_impostor"]),
                source=str(data["source"]),
            )
        except KeyError as exc:
            raise ConfigError(f"calibration is missing the field {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid calibration: {exc}") from exc

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the calibration as JSON, atomically (temporary file, then rename)."""
        atomic_write(Path(path), json.dumps(self.to_json(), indent=1) + "\n", mode=0o644)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | Traversable) -> Calibration:
        p = Path(path) if isinstance(path, str | os.PathLike) else path
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ConfigError(f"calibration file {p} does not exist") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read calibration file {p}: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"calibration file {p} is not valid JSON: {exc}") from exc
        try:
            return cls.from_json(data)
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc.message}") from exc

    @classmethod
    def default(cls, model_id: str = DEFAULT_MODEL_ID) -> Calibration:
        """The calibration shipped with Vultus for ``model_id``
        (``vultus/data/calibration_<model_id>.json``). Raises :class:`ConfigError` saying how to
        create it when it is absent."""
        if not _MODEL_ID_RE.match(model_id):
            raise ConfigError(f"invalid model id {model_id!r}")
        resource = _calibration_resource(model_id)
        if not resource.is_file():
            raise ConfigError(
                f"No calibration for face model {model_id!r}: vultus/data/"
                f"calibration_{model_id}.json is missing, so thresholds cannot be tied to "
                "false-match rates. Create it from labelled faces with "
                "`vultus calibrate LABELS.csv` (a CSV of image path and identity; at least "
                "some identities need two or more photos)."
            )
        calibration = cls.load(resource)
        if calibration.model_id != model_id:
            raise ConfigError(
                f"calibration_{model_id}.json was fitted for model {calibration.model_id!r}"
            )
        return calibration


def calibration_path(data_dir: Path, model_id: str) -> Path:
    """Where a data directory keeps its own calibration of a model (`vultus calibrate --out`)."""
    return data_dir / f"calibration_{model_id}.json"


def calibration_for(model_id: str, data_dir: Path) -> Calibration:
    """The data directory's own calibration of the model, else the one shipped with Vultus.
    Model packs ship none: until one is fitted, this raises `ConfigError` with the code
    "uncalibrated" and the command that fits it."""
    own = calibration_path(data_dir, model_id)
    if own.is_file():
        calibration = Calibration.load(own)
        if calibration.model_id != model_id:
            raise ConfigError(f"{own} was fitted for model {calibration.model_id!r}")
        return calibration
    if _MODEL_ID_RE.match(model_id) and _calibration_resource(model_id).is_file():
        return Calibration.default(model_id)
    raise ConfigError(
        f"face model {model_id!r} has no calibration, so no distance can be tied to a "
        "false-match rate: searches rank faces but decide no match, and verification, rights "
        "requests and ingest beside a suppression list are refused. Fit one on labelled photos "
        f"with `vultus calibrate LABELS.csv --out {own}`.",
        code="uncalibrated",
    )


def _calibration_resource(model_id: str) -> Traversable:
    """Where the shipped calibration for ``model_id`` lives (a seam for tests)."""
    return resources.files("vultus.data").joinpath(f"calibration_{model_id}.json")


def fit_calibration(
    templates: npt.ArrayLike,
    labels: Sequence[str],
    *,
    model_id: str,
    source: str,
    max_per_identity: int = 10,
    seed: int = 0,
    grid: npt.ArrayLike | None = None,
) -> Calibration:
    """Measure FMR and TAR on ``grid`` (default :data:`DEFAULT_GRID`) from labelled templates.

    Uses every genuine and every impostor pair among at most ``max_per_identity`` templates per
    identity (a random subset, drawn with ``seed``, of identities with more). Distances are
    histogrammed on the grid block by block; about 6,000 templates (18M pairs) take seconds.
    """
    x = normalise(templates)
    if x.ndim != 2:
        raise ValueError("templates must be a 2-d array (n, d)")
    if len(labels) != x.shape[0]:
        raise ValueError(f"{len(labels)} labels for {x.shape[0]} templates")
    g = DEFAULT_GRID if grid is None else np.asarray(grid, dtype=np.float64)
    if g.ndim != 1 or len(g) < 2 or np.any(np.diff(g) <= 0):
        raise ValueError("grid must be a strictly increasing 1-d array of at least 2 distances")
    codes = encode_labels(labels)
    keep = select_per_identity(codes, max_per_identity, seed=seed)
    x, codes = x[keep], codes[keep]

    # counts[k] = pairs whose distance falls in (g[k-1], g[k]]; the last bin is beyond the grid.
    gen_counts = np.zeros(len(g) + 1, dtype=np.int64)
    imp_counts = np.zeros(len(g) + 1, dtype=np.int64)
    for gen, imp in iter_pair_distances(x, codes):
        gen_counts += np.bincount(np.searchsorted(g, gen, side="left"), minlength=len(g) + 1)
        imp_counts += np.bincount(np.searchsorted(g, imp, side="left"), minlength=len(g) + 1)
    n_gen, n_imp = int(gen_counts.sum()), int(imp_counts.sum())
    if n_imp == 0:
        raise ValueError("no impostor pairs: calibration needs at least two identities")
    if n_gen == 0:
        raise ValueError("no genuine pairs: calibration needs identities with two or more photos")
    return Calibration(
        model_id=model_id,
        distances=g,
        fmr=np.cumsum(imp_counts[:-1]) / n_imp,
        tar=np.cumsum(gen_counts[:-1]) / n_gen,
        n_genuine=n_gen,
        n_impostor=n_imp,
        source=source,
    )
