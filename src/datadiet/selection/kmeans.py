"""The one k-means backend behind every clustering selector (prototypicality, semdedup, s2l).

Definition
----------
``kmeans(x, n_clusters, metric=..., rng=...)`` fits scikit-learn's ``KMeans(init="k-means++")`` (Lloyd)
with a ``random_state`` drawn once from ``rng``, then assigns every row in chunks:

- ``metric="euclidean"``: label = nearest centroid, distance = ``||x - c||`` (not squared).
- ``metric="cosine"`` (spherical): rows are L2-normalised before fitting (zero rows stay zero), centroids are
  L2-normalised after it, each row goes to the centroid of largest cosine, distance = ``1 - cos``
  (a zero row has cosine 0 with every centroid: cluster 0, distance 1).

``n_clusters=None`` means :func:`default_n_clusters` (``round(sqrt(n))``). A request above the number of
distinct rows (distinct directions, for cosine) is lowered to it with a :class:`NClustersClampedWarning`.

Reference and differences
-------------------------
The reference codes use faiss: S2L (Euclidean, ``niter=20``), SemDeDup (``spherical=True``, ``niter=100``,
``seed=1234``) and Du et al. (``niter=20``). faiss re-normalises spherical centroids at every iteration and
trains on at most 256 points per centroid; here the centroids are normalised once, after a Euclidean fit on
the unit sphere, and every row is used. Clusters therefore match faiss runs in kind, not bit for bit.

Determinism: the same ``rng`` state gives the same result bit for bit on one machine. scikit-learn adds
per-thread partial centroid sums in whichever order the threads finish; with more than two threads that
order changes float rounding, so the fit runs with at most two OpenMP threads (two partial sums commute).
Arrays stay float32 when given float32; every other dtype is computed in float64.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from datadiet._validation import as_finite_array, check_rng
from datadiet.selection.base import param_error

METRICS: tuple[str, ...] = ("euclidean", "cosine")
_CHUNK_ENTRIES = 1 << 22  # row-by-centroid entries per assignment chunk (32 MiB of float64)
_OPENMP_THREADS = 2


class NClustersClampedWarning(UserWarning):
    """``n_clusters`` was lowered to the number of distinct rows."""


@dataclass(frozen=True)
class KMeansResult:
    """A fitted clustering.

    Parameters
    ----------
    centroids : ndarray of shape (n_clusters, d)
        Cluster centres (unit norm for ``metric="cosine"``).
    labels : ndarray of shape (n_examples,)
        Cluster id of every row (int64).
    distances : ndarray of shape (n_examples,)
        Distance of every row to its own centroid under the fitted metric.
    """

    centroids: np.ndarray
    labels: np.ndarray
    distances: np.ndarray

    @property
    def n_clusters(self) -> int:
        return len(self.centroids)

    def sizes(self) -> np.ndarray:
        """Number of rows per cluster, shape (n_clusters,); empty clusters count 0."""
        return np.bincount(self.labels, minlength=self.n_clusters)

    def members(self) -> list[np.ndarray]:
        """Row indices of each cluster (ascending), one array per cluster id."""
        order = np.argsort(self.labels, kind="stable")
        return np.split(order, np.cumsum(self.sizes())[:-1])


def default_n_clusters(n: int) -> int:
    """The default number of clusters for ``n`` rows: ``round(sqrt(n))``, at least 1.

    >>> default_n_clusters(600), default_n_clusters(1)
    (24, 1)
    """
    return max(1, round(math.sqrt(n)))


def check_n_clusters(owner: str, n_clusters: object) -> None:
    """Raise the standard parameter error unless ``n_clusters`` is None or an int >= 1."""
    constraint = "None or an int in the range [1, inf)"
    if n_clusters is None:
        return
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral):
        raise TypeError(str(param_error(owner, "n_clusters", constraint, n_clusters)))
    if n_clusters < 1:
        raise param_error(owner, "n_clusters", constraint, n_clusters)


def check_choice(owner: str, name: str, value: object, options: tuple[str, ...]) -> None:
    """Raise the standard parameter error unless ``value`` is one of ``options``."""
    if value not in options:
        raise param_error(owner, name, f"one of {list(options)}", value)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """A new array of the rows of ``x`` scaled to unit L2 norm; zero rows stay zero.

    Parameters
    ----------
    x : ndarray of shape (n, d)

    Returns
    -------
    ndarray of shape (n, d)
        float32 for float32 input, float64 otherwise.

    >>> normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    x = _as_float(x)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def kmeans(
    x: np.ndarray,
    n_clusters: int | None = None,
    *,
    metric: str = "euclidean",
    rng: int | np.random.Generator,
    n_init: int = 1,
    max_iter: int = 300,
) -> KMeansResult:
    """Cluster the rows of ``x`` (see the module docstring for the exact definition).

    Parameters
    ----------
    x : array-like of shape (n_examples, d)
        Rows to cluster; not modified.
    n_clusters : int or None, default=None
        Number of clusters; None means ``round(sqrt(n_examples))``. Lowered, with a
        :class:`NClustersClampedWarning`, to the number of distinct rows.
    metric : {"euclidean", "cosine"}, default="euclidean"
        "cosine" is spherical k-means on L2-normalised rows.
    rng : int or numpy.random.Generator
        Source of the one ``random_state`` handed to scikit-learn.
    n_init : int, default=1
        Number of k-means++ restarts (the lowest inertia wins).
    max_iter : int, default=300
        Lloyd iterations per restart.

    Returns
    -------
    KMeansResult
        ``centroids`` of shape (n_clusters, d), ``labels`` and ``distances`` of shape (n_examples,).

    Examples
    --------
    >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
    >>> result = kmeans(x, 2, rng=0)
    >>> sorted(result.sizes().tolist()), result.distances.tolist()
    ([2, 2], [0.5, 0.5, 0.5, 0.5])
    """
    x = as_finite_array(x, name="x", ndim=(2,))
    if x.shape[1] == 0:
        raise ValueError(f"x must have at least one feature column. Got shape {x.shape} instead.")
    check_n_clusters("kmeans", n_clusters)
    check_choice("kmeans", "metric", metric, METRICS)
    for name, value in (("n_init", n_init), ("max_iter", max_iter)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise param_error("kmeans", name, "an int in the range [1, inf)", value)
    rng = check_rng(rng)
    data = normalize_rows(x) if metric == "cosine" else _as_float(x)
    requested = default_n_clusters(len(data)) if n_clusters is None else int(n_clusters)
    k = _clamp_to_distinct(data, requested)
    if k < requested:
        warnings.warn(
            f"n_clusters={requested} is more than the {k} distinct rows of x; using n_clusters={k}.",
            NClustersClampedWarning,
            stacklevel=2,
        )
    return _kmeans(data, k, metric=metric, rng=rng, n_init=n_init, max_iter=max_iter)


def _kmeans(
    data: np.ndarray, k: int, *, metric: str, rng: np.random.Generator, n_init: int, max_iter: int
) -> KMeansResult:
    """Fit and assign on validated float data (normalised already for cosine)."""
    model = KMeans(
        n_clusters=k,
        init="k-means++",
        n_init=n_init,
        max_iter=max_iter,
        random_state=int(rng.integers(2**31 - 1)),
    )
    with threadpool_limits(limits=_OPENMP_THREADS, user_api="openmp"):
        model.fit(data)
    centroids = np.asarray(model.cluster_centers_, dtype=data.dtype)
    if metric == "cosine":
        centroids = normalize_rows(centroids)
    labels, distances = _assign(data, centroids, metric)
    return KMeansResult(centroids, labels, distances)


def _assign(data: np.ndarray, centroids: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid and distance to it for every row, in chunks of rows."""
    n = len(data)
    labels = np.empty(n, dtype=np.int64)
    distances = np.empty(n, dtype=data.dtype)
    squared_norms = np.einsum("ij,ij->i", centroids, centroids)
    step = max(1, _CHUNK_ENTRIES // len(centroids))
    for start in range(0, n, step):
        block = data[start : start + step]
        products = block @ centroids.T
        if metric == "cosine":
            label = np.argmax(products, axis=1)
            distance = np.clip(1 - products[np.arange(len(block)), label], 0, 2)
        else:  # ||x||^2 is the same for every centroid; the exact distance is taken from the difference
            label = np.argmin(squared_norms - 2 * products, axis=1)
            diff = block - centroids[label]
            distance = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        labels[start : start + step] = label
        distances[start : start + step] = distance
    return labels, distances


def _clamp_to_distinct(data: np.ndarray, k: int) -> int:
    """``min(k, number of distinct rows)``; one column's distinct values are a cheap lower bound."""
    if len(np.unique(data[:, 0])) >= k:
        return k
    return min(k, len(np.unique(data, axis=0)))


def _as_float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)
