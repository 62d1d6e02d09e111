"""The seeding of the faiss and torch engines of :func:`datadiet.selection.kmeans.kmeans`: :func:`seed`.

k-means|| draws rows of the fitting sample in rounds by D^2, each drawn row is replaced by the mean of its
cell, and greedy k-means++ picks the ``k`` seeds among those weighted means. Every random draw is made in
numpy from ``rng`` (:func:`draw`); for the torch engine on a GPU the large products run there, in torch
(:mod:`~datadiet.selection._torch_kmeans`), with the same draws in the same order. The definition (rules,
cost, precisions) is step 2, *Seeding*, and the ``engine="torch"`` paragraph of the
:mod:`datadiet.selection.kmeans` module docstring.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    import torch

    from datadiet.selection import _torch_kmeans

_PARALLEL_ROUNDS = 5  # k-means|| rounds (Bahmani et al.: 5 rounds suffice)
_OVERSAMPLING = 1  # k-means|| draws about _OVERSAMPLING * k rows per round
_SEED_CHUNK_ENTRIES = 1 << 18  # row-by-drawn-row products per chunk of the seeding (1 MiB of float32)
_CELL_CHUNK_ENTRIES = 1 << 22  # row-by-feature entries per chunk of the cell sums (32 MiB of float64)
_TRIALS_FACTOR = 4  # candidates per seed, as a multiple of scikit-learn's 2 + ln k
_BLAS_THREADS = 2  # the large products' BLAS threads (GEMM splits its output: the bits do not depend on it)


def seed(
    sample: np.ndarray,
    k: int,
    rng: np.random.Generator,
    eligible: np.ndarray,
    device: torch.device | None = None,
) -> np.ndarray:
    """``k`` seeds: k-means|| draws, their cell means, then weighted greedy k-means++ among the means.

    ``eligible`` masks the rows that may be drawn and count in the potential (cosine: the nonzero rows,
    since a zero centroid attracts nothing). With a ``device``, the distances and cell sums run in torch
    there (:mod:`~datadiet.selection._torch_kmeans`); every draw is the same, from ``rng``, in the same
    order.
    """
    placed = None
    if device is not None:
        from datadiet.selection._torch_kmeans import Placed

        placed = Placed.of(sample, device)
    with threadpool_limits(limits=_BLAS_THREADS, user_api="blas"):  # large products: GEMM splits rows
        candidates, nearest = _parallel_candidates(sample, k, rng, eligible, placed)
    points, weights = _cell_means(sample, candidates, nearest, eligible, placed)
    del placed  # the device copy of the sample is not needed by the greedy step
    with threadpool_limits(limits=1, user_api="blas"):  # small products: threads cost more than they save
        return points[_greedy_plusplus(points, weights, k, rng, device)]


def _parallel_candidates(
    sample: np.ndarray,
    k: int,
    rng: np.random.Generator,
    eligible: np.ndarray,
    placed: _torch_kmeans.Placed | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """k-means|| (Bahmani et al. 2012): rows of ``sample`` drawn in rounds by D^2.

    One eligible row is drawn uniformly; then, in each of ``_PARALLEL_ROUNDS`` rounds, every row
    independently with probability ``min(1, l * D^2 / phi)`` (``l = _OVERSAMPLING * k``, ``D`` the distance
    to the nearest drawn row, ``phi`` the sum of ``D^2`` over the eligible rows).

    Returns
    -------
    rows : ndarray of int64
        Indices into ``sample``, in the order drawn.
    nearest : ndarray of int64, shape (len(sample),)
        For every sample row, the position in ``rows`` of its nearest drawn row.
    """
    squared_norms = np.einsum("ij,ij->i", sample, sample)
    nearest_drawn = _nearest_drawn(sample, squared_norms, placed)
    closest = np.full(len(sample), np.inf, dtype=np.float32)
    nearest = np.zeros(len(sample), dtype=np.int64)
    pool = np.flatnonzero(eligible)
    drawn = [pool[rng.integers(len(pool))][None]]
    _update_nearest(nearest_drawn, drawn[0], 0, closest, nearest)
    closest[~eligible] = 0
    count = 1
    for _ in range(_PARALLEL_ROUNDS):
        phi = float(np.sum(closest, dtype=np.float64))
        if phi <= 0:  # every eligible row coincides with a drawn one
            break
        new = np.flatnonzero(rng.random(len(sample)) * phi < _OVERSAMPLING * k * closest.astype(np.float64))
        if len(new):
            _update_nearest(nearest_drawn, new, count, closest, nearest)
            closest[~eligible] = 0
            drawn.append(new)
            count += len(new)
    return np.concatenate(drawn), nearest


_NearestDrawn = Callable[[np.ndarray], Iterator[tuple[int, np.ndarray, np.ndarray]]]
"""``rows -> (start, which, squared)`` per row chunk of the sample: for each row of the chunk, the position
in ``rows`` of its nearest drawn row and the squared distance to it."""


def _nearest_drawn(
    sample: np.ndarray, squared_norms: np.ndarray, placed: _torch_kmeans.Placed | None
) -> _NearestDrawn:
    """The nearest-drawn-row search of k-means||: numpy (:func:`_drawn_distances`), or torch where
    ``placed`` puts the sample."""
    if placed is None:
        return lambda rows: _drawn_distances(sample, squared_norms, rows)
    from datadiet.selection import _torch_kmeans

    return _torch_kmeans.nearest_drawn(placed, squared_norms)


def _drawn_distances(
    sample: np.ndarray, squared_norms: np.ndarray, rows: np.ndarray
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Per cache-sized row chunk of ``sample``: its start, the nearest of the drawn ``rows`` (a position in
    ``rows``, the first on ties) and the squared distance to it (clipped at 0), in float32."""
    centres = sample[rows]
    centre_norms = squared_norms[rows]
    step = max(1, _SEED_CHUNK_ENTRIES // len(rows))
    for start in range(0, len(sample), step):
        stop = min(start + step, len(sample))
        partial = sample[start:stop] @ centres.T  # ||x - c||^2 - ||x||^2 = ||c||^2 - 2 x.c
        partial *= -2
        partial += centre_norms
        which = np.argmin(partial, axis=1)
        yield start, which, np.maximum(partial[np.arange(stop - start), which] + squared_norms[start:stop], 0)


def _update_nearest(
    nearest_drawn: _NearestDrawn, rows: np.ndarray, offset: int, closest: np.ndarray, nearest: np.ndarray
) -> None:
    """Lower ``closest`` (squared distance to the nearest drawn row) with the new drawn ``rows``.

    ``nearest`` gets the index of the nearest drawn row, counting the new ones from ``offset``; a drawn
    row is at distance 0 from itself. The distances come chunk by chunk from ``nearest_drawn``.
    """
    for start, which, squared in nearest_drawn(rows):
        stop = start + len(which)
        better = squared < closest[start:stop]
        closest[start:stop][better] = squared[better]
        nearest[start:stop][better] = offset + which[better]
    closest[rows] = 0
    nearest[rows] = offset + np.arange(len(rows))


def _cell_means(
    sample: np.ndarray,
    rows: np.ndarray,
    nearest: np.ndarray,
    eligible: np.ndarray,
    placed: _torch_kmeans.Placed | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The mean and size of the eligible sample rows nearest to each drawn row (its cell).

    A drawn row whose cell is empty keeps its own value, with weight 0. Sums run in float64, over row
    chunks of the sample (a one-hot sparse product, in row order; in torch where ``placed`` puts the
    sample).
    """
    if placed is None:
        sums = _cell_sums(sample, len(rows), nearest, eligible)
    else:
        from datadiet.selection import _torch_kmeans

        sums = _torch_kmeans.cell_sums(placed, nearest, eligible, len(rows))
    sizes = np.bincount(nearest[eligible], minlength=len(rows)).astype(np.float64)
    means = np.where(sizes[:, None] > 0, sums / np.maximum(sizes, 1)[:, None], sample[rows])
    return means.astype(sample.dtype), sizes


def _cell_sums(sample: np.ndarray, n_cells: int, nearest: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Per cell, the float64 sum of the eligible sample rows whose ``nearest`` drawn row it is."""
    from scipy.sparse import csr_array

    sums = np.zeros((n_cells, sample.shape[1]), dtype=np.float64)
    step = max(1, _CELL_CHUNK_ENTRIES // sample.shape[1])
    for start in range(0, len(sample), step):
        members = start + np.flatnonzero(eligible[start : start + step])
        onehot = csr_array(
            (np.ones(len(members)), (nearest[members], np.arange(len(members)))),
            shape=(n_cells, len(members)),
        )
        sums += onehot @ sample[members].astype(np.float64)
    return sums


def _greedy_plusplus(
    points: np.ndarray,
    weights: np.ndarray,
    k: int,
    rng: np.random.Generator,
    device: torch.device | None = None,
) -> np.ndarray:
    """Greedy k-means++ on weighted ``points``: indices of ``k`` of them (repeats only if too few differ).

    The first is drawn with probability proportional to weight; each next one is the best, by resulting
    potential ``sum w * min D^2``, of ``4 * (2 + int(ln k))`` candidates drawn with probability
    proportional to ``w * D^2`` (``D`` the distance to the nearest seed so far). With a ``device`` the
    distances and potentials run in torch there; the draws are the same calls of :func:`draw`.
    """
    n_trials = _TRIALS_FACTOR * (2 + int(math.log(k)))
    if device is not None:
        from datadiet.selection import _torch_kmeans

        def from_rng(mass: np.ndarray, size: int) -> np.ndarray:
            return draw(mass, size, rng)

        return _torch_kmeans.greedy_plusplus(points, weights, k, n_trials, from_rng, device)
    squared_norms = np.einsum("ij,ij->i", points, points)
    transposed = np.ascontiguousarray(points.T)
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = draw(weights, 1, rng)[0]
    closest = _squared_distances(points, transposed, chosen[:1], squared_norms)[0]
    for c in range(1, k):
        candidates = draw(closest * weights, n_trials, rng)
        trial = np.minimum(closest, _squared_distances(points, transposed, candidates, squared_norms))
        best = int(np.argmin(trial @ weights))
        chosen[c], closest = candidates[best], trial[best]
    return chosen


def draw(mass: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` indices drawn with probability proportional to ``mass`` (uniformly if it is all 0)."""
    cumulative = np.cumsum(mass, dtype=np.float64)
    if not cumulative[-1] > 0:
        return rng.integers(len(mass), size=size)
    found = np.searchsorted(cumulative, rng.random(size) * cumulative[-1], side="right")
    return np.minimum(found, len(mass) - 1)


def _squared_distances(
    points: np.ndarray, transposed: np.ndarray, rows: np.ndarray, squared_norms: np.ndarray
) -> np.ndarray:
    """``||points[rows[i]] - points[j]||^2`` of shape (len(rows), n), clipped at 0."""
    products = points[rows] @ transposed
    return np.maximum(squared_norms[rows, None] - 2 * products + squared_norms[None, :], 0)
