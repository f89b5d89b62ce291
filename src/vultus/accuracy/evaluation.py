"""Accuracy of a face model on labelled templates: the numbers Vultus reports, and how.

:func:`evaluate` measures, on templates with identity labels:

* **Pair accuracy** (when a pair list is given, LFW protocol): for each fold, the threshold that
  maximises accuracy on the other folds is applied to the held-out fold; mean ± standard
  deviation (ddof=1, as the LFW protocol defines it) over folds, and the mean threshold.
* **TAR at FAR** 1e-2, 1e-3, 1e-4 over *all* same-person and different-person pairs among at most
  ``max_per_identity`` templates per identity (the first ones, in the given order). The threshold
  at each FAR is the impostor quantile; a FAR below ``1 / n_impostor`` is reported as not
  measurable rather than extrapolated.
* **Rank-1 / rank-5 identification**, closed set with distractors: the gallery is the first
  template of every identity; probes are the remaining templates of identities with two or more;
  identities with a single template are distractors (in the gallery only). Ties count against the
  probe. Also the open-set detection-and-identification rate (DIR) at FPIR 1e-2, where each
  probe's non-mated search is the same search with its own gallery mate left out.
* **Fused gallery templates**: the same rank-1 / rank-5, where identities with more than
  ``fusion_photos`` templates are enrolled with the fused template (mean direction, as
  ``Engine.search_subject`` uses) of their first 1, 2, ... ``fusion_photos`` photos and probed
  with the rest; every other identity is a one-photo distractor. Same probes for every count.
* **Error rates by face quality** (when a quality score per template is given, e.g. the HOG
  detector's margin): FNMR and FMR at the all-pairs FAR 1e-3 threshold, for pairs with a face
  in the lowest tenth of the score against the rest.

**Photos without a face** stay in the protocol: a pair with such a photo is a rejection, as
ISO/IEC 19795-1 counts a failure to acquire (an error when the pair is of one person, right when
not), and a probe without a face is a rank-1 and rank-5 miss. The standard figures (pair
accuracy, rank-1, rank-5, DIR) are so over the whole protocol; pair accuracy on the pairs with
both faces found is reported beside it. TAR at FAR, fusion and the quality breakdown are
measured on the photos with a face.

Every decision uses the Vultus distance (see :mod:`vultus.accuracy.calibration`): a pair
"matches" when its distance is at most the threshold. All pair computations are blocked; about
6,000 templates take seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

from vultus.accuracy.calibration import (
    encode_labels,
    iter_pair_distances,
    pairwise_distances,
    select_per_identity,
    similarity_to_distance,
)
from vultus.vectors import normalise

FloatArray = npt.NDArray[np.float64]

FARS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
FPIR: float = 1e-2
QUALITY_FAR: float = 1e-3
LOW_QUALITY_FRACTION: float = 0.1

Pair = tuple[int, int, bool, int]

_PROBE_BLOCK_ENTRIES = 4_000_000


# --------------------------------------------------------------------------------------------
# Report


@dataclass(frozen=True)
class PairAccuracy:
    """k-fold accuracy on a fixed list of pairs (the LFW protocol), pairs with a photo without a
    face counted as rejections."""

    n_pairs: int  # every pair of the protocol, with or without faces
    n_folds: int
    accuracy_mean: float
    accuracy_std: float  # sample standard deviation over folds (ddof=1)
    accuracy_sem: float  # standard error of the mean: std / sqrt(n_folds)
    threshold_mean: float
    fold_accuracies: tuple[float, ...]
    fold_thresholds: tuple[float, ...]
    n_pairs_without_face: int = 0  # pairs with a photo where no face was found
    accuracy_with_faces: float | None = None  # mean over folds of the pairs with both faces


@dataclass(frozen=True)
class TarAtFar:
    """True-accept rate at one false-accept rate; ``None`` values when not measurable."""

    far: float
    measurable: bool
    tar: float | None
    threshold: float | None
    achieved_far: float | None  # the impostor fraction actually at or under the threshold


@dataclass(frozen=True)
class AllPairsVerification:
    max_per_identity: int
    n_templates: int  # templates used, after the per-identity cap
    n_genuine: int
    n_impostor: int
    points: tuple[TarAtFar, ...]


@dataclass(frozen=True)
class Identification:
    gallery_size: int
    n_probes: int  # probes with a face
    n_distractors: int
    rank1: float
    rank5: float
    fpir: float
    dir_measurable: bool
    dir_at_fpir: float | None
    dir_threshold: float | None
    achieved_fpir: float | None
    n_probes_without_face: int = 0  # counted as misses in rank-1, rank-5 and DIR


@dataclass(frozen=True)
class FusionPoint:
    photos: int  # gallery photos fused per enrolled identity
    rank1: float
    rank5: float


@dataclass(frozen=True)
class FusedIdentification:
    n_enrolled: int  # identities with more than `max(photos)` templates
    gallery_size: int
    n_probes: int
    points: tuple[FusionPoint, ...]


@dataclass(frozen=True)
class QualityBin:
    n_genuine: int
    n_impostor: int
    fnmr: float | None  # genuine pairs over the threshold
    fmr: float | None  # impostor pairs at or under it


@dataclass(frozen=True)
class QualityBreakdown:
    measure: str
    low_below: float  # the score under which a face counts as low quality
    far: float
    threshold: float
    low: QualityBin  # pairs with at least one low-quality face
    rest: QualityBin


@dataclass(frozen=True)
class EvaluationReport:
    n_templates: int
    n_identities: int
    pair_accuracy: PairAccuracy | None
    verification: AllPairsVerification
    identification: Identification | None
    fusion: FusedIdentification | None = None
    quality: QualityBreakdown | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (nested dicts, lists, numbers, ``None``)."""
        out = _jsonable(self)
        assert isinstance(out, dict)
        return out


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------------------------
# Evaluation


def evaluate(
    templates: npt.ArrayLike,
    labels: Sequence[str],
    *,
    pairs: Sequence[Pair] | None = None,
    max_per_identity: int = 10,
    fusion_photos: int = 3,
    quality: Sequence[float] | None = None,
    quality_measure: str = "det_score",
    pairs_without_face: Sequence[tuple[bool, int]] = (),
    labels_without_face: Sequence[str] = (),
) -> EvaluationReport:
    """Evaluate templates (n, d) with identity ``labels`` (n strings); see the module docstring.

    ``pairs`` are ``(i, j, same, fold)`` with indices into ``templates``; given, pair accuracy is
    computed with leave-one-fold-out over the distinct folds (at least two). ``quality`` holds
    one score per template (higher is better) for the error rates by quality.

    ``pairs_without_face`` are ``(same, fold)`` of the protocol's pairs with a photo where no
    face was found, ``labels_without_face`` the identities of those photos: both count as misses
    (see the module docstring), so the figures stay on the whole protocol.
    """
    x = normalise(templates)
    if x.ndim != 2:
        raise ValueError("templates must be a 2-d array (n, d)")
    n = x.shape[0]
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} templates")
    codes = encode_labels(labels)
    n_identities = int(codes.max()) + 1 if n else 0

    verification = tar_at_far(x, codes, max_per_identity=max_per_identity)
    by_quality = None
    if quality is not None:
        if len(quality) != n:
            raise ValueError(f"{len(quality)} quality scores for {n} templates")
        point = next((p for p in verification.points if p.far == QUALITY_FAR), None)
        if point is not None and point.threshold is not None:
            by_quality = quality_breakdown(
                x,
                codes,
                np.asarray(quality, dtype=np.float64),
                threshold=point.threshold,
                far=QUALITY_FAR,
                measure=quality_measure,
                max_per_identity=max_per_identity,
            )
    return EvaluationReport(
        n_templates=n,
        n_identities=n_identities,
        pair_accuracy=None if pairs is None else pair_accuracy(x, pairs, pairs_without_face),
        verification=verification,
        identification=identification(
            x, codes, missing_probes=_missing_probes(labels, labels_without_face)
        ),
        fusion=fused_identification(x, codes, max_photos=fusion_photos),
        quality=by_quality,
    )


def _missing_probes(labels: Sequence[str], without_face: Sequence[str]) -> int:
    """Probes the protocol has and the templates lack: per identity, every labelled photo but
    the gallery one is a probe; with a face or not."""
    measured: dict[str, int] = {}
    for label in labels:
        measured[label] = measured.get(label, 0) + 1
    lost: dict[str, int] = {}
    for label in without_face:
        lost[label] = lost.get(label, 0) + 1
    return sum(
        max(0, measured.get(who, 0) + n - 1) - max(0, measured.get(who, 0) - 1)
        for who, n in lost.items()
    )


def _pair_distances(x: FloatArray, i: npt.NDArray[np.int64], j: npt.NDArray[np.int64]) -> Any:
    cos = np.einsum("ij,ij->i", x[i], x[j])
    return similarity_to_distance(cos)


def best_threshold(d: npt.ArrayLike, same: npt.ArrayLike) -> float:
    """The distance threshold that maximises accuracy of ``d <= t`` ⇔ same person.

    Thresholds are placed halfway between consecutive distinct distances (below the smallest
    when accepting nothing is best, at the largest when accepting everything is); among equally
    accurate thresholds the smallest wins (fewer false matches).
    """
    dd = np.asarray(d, dtype=np.float64)
    ss = np.asarray(same, dtype=bool)
    if dd.shape != ss.shape or dd.ndim != 1 or len(dd) == 0:
        raise ValueError("need matching, non-empty 1-d arrays of distances and labels")
    order = np.argsort(dd, kind="stable")
    ds, sm = dd[order], ss[order]
    m = len(ds)
    # Accepting the k smallest (k = 0..m): correct = same among them + different among the rest.
    same_in = np.r_[0, np.cumsum(sm)]
    diff_in = np.r_[0, np.cumsum(~sm)]
    correct = same_in + (diff_in[-1] - diff_in)
    splittable = np.ones(m + 1, dtype=bool)
    splittable[1:-1] = ds[1:] > ds[:-1]  # never cut between equal distances
    correct = np.where(splittable, correct, -1)
    k = int(np.argmax(correct))  # first maximum: the smallest threshold
    if k == 0:
        return float(np.nextafter(ds[0], -np.inf))
    if k == m:
        return float(ds[-1])
    lo, hi = float(ds[k - 1]), float(ds[k])
    mid = (lo + hi) / 2.0
    return mid if lo <= mid < hi else lo


def pair_accuracy(
    x: FloatArray, pairs: Sequence[Pair], without_face: Sequence[tuple[bool, int]] = ()
) -> PairAccuracy:
    """Leave-one-fold-out accuracy on ``pairs`` of rows of normalised ``x``, with the
    ``(same, fold)`` pairs ``without_face`` counted as rejections in their folds."""
    if len(pairs) == 0:
        raise ValueError("pairs is empty")
    arr = np.asarray([(int(i), int(j), bool(s), int(f)) for i, j, s, f in pairs], dtype=np.int64)
    lost = np.asarray([(bool(s), int(f)) for s, f in without_face], dtype=np.int64).reshape(-1, 2)
    i, j, same, fold = arr[:, 0], arr[:, 1], arr[:, 2].astype(bool), arr[:, 3]
    n = x.shape[0]
    if np.any((i < 0) | (i >= n) | (j < 0) | (j >= n)):
        raise ValueError(f"pair indices must lie in [0, {n})")
    folds = np.unique(np.r_[fold, lost[:, 1]])
    if len(folds) < 2:
        raise ValueError("pair accuracy needs at least two folds")
    d = _pair_distances(x, i, j)
    accs: list[float] = []
    found_accs: list[float] = []
    thresholds: list[float] = []
    for f in folds:
        test = fold == f
        t = best_threshold(d[~test], same[~test])
        right = int(np.sum((d[test] <= t) == same[test]))
        lost_here = lost[lost[:, 1] == f]
        # A pair without a face is rejected: right only when it is of two people.
        lost_right = int(np.sum(lost_here[:, 0] == 0))
        accs.append((right + lost_right) / (int(test.sum()) + len(lost_here)))
        if test.any():
            found_accs.append(right / int(test.sum()))
        thresholds.append(t)
    acc = np.asarray(accs)
    std = float(np.std(acc, ddof=1))
    return PairAccuracy(
        n_pairs=len(arr) + len(lost),
        n_folds=len(folds),
        accuracy_mean=float(acc.mean()),
        accuracy_std=std,
        accuracy_sem=std / math.sqrt(len(folds)),
        threshold_mean=float(np.mean(thresholds)),
        fold_accuracies=tuple(accs),
        fold_thresholds=tuple(thresholds),
        n_pairs_without_face=len(lost),
        accuracy_with_faces=float(np.mean(found_accs)),
    )


def _allowed_false(rate: float, n_total: int) -> int:
    """How many of ``n_total`` negatives a rate allows: floor(rate * n), robust to rounding."""
    return int(math.floor(rate * n_total * (1.0 + 1e-12)))


def _rate_threshold(smallest: FloatArray, n_total: int, rate: float) -> float | None:
    """The largest threshold t with count(negatives <= t) <= floor(rate * n_total).

    ``smallest`` holds, sorted, at least the ``floor(rate * n_total) + 1`` smallest negative
    distances (or all of them). ``None`` when the rate is below ``1 / n_total``.
    """
    k = _allowed_false(rate, n_total)
    if k == 0:
        return None
    k = min(k, len(smallest))
    t = float(smallest[k - 1])
    if k < len(smallest) and smallest[k] == t:  # a tie at the cut: stay strictly below it
        t = float(np.nextafter(t, -np.inf))
    return t


def tar_at_far(
    x: FloatArray,
    label_codes: npt.ArrayLike,
    *,
    max_per_identity: int = 10,
    fars: Sequence[float] = FARS,
) -> AllPairsVerification:
    """TAR at each FAR over all pairs among at most ``max_per_identity`` templates per identity
    (the first ones). Keeps every genuine distance and only the smallest impostor distances the
    largest FAR needs."""
    codes = np.asarray(label_codes)
    keep = select_per_identity(codes, max_per_identity)
    xs, cs = x[keep], codes[keep]
    m = len(keep)
    n_pairs = m * (m - 1) // 2
    _, counts = np.unique(cs, return_counts=True)
    n_gen = int(np.sum(counts * (counts - 1) // 2))
    n_imp = n_pairs - n_gen
    need = max((_allowed_false(f, n_imp) for f in fars), default=0) + 1

    genuine: list[FloatArray] = []
    smallest = np.zeros(0, dtype=np.float64)
    for gen, imp in iter_pair_distances(xs, cs):
        genuine.append(gen)
        cand = np.concatenate([smallest, imp])
        if len(cand) > need:
            cand = np.partition(cand, need - 1)[:need]
        smallest = cand
    smallest = np.sort(smallest)
    gen_d = np.concatenate(genuine) if genuine else np.zeros(0, dtype=np.float64)

    points = []
    for far in fars:
        t = _rate_threshold(smallest, n_imp, far) if n_imp else None
        if t is None or n_gen == 0:
            points.append(TarAtFar(far, False, None, None, None))
            continue
        points.append(
            TarAtFar(
                far=far,
                measurable=True,
                tar=float(np.mean(gen_d <= t)),
                threshold=t,
                achieved_far=int(np.searchsorted(smallest, t, side="right")) / n_imp,
            )
        )
    return AllPairsVerification(
        max_per_identity=max_per_identity,
        n_templates=m,
        n_genuine=n_gen,
        n_impostor=n_imp,
        points=tuple(points),
    )


def identification(
    x: FloatArray, label_codes: npt.ArrayLike, *, fpir: float = FPIR, missing_probes: int = 0
) -> Identification | None:
    """Closed-set rank-1/rank-5 with distractors, and DIR at ``fpir``; ``None`` without probes.

    Gallery: the first template of each identity (in order). Probes: every other template, and
    ``missing_probes`` more without a face, each a miss.
    """
    codes = np.asarray(label_codes)
    _, first = np.unique(codes, return_index=True)
    gallery_rows = np.sort(first)
    gallery_codes = codes[gallery_rows]
    is_gallery = np.zeros(len(codes), dtype=bool)
    is_gallery[gallery_rows] = True
    probe_rows = np.flatnonzero(~is_gallery)
    if len(probe_rows) == 0:
        return None
    column_of = {int(c): k for k, c in enumerate(gallery_codes)}
    mate_col = np.asarray([column_of[int(c)] for c in codes[probe_rows]], dtype=np.int64)
    per_identity = np.bincount(codes)
    n_distractors = int(np.sum(per_identity[gallery_codes] == 1))

    g = x[gallery_rows]
    n_g = len(gallery_rows)
    ranks = np.empty(len(probe_rows), dtype=np.int64)
    mate_sim = np.empty(len(probe_rows), dtype=np.float64)
    best_other = np.full(len(probe_rows), -np.inf, dtype=np.float64)
    step = max(1, _PROBE_BLOCK_ENTRIES // max(n_g, 1))
    for start in range(0, len(probe_rows), step):
        stop = min(start + step, len(probe_rows))
        s = x[probe_rows[start:stop]] @ g.T
        rows = np.arange(stop - start)
        mate = s[rows, mate_col[start:stop]]
        # Pessimistic ties: every other entry at least as similar as the mate ranks ahead.
        ranks[start:stop] = np.sum(s >= mate[:, None], axis=1)
        s[rows, mate_col[start:stop]] = -np.inf
        mate_sim[start:stop] = mate
        if n_g > 1:
            best_other[start:stop] = s.max(axis=1)

    dir_at = dir_t = achieved = None
    if n_g > 1:
        nonmated = np.sort(similarity_to_distance(best_other))
        dir_t = _rate_threshold(nonmated, len(nonmated), fpir)
        if dir_t is not None:
            hit = (ranks == 1) & (similarity_to_distance(mate_sim) <= dir_t)
            dir_at = float(np.sum(hit)) / (len(probe_rows) + missing_probes)
            achieved = int(np.searchsorted(nonmated, dir_t, side="right")) / len(nonmated)
    return Identification(
        gallery_size=n_g,
        n_probes=len(probe_rows),
        n_distractors=n_distractors,
        rank1=float(np.sum(ranks <= 1)) / (len(probe_rows) + missing_probes),
        rank5=float(np.sum(ranks <= 5)) / (len(probe_rows) + missing_probes),
        fpir=fpir,
        dir_measurable=dir_at is not None,
        dir_at_fpir=dir_at,
        dir_threshold=dir_t,
        achieved_fpir=achieved,
        n_probes_without_face=missing_probes,
    )


def _ranks(probes: FloatArray, gallery: FloatArray, mate_col: npt.NDArray[np.int64]) -> Any:
    """Rank of each probe's mate among the gallery columns, ties counted against the probe."""
    ranks = np.empty(len(probes), dtype=np.int64)
    step = max(1, _PROBE_BLOCK_ENTRIES // max(len(gallery), 1))
    for start in range(0, len(probes), step):
        s = probes[start : start + step] @ gallery.T
        mate = s[np.arange(len(s)), mate_col[start : start + step]]
        ranks[start : start + step] = np.sum(s >= mate[:, None], axis=1)
    return ranks


def fused_identification(
    x: FloatArray, label_codes: npt.ArrayLike, *, max_photos: int = 3
) -> FusedIdentification | None:
    """Rank-1/5 with gallery templates fused from 1..``max_photos`` photos; see the module
    docstring. ``None`` when no identity has more than ``max_photos`` templates."""
    if max_photos < 1:
        raise ValueError("max_photos must be at least 1")
    codes = np.asarray(label_codes)
    rows_of: dict[int, list[int]] = {}
    for i, c in enumerate(codes.tolist()):
        rows_of.setdefault(c, []).append(i)
    enrolled = [c for c, rows in rows_of.items() if len(rows) > max_photos]
    if not enrolled:
        return None
    column = {c: k for k, c in enumerate(rows_of)}
    probe_rows = np.asarray([r for c in enrolled for r in rows_of[c][max_photos:]])
    mate_col = np.asarray([column[int(codes[r])] for r in probe_rows], dtype=np.int64)
    single = np.stack([x[rows[0]] for rows in rows_of.values()])
    points = []
    for k in range(1, max_photos + 1):
        gallery = single.copy()
        for c in enrolled:
            fused = x[rows_of[c][:k]].mean(axis=0)
            gallery[column[c]] = fused / np.linalg.norm(fused)
        ranks = _ranks(x[probe_rows], gallery, mate_col)
        points.append(FusionPoint(k, float(np.mean(ranks <= 1)), float(np.mean(ranks <= 5))))
    return FusedIdentification(
        n_enrolled=len(enrolled),
        gallery_size=len(single),
        n_probes=len(probe_rows),
        points=tuple(points),
    )


def quality_breakdown(
    x: FloatArray,
    label_codes: npt.ArrayLike,
    quality: FloatArray,
    *,
    threshold: float,
    far: float,
    measure: str,
    max_per_identity: int = 10,
    low_fraction: float = LOW_QUALITY_FRACTION,
) -> QualityBreakdown:
    """FNMR and FMR at ``threshold`` for pairs with a low-quality face (score in the lowest
    ``low_fraction``) against the rest, over the pairs :func:`tar_at_far` uses."""
    codes = np.asarray(label_codes)
    keep = select_per_identity(codes, max_per_identity)
    xs, cs, qs = x[keep], codes[keep], quality[keep]
    cut = float(np.quantile(qs, low_fraction))
    low = qs < cut
    counts = np.zeros((2, 2, 2), dtype=np.int64)  # [low pair][same][accepted]
    n = len(xs)
    step = max(1, _PROBE_BLOCK_ENTRIES // max(n, 1))
    for start in range(0, n, step):
        stop = min(start + step, n)
        accepted = pairwise_distances(xs[start:stop], xs) <= threshold
        upper = np.arange(n)[None, :] > np.arange(start, stop)[:, None]
        same = cs[start:stop, None] == cs[None, :]
        low_pair = low[start:stop, None] | low[None, :]
        for lp in (0, 1):
            for sm in (0, 1):
                sel = upper & (low_pair == lp) & (same == sm)
                counts[lp, sm, 1] += int(np.sum(sel & accepted))
                counts[lp, sm, 0] += int(np.sum(sel & ~accepted))

    def _bin(lp: int) -> QualityBin:
        gen, imp = int(counts[lp, 1].sum()), int(counts[lp, 0].sum())
        return QualityBin(
            n_genuine=gen,
            n_impostor=imp,
            fnmr=counts[lp, 1, 0] / gen if gen else None,
            fmr=counts[lp, 0, 1] / imp if imp else None,
        )

    return QualityBreakdown(measure, cut, far, threshold, low=_bin(1), rest=_bin(0))


# --------------------------------------------------------------------------------------------
# Printing


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


def print_report(report: EvaluationReport, console: Console | None = None) -> None:
    """Print the report as Rich tables."""
    console = console or Console()
    console.print(
        f"[bold]Evaluation[/bold]: {report.n_templates} templates, {report.n_identities} identities"
    )

    pa = report.pair_accuracy
    if pa is not None:
        lost = (
            f", {pa.n_pairs_without_face} without a face counted as rejections"
            if pa.n_pairs_without_face
            else ""
        )
        t = Table(title=f"Pair accuracy ({pa.n_folds}-fold, {pa.n_pairs} pairs{lost})")
        t.add_column("accuracy", justify="right")
        t.add_column("± std", justify="right")
        t.add_column("± s.e.", justify="right")
        t.add_column("mean threshold", justify="right")
        t.add_row(
            _pct(pa.accuracy_mean),
            _pct(pa.accuracy_std),
            _pct(pa.accuracy_sem),
            f"{pa.threshold_mean:.4f}",
        )
        console.print(t)
        if pa.n_pairs_without_face and pa.accuracy_with_faces is not None:
            console.print(f"on the pairs with both faces found: {_pct(pa.accuracy_with_faces)}")

    v = report.verification
    t = Table(
        title=(
            f"Verification over all pairs (≤{v.max_per_identity} per identity, "
            f"{v.n_templates} templates: {v.n_genuine:,} genuine, {v.n_impostor:,} impostor)"
        )
    )
    t.add_column("FAR", justify="right")
    t.add_column("TAR", justify="right")
    t.add_column("threshold", justify="right")
    t.add_column("achieved FAR", justify="right")
    for p in v.points:
        if not p.measurable:
            why = (
                f"not measurable: needs ≥ {math.ceil(1 / p.far):,} impostor pairs"
                if _allowed_false(p.far, v.n_impostor) == 0
                else "no genuine pairs"
            )
            t.add_row(f"{p.far:g}", why, "—", "—")
            continue
        assert p.threshold is not None and p.achieved_far is not None
        t.add_row(f"{p.far:g}", _pct(p.tar), f"{p.threshold:.4f}", f"{p.achieved_far:.2e}")
    console.print(t)

    ident = report.identification
    if ident is None:
        console.print("Identification: no probes (no identity has two or more templates).")
        return
    t = Table(
        title=(
            f"Identification (gallery {ident.gallery_size:,} incl. {ident.n_distractors:,} "
            f"distractors, {ident.n_probes:,} probes"
            + (
                f" + {ident.n_probes_without_face:,} without a face, counted as misses)"
                if ident.n_probes_without_face
                else ")"
            )
        )
    )
    t.add_column("rank-1", justify="right")
    t.add_column("rank-5", justify="right")
    t.add_column(f"DIR @ FPIR {ident.fpir:g}", justify="right")
    t.add_column("threshold", justify="right")
    t.add_row(
        _pct(ident.rank1),
        _pct(ident.rank5),
        _pct(ident.dir_at_fpir) if ident.dir_measurable else "not measurable",
        "—" if ident.dir_threshold is None else f"{ident.dir_threshold:.4f}",
    )
    console.print(t)

    fusion = report.fusion
    if fusion is not None:
        t = Table(
            title=(
                f"Fused gallery templates ({fusion.n_enrolled:,} people enrolled, gallery "
                f"{fusion.gallery_size:,}, {fusion.n_probes:,} probes)"
            )
        )
        t.add_column("photos fused", justify="right")
        t.add_column("rank-1", justify="right")
        t.add_column("rank-5", justify="right")
        for fp in fusion.points:
            t.add_row(str(fp.photos), _pct(fp.rank1), _pct(fp.rank5))
        console.print(t)

    q = report.quality
    if q is not None:
        t = Table(
            title=(
                f"Errors by quality ({q.measure} < {q.low_below:.3g} is low) at the FAR {q.far:g} "
                f"threshold {q.threshold:.4f}"
            )
        )
        t.add_column("pairs", justify="left")
        t.add_column("genuine", justify="right")
        t.add_column("FNMR", justify="right")
        t.add_column("impostor", justify="right")
        t.add_column("FMR", justify="right")
        for name, b in (("with a low-quality face", q.low), ("both faces better", q.rest)):
            t.add_row(
                name,
                f"{b.n_genuine:,}",
                _pct(b.fnmr),
                f"{b.n_impostor:,}",
                "—" if b.fmr is None else f"{b.fmr:.2e}",
            )
        console.print(t)
