"""Typical examples of ``k`` clusters: coverage and typicality at once, for small budgets.

Definition
----------
1. Spherical k-means (:func:`~datadiet.selection.kmeans.kmeans`, ``metric="cosine"``, or Euclidean) of the
   rows into exactly ``k`` clusters (``k`` = the budget), seeded from ``seed``.
2. From each cluster keep the member nearest its centroid (ties: lower index).
3. When the rows hold fewer than ``k`` distinct points, k-means has fewer clusters; the rest of the budget
   is drawn uniformly at random from the rows not yet kept.

With ``balance`` the clustering runs inside each class on that class's budget, so the kept set covers every
class's modes. Each cluster contributes its most central member: the budget is spread over the whole
distribution (coverage, as in core-set selection) and spent on typical, not outlying, examples. This is the
low-budget regime of Sorscher et al. (2022, "Beyond neural scaling laws": with little data keep easy
examples) and TypiClust (Hacohen et al., ICML 2022), which clusters into as many clusters as the budget and
keeps each cluster's most typical member; TypiClust ranks members by k-nearest-neighbour density, here by
distance to the centroid, which needs no neighbour search. Typicality discards the hard examples a large
budget should keep, so the ``auto`` recipe (:mod:`datadiet.recipes`) uses this only at small budgets.
"""

from __future__ import annotations

import warnings
from typing import Literal, get_args

import numpy as np

from datadiet._core.checks import check_choice, check_number
from datadiet.selection.base import BaseSelector
from datadiet.selection.kmeans import NClustersClampedWarning, kmeans
from datadiet.selection.registry import SELECTORS

Metric = Literal["cosine", "euclidean"]


@SELECTORS.register("typical")
class Typical(BaseSelector):
    """Cluster into ``k`` clusters and keep the member nearest each centroid.

    Parameters
    ----------
    metric : {"cosine", "euclidean"}, default="cosine"
        Spherical k-means on unit rows, or plain k-means.
    max_iter : int in [1, 10000], default=50
        Lloyd iterations at most.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0, 1.0], [0.1, 1.0], [0.2, 1.0], [1.0, 0.0], [1.0, 0.1], [1.0, 0.2]])
    >>> Typical(metric="euclidean").select(x, 2, seed=0).indices.tolist()  # the middle of each group
    [1, 4]
    """

    reads = "an N x d embedding (hidden states, projected gradients)"
    input_ndim = (2,)

    def __init__(self, *, metric: Metric = "cosine", max_iter: int = 50) -> None:
        self.metric = metric
        self.max_iter = max_iter

    def validate_params(self, n: int) -> None:
        check_choice("typical", "metric", self.metric, get_args(Metric))
        check_number("typical", "max_iter", self.max_iter, low=1, high=10_000, high_open=False, integer=True)

    def _select(self, values, k, *, labels, val, rng):
        n = len(values)
        if k == n:
            return np.arange(n), None, None
        with warnings.catch_warnings():  # fewer distinct rows than k: filled at random below
            warnings.simplefilter("ignore", NClustersClampedWarning)
            result = kmeans(values, k, metric=self.metric, rng=rng, max_iter=self.max_iter, name="rep.values")
        order = np.lexsort((np.arange(n), result.distances, result.labels))
        first = np.ones(n, dtype=bool)
        first[1:] = result.labels[order][1:] != result.labels[order][:-1]
        kept = order[first]
        if len(kept) < k:
            rest = np.setdiff1d(np.arange(n), kept)
            kept = np.concatenate([kept, rng.choice(rest, size=k - len(kept), replace=False)])
        return kept, None, None
