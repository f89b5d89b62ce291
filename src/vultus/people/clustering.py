"""Clustering faces nobody has named yet into proposed people, and scoring such clusterings.

:func:`discover` is a DBSCAN-style pass, like Immich's face clustering: a *core* face has,
itself included, at least ``min_faces`` faces within ``max_distance``; core faces within
``max_distance`` of each other join one cluster; a non-core (*border*) face joins the cluster of
its nearest core face within reach; every other face is noise and stays unassigned; a cluster
of fewer than ``min_faces`` faces is not proposed. The result is a list of :class:`Proposal`
objects for a person to review: a proposal is never merged into a subject automatically, since
one false link can join two strangers. What reviewers decided ("this face is not the person of
those") is passed back as ``apart`` and holds in every later run.

Neighbours come from a FAISS range search on normalised templates, query chunk by query chunk,
so memory grows with the number of close pairs, never with n²; components are joined with a
vectorised union-find. :func:`pairwise_scores` measures a clustering against identity labels
(pairwise and BCubed precision, recall and F1).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

from vultus.accuracy.calibration import Calibration, distance_to_similarity
from vultus.vectors import normalise

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: Default chance that a face has *any* other person within ``max_distance`` in the gallery.
DEFAULT_FACE_FMR = 0.01

# Query rows per range search: bounds the similarity block FAISS scans at once and the neighbour
# lists held between two chunks.
_CHUNK = 4096


@dataclass
class Proposal:
    """One proposed person: face ids (ascending), those of its core faces, and ``cohesion``,
    the mean distance of its members to their normalised centroid (smaller is tighter)."""

    face_ids: list[int]
    core_face_ids: list[int]
    cohesion: float

    def __len__(self) -> int:
        return len(self.face_ids)


def default_max_distance(n_faces: int, calibration: Calibration | None = None) -> float:
    """The calibrated distance at which each of ``n_faces`` faces has a 1% chance
    (:data:`DEFAULT_FACE_FMR`) of any stranger within reach: ``threshold_for(0.01, n_faces)``.

    Far stricter than a search threshold, and tied to the gallery's size, on purpose: a cluster
    is a chain of links, and with n faces each face meets n - 1 candidates for a false link, so
    one fixed per-pair rate chains strangers together as the gallery grows. On lfw-a (6,260
    faces) a fixed per-pair FMR of 1e-4 (distance 0.34) merged 409 faces of many people into one
    proposal; this rule gives 0.275 there, with pairwise precision near 0.99. A missed link only
    splits a person into two proposals, which review can join; a false one shows a reviewer two
    people as one. Past the calibration's resolution the threshold stops shrinking (see
    :meth:`Calibration.threshold_for`); fit it on more impostor pairs for very large galleries.
    """
    cal = calibration if calibration is not None else Calibration.default()
    return float(cal.threshold_for(DEFAULT_FACE_FMR, gallery_size=max(1, n_faces)))


def _neighbours(
    x: npt.NDArray[np.float32], index: faiss.IndexFlatIP, radius: float
) -> Iterator[tuple[IntArray, IntArray, npt.NDArray[np.float32]]]:
    """(row, neighbour, similarity) for every pair within reach, self-pairs left out, chunk by
    chunk."""
    for start in range(0, x.shape[0], _CHUNK):
        lims, sims, nbrs = index.range_search(x[start : start + _CHUNK], radius)
        sizes = np.diff(lims.astype(np.int64))
        rows = np.repeat(np.arange(start, start + len(sizes), dtype=np.int64), sizes)
        nbrs = nbrs.astype(np.int64)
        other = rows != nbrs
        yield rows[other], nbrs[other], sims[other]


def _compress(parent: IntArray) -> None:
    """Point every node straight at its root (pointer jumping)."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return
        parent[:] = grand


def _union(parent: IntArray, u: IntArray, v: IntArray) -> None:
    """Join the sets of every pair (u[k], v[k]); ``parent`` must be compressed on entry and is
    on exit. Roots only ever point to smaller indices, so no cycle can form."""
    while len(u):
        ru, rv = parent[u], parent[v]
        apart = ru != rv
        if not apart.any():
            return
        ru, rv = ru[apart], rv[apart]
        # Several edges may hook one root at once; minimum.at keeps the smallest target.
        np.minimum.at(parent, np.maximum(ru, rv), np.minimum(ru, rv))
        _compress(parent)
        u, v = u[apart], v[apart]


def discover(
    ids: npt.ArrayLike,
    templates: npt.ArrayLike,
    *,
    max_distance: float,
    min_faces: int = 3,
    apart: Mapping[int, Collection[int]] | None = None,
) -> list[Proposal]:
    """Propose people among faces ``ids`` with raw ``templates`` (n, dim), largest first.

    ``min_faces`` counts faces, the core face itself included: at 2, two faces within reach
    of each other are a proposal. ``apart`` maps a face id to the face ids a reviewer said it is
    not the same person as: a face proposed with any of those leaves the proposal, and the faces
    that leave one proposal are regrouped among themselves, never two that were set apart
    together (so splitting off two faces of one person makes them a proposal of their own).
    Two range searches run over all faces (one to find the core faces, one to link them),
    trading time for memory: only one chunk's neighbour lists are held at a time.

    Example: ``discover(ids, templates, max_distance=default_max_distance(len(ids)))``.
    """
    face_ids = np.asarray(ids, dtype=np.int64)
    if min_faces < 2:
        raise ValueError("min_faces counts faces: a proposed person needs at least 2")
    if not 0.0 < max_distance < 2.0:
        raise ValueError(f"max_distance must be in (0, 2), got {max_distance!r}")
    n = len(face_ids)
    if n == 0:
        return []
    x = np.ascontiguousarray(normalise(templates), dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != n:
        raise ValueError(f"{n} ids for templates of shape {x.shape}")
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    # FAISS keeps similarities strictly above the radius; step one float32 ulp down so that a
    # pair exactly at max_distance counts, as everywhere else in Vultus.
    sim_min = float(distance_to_similarity(max_distance))
    radius = float(np.nextafter(np.float32(sim_min), np.float32(-np.inf)))

    counts = np.zeros(n, dtype=np.int64)
    for rows, _, _ in _neighbours(x, index, radius):
        counts += np.bincount(rows, minlength=n)
    core = counts >= min_faces - 1  # the neighbours, plus the face itself

    parent = np.arange(n, dtype=np.int64)
    best_core = np.full(n, -1, dtype=np.int64)  # nearest core neighbour of each border face
    best_sim = np.full(n, -np.inf, dtype=np.float32)
    for rows, nbrs, sims in _neighbours(x, index, radius):
        to_core = core[nbrs]
        both = to_core & core[rows]
        _union(parent, rows[both], nbrs[both])
        border = to_core & ~core[rows]
        r, c, s = rows[border], nbrs[border], sims[border]
        if len(r):
            # Each row's best (highest-similarity) core neighbour: sort by row, then similarity.
            order = np.lexsort((-s, r))
            r, c, s = r[order], c[order], s[order]
            first = np.r_[True, r[1:] != r[:-1]]
            r, c, s = r[first], c[first], s[first]
            better = s > best_sim[r]
            best_core[r[better]], best_sim[r[better]] = c[better], s[better]

    label = np.full(n, -1, dtype=np.int64)
    label[core] = parent[core]
    attached = best_core >= 0
    label[attached] = parent[best_core[attached]]
    if apart:
        _set_apart(face_ids, label, apart)

    proposals: list[Proposal] = []
    members = np.flatnonzero(label >= 0)
    order = members[np.argsort(label[members], kind="stable")]
    bounds = np.flatnonzero(np.r_[True, label[order][1:] != label[order][:-1], True])
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        group = order[start:stop]
        if len(group) < min_faces:
            continue  # a border face attached elsewhere, or faces set apart, left it short
        centroid = x[group].astype(np.float64).mean(axis=0)
        centroid /= np.linalg.norm(centroid)
        sq = np.maximum(0.0, 2.0 - 2.0 * (x[group].astype(np.float64) @ centroid))
        proposals.append(
            Proposal(
                face_ids=sorted(face_ids[group].tolist()),
                core_face_ids=sorted(face_ids[group[core[group]]].tolist()),
                cohesion=float(np.sqrt(sq).mean()),
            )
        )
    proposals.sort(key=lambda p: (-len(p.face_ids), p.face_ids[0]))
    return proposals


def _set_apart(face_ids: IntArray, label: IntArray, apart: Mapping[int, Collection[int]]) -> None:
    """Relabel, in place, the faces clustered with a face they were set apart from. Those that
    leave one cluster are grouped greedily so that no two set apart share a group; each group
    gets a fresh label. Only the decided faces are visited: few, however large the gallery."""
    row_of = {int(f): k for k, f in enumerate(face_ids.tolist())}
    fresh = int(label.max()) + 1 if len(label) else 0
    leaving: dict[int, list[int]] = {}
    for face, others in apart.items():
        row = row_of.get(int(face))
        if row is None or label[row] < 0:
            continue
        if any(label[r] == label[row] for o in others if (r := row_of.get(int(o))) is not None):
            leaving.setdefault(int(label[row]), []).append(int(face))

    def at_odds(a: int, b: int) -> bool:
        return b in apart.get(a, ()) or a in apart.get(b, ())

    for faces in leaving.values():
        groups: list[list[int]] = []
        for face in sorted(faces):
            home = next((g for g in groups if not any(at_odds(face, m) for m in g)), None)
            if home is None:
                groups.append(home := [])
            home.append(face)
        for group in groups:
            for face in group:
                label[row_of[face]] = fresh
            fresh += 1


def labels_from_proposals(ids: npt.ArrayLike, proposals: list[Proposal]) -> IntArray:
    """Cluster number of each of ``ids`` (its proposal's position), -1 for unassigned faces."""
    face_ids = np.asarray(ids, dtype=np.int64)
    out = np.full(len(face_ids), -1, dtype=np.int64)
    if not proposals:
        return out
    members = np.concatenate([np.asarray(p.face_ids, dtype=np.int64) for p in proposals])
    numbers = np.repeat(np.arange(len(proposals)), [len(p.face_ids) for p in proposals])
    order = np.argsort(members)
    pos = np.searchsorted(members[order], face_ids)
    pos = np.minimum(pos, len(members) - 1)
    found = members[order][pos] == face_ids
    out[found] = numbers[order][pos[found]]
    return out


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def pairwise_scores(labels_true: npt.ArrayLike, labels_pred: npt.ArrayLike) -> dict[str, float]:
    """Pairwise and BCubed precision, recall and F1 of a clustering against true identities.

    ``labels_pred`` holds a cluster number per face, negative for noise; each noise face counts
    as a cluster of its own, so leaving a face out costs recall, never precision. Pairwise
    precision is the fraction of same-cluster pairs that are the same person (1.0 when no pair
    shares a cluster); recall the fraction of same-person pairs put in one cluster. BCubed
    averages the same two questions per face (Amigó et al., 2009), so big clusters weigh less.
    Also returned: the pair counts behind the pairwise figures.
    """
    true = np.asarray(labels_true)
    pred = np.asarray(labels_pred, dtype=np.int64)
    n = len(true)
    if pred.shape != (n,):
        raise ValueError(f"{len(pred)} predicted labels for {n} true labels")
    if n == 0:
        raise ValueError("no labels to score")
    _, t = np.unique(true, return_inverse=True)
    noise = pred < 0
    _, p = np.unique(pred, return_inverse=True)
    p = p.astype(np.int64)
    p[noise] = p.max() + 1 + np.arange(int(noise.sum()))  # noise: singletons
    t = t.astype(np.int64).ravel()
    # The contingency table, sparse: n_ij for every (identity, cluster) cell that is not empty.
    cell, n_ij = np.unique(t * (p.max() + 1) + p, return_counts=True)
    a = np.bincount(t)[cell // (p.max() + 1)]  # identity size of each cell
    b = np.bincount(p)[cell % (p.max() + 1)]  # cluster size of each cell

    def pairs(k: npt.NDArray[np.int64]) -> int:
        return int(np.sum(k * (k - 1) // 2))

    together = pairs(n_ij)
    same_cluster = pairs(np.bincount(p))
    same_person = pairs(np.bincount(t))
    precision = together / same_cluster if same_cluster else 1.0
    recall = together / same_person if same_person else 1.0
    b_precision = float(np.sum(n_ij * n_ij / b) / n)
    b_recall = float(np.sum(n_ij * n_ij / a) / n)
    return {
        "pairwise_precision": precision,
        "pairwise_recall": recall,
        "pairwise_f1": _f1(precision, recall),
        "bcubed_precision": b_precision,
        "bcubed_recall": b_recall,
        "bcubed_f1": _f1(b_precision, b_recall),
        "pairs_together": float(together),
        "pairs_same_cluster": float(same_cluster),
        "pairs_same_person": float(same_person),
    }
