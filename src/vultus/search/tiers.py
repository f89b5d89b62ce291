"""Tiers: which candidates a person is shown, and in what words.

No face model is sure enough alone at a million faces, so every place a face is looked for
(investigator search, and access, erasure, restriction and objection by selfie) sorts its
candidates into two tiers and shows nothing else:

- **match**: the calibrated per-search decision. A stranger reaches this tier anywhere in the
  gallery with probability at most the search's false-match rate (`search_fmr`, `rights_fmr`),
  so the threshold shrinks as the gallery grows.
- **possible, check by eye**: every further candidate down to a *per-pair* false-match rate
  chosen so that the strangers a reviewer must strike stay few: at most `possible_fmr`, and low
  enough that the expected number of strangers in the tier (pair rate x gallery size x number
  of queries) is at most `possible_strangers`. The tier is not cut at a count: a person with a
  hundred photos has a hundred candidates, all theirs.

`benchmarks/rights_recall.py` measures what each tier finds and costs the reviewer; the
figures and the choice of defaults are in docs/rights.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from vultus.accuracy.calibration import Calibration

Tier = Literal["match", "possible"]
MATCH: Tier = "match"
POSSIBLE: Tier = "possible"
TIER_LABELS: dict[str, str] = {MATCH: "match", POSSIBLE: "possible, check by eye"}


@dataclass(frozen=True)
class Tiering:
    """The two distance thresholds of one round of search."""

    match_threshold: float
    possible_threshold: float
    # The per-pair false-match rate at the possible threshold.
    possible_pair_fmr: float
    gallery_size: int
    # The match threshold's target lies below what the calibration resolves (see Threshold).
    beyond_calibration: bool = False

    @classmethod
    def of(
        cls,
        calibration: Calibration,
        *,
        fmr: float,
        gallery_size: int,
        possible_fmr: float,
        possible_strangers: float,
        queries: int = 1,
    ) -> Tiering:
        """`queries`: how many templates search at once (a review's expansion searches from
        every confirmed face); each can bring its own strangers, so the budget is shared."""
        gallery = max(1, gallery_size)
        match = calibration.threshold_for(fmr, gallery_size=gallery)
        pair = min(possible_fmr, possible_strangers / (gallery * max(1, queries)))
        possible = calibration.threshold_for(pair, gallery_size=1)
        return cls(
            match_threshold=float(match),
            # A strict per-pair rate on a tiny gallery can sit under the match threshold: the
            # possible tier then adds nothing rather than overlapping.
            possible_threshold=max(float(possible), float(match)),
            possible_pair_fmr=pair,
            gallery_size=gallery,
            beyond_calibration=match.floor_reached,
        )

    def tier(self, distance: float) -> Tier | None:
        if distance <= self.match_threshold:
            return MATCH
        if distance <= self.possible_threshold:
            return POSSIBLE
        return None

    def assign(self, distances: npt.ArrayLike) -> list[Tier | None]:
        return [self.tier(d) for d in np.asarray(distances, dtype=np.float64).tolist()]


def odds_in_words(pair_fmr: float, gallery_size: int, *, floor: float = 0.0) -> str:
    """How likely a stranger is this close, in words a reviewer reads at a glance. `floor` is
    the calibration's resolution (`Calibration.fmr_floor`): no measured stranger came closer.

    >>> odds_in_words(2e-4, 6000).split("; ")[0]
    "about 1 in 5,000 strangers' faces come this close"
    """
    if pair_fmr <= floor:
        one_in = (
            f"no stranger in the calibration's {_round_number(0.5 / floor)} measured pairs "
            "came this close"
        )
    else:
        one_in = f"about 1 in {_round_number(1.0 / pair_fmr)} strangers' faces come this close"
    expected = pair_fmr * max(1, gallery_size)
    if expected < 0.01:
        among = "a stranger this close is very unlikely"
    elif expected < 0.5:
        among = f"about a {expected:.0%} chance of such a stranger"
    else:
        n = int(round(expected))
        among = f"about {n:,} such stranger{'s' if n != 1 else ''} expected"
    return f"{one_in}; {among} among {gallery_size:,} faces"


def _round_number(x: float) -> str:
    """Two significant figures, with thousands separators: 4,873 -> '4,900'."""
    if x >= 1e7:
        return "10,000,000+"
    digits = max(0, len(str(int(x))) - 2)
    return f"{int(round(x, -digits)):,}"
