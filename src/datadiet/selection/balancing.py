"""Label balancing for any selector: ``stratified`` keeps ``k_c`` per class, proportional to class size.

``k_c = floor(k * n_c / n)``, then the remaining ``k - sum(k_c)`` examples go to the classes with the
largest remainders ``k * n_c mod n`` (ties: larger class first, then class order), so the total is
exactly ``k`` and ``k_c <= n_c`` always holds.

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

BALANCE_MODES: tuple[str, ...] = ("none", "stratified")


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


class Stratified(Delegating, BaseSelector):
    """Run ``base`` with per-class budgets proportional to class sizes (exact total ``k``)."""

    needs_labels = True

    def __init__(self, base: BaseSelector) -> None:
        self.base = base

    def validate_params(self, n: int) -> None:
        self.base.validate_params(n)

    def describe(self) -> dict[str, Any]:
        return {**self.base.describe(), "balance": "stratified"}

    def _select(self, values, k, *, labels, val, rng):
        labels = declared(labels, "labels")
        classes, budgets = stratified_budgets(labels, k)
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
