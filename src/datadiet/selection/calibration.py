"""Randomized calibration of score-based selectors for high compression (Ayed & Hayou, TMLR 2023).

A share ``alpha`` of the budget comes from the scores, the rest uniformly at random from the others::

    k_s = floor(alpha * k)
    S   = top k_s by score (the selector's own tie rule)  ∪  (k - k_s) uniform from the remaining n - k_s

``alpha=1`` is the plain selector (bit for bit); ``alpha=0`` is uniform random pruning. With
``weighting="unbiased"`` the random part carries weight ``(n - k_s) / (k - k_s)`` (its inverse inclusion
probability), so ``sum_{i in S} w_i * loss_i`` is an unbiased estimate of the full-data loss sum given the
score part. The paper's protocol names are not used: the parameters say what they do.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from datadiet._core.checks import param_error
from datadiet.errors import ParameterTypeError
from datadiet.selection.base import Delegating, ScoreSelector

WEIGHTINGS: tuple[str, ...] = ("none", "unbiased")


class Calibrated(Delegating, ScoreSelector):
    """``base``'s scores fill ``floor(alpha * k)`` of the budget; the rest is uniform random."""

    base: ScoreSelector

    def __init__(self, base: ScoreSelector, *, alpha: float, weighting: str = "none") -> None:
        self.base = base
        self.alpha = alpha
        self.weighting = weighting

    def validate_params(self, n: int) -> None:
        alpha = self.alpha
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
            raise param_error("calibration", "alpha", "a float in [0, 1]", alpha, error=ParameterTypeError)
        if not 0 <= alpha <= 1:  # NaN fails
            raise param_error("calibration", "alpha", "a float in [0, 1]", alpha)
        if self.weighting not in WEIGHTINGS:
            raise param_error("calibration", "weighting", f"one of {list(WEIGHTINGS)}", self.weighting)
        self.base.validate_params(n)

    def describe(self) -> dict[str, Any]:
        return {**self.base.describe(), "calibrate": {"alpha": self.alpha, "weighting": self.weighting}}

    def _scores(self, values, *, labels, val, rng):
        return self.base._scores(values, labels=labels, val=val, rng=rng)

    def pick(
        self, scores: np.ndarray, k: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        n = len(scores)
        k_s = math.floor(round(self.alpha * k, 9))
        top = self.base.pick(scores, k_s, rng)[0] if k_s > 0 else np.empty(0, dtype=np.int64)
        rest = np.setdiff1d(np.arange(n), top, assume_unique=True)
        drawn = rng.choice(rest, k - k_s, replace=False) if k > k_s else np.empty(0, dtype=np.int64)
        indices = np.concatenate([top, drawn]).astype(np.int64)
        if self.weighting == "none" or k_s == k:
            return indices, None
        weights = np.ones(k)
        weights[k_s:] = (n - k_s) / (k - k_s)
        return indices, weights
