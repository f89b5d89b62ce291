from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from vultus.accuracy.datasets import embed_labelled
from vultus.config import Settings
from vultus.people.clustering import (
    default_max_distance,
    discover,
    labels_from_proposals,
    pairwise_scores,
)


def people(
    sizes: list[int], *, outliers: int = 0, noise: float = 0.01, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Faces around random identity centres (genuine ≈ 0.16 apart at noise 0.01, impostors
    ≈ 1.4), then `outliers` lone faces; returns (ids, templates, labels), ids not 0..n-1."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for k, size in enumerate(sizes):
        centre = rng.normal(size=128)
        centre /= np.linalg.norm(centre)
        for _ in range(size):
            rows.append(centre + noise * rng.normal(size=128))
            labels.append(f"person {k}")
    for k in range(outliers):
        rows.append(rng.normal(size=128))
        labels.append(f"stranger {k}")
    ids = 1000 + 7 * np.arange(len(rows), dtype=np.int64)
    return ids, np.asarray(rows, dtype=np.float32), labels


def test_given_photos_of_several_people_then_each_person_is_one_proposal() -> None:
    ids, x, labels = people([12, 9, 6, 5, 4], outliers=20)
    proposals = discover(ids, x, max_distance=0.4, min_faces=3)
    scores = pairwise_scores(labels, labels_from_proposals(ids, proposals))
    assert scores["bcubed_f1"] >= 0.95
    assert [len(p) for p in proposals] == [12, 9, 6, 5, 4]  # largest first
    by_id = dict(zip(ids.tolist(), labels, strict=True))
    for p in proposals:
        assert len({by_id[i] for i in p.face_ids}) == 1
        assert set(p.core_face_ids) <= set(p.face_ids)
        assert 0.0 < p.cohesion < 0.2


def test_lone_faces_stay_unassigned() -> None:
    ids, x, labels = people([8], outliers=30)
    predicted = labels_from_proposals(ids, discover(ids, x, max_distance=0.4, min_faces=2))
    strangers = np.array([label.startswith("stranger") for label in labels])
    assert np.all(predicted[strangers] == -1)
    assert np.all(predicted[~strangers] == 0)


def test_min_faces_counts_faces_the_face_itself_included() -> None:
    ids, x, _ = people([2, 3, 5])
    assert [len(p) for p in discover(ids, x, max_distance=0.4, min_faces=4)] == [5]
    assert [len(p) for p in discover(ids, x, max_distance=0.4, min_faces=3)] == [5, 3]
    # Two photos of one person are a proposal at 2: "--min-faces 2" means two faces.
    assert [len(p) for p in discover(ids, x, max_distance=0.4, min_faces=2)] == [5, 3, 2]


def test_a_face_set_apart_leaves_its_proposal_and_faces_split_off_together_stay_together() -> None:
    ids, x, _ = people([6])
    six = ids.tolist()
    # "Not this person": the first face is not the person of the other five.
    [rest] = discover(ids, x, max_distance=0.4, min_faces=2, apart={six[0]: six[1:]})
    assert rest.face_ids == six[1:]
    # Split off two: each is apart from the other four, not from each other.
    split = {f: six[2:] for f in six[:2]}
    found = discover(ids, x, max_distance=0.4, min_faces=2, apart=split)
    assert [p.face_ids for p in found] == [six[2:], six[:2]]
    # Two faces turned down one after the other were each apart from the other: no pair.
    one_by_one = {six[0]: six[1:], six[1]: six[2:]}
    found = discover(ids, x, max_distance=0.4, min_faces=2, apart=one_by_one)
    assert [p.face_ids for p in found] == [six[2:]]


def test_a_border_face_joins_its_nearest_core_but_links_nothing() -> None:
    # A tight group at angles 0..0.08 and one face on each side with only two neighbours (a
    # core at min_faces=4 needs three):
    # both join the group, and (0.42 apart) link nothing themselves; the face at 0.9 is noise.
    e = np.eye(4, dtype=np.float64)

    def at(angle: float) -> np.ndarray:
        return np.cos(angle) * e[0] + np.sin(angle) * e[1]

    angles = [0.0, 0.02, 0.04, 0.06, 0.08, 0.25, -0.17, 0.9]
    x = np.stack([at(a) for a in angles]).astype(np.float32)
    [p] = discover(np.arange(len(angles)), x, max_distance=0.2, min_faces=4)
    assert p.face_ids == [0, 1, 2, 3, 4, 5, 6]
    assert p.core_face_ids == [0, 1, 2, 3, 4]


def brute_force(true: list[str], pred: list[int]) -> dict[str, float]:
    n = len(true)
    cluster = [p if p >= 0 else -1 - i for i, p in enumerate(pred)]  # noise: its own cluster
    same_c = same_p = both = 0
    for i, j in itertools.combinations(range(n), 2):
        c, t = cluster[i] == cluster[j], true[i] == true[j]
        same_c, same_p, both = same_c + c, same_p + t, both + (c and t)
    bp = br = 0.0
    for i in range(n):
        in_c = [j for j in range(n) if cluster[j] == cluster[i]]
        in_t = [j for j in range(n) if true[j] == true[i]]
        correct = len(set(in_c) & set(in_t))
        bp += correct / len(in_c) / n
        br += correct / len(in_t) / n
    return {
        "pairwise_precision": both / same_c,
        "pairwise_recall": both / same_p,
        "bcubed_precision": bp,
        "bcubed_recall": br,
    }


def test_scores_match_a_brute_force_count() -> None:
    true = ["a", "a", "a", "b", "b", "c", "c", "c", "d"]
    pred = [0, 0, 1, 1, 1, 2, -1, 2, -1]
    scores = pairwise_scores(true, pred)
    for key, expected in brute_force(true, pred).items():
        assert scores[key] == pytest.approx(expected), key
    p, r = scores["bcubed_precision"], scores["bcubed_recall"]
    assert scores["bcubed_f1"] == pytest.approx(2 * p * r / (p + r))


def test_perfect_clustering_scores_one_and_one_big_cluster_is_imprecise() -> None:
    true = ["a"] * 4 + ["b"] * 3 + ["c"] * 2
    perfect = pairwise_scores(true, [5, 5, 5, 5, 9, 9, 9, 2, 2])
    assert all(perfect[k] == 1.0 for k in perfect if not k.startswith("pairs_"))
    lumped = pairwise_scores(true, [0] * 9)
    assert lumped["pairwise_precision"] < 1 and lumped["bcubed_precision"] < 1
    assert lumped["pairwise_recall"] == 1.0 and lumped["bcubed_recall"] == 1.0


def test_everything_left_unassigned_is_precise_but_recalls_nothing() -> None:
    scores = pairwise_scores(["a", "a", "b"], [-1, -1, -1])
    assert scores["pairwise_precision"] == 1.0 and scores["pairwise_recall"] == 0.0


def test_bad_arguments_are_refused() -> None:
    ids, x, _ = people([3])
    with pytest.raises(ValueError, match="min_faces"):
        discover(ids, x, max_distance=0.4, min_faces=1)
    with pytest.raises(ValueError, match="ids"):
        discover(ids[:2], x, max_distance=0.4)
    assert discover(np.zeros(0, np.int64), np.zeros((0, 128), np.float32), max_distance=0.4) == []


def test_default_distance_tightens_as_the_gallery_grows() -> None:
    assert default_max_distance(100_000) <= default_max_distance(6_000) < default_max_distance(50)


def test_given_the_dev_photos_then_every_proposal_is_one_person(
    faces_dir: Path, tmp_path: Path
) -> None:
    data = embed_labelled(faces_dir / "dev" / "labels.csv", Settings.load(tmp_path, workers=1))
    ids = np.arange(len(data.labels), dtype=np.int64)
    proposals = discover(
        ids, data.templates, max_distance=default_max_distance(len(ids)), min_faces=2
    )
    assert proposals, "the dev photos hold several photos of the same people"
    for p in proposals:
        assert len({data.labels[i] for i in p.face_ids}) == 1, p
