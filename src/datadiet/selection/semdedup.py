"""SemDeDup: semantic de-duplication (Abbas et al. 2023, arXiv 2303.09540).

Definition
----------
1. Spherical k-means (:func:`~datadiet.selection.kmeans.kmeans`, ``metric="cosine"``) on L2-normalised rows.
2. Inside each cluster, order the members by cosine distance to the centroid: descending for
   ``keep="hard"`` (farthest first), ascending for ``"easy"``, a seeded shuffle for ``"random"``.
   Equal distances keep the lower index first.
3. ``M[j] = max(0, max over i before j in that order of cos(x_i, x_j))`` (:func:`duplicate_scores`). ``j`` is
   compared with *every* earlier member, including members that are themselves duplicates: this is not
   "one representative per connected component". A cluster of one member gets ``M = 0``; empty clusters are
   skipped.

Cosines are taken between unit rows made by :func:`~datadiet.selection._numerics.unit_rows` (each row
first multiplied by its own power of two), so ``M`` is the same for ``x`` and ``c * x`` for any ``c > 0``,
bit for bit when ``c`` is a power of two; rows whose values are all subnormal are refused.

For a budget ``k`` the selector keeps the ``k`` smallest ``M`` over the whole dataset (score ``-M``). Ties
(all the ``M = 0`` members: the first member of each cluster, singletons, members with no positive
similarity to an earlier one) go to the lower example index. The paper's threshold view is
:func:`semdedup_eps`: remove ``j`` iff ``M[j] > 1 - eps``. Since ``M`` does not depend on ``eps``, the kept
set for any ``eps`` is a prefix of the budget ranking (up to ties), and ``eps = 1 - M_(k)`` (the k-th
smallest ``M``) reproduces budget ``k``.

Reference and differences
-------------------------
Follows facebookresearch/SemDeDup @6b41945 (``sort_clusters.rank_within_cluster`` and
``SemDeDupJob._process_shard``): the earlier member of a duplicate pair survives, so ``"hard"`` keeps the
member farther from the centroid. Differences: the original has no budget, only an ``eps`` list; its
``"easy"`` reverses the hard order (ties then run higher index first) and ``"random"`` uses Python's
``random.seed``; it builds the full ``n_c x n_c`` similarity matrix, here it is computed in row blocks, one
cluster's rows gathered at a time (a memmap is never loaded whole); both use faiss's spherical
k-means, seeded here with k-means|| and greedy k-means++ instead of faiss's random init (see
:mod:`datadiet.selection.kmeans`).
NeMo-Curator removes at ``M >= 1 - eps``, the original (and :func:`semdedup_eps`) at ``M > 1 - eps``.
"""

from __future__ import annotations

import numbers
from typing import Literal, get_args

import numpy as np

from datadiet._core.checks import as_finite_array, check_choice, check_number, check_rng, param_error
from datadiet._core.chunks import take_rows
from datadiet.distributed.engine import current_engine
from datadiet.errors import ParameterError
from datadiet.selection._numerics import normalize_rows
from datadiet.selection.base import ScoreSelector
from datadiet.selection.kmeans import kmeans
from datadiet.selection.registry import SELECTORS

Keep = Literal["hard", "easy", "random"]
KEEPS: tuple[str, ...] = get_args(Keep)
MAX_BLOCK_SIZE = 4096  # block_size**2 float64 similarities: 128 MiB


def duplicate_scores(x_normalised: np.ndarray, order: np.ndarray, *, block_size: int = 1024) -> np.ndarray:
    """Largest cosine similarity of each member of one cluster to the members before it.

    Parameters
    ----------
    x_normalised : ndarray of shape (n_members, d)
        L2-normalised rows of one cluster (the dot product is taken as the cosine).
    order : ndarray of shape (n_members,)
        A permutation of ``range(n_members)``: ``order[0]`` is processed first.
    block_size : int in [1, 4096], default=1024
        Rows per block; at most ``block_size**2`` similarities are held at once (128 MiB at 4096).

    Returns
    -------
    ndarray of shape (n_members,)
        ``M``, aligned with the rows of ``x_normalised``: ``M[j] = max(0, max_{i before j} x_i . x_j)``.

    Examples
    --------
    >>> x = np.array([[1.0, 0.0], [0.6, 0.8], [1.0, 0.0]])
    >>> duplicate_scores(x, np.array([1, 0, 2])).tolist()
    [0.6, 0.0, 1.0]
    """
    x, order = _check_cluster(x_normalised, order, block_size)
    x_sorted = x[order]
    m_sorted = np.zeros(len(x_sorted), dtype=x.dtype)
    for start in range(0, len(x_sorted), block_size):
        stop = min(start + block_size, len(x_sorted))
        m_sorted[start:stop] = _max_earlier_similarity(x_sorted, start, stop, block_size)
    out = np.empty_like(m_sorted)
    out[order] = m_sorted
    return out


def _check_cluster(x_normalised: object, order: object, block_size: object) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x_normalised)
    x = x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)
    order = np.asarray(order)
    if x.ndim != 2 or order.shape != (len(x),) or not np.array_equal(np.sort(order), np.arange(len(x))):
        raise ParameterError(
            f"order must be a permutation of range(n_members) for a 2-D x_normalised; got x_normalised of "
            f"shape {x.shape} and order of shape {order.shape}."
        )
    if (
        isinstance(block_size, bool)
        or not isinstance(block_size, numbers.Integral)
        or not 1 <= int(block_size) <= MAX_BLOCK_SIZE
    ):
        raise param_error(
            "duplicate_scores", "block_size", f"an int in the range [1, {MAX_BLOCK_SIZE}]", block_size
        )
    return x, order


def _max_earlier_similarity(x_sorted: np.ndarray, start: int, stop: int, block_size: int) -> np.ndarray:
    """``max(0, max_{i < j} x_i . x_j)`` for the positions ``j`` in ``[start, stop)``."""
    queries = x_sorted[start:stop]
    best = np.zeros(stop - start, dtype=x_sorted.dtype)
    for key_start in range(0, stop, block_size):
        key_stop = min(key_start + block_size, stop)
        sims = queries @ x_sorted[key_start:key_stop].T
        if key_stop > start:  # the block on the diagonal: only earlier positions count
            later = np.arange(key_start, key_stop)[None, :] >= np.arange(start, stop)[:, None]
            sims[later] = -np.inf
        np.maximum(best, sims.max(axis=1), out=best)
    return best


def cluster_order(distances: np.ndarray, keep: str, rng: np.random.Generator) -> np.ndarray:
    """Processing order of one cluster's members from their distances to the centroid.

    ``"hard"``: farthest first; ``"easy"``: nearest first (ties: lower position first in both);
    ``"random"``: ``rng.permutation``.
    """
    if keep == "random":
        return rng.permutation(len(distances))
    key = -distances if keep == "hard" else distances
    return np.argsort(key, kind="stable")


def semdedup_scores(
    x: np.ndarray,
    *,
    n_clusters: int | None = None,
    keep: str = "hard",
    rng: int | np.random.Generator,
    name: str = "x",
) -> np.ndarray:
    """SemDeDup's ``M`` for every example (see the module docstring).

    Parameters
    ----------
    x : ndarray of shape (n_examples, d)
        Embeddings (normalised here; zero rows stay zero).
    n_clusters : int or None, default=None
        Number of clusters; None means ``round(sqrt(n_examples))``.
    keep : {"hard", "easy", "random"}, default="hard"
        Order inside each cluster; the earlier member of a duplicate pair survives.
    rng : int or numpy.random.Generator
        Seeds the clustering, then the ``"random"`` orders (in cluster id order).
    name : str, default="x"
        What to call ``x`` in error messages.

    Returns
    -------
    ndarray of shape (n_examples,)
        ``M`` in [0, 1]; larger means a closer duplicate of an earlier member.
    """
    check_number("semdedup_scores", "n_clusters", n_clusters, integer=True, low=1, optional=True)
    check_choice("semdedup_scores", "keep", keep, KEEPS)
    rng = check_rng(rng)
    x = x if isinstance(x, np.ndarray) else np.asarray(x)
    result = kmeans(x, n_clusters, metric="cosine", rng=rng, name=name)
    scores = np.zeros(len(result.labels), dtype=result.distances.dtype)
    clusters = []  # singletons keep M = 0; empty clusters have nothing to score
    for members in result.members():
        if len(members) >= 2:  # the "random" orders draw from rng in cluster id order, as one process would
            clusters.append((members, cluster_order(result.distances[members], keep, rng)))
    groups = _cluster_groups(clusters, max_rows=_GROUP_ROWS)
    for group, values in zip(groups, current_engine().map(_group_scores, groups, x), strict=True):
        for (members, _), value in zip(group, values, strict=True):
            scores[members] = value
    return scores


_GROUP_ROWS = 1 << 16  # rows of clusters handed to one task of the engine's map


def _cluster_groups(clusters: list, max_rows: int) -> list[list]:
    """Consecutive clusters packed into groups of about ``max_rows`` rows (one engine task each)."""
    groups: list[list] = []
    rows = max_rows
    for cluster in clusters:
        if rows + len(cluster[0]) > max_rows:
            groups.append([])
            rows = 0
        groups[-1].append(cluster)
        rows += len(cluster[0])
    return groups


def _group_scores(group: list, x: np.ndarray) -> list[np.ndarray]:
    """``M`` of every cluster of one group (a task of the engine's map), from robust unit rows."""
    return [duplicate_scores(normalize_rows(take_rows(x, members)), order) for members, order in group]


def semdedup_eps(max_similarity: np.ndarray, eps: float) -> np.ndarray:
    """The paper's threshold rule: keep ``j`` unless ``M[j] > 1 - eps`` (strict, as the original).

    Parameters
    ----------
    max_similarity : ndarray of shape (n_examples,)
        ``M`` from :func:`semdedup_scores`.
    eps : float
        Threshold in (0, 1]. A tiny ``eps`` removes only (near-)exact duplicates; ``eps = 1`` removes every
        member with a positive similarity to an earlier one (a larger ``eps`` would remove everything).

    Returns
    -------
    ndarray of shape (n_kept,)
        Sorted indices of the kept examples.

    Examples
    --------
    >>> semdedup_eps(np.array([0.0, 0.75, 0.8]), 0.25).tolist()
    [0, 1]
    """
    scores = as_finite_array(max_similarity, name="max_similarity", ndim=(1,))
    check_number("semdedup_eps", "eps", eps, integer=False, low=0, high=1, low_open=True, high_open=False)
    return np.flatnonzero(scores <= 1 - eps)


@SELECTORS.register("semdedup")
class SemDeDup(ScoreSelector):
    """Drop the closest semantic duplicates first (score ``-M``; ties to the lower index).

    Parameters
    ----------
    n_clusters : int or None, default=None
        Number of spherical k-means clusters; None means ``round(sqrt(n_examples))``.
    keep : {"hard", "easy", "random"}, default="hard"
        Which member of a duplicate pair survives: the one farther from the centroid, nearer, or random.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [-1.0, 0.0]])
    >>> SemDeDup(n_clusters=1).select(x, 3).indices.tolist()
    [0, 1, 3]
    """

    reads = "an (n_examples, d) feature array"
    input_ndim = (2,)

    def __init__(self, *, n_clusters: int | None = None, keep: Keep = "hard") -> None:
        self.n_clusters = n_clusters
        self.keep = keep

    def validate_params(self, n: int) -> None:
        check_number(type(self).__name__, "n_clusters", self.n_clusters, integer=True, low=1, optional=True)
        check_choice(type(self).__name__, "keep", self.keep, KEEPS)

    def _scores(self, values, *, labels, val, rng):
        return -semdedup_scores(
            values, n_clusters=self.n_clusters, keep=self.keep, rng=rng, name="rep.values"
        )
