"""Vultus's calibrated decision, read as the 0..1 similarity that face-collection clients
(CompreFace) compare with a threshold of their own.

A client knows one number per comparison and keeps it if it is over its threshold: CompreFace's
documentation puts most true matches above 0.5, and its users keep those above 0.8 or so. Vultus
decides with calibrated distances instead: a match at the configured false-match rate for the
gallery's size, a possible match (worth a look) further out, nothing beyond. The mapping pins
those decisions to the numbers clients already use, and is linear in distance between them:

    distance 0                     -> 1.0
    the calibrated match threshold -> 0.8   (over 0.8: Vultus calls it a match)
    the possible-match threshold   -> 0.5   (0.5 to 0.8: possible, check by eye)
    distance 2 (opposite vectors)  -> 0.0

So a client's threshold of 0.8 keeps exactly Vultus's matches, 0.5 its possible ones too, and
0.9 keeps the matches nearer than half the match threshold. The thresholds are those of each
comparison: for a search, scaled to the gallery's size; for a 1:1 verification, a gallery of 1.
"""

from __future__ import annotations

MATCH = 0.8
POSSIBLE = 0.5
# Unit vectors are at most 2 apart.
FARTHEST = 2.0


def similarity(distance: float, match: float, possible: float) -> float:
    """The 0..1 similarity of a comparison at `distance`, given where a match and a possible
    match begin; rounded as CompreFace rounds (5 decimals)."""
    d = max(0.0, distance)
    possible = max(possible, match)
    if match <= 0.0:  # no calibrated decision to pin: nothing reads as a match
        value = POSSIBLE * max(0.0, 1.0 - d / FARTHEST)
    elif d <= match:
        value = 1.0 - (1.0 - MATCH) * d / match
    elif d <= possible and possible > match:
        value = MATCH - (MATCH - POSSIBLE) * (d - match) / (possible - match)
    else:
        far = max(possible, match)
        value = POSSIBLE * max(0.0, (FARTHEST - d) / max(FARTHEST - far, 1e-9))
    return round(min(1.0, max(0.0, value)), 5)


def detection_probability(det_score: float) -> float:
    """The detector's score as the probability CompreFace reports for a box. dlib's scores are
    margins, not probabilities; this squashes them so that Vultus's mark for a low-quality
    detection (a score of 1.0) reads 0.8, the threshold CompreFace users commonly set."""
    s = max(0.0, det_score)
    return round(s / (s + 0.25), 5)


def min_det_score(probability: float | None) -> float | None:
    """The detector score a `det_prob_threshold` asks for (the inverse of
    `detection_probability`); None asks for nothing."""
    if probability is None or probability <= 0.0:
        return None
    if probability >= 1.0:
        return float("inf")
    return 0.25 * probability / (1.0 - probability)
