"""Label balancing for any selector: per-class budgets ``k_c`` summing to ``k``, then ``base`` in each class.

``stratified`` keeps ``k_c`` proportional to class size: ``k_c = floor(k * n_c / n)``, then the remaining
``k - sum(k_c)`` examples go to the classes with the largest remainders ``k * n_c mod n`` (ties: larger class
first, then class order), so the total is exactly ``k`` and ``k_c <= n_c`` always holds.

``sqrt`` keeps ``k_c`` proportional to ``sqrt(n_c)`` (square-root sampling, Mahajan et al. 2018), capped at
``n_c``: a class whose share would exceed its size keeps all its rows and the rest is shared out again
among the others (water-filling, :func:`sqrt_budgets`). Rare classes get more than their share, so a small
budget keeps examples of every class; on equal-sized classes it is ``stratified``.

Score-based selectors score all examples once (clusters and validation relevance stay global, as in
Du et al.'s per-label thresholds) and keep the top ``k_c`` within each class. Other selectors run
inside each class on that class's rows, with an independent child generator per class; those rows are
gathered into memory one class at a time (for a memmap, one class must fit in RAM).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from datadiet._core.chunks import take_rows
from datadiet.errors import ParameterError
from datadiet.selection.base import BaseSelector, Delegating, ScoreSelector, declared

BALANCE_MODES: tuple[str, ...] = ("none", "stratified", "sqrt")


def stratified_budgets(labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes (sorted) and the per-class budgets ``k_c`` summing exactly to ``k``.

    >>> stratified_budgets(np.array([0] * 6 + [1] * 3 + [2]), 5)[1].tolist()
    [3, 2, 0]
    """
    classes, counts = np.unique(labels, return_counts=True)
    n = int(counts.sum())
    if not 0 <= k <= n:
        raise ParameterError(f"budget={k} should be in [0, n_examples={n}].")
    base = (k * counts) // n
    remainders = (k * counts) % n
    order = np.lexsort((np.arange(len(classes)), -counts, -remainders))
    base[order[: k - int(base.sum())]] += 1
    return classes, base


def sqrt_budgets(labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes (sorted) and budgets proportional to ``sqrt(n_c)``, capped at ``n_c``, summing to ``k``.

    The real shares ``min(n_c, t * sqrt(n_c))`` with ``t`` set so they sum to ``k`` (classes that reach
    their size are capped and ``t`` is solved again on the rest); each is rounded down, and the remaining
    examples go to the uncapped classes with the largest fractional parts (ties: larger class first, then
    class order).

    >>> sqrt_budgets(np.array([0] * 100 + [1] * 25 + [2] * 4), 17)[1].tolist()
    [10, 5, 2]
    >>> sqrt_budgets(np.array([0] * 100 + [1] * 25 + [2] * 4), 60)[1].tolist()
    [37, 19, 4]
    """
    classes, counts = np.unique(labels, return_counts=True)
    n = int(counts.sum())
    if not 0 <= k <= n:
        raise ParameterError(f"budget={k} should be in [0, n_examples={n}].")
    weights = np.sqrt(counts.astype(np.float64))
    capped = np.zeros(len(counts), dtype=bool)
    while True:
        left = k - int(counts[capped].sum())
        scale = left / float(weights[~capped].sum()) if (~capped).any() else 0.0
        newly = ~capped & (scale * weights >= counts)
        if not newly.any():
            break
        capped |= newly
    shares = np.where(capped, counts.astype(np.float64), scale * weights)
    budgets = np.minimum(np.floor(shares).astype(np.int64), counts)
    fraction = np.where(budgets < counts, shares - budgets, -1.0)
    order = np.lexsort((np.arange(len(classes)), -counts, -fraction))
    missing = k - int(budgets.sum())
    if missing < 0:  # never: the floors of shares summing to k cannot exceed k
        raise RuntimeError(f"sqrt_budgets rounded to {int(budgets.sum())} examples for k={k}.")
    budgets[order[:missing]] += 1
    return classes, budgets


BUDGETS = {"stratified": stratified_budgets, "sqrt": sqrt_budgets}
"""The per-class budget rule of each balance mode."""


class Stratified(Delegating, BaseSelector):
    """Run ``base`` with per-class budgets by ``mode`` (proportional, or square-root; exact total ``k``)."""

    needs_labels = True

    def __init__(self, base: BaseSelector, mode: str = "stratified") -> None:
        self.base = base
        self.mode = mode

    def validate_params(self, n: int) -> None:
        self.base.validate_params(n)

    def describe(self) -> dict[str, Any]:
        return {**self.base.describe(), "balance": self.mode}

    def _select(self, values, k, *, labels, val, rng):
        labels = declared(labels, "labels")
        classes, budgets = BUDGETS[self.mode](labels, k)
        members = [np.flatnonzero(labels == c) for c in classes]
        if isinstance(self.base, ScoreSelector):
            return self._select_by_scores(values, members, budgets, labels=labels, val=val, rng=rng)
        picked = []
        for rows, k_c, child in zip(members, budgets, rng.spawn(len(classes)), strict=True):
            if k_c > 0:
                local, _, _ = self.base._select(
                    take_rows(values, rows), int(k_c), labels=labels[rows], val=val, rng=child
                )
                picked.append(rows[local])
        return np.concatenate(picked), None, None

    def _select_by_scores(self, values, members, budgets, *, labels, val, rng):
        base: ScoreSelector = self.base  # type: ignore[assignment]
        scores = base._scores(values, labels=labels, val=val, rng=rng)
        picked, weights = [], []
        for rows, k_c in zip(members, budgets, strict=True):
            if k_c > 0:
                local, w = base.pick(scores[rows], int(k_c), rng)
                picked.append(rows[local])
                weights.append(np.ones(len(local)) if w is None else w)
        indices = np.concatenate(picked)
        has_weights = any(not np.all(w == 1) for w in weights)
        return indices, scores, np.concatenate(weights) if has_weights else None
