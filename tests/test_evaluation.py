from __future__ import annotations

import itertools
import json
import math
import time

import numpy as np
import pytest
from rich.console import Console

from vultus.accuracy.calibration import distance
from vultus.accuracy.evaluation import (
    EvaluationReport,
    best_threshold,
    evaluate,
    print_report,
)


def separated(counts: list[int], *, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Orthogonal identity centres plus tiny noise: genuine ≈ 0.16 apart, impostor ≈ 1.41."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for k, c in enumerate(counts):
        for _ in range(c):
            v = 0.01 * rng.normal(size=128)
            v[k] += 1.0
            rows.append(v)
            labels.append(f"person {k}")
    return np.asarray(rows, dtype=np.float32), labels


def noisy(n_ids: int, per_id: int, *, noise: float, seed: int = 0, dim: int = 16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    x = np.repeat(centres, per_id, axis=0) + noise * rng.normal(size=(n_ids * per_id, dim))
    labels = [f"id{k}" for k in range(n_ids) for _ in range(per_id)]
    return x.astype(np.float32), labels


def ten_fold_pairs(labels: list[str], seed: int = 0) -> list[tuple[int, int, bool, int]]:
    rng = np.random.default_rng(seed)
    n = len(labels)
    by_label: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_label.setdefault(lab, []).append(i)
    multi = [v for v in by_label.values() if len(v) >= 2]
    pairs = []
    for fold in range(10):
        for _ in range(10):
            group = multi[rng.integers(len(multi))]
            i, j = rng.choice(group, size=2, replace=False)
            pairs.append((int(i), int(j), True, fold))
            while True:
                a, b = rng.integers(n, size=2)
                if labels[a] != labels[b]:
                    break
            pairs.append((int(a), int(b), False, fold))
    return pairs


COUNTS = [1, 2, 3, 4, 5, 6, 1, 2, 3, 12, 1, 4, 2, 2, 3, 1, 5, 2, 2, 3] * 3  # 60 identities


# ---- everything perfect --------------------------------------------------------------------


def test_perfectly_separated_identities_score_perfectly():
    x, labels = separated(COUNTS)
    report = evaluate(x, labels, pairs=ten_fold_pairs(labels))
    assert isinstance(report, EvaluationReport)
    assert report.n_templates == sum(COUNTS) and report.n_identities == 60

    pa = report.pair_accuracy
    assert pa is not None and pa.n_folds == 10 and pa.n_pairs == 200
    assert pa.accuracy_mean == 1.0 and pa.accuracy_std == 0.0
    assert 0.2 < pa.threshold_mean < 1.3

    v = report.verification
    capped = [min(c, 10) for c in COUNTS]
    m = sum(capped)
    assert v.n_templates == m
    assert v.n_genuine == sum(c * (c - 1) // 2 for c in capped)
    assert v.n_impostor == m * (m - 1) // 2 - v.n_genuine
    assert v.n_impostor >= 10_000  # every FAR down to 1e-4 is measurable
    assert [p.far for p in v.points] == [1e-2, 1e-3, 1e-4]
    for p in v.points:
        assert p.measurable and p.tar == 1.0
        assert p.threshold is not None and 0.3 < p.threshold < 1.45

    ident = report.identification
    assert ident is not None
    assert ident.gallery_size == 60
    assert ident.n_probes == sum(COUNTS) - 60
    assert ident.n_distractors == COUNTS.count(1)
    assert ident.rank1 == 1.0 and ident.rank5 == 1.0
    assert ident.dir_measurable and ident.dir_at_fpir == 1.0


# ---- random labels -------------------------------------------------------------------------


def test_random_identities_rank1_is_near_chance():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(600, 64)).astype(np.float32)
    labels = [f"id{k}" for k in rng.permutation(np.repeat(np.arange(200), 3))]
    report = evaluate(x, labels, pairs=ten_fold_pairs(labels, seed=1))
    ident = report.identification
    assert ident is not None and ident.gallery_size == 200 and ident.n_probes == 400
    assert ident.rank1 < 0.03  # chance: 1/200
    assert ident.rank5 < 0.08  # chance: 5/200
    assert report.pair_accuracy is not None and report.pair_accuracy.accuracy_mean < 0.7
    tar1 = report.verification.points[0]
    assert tar1.far == 1e-2 and tar1.tar is not None and tar1.tar < 0.05


def test_noisier_identities_score_lower_than_clean_ones():
    clean = evaluate(*noisy(80, 4, noise=0.2, seed=3))
    dirty = evaluate(*noisy(80, 4, noise=1.2, seed=3))
    assert clean.identification is not None and dirty.identification is not None
    assert clean.identification.rank1 > dirty.identification.rank1
    assert dirty.identification.rank1 <= dirty.identification.rank5
    ta, tb = clean.verification.points[1], dirty.verification.points[1]
    assert ta.tar is not None and tb.tar is not None and ta.tar > tb.tar


# ---- TAR at FAR against brute force --------------------------------------------------------


def test_tar_at_far_matches_brute_force_impostor_quantile():
    x, labels = noisy(30, 5, noise=0.9, seed=11)
    report = evaluate(x, labels)
    gen, imp = [], []
    for i, j in itertools.combinations(range(len(labels)), 2):
        (gen if labels[i] == labels[j] else imp).append(distance(x[i], x[j]))
    imp_sorted = np.sort(imp)
    v = report.verification
    assert (v.n_genuine, v.n_impostor) == (len(gen), len(imp)) == (300, 10_875)
    for p in v.points:
        k = math.floor(p.far * len(imp))
        if k == 0:
            assert p.far == 1e-4 and not p.measurable
            assert p.tar is None and p.threshold is None and p.achieved_far is None
            continue
        assert p.measurable
        assert p.threshold == pytest.approx(imp_sorted[k - 1], abs=1e-12)
        assert p.achieved_far == k / len(imp)
        assert p.tar == pytest.approx(np.mean(np.asarray(gen) <= p.threshold))


def test_far_measurability_follows_the_number_of_impostor_pairs():
    # 15 identities x 3: 990 total pairs, 45 genuine → 945 impostor: 1e-2 ok, 1e-3 not.
    x, labels = noisy(15, 3, noise=0.5, seed=2)
    v = evaluate(x, labels).verification
    assert v.n_impostor == 945
    assert [p.measurable for p in v.points] == [True, False, False]


def test_max_per_identity_keeps_the_first_templates():
    x, labels = noisy(4, 15, noise=0.5, seed=5)
    v = evaluate(x, labels, max_per_identity=10).verification
    assert v.n_templates == 40 and v.n_genuine == 4 * 45
    # The first ten of each identity, not a random ten: compare against an explicit subset.
    keep = [i for k in range(4) for i in range(15 * k, 15 * k + 10)]
    sub = evaluate(x[keep], [labels[i] for i in keep], max_per_identity=100).verification
    assert sub.points == v.points


# ---- identification by hand ----------------------------------------------------------------


def unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_ranks_on_a_hand_made_gallery():
    # Gallery: identity k at angle 10k degrees (k = 0..6). Three probes:
    #   id0 at 22°: ids 1, 2, 3, 4 are closer than 0 (12, 2, 8, 18 vs 22 degrees) → rank 5
    #   id6 at -10°: ids 0..5 are all closer than 6 (70 degrees away)             → rank 7
    #   id3 at 31°: its own gallery photo is nearest                              → rank 1
    gallery = [unit(10 * k) for k in range(7)]
    probes = [unit(22), unit(-10), unit(31)]
    x = np.asarray(gallery + probes)
    labels = [f"g{k}" for k in range(7)] + ["g0", "g6", "g3"]
    ident = evaluate(x, labels).identification
    assert ident is not None
    assert (ident.gallery_size, ident.n_probes, ident.n_distractors) == (7, 3, 4)
    assert ident.rank1 == pytest.approx(1 / 3)
    assert ident.rank5 == pytest.approx(2 / 3)


def test_gallery_is_the_first_photo_in_the_given_order():
    # Identity a has photos at 10° and 50°, identity b one photo at 70°.
    a1, a2, b = unit(10), unit(50), unit(70)
    # Gallery a@10°, b@70°: probe a@50° is 40° from its mate, 20° from b → rank 2.
    first = evaluate(np.asarray([a1, b, a2]), ["a", "b", "a"]).identification
    # Gallery a@50°, b@70°: probe a@10° is 40° from its mate, 60° from b → rank 1.
    second = evaluate(np.asarray([a2, b, a1]), ["a", "b", "a"]).identification
    assert first is not None and second is not None
    assert (first.rank1, first.rank5) == (0.0, 1.0)
    assert (second.rank1, second.rank5) == (1.0, 1.0)
    assert first.n_distractors == second.n_distractors == 1


def test_no_probes_means_no_identification():
    x, labels = noisy(5, 1, noise=0.1)
    report = evaluate(x, labels)
    assert report.identification is None
    assert report.verification.n_genuine == 0
    assert not any(p.measurable for p in report.verification.points)


# ---- 10-fold accuracy by hand --------------------------------------------------------------


def test_ten_fold_accuracy_matches_hand_computation():
    # One same-person and one different-person pair per fold, at chosen distances.
    # Folds 1..9: same at 0.20 + 0.01 f, different at 1.40 + 0.01 f (cleanly separated).
    # Fold 0: same at 0.20, different at 0.10 (a different person closer than everyone).
    # Held out fold f ≥ 1: the other folds are best cut between their largest "same"
    #   distance and smallest "different" distance above it (17/18 right; fold 0's 0.10
    #   is wrong either way) → fold f is right on both pairs: accuracy 1.
    #   Thresholds: f = 1 → (0.29 + 1.42) / 2 = 0.855; f = 9 → (0.28 + 1.41) / 2 = 0.845;
    #   f = 2..8 → (0.29 + 1.41) / 2 = 0.85.
    # Held out fold 0: folds 1..9 are separable, threshold (0.29 + 1.41) / 2 = 0.85, and
    #   fold 0's 0.10 pair is accepted → accuracy 1/2.
    # Mean 0.95; sample std sqrt((0.45² + 9 · 0.05²) / 9) = sqrt(0.025); mean threshold 0.85.
    same_d = [0.20] + [0.20 + 0.01 * f for f in range(1, 10)]
    diff_d = [0.10] + [1.40 + 0.01 * f for f in range(1, 10)]
    rows, labels, pairs = [], [], []
    for f in range(10):
        for d, same in ((same_d[f], True), (diff_d[f], False)):
            theta = 2 * math.degrees(math.asin(d / 2))  # chord length d on the unit circle
            i = len(rows)
            rows += [unit(0), unit(theta)]
            labels += [f"a{f}{same}", f"a{f}{same}" if same else f"b{f}"]
            pairs.append((i, i + 1, same, f))
    pa = evaluate(np.asarray(rows), labels, pairs=pairs).pair_accuracy
    assert pa is not None and pa.n_folds == 10 and pa.n_pairs == 20
    assert pa.fold_accuracies == (0.5,) + (1.0,) * 9
    assert pa.accuracy_mean == pytest.approx(0.95)
    assert pa.accuracy_std == pytest.approx(math.sqrt(0.025))
    assert pa.accuracy_sem == pytest.approx(math.sqrt(0.025) / math.sqrt(10))
    expected_t = [0.85, 0.855] + [0.85] * 7 + [0.845]
    np.testing.assert_allclose(pa.fold_thresholds, expected_t, atol=1e-9)
    assert pa.threshold_mean == pytest.approx(0.85)


def test_best_threshold_rules():
    # Midway between the last accepted and the first rejected distance.
    assert best_threshold([0.1, 0.2, 0.3, 0.4], [True, True, False, False]) == pytest.approx(0.25)
    # Equal distances are never split: the cut falls between 0.2 and 0.3 or below 0.2.
    t = best_threshold([0.1, 0.2, 0.2, 0.3], [True, True, False, False])
    assert t == pytest.approx(0.15) or t == pytest.approx(0.25)
    # Accepting nothing is best: the threshold is below the smallest distance.
    t = best_threshold([0.1, 0.2], [False, False])
    assert t < 0.1
    # Accepting everything is best: the largest distance itself.
    assert best_threshold([0.3, 0.1], [True, True]) == 0.3
    # Ties in accuracy go to the smallest threshold: cut after 0.1 or after 0.3 are equal.
    t = best_threshold([0.1, 0.2, 0.3, 0.4], [True, False, True, False])
    assert t == pytest.approx(0.15)


def test_pairs_need_two_folds_and_valid_indices():
    x, labels = noisy(3, 2, noise=0.1)
    with pytest.raises(ValueError, match="two folds"):
        evaluate(x, labels, pairs=[(0, 1, True, 0), (0, 2, False, 0)])
    with pytest.raises(ValueError, match="indices"):
        evaluate(x, labels, pairs=[(0, 9, True, 0), (0, 2, False, 1)])
    with pytest.raises(ValueError, match="labels"):
        evaluate(x, labels[:-1])


# ---- output --------------------------------------------------------------------------------


def test_to_json_and_print_report():
    x, labels = separated(COUNTS[:20])  # 1,781 impostor pairs: FAR 1e-4 is not measurable
    report = evaluate(x, labels, pairs=ten_fold_pairs(labels))
    data = json.loads(json.dumps(report.to_json()))
    assert data["verification"]["n_impostor"] == 1781
    assert data["identification"]["rank1"] == 1.0
    assert data["pair_accuracy"]["accuracy_mean"] == 1.0
    assert [p["far"] for p in data["verification"]["points"]] == [1e-2, 1e-3, 1e-4]
    assert data["verification"]["points"][2]["tar"] is None
    console = Console(record=True, width=160)
    print_report(report, console=console)
    text = console.export_text()
    for needle in ("Pair accuracy", "rank-1", "100.00%", "not measurable", "10,000"):
        assert needle in text, needle


@pytest.mark.slow
def test_six_thousand_templates_evaluate_quickly():
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 8, size=1500)
    centres = rng.normal(size=(1500, 128))
    x = (np.repeat(centres, counts, axis=0) + rng.normal(size=(counts.sum(), 128))).astype(
        np.float32
    )
    labels = [f"id{k}" for k, c in enumerate(counts) for _ in range(c)]
    assert len(labels) > 5500
    start = time.perf_counter()
    report = evaluate(x, labels)
    assert time.perf_counter() - start < 30
    assert report.verification.n_impostor > 15_000_000
    assert all(p.measurable for p in report.verification.points)


# ---- fused gallery templates and errors by quality ------------------------------------------


def test_fusing_more_gallery_photos_finds_more_probes():
    x, labels = noisy(300, 6, noise=1.0, seed=3)
    report = evaluate(x, labels, fusion_photos=3)
    fusion = report.fusion
    assert fusion is not None
    assert fusion.n_enrolled == 300 and fusion.gallery_size == 300
    assert fusion.n_probes == 300 * 3  # the photos after the first three, for every count
    r1 = [p.rank1 for p in fusion.points]
    assert [p.photos for p in fusion.points] == [1, 2, 3]
    assert r1[0] < r1[1] < r1[2]
    assert 0 < r1[0] < 1
    assert report.to_json()["fusion"]["points"][2]["photos"] == 3


def test_no_identity_with_enough_photos_means_no_fusion_measure():
    x, labels = separated([1, 2, 3, 3])
    assert evaluate(x, labels, fusion_photos=3).fusion is None


def test_errors_are_broken_down_by_face_quality():
    rng = np.random.default_rng(5)
    x, labels = noisy(400, 4, noise=0.6, seed=5)
    quality = rng.uniform(1.0, 3.0, size=len(labels))
    poor = rng.random(len(labels)) < 0.15
    quality[poor] = rng.uniform(0.0, 0.5, size=int(poor.sum()))
    x[poor] += 1.2 * rng.normal(size=(int(poor.sum()), x.shape[1])).astype(np.float32)

    report = evaluate(x, labels, quality=quality.tolist())
    q = report.quality
    assert q is not None and q.measure == "det_score" and q.far == 1e-3
    v = report.verification
    point = next(p for p in v.points if p.far == 1e-3)
    assert q.threshold == point.threshold
    # Every pair lands in exactly one bin.
    assert q.low.n_genuine + q.rest.n_genuine == v.n_genuine
    assert q.low.n_impostor + q.rest.n_impostor == v.n_impostor
    assert 0.0 < q.low_below <= 0.5
    # Blurred faces are missed far more often.
    assert q.low.fnmr is not None and q.rest.fnmr is not None
    assert q.low.fnmr > 2 * q.rest.fnmr
    console = Console(record=True, width=120)
    print_report(report, console=console)
    text = console.export_text()
    assert "Fused gallery templates" in text and "Errors by quality" in text
    with pytest.raises(ValueError, match="quality scores"):
        evaluate(x, labels, quality=[1.0])


def test_photos_without_a_face_stay_in_the_protocol_as_misses():
    # Given 10 folds of one same and one different pair, all cleanly separated, and two more
    # pairs whose photos had no face found: a same pair in fold 0 and a different one in fold 1.
    rows, labels, pairs = [], [], []
    for f in range(10):
        for d, same in ((0.2, True), (1.4, False)):
            theta = 2 * math.degrees(math.asin(d / 2))
            i = len(rows)
            rows += [unit(8.5 * i), unit(8.5 * i + theta)]  # pairs apart on the circle
            labels += [f"a{f}{same}", f"a{f}{same}" if same else f"b{f}"]
            pairs.append((i, i + 1, same, f))
    report = evaluate(
        np.asarray(rows),
        labels,
        pairs=pairs,
        pairs_without_face=[(True, 0), (False, 1)],
        labels_without_face=["a0True"],  # a third photo of a0True: one more probe
    )
    pa = report.pair_accuracy
    # Then the figure is over all 22 pairs: the same pair is missed (fold 0: 2 of 3), the
    # different one rightly rejected (fold 1: 3 of 3); on the pairs with faces, all are right.
    assert pa is not None and pa.n_pairs == 22 and pa.n_pairs_without_face == 2
    assert pa.fold_accuracies[:2] == pytest.approx((2 / 3, 1.0))
    assert pa.accuracy_mean == pytest.approx((2 / 3 + 9) / 10)
    assert pa.accuracy_with_faces == 1.0
    # And the probe without a face is a rank-1 and rank-5 miss: of 11 probes, not 10.
    ident = report.identification
    found = evaluate(np.asarray(rows), labels).identification
    assert ident is not None and found is not None
    assert ident.n_probes == found.n_probes == 10 and ident.n_probes_without_face == 1
    assert ident.rank1 == pytest.approx(found.rank1 * 10 / 11)
    assert ident.rank5 == pytest.approx(found.rank5 * 10 / 11) and ident.rank5 > 0
    out = report.to_json()
    assert out["pair_accuracy"]["n_pairs_without_face"] == 2
    console = Console(record=True, width=200)
    print_report(report, console=console)
    text = " ".join(console.export_text().split())  # titles wrap
    assert "2 without a face counted as rejections" in text and "1 without a face" in text


def test_a_photo_without_a_face_that_was_its_identitys_only_other_photo_is_a_missed_probe():
    # a has two labelled photos, the second without a face: the protocol has one probe of a.
    report = evaluate(
        np.asarray([unit(0), unit(40), unit(45)]), ["a", "b", "b"], labels_without_face=["a"]
    )
    ident = report.identification
    assert ident is not None and (ident.n_probes, ident.n_probes_without_face) == (1, 1)
    assert ident.rank1 == 0.5
