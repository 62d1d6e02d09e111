"""Uniform random selection: ``k`` distinct examples drawn without replacement.

The baseline every pruning method must beat. It reads nothing but the number of rows, so any
representation (1-, 2- or 3-D) works; the draw is ``rng.choice(n, k, replace=False)`` on the
generator made from ``seed``.
"""

from __future__ import annotations

import numpy as np

from datadiet.selection.base import BaseSelector
from datadiet.selection.registry import SELECTORS


@SELECTORS.register("random")
class Random(BaseSelector):
    """Keep ``k`` examples drawn uniformly at random without replacement.

    Examples
    --------
    >>> import numpy as np
    >>> Random().select(np.zeros((10, 2)), 3, seed=0).indices.tolist()
    [5, 6, 9]
    """

    reads = "any array with one row per example (1-, 2- or 3-D)"
    input_ndim = (1, 2, 3)

    def __init__(self) -> None:
        pass

    def _select(
        self,
        values: np.ndarray,
        k: int,
        *,
        labels: np.ndarray | None,
        val: np.ndarray | None,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, None, None]:
        return rng.choice(len(values), size=k, replace=False), None, None
