"""SmallToLarge, S2L (Yang et al., NeurIPS 2024, arXiv 2403.07384): balanced sampling of trajectory clusters.

Definition
----------
1. Euclidean k-means (:func:`~datadiet.selection.kmeans.kmeans`) on the (n_examples, T) loss trajectories of a
   small proxy model (any 2-D array works).
2. The paper's balanced sampling (Algorithm 1, :func:`balanced_allocation`): visit the clusters by size,
   smallest first (equal sizes: lower cluster id first); cluster ``j`` of ``K`` gets
   ``R_j = floor((B - |S|) / (K - j + 1))``; if ``|C_j| <= R_j`` all of it is taken, otherwise a seeded
   uniform sample of ``R_j`` without replacement. Budget left by small clusters flows to larger ones and the
   largest cluster absorbs the remainder, so ``|S| = B`` exactly.

S2L does not rank, so its selection has no scores. The clustering runs on the trajectories multiplied by
one exact power of two (:mod:`~datadiet.selection.kmeans`), so ``x`` and ``x * 2**e`` give the same
selection bit for bit, and any positive rescaling the same up to rounding; rows whose values are all
subnormal are refused.

Reference and differences
-------------------------
Follows BigML-CS-UCLA/S2L @2bc84dd (``schedules/s2l.py``). Differences: the reference excludes clusters of
size <= 2 from the loop and tops up from their union afterwards (here every cluster takes part); it first
splits the budget across data sources (not offered here); it samples with numpy's unseeded global RNG and
clusters with faiss (``niter=20``). Du et al.'s re-implementation visits clusters *largest* first and can
under-fill the budget; :func:`du_compat_allocation` reproduces it for comparison only, and is not a selector,
since every selection must hold exactly ``k`` examples.
"""

from __future__ import annotations

import numbers

import numpy as np

from datadiet._core.checks import check_number
from datadiet.errors import ParameterError, ParameterTypeError
from datadiet.selection.base import BaseSelector
from datadiet.selection.kmeans import kmeans
from datadiet.selection.registry import SELECTORS


def balanced_allocation(sizes: np.ndarray, budget: int) -> np.ndarray:
    """How many members S2L takes from each cluster (paper Algorithm 1).

    Parameters
    ----------
    sizes : array-like of int, shape (n_clusters,)
        Cluster sizes.
    budget : int
        Total to take, at most ``sum(sizes)``.

    Returns
    -------
    ndarray of shape (n_clusters,)
        Takes per cluster, in the order of ``sizes``; they sum to ``budget`` exactly.

    Examples
    --------
    >>> balanced_allocation([500, 300, 100, 50, 20, 10, 5, 5, 5, 5], 400).tolist()
    [100, 100, 100, 50, 20, 10, 5, 5, 5, 5]
    """
    sizes, budget = _check_allocation(sizes, budget)
    takes = np.zeros(len(sizes), dtype=np.int64)
    taken = 0
    for position, cluster in enumerate(np.argsort(sizes, kind="stable")):
        share = (budget - taken) // (len(sizes) - position)
        takes[cluster] = min(sizes[cluster], share)
        taken += takes[cluster]
    return takes


def du_compat_allocation(sizes: np.ndarray, budget: int) -> np.ndarray:
    """Du et al.'s allocation (largest cluster first); it may take fewer than ``budget`` in total.

    ``take = min(int((budget - taken) / (K - idx)), |C|)`` over the clusters sorted by size, largest first
    (``idx`` from 0). Budget left by the small clusters visited last is lost.

    Parameters
    ----------
    sizes : array-like of int, shape (n_clusters,)
        Cluster sizes.
    budget : int
        Target total, at most ``sum(sizes)``.

    Returns
    -------
    ndarray of shape (n_clusters,)
        Takes per cluster, in the order of ``sizes``.

    Examples
    --------
    >>> int(du_compat_allocation([500, 300, 100, 50, 20, 10, 5, 5, 5, 5], 400).sum())
    210
    """
    sizes, budget = _check_allocation(sizes, budget)
    takes = np.zeros(len(sizes), dtype=np.int64)
    taken = 0
    for position, cluster in enumerate(np.argsort(-sizes, kind="stable")):
        takes[cluster] = min((budget - taken) // (len(sizes) - position), sizes[cluster])
        taken += takes[cluster]
    return takes


def balanced_sample(members: list[np.ndarray], takes: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
    """Take ``takes[c]`` members of every cluster ``c``: all of them, or a uniform sample without replacement.

    Parameters
    ----------
    members : list of ndarray
        Example indices of each cluster.
    takes : ndarray of shape (n_clusters,)
        How many to take from each (at most its size).
    rng : numpy.random.Generator
        Draws the samples, cluster by cluster in id order.

    Returns
    -------
    ndarray of shape (sum(takes),)
        Sorted selected indices.
    """
    chosen = [
        group if take == len(group) else rng.choice(group, size=int(take), replace=False)
        for group, take in zip(members, takes, strict=True)
    ]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def _check_allocation(sizes: object, budget: object) -> tuple[np.ndarray, int]:
    array = np.asarray(sizes)
    if array.ndim != 1 or len(array) == 0 or array.dtype.kind not in "iu" or (array < 0).any():
        raise ParameterError(f"sizes must be a non-empty 1-D array of ints >= 0. Got {sizes!r} instead.")
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
        raise ParameterTypeError(f"budget must be an int. Got {budget!r} instead.")
    total = int(array.sum())
    if not 0 <= int(budget) <= total:
        raise ParameterError(f"budget={budget} should be in [0, sum(sizes)={total}].")
    return array.astype(np.int64), int(budget)


@SELECTORS.register("s2l")
class S2L(BaseSelector):
    """Cluster the trajectories, then sample the clusters evenly (smallest cluster first).

    Parameters
    ----------
    n_clusters : int or None, default=None
        Number of k-means clusters; None means ``round(sqrt(n_examples))``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.repeat([[0.0, 0.0], [9.0, 9.0]], [2, 8], axis=0) + np.arange(10)[:, None] / 100
    >>> selection = S2L(n_clusters=2).select(x, 6, seed=0)
    >>> len(selection.indices), int((selection.indices < 2).sum())
    (6, 2)
    """

    reads = "an (n_examples, T) array of loss trajectories (any 2-D array)"
    input_ndim = (2,)

    def __init__(self, *, n_clusters: int | None = None) -> None:
        self.n_clusters = n_clusters

    def validate_params(self, n: int) -> None:
        check_number(type(self).__name__, "n_clusters", self.n_clusters, integer=True, low=1, optional=True)

    def _select(self, values, k, *, labels, val, rng):
        result = kmeans(values, self.n_clusters, metric="euclidean", rng=rng, name="rep.values")
        members = result.members()
        takes = balanced_allocation(result.sizes(), k)
        return balanced_sample(members, takes, rng=rng), None, None
