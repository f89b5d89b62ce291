"""Tiers: which candidates a person is shown, and in what words.

No face model is sure enough alone at a million faces, so every place a face is looked for
(investigator search, and access, erasure, restriction and objection by selfie) sorts its
candidates into two tiers and shows nothing else:

- **match**: the calibrated per-search decision. A stranger reaches this tier anywhere in the
  gallery with probability at most the search's false-match rate (`search_fmr`, `rights_fmr`),
  so the threshold shrinks as the gallery grows.
- **possible, check by eye**: the next candidates down to a *per-pair* false-match rate
  (`possible_fmr`), at most `possible_max` of them. A per-pair rate does not shrink with the
  gallery: the person's photos that a weak model places a little too far for a gallery-wide
  decision are still shown, and the strangers among them are few enough for a reviewer to
  strike (about `possible_fmr` x gallery size, capped by `possible_max`).

`benchmarks/rights_recall.py` measures what each tier finds and costs the reviewer.
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
    """The two distance thresholds of one search, and the cap on the possible tier."""

    match_threshold: float
    possible_threshold: float
    possible_max: int
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
        possible_max: int,
    ) -> Tiering:
        gallery = max(1, gallery_size)
        match = calibration.threshold_for(fmr, gallery_size=gallery)
        possible = calibration.threshold_for(possible_fmr, gallery_size=1)
        return cls(
            match_threshold=float(match),
            # A strict per-pair rate on a tiny gallery can sit under the match threshold: the
            # possible tier then adds nothing rather than overlapping.
            possible_threshold=max(float(possible), float(match)),
            possible_max=possible_max,
            gallery_size=gallery,
            beyond_calibration=match.floor_reached,
        )

    def assign(self, distances: npt.ArrayLike) -> list[Tier | None]:
        """The tier of each candidate, given in ascending distance: the possible tier takes
        the nearest `possible_max` below the match threshold; the rest are not shown."""
        out: list[Tier | None] = []
        possible = 0
        for d in np.asarray(distances, dtype=np.float64).tolist():
            if d <= self.match_threshold:
                out.append(MATCH)
            elif d <= self.possible_threshold and possible < self.possible_max:
                out.append(POSSIBLE)
                possible += 1
            else:
                out.append(None)
        return out


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
