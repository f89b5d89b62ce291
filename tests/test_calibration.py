from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

import vultus.accuracy.calibration as calmod
from vultus.accuracy.calibration import (
    DEFAULT_GRID,
    Calibration,
    distance,
    fit_calibration,
    iter_pair_distances,
    pairwise_distances,
    select_per_identity,
)
from vultus.errors import ConfigError
from vultus.vectors import normalise


def synthetic(
    n_ids: int, per_id: int | list[int], *, noise: float, dim: int = 32, seed: int = 0
) -> tuple[np.ndarray, list[str]]:
    """Identity centres (random directions) plus Gaussian noise, fixed seed."""
    rng = np.random.default_rng(seed)
    counts = per_id if isinstance(per_id, list) else [per_id] * n_ids
    centres = rng.normal(size=(n_ids, dim))
    rows, labels = [], []
    for k, c in enumerate(counts):
        for _ in range(c):
            rows.append(centres[k] + noise * rng.normal(size=dim))
            labels.append(f"id{k}")
    return np.asarray(rows, dtype=np.float32), labels


def separated(n_ids: int, per_id: int, *, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Orthogonal centres, tiny noise: genuine ≈ 0.16, impostor ≈ 1.41."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for k in range(n_ids):
        for _ in range(per_id):
            v = 0.01 * rng.normal(size=128)
            v[k] += 1.0
            rows.append(v)
            labels.append(f"p{k}")
    return np.asarray(rows, dtype=np.float32), labels


def brute_pairs(x: np.ndarray, labels: list[str]) -> tuple[list[float], list[float]]:
    gen, imp = [], []
    for i, j in itertools.combinations(range(len(labels)), 2):
        d = distance(x[i], x[j])
        (gen if labels[i] == labels[j] else imp).append(d)
    return gen, imp


def hand_calibration(n_impostor: int = 10_000) -> Calibration:
    return Calibration(
        model_id="test-model",
        distances=np.array([0.0, 0.5, 1.0, 1.5, 2.0]),
        fmr=np.array([0.0, 0.001, 0.01, 0.5, 1.0]),
        tar=np.array([0.0, 0.5, 0.9, 1.0, 1.0]),
        n_genuine=100,
        n_impostor=n_impostor,
        source="hand-made",
    )


@pytest.fixture(scope="module")
def fitted() -> Calibration:
    x, labels = synthetic(60, 6, noise=0.6, seed=1)
    return fit_calibration(x, labels, model_id="test-model", source="synthetic")


# ---- distances -----------------------------------------------------------------------------


def test_pairwise_distances_is_euclidean_between_normalised_rows():
    rng = np.random.default_rng(0)
    a, b = normalise(rng.normal(size=(5, 16))), normalise(rng.normal(size=(7, 16)))
    expected = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    np.testing.assert_allclose(pairwise_distances(a, b), expected, atol=1e-12)


def test_pairwise_distances_clips_rounding_to_zero():
    v = normalise(np.random.default_rng(3).normal(size=(50, 128)).astype(np.float32))
    d = pairwise_distances(v, v)
    assert not np.any(np.isnan(d))
    np.testing.assert_allclose(np.diag(d), 0.0, atol=1e-7)


def test_distance_normalises_raw_descriptors():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=128), rng.normal(size=128)
    assert distance(3 * a, 0.5 * b) == pytest.approx(distance(a, b))
    assert distance(a, -2 * a) == pytest.approx(2.0)
    assert distance(a, 7 * a) == pytest.approx(0.0, abs=1e-7)
    cos = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    assert distance(a, b) == pytest.approx(math.sqrt(2 - 2 * cos))


def test_normalise_rejects_zero_rows():
    with pytest.raises(ValueError):
        normalise(np.zeros((2, 4)))


# ---- pairs and fitting ---------------------------------------------------------------------


def test_iter_pair_distances_visits_each_pair_once_in_any_block_size():
    x, labels = synthetic(7, [1, 2, 3, 4, 1, 5, 2], noise=0.5, seed=2)
    codes = calmod.encode_labels(labels)
    gen_bf, imp_bf = brute_pairs(x, labels)
    for block in (1, 5, 17, 10_000):
        blocks = list(iter_pair_distances(normalise(x), codes, block_entries=block))
        gen = np.sort(np.concatenate([g for g, _ in blocks]))
        imp = np.sort(np.concatenate([i for _, i in blocks]))
        np.testing.assert_allclose(gen, np.sort(gen_bf), atol=1e-12)
        np.testing.assert_allclose(imp, np.sort(imp_bf), atol=1e-12)


def test_fit_fmr_and_tar_equal_brute_force_counts():
    x, labels = synthetic(12, [2, 3, 4, 5, 1, 3, 2, 4, 6, 2, 3, 1], noise=0.7, dim=8, seed=4)
    cal = fit_calibration(x, labels, model_id="m", source="unit test")
    gen, imp = brute_pairs(x, labels)
    counts = [2, 3, 4, 5, 1, 3, 2, 4, 6, 2, 3, 1]
    assert cal.n_genuine == len(gen) == sum(c * (c - 1) // 2 for c in counts)
    assert cal.n_impostor == len(imp)
    gen_a, imp_a = np.asarray(gen), np.asarray(imp)
    expected_fmr = np.array([np.sum(imp_a <= g) for g in DEFAULT_GRID]) / len(imp)
    expected_tar = np.array([np.sum(gen_a <= g) for g in DEFAULT_GRID]) / len(gen)
    np.testing.assert_array_equal(cal.fmr, expected_fmr)
    np.testing.assert_array_equal(cal.tar, expected_tar)
    assert 0 < cal.fmr[120] < 1  # the grid point 0.6 is exercised, not trivially 0 or 1
    assert DEFAULT_GRID[120] == 0.6


def test_fit_counts_a_distance_on_a_grid_point_as_at_or_under():
    # Orthogonal unit vectors are exactly sqrt(2) apart; equal ones exactly 0.
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    grid = np.array([0.0, 1.0, math.sqrt(2.0), 2.0])
    cal = fit_calibration(x, ["a", "a", "b"], model_id="m", source="t", grid=grid)
    assert (cal.n_genuine, cal.n_impostor) == (1, 2)
    np.testing.assert_array_equal(cal.fmr, [0.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(cal.tar, [1.0, 1.0, 1.0, 1.0])


def test_fit_caps_templates_per_identity():
    x, labels = synthetic(3, [15, 4, 2], noise=0.5, seed=5)
    cal = fit_calibration(x, labels, model_id="m", source="t", max_per_identity=10)
    assert cal.n_genuine == 45 + 6 + 1
    assert cal.n_impostor == (16 * 15) // 2 - 52
    # Deterministic for a given seed.
    again = fit_calibration(x, labels, model_id="m", source="t", max_per_identity=10)
    assert again == cal


def test_select_per_identity():
    codes = np.array([0, 1, 0, 0, 2, 1, 0])
    np.testing.assert_array_equal(select_per_identity(codes, 2), [0, 1, 2, 4, 5])
    picked = select_per_identity(codes, 2, seed=0)
    assert len(picked) == 5 and np.sum(codes[picked] == 0) == 2
    assert set(picked) >= {1, 4, 5}


def test_fit_needs_genuine_and_impostor_pairs():
    x, _ = synthetic(3, 1, noise=0.1)
    with pytest.raises(ValueError, match="genuine"):
        fit_calibration(x, ["a", "b", "c"], model_id="m", source="t")
    with pytest.raises(ValueError, match="impostor"):
        fit_calibration(x, ["a", "a", "a"], model_id="m", source="t")


def test_separated_identities_give_full_tar_at_strict_fmr():
    x, labels = separated(40, 4)
    cal = fit_calibration(x, labels, model_id="m", source="t")
    t = cal.threshold_for(1e-3)
    assert not t.floor_reached
    assert cal.tar_at(t) == 1.0
    assert cal.fmr[DEFAULT_GRID <= 1.3].max() == 0.0  # no impostor under 1.3


# ---- rates ---------------------------------------------------------------------------------


def test_fmr_at_is_monotone_with_floor_and_clamped(fitted: Calibration):
    d = np.linspace(-0.5, 2.5, 3001)
    f = fitted.fmr_at(d)
    assert isinstance(f, np.ndarray) and f.shape == d.shape
    assert np.all(np.diff(f) >= 0)
    assert np.all(f >= fitted.fmr_floor)
    assert fitted.fmr_floor == 0.5 / fitted.n_impostor
    assert fitted.fmr_at(0.0) == fitted.fmr_floor
    assert fitted.fmr_at(2.5) == 1.0
    assert isinstance(fitted.fmr_at(1.0), float)
    above = fitted.fmr >= fitted.fmr_floor
    np.testing.assert_array_equal(fitted.fmr_at(fitted.distances)[above], fitted.fmr[above])
    assert fitted.fmr_at(0.25) == pytest.approx((fitted.fmr_at(0.245) + fitted.fmr_at(0.255)) / 2)


def test_fmr_at_interpolates_between_grid_points():
    cal = hand_calibration()
    assert cal.fmr_at(0.75) == pytest.approx(0.0055)
    np.testing.assert_allclose(cal.fmr_at(np.array([1.25, 1.0])), [0.255, 0.01])
    assert cal.tar_at(0.25) == pytest.approx(0.25)
    assert cal.fmr_at(0.0) == 5e-5  # the floor, not 0


def test_fmr_at_gallery_formula_and_stability():
    cal = hand_calibration()
    for d, n in [(0.5, 1), (0.5, 10), (1.0, 100), (1.25, 3)]:
        p = cal.fmr_at(d)
        assert cal.fmr_at_gallery(d, n) == pytest.approx(1 - (1 - p) ** n, rel=1e-12)
    assert cal.fmr_at_gallery(2.0, 5) == 1.0
    tiny = Calibration(
        model_id="m",
        distances=np.array([0.0, 1.0, 2.0]),
        fmr=np.array([0.0, 1e-15, 1.0]),
        tar=np.array([0.0, 1.0, 1.0]),
        n_genuine=1,
        n_impostor=10**16,
        source="t",
    )
    # The naive 1 - (1 - 1e-15)**1000 is off by about 10%; log1p/expm1 is not.
    assert tiny.fmr_at_gallery(1.0, 1000) == pytest.approx(1e-12, rel=1e-9)
    with pytest.raises(ValueError):
        cal.fmr_at_gallery(1.0, 0)


def test_threshold_for_on_hand_calibration():
    cal = hand_calibration()
    assert cal.threshold_for(0.01) == 1.0
    assert cal.threshold_for(0.0099) == 0.5
    assert cal.threshold_for(0.6) == 1.5
    assert cal.threshold_for(1.0) == 2.0
    # Per-pair target for 1% over 10 faces: 1 - 0.99**0.1 ≈ 0.001005 ≥ 0.001 → 0.5, not 1.0.
    t = cal.threshold_for(0.01, gallery_size=10)
    assert t == 0.5 and not t.floor_reached and t.gallery_size == 10
    assert t.expected_fmr == pytest.approx(1 - 0.999**10)
    # 1% over 11 faces needs per-pair ≤ 0.000913 < 0.001: only distance 0 qualifies.
    assert cal.threshold_for(0.01, gallery_size=11) == 0.0


def test_threshold_for_reports_the_floor():
    cal = hand_calibration()  # floor 5e-5
    t = cal.threshold_for(1e-5)
    assert t.floor_reached and t == 0.0 and isinstance(t, float)
    assert not cal.threshold_for(5e-5).floor_reached
    # Gallery-level floor: 1 - (1 - 5e-5)**100 ≈ 0.005.
    assert cal.threshold_for(0.004, gallery_size=100).floor_reached
    assert not cal.threshold_for(0.006, gallery_size=100).floor_reached


def test_threshold_for_floor_returns_edge_of_zero_impostor_range(fitted: Calibration):
    t = fitted.threshold_for(fitted.fmr_floor / 10)
    assert t.floor_reached
    k = int(np.flatnonzero(fitted.fmr == 0)[-1])
    assert t == fitted.distances[k] and fitted.fmr[k + 1] > 0


def test_threshold_tightens_as_gallery_grows(fitted: Calibration):
    sizes = [1, 10, 100, 1_000, 10_000]
    for target in (1e-1, 1e-2):
        ts = [fitted.threshold_for(target, gallery_size=n) for n in sizes]
        assert all(a >= b for a, b in itertools.pairwise(ts)), ts
        assert ts[-1] < ts[0]


@pytest.mark.parametrize("target", [0.3, 0.1, 1e-2, 1e-3])
@pytest.mark.parametrize("n", [1, 7, 100])
def test_threshold_for_meets_target_and_is_the_largest(fitted: Calibration, target, n):
    t = fitted.threshold_for(target, gallery_size=n)
    if t.floor_reached:
        assert fitted.fmr_at_gallery(fitted.distances[0], n) > target
        return
    assert fitted.fmr_at_gallery(t, n) <= target
    if n == 1:
        assert fitted.fmr_at(t) <= target
    k = int(np.searchsorted(fitted.distances, t))
    assert fitted.distances[k] == t
    if k + 1 < len(fitted.distances):
        assert fitted.fmr_at_gallery(fitted.distances[k + 1], n) > target


def test_threshold_for_rejects_bad_arguments():
    cal = hand_calibration()
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            cal.threshold_for(bad)
    with pytest.raises(ValueError):
        cal.threshold_for(0.01, gallery_size=0)


# ---- the object and its persistence --------------------------------------------------------


def test_calibration_validates_and_is_read_only():
    cal = hand_calibration()
    with pytest.raises(ValueError):
        cal.fmr[0] = 0.5
    with pytest.raises(ValueError):
        Calibration("m", np.array([0.0, 1.0]), np.array([0.5, 0.1]), np.array([0, 1.0]), 1, 1, "t")
    with pytest.raises(ValueError):
        Calibration("m", np.array([1.0, 0.0]), np.array([0, 0.1]), np.array([0, 1.0]), 1, 1, "t")
    with pytest.raises(ValueError):
        Calibration("m", np.array([0.0, 1.0]), np.array([0, 0.1]), np.array([0, 1.0]), 1, 0, "t")


def test_json_round_trip_is_exact(fitted: Calibration, tmp_path):
    data = fitted.to_json()
    again = Calibration.from_json(json.loads(json.dumps(data)))
    assert again == fitted
    for name in ("distances", "fmr", "tar"):
        assert np.array_equal(getattr(again, name), getattr(fitted, name))
    assert (again.model_id, again.source) == ("test-model", "synthetic")
    assert (again.n_genuine, again.n_impostor) == (fitted.n_genuine, fitted.n_impostor)
    path = tmp_path / "sub" / "cal.json"
    fitted.save(path)
    assert Calibration.load(path) == fitted
    assert Calibration.load(str(path)) == fitted
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_equality_sees_array_differences():
    a = hand_calibration()
    b = hand_calibration(n_impostor=10_001)
    assert a == hand_calibration() and a != b and hash(a) == hash(hand_calibration())


def test_from_json_and_load_reject_bad_input(tmp_path):
    good = hand_calibration().to_json()
    with pytest.raises(ConfigError):
        Calibration.from_json({**good, "format": "something-else"})
    with pytest.raises(ConfigError):
        Calibration.from_json({**good, "version": 99})
    with pytest.raises(ConfigError, match="fmr"):
        Calibration.from_json({k: v for k, v in good.items() if k != "fmr"})
    with pytest.raises(ConfigError):
        Calibration.from_json({**good, "fmr": [1.0, 0.0, 0.0, 0.0, 0.0]})
    with pytest.raises(ConfigError, match="does not exist"):
        Calibration.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Calibration.load(tmp_path / "bad.json")


def test_default_raises_helpful_config_error_when_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(calmod, "_calibration_resource", lambda m: tmp_path / f"cal_{m}.json")
    with pytest.raises(ConfigError) as info:
        Calibration.default()
    msg = str(info.value)
    assert "dlib-resnet-v1" in msg and "vultus calibrate LABELS.csv" in msg
    assert info.value.code == "config_error"


def test_default_without_shipped_file_for_unknown_model():
    with pytest.raises(ConfigError, match="vultus calibrate"):
        Calibration.default("no-such-model")
    with pytest.raises(ConfigError, match="invalid model id"):
        Calibration.default("../../etc/passwd")


def test_default_loads_the_shipped_file(monkeypatch, tmp_path):
    cal = hand_calibration()
    cal.save(tmp_path / "calibration_test-model.json")
    monkeypatch.setattr(
        calmod, "_calibration_resource", lambda m: tmp_path / f"calibration_{m}.json"
    )
    assert Calibration.default("test-model") == cal
    (tmp_path / "calibration_other.json").write_text(json.dumps(cal.to_json()))
    with pytest.raises(ConfigError, match="fitted for model 'test-model'"):
        Calibration.default("other")


def test_real_resource_lookup_points_into_the_data_package():
    res = calmod._calibration_resource("dlib-resnet-v1")
    assert res.name == "calibration_dlib-resnet-v1.json"
