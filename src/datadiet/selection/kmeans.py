"""The one k-means backend behind every clustering selector (prototypicality, semdedup, s2l).

Definition
----------
``kmeans(x, n_clusters, metric=..., rng=...)`` seeds with k-means|| then greedy k-means++, runs Lloyd
iterations, then assigns every row in chunks:

- ``metric="euclidean"``: label = nearest centroid, distance = ``||x - c||`` (not squared).
- ``metric="cosine"`` (spherical): rows are L2-normalised (zero rows stay zero), centroids are unit norm,
  each row goes to the centroid of largest cosine, distance = ``1 - cos`` (a zero row has cosine 0 with
  every centroid: cluster 0, distance 1).

``n_clusters=None`` means :func:`default_n_clusters` (``round(sqrt(n))``). A request above the number of
distinct rows (distinct directions of the nonzero rows, for cosine) is lowered to it with a
:class:`NClustersClampedWarning`. When ``n_clusters`` equals that number, the answer is exact and no
k-means runs: every distinct row (direction) is its own cluster, numbered in order of first occurrence.

Scale
-----
Nothing squares a raw value. Rows that are nonzero but entirely subnormal are refused
(:func:`~datadiet.selection._numerics.check_magnitudes`): their direction has lost precision. Then:

- Euclidean: the whole input is multiplied by the one power of two ``s`` that brings ``max |x|`` into
  [0.5, 1) (:func:`~datadiet.selection._numerics.global_scale`); the fit and the assignment run on
  ``s * x``, and centroids and distances are divided by ``s`` at the end (reported in the input's units;
  ``KMeansResult.scale`` and ``scaled_distances`` keep the fitted units). Multiplying by a power of two
  is exact, so ``x`` and ``x * 2**e`` give the same labels bit for bit, and distances and centroids
  exactly ``2**e`` times the others, wherever the values stay normal numbers. A float32 distance beyond
  float32's range (``max |x|`` within a factor ``2 sqrt(d)`` of 3.4e38) is reported as inf; its
  ``scaled_distances`` entry is finite.
- Cosine: each row is scaled by its own power of two, then divided by its norm
  (:func:`~datadiet.selection._numerics.unit_rows`), so any positive rescaling of a row leaves it unchanged.

Engines
-------
``engine="auto"`` is ``"faiss"`` when faiss has a GPU (faiss-gpu), else ``"torch"`` when
:func:`datadiet._core.device.on_gpu` (``DATADIET_DEVICE``, a visible CUDA device by default), else ``"faiss"``
when faiss imports, else ``"sklearn"``: on a CPU-only machine, the engine it always was.

``engine="faiss"`` (``pip install datadiet[fast]``):

1. *Fitting sample*: at most ``max_points_per_centroid * k`` rows (faiss's own cap, 256 by default), drawn
   from ``rng`` without replacement and read in ascending row order; every row when ``n`` is smaller.
   A cluster is found only if the sample holds some of its rows: always when the sample is every row.
2. *Seeding*, in numpy from ``rng``, on the whole fitting sample:

   a. k-means|| (Bahmani et al. 2012, "Scalable k-means++"): one uniform row, then 5 rounds in which
      every row is drawn independently with probability ``min(1, k * D(x)**2 / phi)``, ``D`` its distance
      to the nearest row drawn so far, ``phi`` the sum of ``D**2`` (about ``k`` rows a round).
   b. Each drawn row is replaced by the mean of its cell (the sample rows nearest to it), weighted by
      the cell's size.
   c. Greedy k-means++ on those weighted means: the first seed drawn by weight, each next one the best,
      by resulting weighted potential, of ``4 * (2 + int(ln k))`` candidates drawn with probability
      proportional to weight times squared distance to the nearest seed (four times scikit-learn's
      number of candidates).

   Cost: about ``5 k`` distances per sample row, then per seed ``4 (2 + ln k)`` candidates against the
   about ``5 k`` means: O(sample * k * d * ln k) in all. Every row of a cluster without a drawn row has a
   large ``D``, so each round draws the clusters the earlier ones missed, small ones included; and a
   cell mean lies much nearer its cluster's centre than a single row does, so the greedy step sees the
   unseeded clusters' mass above the seeded ones' scatter. So well-separated clusters (a cluster's size
   times its squared distance to the others well above the whole within-cluster scatter) are found,
   small ones included, for every seed, whenever the sample holds every row. faiss's own random init
   is not used: on well-separated blobs it ends with about 2.5 times the inertia.
3. *Lloyd*: ``faiss.Clustering`` from those seeds on the fitting sample, float32, until the objective
   improves by less than ``tol`` (relative) or after ``max_iter`` iterations. For cosine, faiss
   re-normalises the centroids at every iteration (``spherical=True``) and assigns by inner product.
   Empty clusters are re-split by faiss (seeded from ``rng``).
4. *Assignment*: every row, in chunks, in the input's precision (float32 stays float32, anything else is
   float64), with the same exact-distance rule for both engines.

``engine="torch"``: steps 1 and 2 as for faiss (the same sample and seeds from the same ``rng``; the draw
faiss would take as its own seed is taken too, unused, so restarts see the same stream), then Lloyd in
torch, float32, on :func:`datadiet._core.device.resolve_device` (a GPU when visible, else the CPU), with
the same relative-objective ``tol`` (the objective: the sum of squared distances, or of ``1 - cos``).
Cosine centroids are brought back to unit norm at every iteration. An empty cluster takes the sample row
farthest from its own centroid, without a random draw (:mod:`datadiet.selection._torch_kmeans` gives the
exact rule). The assignment's products run on the same device, in chunks, by the same exact-distance rule.
Without faiss it is the engine for a GPU; on the CPU it works too (torch is always installed).
On a GPU (:func:`~datadiet._core.device.on_gpu`) the seeding's large products run there too, in torch:
the nearest-drawn-row search of 2a (float32, chunks of a fixed number of rows by drawn rows), the cell sums
of 2b (float64) and the candidates' distances and potentials of 2c (float32 distances, float64
potentials, chunks of a fixed number of means). Everything random stays in numpy: the same draws from
``rng``, in the same order and number, from the same float64 masses, so only floating-point rounding can
differ from the numpy seeding (on separated blobs: the same seeds). On the CPU the seeding is the numpy one,
bit for bit.

``engine="sklearn"``: scikit-learn's ``KMeans(init="k-means++")`` on every (scaled) row, in memory, with
its center-shift ``tol``; the same chunked assignment. The engines give partitions of equal quality
but not the same bits; faiss is an order of magnitude faster than sklearn (``bench/bench_kmeans.py``).

Whichever engine fits, the assignment's products run in torch on the GPU when
:func:`~datadiet._core.device.on_gpu` and faiss has none (faiss-gpu: a faiss GPU index), else in numpy.

The reference codes (S2L, SemDeDup, Du et al.) run faiss with its random init and ``niter`` 20 or 100; the
clusters here match theirs in kind, not bit for bit.

Bounds
------
``n_clusters`` >= 1 (lowered to the number of distinct rows, counted by 128-bit row digests, 16 bytes a
row, stopping as soon as more than ``n_clusters`` are seen), ``n_init`` in [1, 100], ``max_iter`` in
[1, 10000], ``tol`` a finite float >= 0, ``max_points_per_centroid`` >= 1 (the sample never exceeds ``n``
rows). So memory is at most a few copies of ``n x d`` whatever the parameters, and time at most
``n_init`` seedings and ``n_init * max_iter`` Lloyd iterations of O(sample * k * d) each; ``n_clusters``
at or above the number of distinct rows costs one O(n * d) pass.

Memory
------
``x`` may be a read-only ``np.memmap`` much larger than RAM. The faiss engine reads it in row chunks
(finiteness and magnitude checks, distinct-row count, normalisation, assignment), releasing each chunk's
pages, and holds in memory only the float32 fitting sample (``max_points_per_centroid * k * d * 4``
bytes), the centroids and the ``n``-long ``labels`` and ``distances``; so does the torch engine (on a GPU,
the sample is copied there when it fits in half the free memory). :func:`assign` labels further rows
(another shard, a memmap) against fitted centroids the same way. The sklearn engine needs the whole
(normalised or scaled) data in memory.

Determinism
-----------
The same ``rng`` state gives the same centroids, labels and distances bit for bit on one machine, for
in-memory and memory-mapped input alike. faiss runs with at most two OpenMP threads (its setting is
restored afterwards) and the seeding's large products with two BLAS threads (OpenBLAS's GEMM splits
its output between threads, each entry summed by one, so the bits do not depend on the count: tested);
scikit-learn adds per-thread partial sums in whichever order the threads finish, so it too gets at most
two (two partial sums commute). The torch engine on the CPU gives the same bits for the same ``rng``
state in one environment (torch build and thread count): its chunks are fixed and its cluster sums run in
row order. With faiss-gpu and a visible GPU (used automatically for fitting and assignment), or the torch
engine on a GPU (its cluster sums are atomic adds), results are reproducible only up to floating-point
reduction order. The device is a placement: it enters no cache key or selection metadata.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import DTypeLike
from threadpoolctl import threadpool_limits

from datadiet._core.checks import (
    as_finite_array,
    as_python_number,
    check_choice,
    check_number,
    check_rng,
    param_error,
)
from datadiet._core.chunks import chunk_rows_for, iter_row_chunks, release_pages, take_rows
from datadiet._core.device import on_gpu, resolve_device
from datadiet.errors import MissingDependencyError, ParameterError
from datadiet.selection import _seeding
from datadiet.selection._numerics import (
    checked_scale,
    float_dtype,
    max_abs,
    normalize_rows,
    power_of_two_scale,
    row_norms,
    scaled,
    unit_rows,
)

if TYPE_CHECKING:
    import torch

_NOT_LOADED: Any = object()
faiss: Any = _NOT_LOADED
"""The faiss module, imported on first use (it takes ~1 s, which a refused config should not wait for);
None when it is not installed (the optional extra "fast")."""

METRICS: tuple[str, ...] = ("euclidean", "cosine")
ENGINES: tuple[str, ...] = ("auto", "faiss", "sklearn", "torch")
FAISS_MISSING = "kmeans(engine='faiss') needs faiss: pip install 'datadiet[fast]' (faiss-cpu)."
MAX_N_INIT = 100
MAX_ITER = 10_000
_CHUNK_ENTRIES = 1 << 22  # row-by-centroid (and row-by-feature) entries per chunk (32 MiB of float64)
_OPENMP_THREADS = 2
_DIGEST = np.dtype([("a", "<u8"), ("b", "<u8")])


class NClustersClampedWarning(UserWarning):
    """``n_clusters`` was lowered to the number of distinct rows."""


@dataclass(frozen=True)
class KMeansResult:
    """A fitted clustering.

    Parameters
    ----------
    centroids : ndarray of shape (n_clusters, d)
        Cluster centres in the input's units (unit norm for ``metric="cosine"``).
    labels : ndarray of shape (n_examples,)
        Cluster id of every row (int64).
    distances : ndarray of shape (n_examples,)
        Distance of every row to its own centroid under the fitted metric, in the input's units.
    scale : float, default=1.0
        The power of two the rows were multiplied by for the fit (Euclidean; 1 for cosine).
    scaled_distances : ndarray of shape (n_examples,), optional
        ``distances * scale``, as computed (always finite); defaults to ``distances``.
    """

    centroids: np.ndarray
    labels: np.ndarray
    distances: np.ndarray
    scale: float = 1.0
    scaled_distances: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.scaled_distances is None:
            object.__setattr__(self, "scaled_distances", self.distances)

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


def kmeans(
    x: np.ndarray,
    n_clusters: int | None = None,
    *,
    metric: str = "euclidean",
    rng: int | np.random.Generator,
    n_init: int = 1,
    max_iter: int = 300,
    tol: float = 1e-4,
    engine: str = "auto",
    max_points_per_centroid: int = 256,
    name: str = "x",
) -> KMeansResult:
    """Cluster the rows of ``x`` (see the module docstring for the exact definition).

    Parameters
    ----------
    x : array-like or memmap of shape (n_examples, d)
        Rows to cluster; not modified. A memmap is read in chunks (engines "faiss" and "torch"), never
        loaded whole.
    n_clusters : int or None, default=None
        Number of clusters; None means ``round(sqrt(n_examples))``. Lowered, with a
        :class:`NClustersClampedWarning`, to the number of distinct rows.
    metric : {"euclidean", "cosine"}, default="euclidean"
        "cosine" is spherical k-means on L2-normalised rows.
    rng : int or numpy.random.Generator
        Source of every random draw (fitting sample, seeding, the engine's own seed).
    n_init : int in [1, 100], default=1
        Number of seeding restarts (the best objective wins).
    max_iter : int in [1, 10000], default=300
        Lloyd iterations per restart, at most.
    tol : float, default=1e-4
        Convergence tolerance: relative objective change (faiss, torch) or relative center shift (sklearn).
    engine : {"auto", "faiss", "sklearn", "torch"}, default="auto"
        "auto" is "faiss" when faiss has a GPU, else "torch" on a GPU, else "faiss" when faiss is
        installed, else "sklearn".
    max_points_per_centroid : int, default=256
        The faiss and torch engines fit on at most ``max_points_per_centroid * n_clusters`` sampled rows.
    name : str, default="x"
        What to call ``x`` in error messages (the selectors pass ``"rep.values"``).

    Returns
    -------
    KMeansResult
        ``centroids`` of shape (n_clusters, d), ``labels`` and ``distances`` of shape (n_examples,).

    Raises
    ------
    ValueError
        For NaN/inf, for rows whose values are all subnormal, or for a bad parameter.

    Examples
    --------
    >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
    >>> result = kmeans(x, 2, rng=0)
    >>> sorted(result.sizes().tolist()), result.distances.tolist()
    ([2, 2], [0.5, 0.5, 0.5, 0.5])
    """
    x = as_finite_array(x, name=name, ndim=(2,))
    if x.shape[1] == 0:
        raise ParameterError(f"{name} must have at least one feature column. Got shape {x.shape} instead.")
    _check_params(n_clusters, metric, n_init, max_iter, tol, engine, max_points_per_centroid)
    engine = _resolve_engine(engine)
    rng = check_rng(rng)
    scale = checked_scale(x, name=name) if metric == "euclidean" else _checked_unit(x, name)
    k, groups = _clamped_n_clusters(x, n_clusters, metric, scale, name)
    if groups is not None:
        centroids, labels, distances = _each_distinct_row_a_cluster(x, groups, metric, scale)
        return _result(centroids, labels, distances, scale, metric)
    fit = {"rng": rng, "n_init": n_init, "max_iter": max_iter, "tol": tol}
    device = _assign_device(engine)
    if engine == "sklearn":
        centroids = _fit_sklearn(x, k, metric=metric, scale=scale, **fit)
    else:
        sample = _fit_sample(x, max_points_per_centroid * k, metric, scale, rng)
        if engine == "torch":
            centroids = _fit_torch(sample, k, metric=metric, device=resolve_device(), **fit)
        else:
            centroids = _fit_faiss(sample, k, metric=metric, **fit)
    centroids = centroids.astype(float_dtype(x))
    if metric == "cosine":
        centroids = normalize_rows(centroids)
    labels, distances = _assign(x, centroids, metric, scale, device)
    return _result(centroids, labels, distances, scale, metric)


def _clamped_n_clusters(
    x: np.ndarray, n_clusters: int | None, metric: str, scale: float, name: str
) -> tuple[int, np.ndarray | None]:
    """The number of clusters to fit, warning when the request exceeds the distinct rows (see
    :func:`_distinct`, whose groups come back when every distinct row is to be its own cluster)."""
    requested = default_n_clusters(len(x)) if n_clusters is None else int(n_clusters)
    k, groups = _distinct(x, requested, metric, scale)
    if k < requested:
        what = "rows" if metric == "euclidean" else "directions of the nonzero rows"
        warnings.warn(
            f"n_clusters={requested} is more than the {k} distinct {what} of {name}; using n_clusters={k}.",
            NClustersClampedWarning,
            stacklevel=3,
        )
    return k, groups


def assign(
    x: np.ndarray, centroids: np.ndarray, *, metric: str = "euclidean", name: str = "x"
) -> tuple[np.ndarray, np.ndarray]:
    """Label rows of ``x`` with their nearest centroid, reading ``x`` in chunks (a memmap stays on disk).

    Euclidean distances are computed on ``x`` and ``centroids`` multiplied by the one power of two that
    brings the larger of their largest magnitudes into [0.5, 1), and reported in the input's units.

    Parameters
    ----------
    x : array-like or memmap of shape (n_examples, d)
    centroids : ndarray of shape (n_clusters, d)
        For example ``kmeans(...).centroids`` (used as given for ``metric="cosine"``: unit norm).
    metric : {"euclidean", "cosine"}, default="euclidean"
    name : str, default="x"
        What to call ``x`` in error messages.

    Returns
    -------
    labels : ndarray of shape (n_examples,)
        int64 cluster ids.
    distances : ndarray of shape (n_examples,)
        ``||x - c||`` or ``1 - cos``, in the precision of ``x`` (float32 or float64).

    >>> assign(np.array([[0.0, 1.0], [9.0, 0.0]]), np.array([[0.0, 0.0], [10.0, 0.0]]))[0].tolist()
    [0, 1]
    """
    x = as_finite_array(x, name=name, ndim=(2,))
    check_choice("assign", "metric", metric, METRICS)
    centroids = as_finite_array(centroids, name="centroids", ndim=(2,))
    if centroids.shape[1] != x.shape[1]:
        raise ParameterError(f"centroids have d={centroids.shape[1]} features but {name} has d={x.shape[1]}.")
    dtype = float_dtype(x)
    device = _assign_device("auto")
    if metric == "cosine":
        _checked_unit(x, name)
        labels, distances = _assign(x, np.asarray(centroids, dtype=dtype), metric, 1.0, device)
        return labels, distances
    checked_scale(x, name=name)
    scale = power_of_two_scale(max(max_abs(x), max_abs(centroids)))
    labels, distances = _assign(x, scaled(centroids, scale, dtype), metric, scale, device)
    return labels, _unscaled(distances, scale, clip=False)


def _check_params(n_clusters, metric, n_init, max_iter, tol, engine, max_points_per_centroid) -> None:
    check_number("kmeans", "n_clusters", n_clusters, integer=True, low=1, optional=True)
    check_choice("kmeans", "metric", metric, METRICS)
    check_choice("kmeans", "engine", engine, ENGINES)
    counts: dict[str, tuple[object, float]] = {
        "n_init": (n_init, MAX_N_INIT),
        "max_iter": (max_iter, MAX_ITER),
    }
    counts["max_points_per_centroid"] = (max_points_per_centroid, math.inf)
    for key, (value, high) in counts.items():
        constraint = f"an int in the range [1, {high}]" if high < math.inf else "an int in the range [1, inf)"
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= int(value) <= high:
            raise param_error("kmeans", key, constraint, value)
    if (
        isinstance(tol, bool)
        or not isinstance(tol, numbers.Real)
        or not 0 <= as_python_number(tol) < math.inf
    ):
        raise param_error("kmeans", "tol", "a float in the range [0, inf)", tol)


def _loaded_faiss() -> Any:
    """The faiss module (imported once, here), or None when it is not installed."""
    global faiss
    if faiss is _NOT_LOADED:
        try:
            import faiss as module
        except ImportError:  # pragma: no cover - faiss is the optional extra "fast"
            module = None
        faiss = module
    return faiss


def _resolve_engine(engine: str) -> str:
    """The engine that runs: "auto" is faiss with a faiss GPU, else torch on a GPU, else the CPU choice."""
    if engine == "auto":
        if _gpu_count() > 0:  # pragma: no cover - faiss-gpu only
            return "faiss"
        if on_gpu():  # pragma: no cover - GPU only
            return "torch"
        return "sklearn" if _loaded_faiss() is None else "faiss"
    if engine == "faiss" and _loaded_faiss() is None:
        raise MissingDependencyError(FAISS_MISSING)
    return engine


def _assign_device(engine: str) -> torch.device | None:
    """Where the assignment's products run in torch: the torch engine's device, or the GPU when faiss has
    none; None: numpy, or a faiss GPU index (:func:`_assign`)."""
    if engine == "torch" or (_gpu_count() == 0 and on_gpu()):
        return resolve_device()
    return None


def _checked_unit(x: np.ndarray, name: str) -> float:
    """Refuse all-subnormal rows (as :func:`checked_scale`); cosine needs no global scale, so 1.0."""
    checked_scale(x, name=name)
    return 1.0


def _working_rows(block: np.ndarray, metric: str, scale: float, dtype: DTypeLike) -> np.ndarray:
    """The rows the fit sees: unit rows for cosine, ``scale * block`` for Euclidean, as ``dtype``.

    float32 rows are multiplied in float32: for a power of two in float32's range (always, since rows of
    all-subnormal values are refused) the product is the correctly rounded exact one, the same bits as
    :func:`~datadiet.selection._numerics.scaled`'s float64 product cast to float32.
    """
    if metric == "cosine":
        return unit_rows(block, dtype)
    if dtype == np.float32 and block.dtype == np.float32 and math.ldexp(1.0, -126) <= scale <= 2.0**127:
        return np.multiply(block, np.float32(scale))
    return scaled(block, scale, dtype)


def _unscaled(values: np.ndarray, scale: float, *, clip: bool) -> np.ndarray:
    """``values / scale`` in the dtype of ``values`` (exact for a power of two); inf or clipped if too big."""
    with np.errstate(over="ignore"):
        out = np.asarray(values, dtype=np.float64) / scale
    if clip:
        largest = float(np.finfo(values.dtype).max)
        out = np.clip(out, -largest, largest)
    with np.errstate(over="ignore"):
        return out.astype(values.dtype)


def _result(
    centroids: np.ndarray, labels: np.ndarray, distances: np.ndarray, scale: float, metric: str
) -> KMeansResult:
    """The result in the input's units (Euclidean: centroids and distances divided by ``scale``)."""
    if metric == "cosine" or scale == 1.0:
        return KMeansResult(centroids, labels, distances, 1.0 if metric == "cosine" else scale, distances)
    return KMeansResult(
        _unscaled(centroids, scale, clip=True),
        labels,
        _unscaled(distances, scale, clip=False),
        scale,
        distances,
    )


# --- scikit-learn engine ---------------------------------------------------------------------------------


def _fit_sklearn(
    x: np.ndarray,
    k: int,
    *,
    metric: str,
    scale: float,
    rng: np.random.Generator,
    n_init: int,
    max_iter: int,
    tol: float,
) -> np.ndarray:
    """Centroids (in working units) of scikit-learn's k-means++ / Lloyd on every row (in memory)."""
    from sklearn.cluster import KMeans

    data = _working_rows(np.asarray(x), metric, scale, float_dtype(x))
    model = KMeans(
        n_clusters=k,
        init="k-means++",
        n_init=n_init,  # pyright: ignore[reportArgumentType] (sklearn ships no stubs; inferred from "auto")
        max_iter=max_iter,
        tol=tol,
        random_state=int(rng.integers(2**31 - 1)),
    )
    with threadpool_limits(limits=_OPENMP_THREADS, user_api="openmp"):
        model.fit(data)
    return np.asarray(model.cluster_centers_, dtype=data.dtype)


# --- faiss engine ----------------------------------------------------------------------------------------


def _fit_sample(x: np.ndarray, size: int, metric: str, scale: float, rng: np.random.Generator) -> np.ndarray:
    """float32 working rows to fit on: ``size`` rows drawn without replacement (all if fewer), in row order.

    Rows are gathered window by window of the file (``chunk_rows_for`` rows each), and each window's
    pages are released before the next, so a memmap never has more than one window resident.
    """
    n = len(x)
    rows = np.arange(n) if n <= size else np.sort(rng.choice(n, size, replace=False))
    out = np.empty((len(rows), x.shape[1]), dtype=np.float32)
    step = chunk_rows_for(x, itemsize=8)
    edges = np.searchsorted(rows, np.arange(0, n + step, step))
    for start, lo, hi in zip(range(0, n, step), edges[:-1], edges[1:], strict=True):
        window = x[start : start + step]
        out[lo:hi] = _working_rows(window[rows[lo:hi] - start], metric, scale, float_dtype(x))
        release_pages(window)
    return out


def _fit_faiss(
    sample: np.ndarray,
    k: int,
    *,
    metric: str,
    rng: np.random.Generator,
    n_init: int,
    max_iter: int,
    tol: float,
) -> np.ndarray:
    """float32 centroids of the best of ``n_init`` seeded faiss Lloyd runs on ``sample``."""

    def run(seeds: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
        centroids, objective = _lloyd_faiss(sample, seeds, metric, max_iter, tol, seed)
        return centroids, -objective if metric == "cosine" else objective  # inner products are maximised

    with _faiss_threads(_OPENMP_THREADS):
        return _best_seeded(sample, k, metric, rng, n_init, run)


def _fit_torch(
    sample: np.ndarray,
    k: int,
    *,
    metric: str,
    device: torch.device,
    rng: np.random.Generator,
    n_init: int,
    max_iter: int,
    tol: float,
) -> np.ndarray:
    """float32 centroids of the best of ``n_init`` seeded torch Lloyd runs on ``sample``, on ``device``.

    On a GPU (:func:`~datadiet._core.device.on_gpu`) the seeding's large products run there too; on the
    CPU the seeding is the numpy one of the faiss engine.
    """
    from datadiet.selection import _torch_kmeans

    def run(seeds: np.ndarray, _seed: int) -> tuple[np.ndarray, float]:
        return _torch_kmeans.lloyd(sample, seeds, metric=metric, max_iter=max_iter, tol=tol, device=device)

    return _best_seeded(sample, k, metric, rng, n_init, run, device if on_gpu() else None)


def _best_seeded(
    sample: np.ndarray,
    k: int,
    metric: str,
    rng: np.random.Generator,
    n_init: int,
    run: Callable[[np.ndarray, int], tuple[np.ndarray, float]],
    device: torch.device | None = None,
) -> np.ndarray:
    """The centroids of lowest loss of ``n_init`` runs ``run(seeds, engine_seed)`` from
    :func:`~datadiet.selection._seeding.seed` (its large products in torch on ``device`` when one is given,
    else in numpy)."""
    norms = np.einsum("ij,ij->i", sample, sample)
    eligible = norms > 0 if metric == "cosine" and norms.any() else np.ones(len(sample), dtype=bool)
    best, best_loss = None, math.inf
    for _ in range(n_init):
        seeds = _seeding.seed(sample, k, rng, eligible, device)
        seeds = unit_rows(seeds) if metric == "cosine" else seeds
        centroids, loss = run(seeds, int(rng.integers(2**31 - 1)))
        if best is None or loss < best_loss:
            best, best_loss = centroids, loss
    if best is None:  # n_init >= 1 is checked first
        raise RuntimeError("no k-means run finished.")
    return best


def _lloyd_faiss(
    sample: np.ndarray, seeds: np.ndarray, metric: str, max_iter: int, tol: float, seed: int
) -> tuple[np.ndarray, float]:
    """faiss Lloyd iterations from ``seeds`` on all of ``sample``; centroids and final objective."""
    k, d = seeds.shape
    lib = _faiss()
    params = lib.ClusteringParameters()
    params.niter, params.seed, params.spherical = max_iter, seed, metric == "cosine"
    params.max_points_per_centroid = -(-len(sample) // k)  # never subsample again: the sample is ours
    params.min_points_per_centroid = 1  # no "too few points" warnings on small inputs
    params.early_stop_threshold = tol
    clustering = lib.Clustering(d, k, params)
    lib.copy_array_to_vector(np.ascontiguousarray(seeds, dtype=np.float32).ravel(), clustering.centroids)
    clustering.train(np.ascontiguousarray(sample, dtype=np.float32), _flat_index(d, metric))
    centroids = lib.vector_float_to_array(clustering.centroids).reshape(k, d)
    stats = clustering.iteration_stats
    size = stats.size()  # pyright: ignore[reportAttributeAccessIssue] (a SWIG vector; faiss has no stubs)
    return centroids, stats.at(size - 1).obj if size else 0.0  # pyright: ignore[reportAttributeAccessIssue]


def _flat_index(d: int, metric: str):
    """An exact faiss index (inner product for cosine), on the GPU when faiss-gpu sees one."""
    lib = _faiss()
    index = lib.IndexFlatIP(d) if metric == "cosine" else lib.IndexFlatL2(d)
    if _gpu_count() > 0:  # pragma: no cover - GPU only
        index = lib.index_cpu_to_all_gpus(index)
    return index


def _faiss():  # -> the faiss module (narrowed from ``module | None``)
    """faiss, which :func:`_resolve_engine` made sure is installed before any faiss path runs."""
    lib = _loaded_faiss()
    if lib is None:
        raise MissingDependencyError(FAISS_MISSING)
    return lib


def _gpu_count() -> int:
    """Visible faiss GPUs (0 without faiss-gpu, or when DATADIET_DEVICE=cpu keeps every stage on the CPU)."""
    from datadiet._core.device import device_spec

    lib = _loaded_faiss()
    if lib is None or not hasattr(lib, "StandardGpuResources") or device_spec() == "cpu":
        return 0
    return lib.get_num_gpus()  # pragma: no cover - GPU builds only


@contextlib.contextmanager
def _faiss_threads(limit: int) -> Iterator[None]:
    """Run faiss with at most ``limit`` OpenMP threads, restoring its setting afterwards."""
    lib = _faiss()
    previous = lib.omp_get_max_threads()
    lib.omp_set_num_threads(min(limit, previous))
    try:
        yield
    finally:
        lib.omp_set_num_threads(previous)


# --- shared: assignment ----------------------------------------------------------------------------------


def _assign(
    x: np.ndarray, centroids: np.ndarray, metric: str, scale: float, device: torch.device | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest (working-unit) centroid and distance to it for every row, in chunks of working rows.

    The chunks are a map on the current :mod:`datadiet.distributed.engine` (this process by default,
    Ray tasks with ``--engine ray``); the centroids travel once and every chunk is computed alike on either
    engine. In this process, the labels come from torch on ``device`` when one is given, else from a faiss
    GPU index when faiss has a GPU, else from numpy.
    Distances are in working units (Euclidean: times ``scale``).
    """
    from datadiet.distributed.engine import current_engine, row_chunks

    step = max(1, min(_CHUNK_ENTRIES // len(centroids), _CHUNK_ENTRIES // x.shape[1]))
    engine = current_engine()
    shared = (x, centroids, metric, scale)
    if engine.name == "local" and device is not None:
        from datadiet.selection import _torch_kmeans

        step = min(_torch_kmeans.chunk_rows(len(centroids), x.shape[1], device), _CHUNK_ENTRIES // x.shape[1])
        nearest = _torch_kmeans.nearest(centroids, metric, device)
        parts = [_assign_chunk(piece, shared, nearest) for piece in row_chunks(len(x), max(1, step))]
    elif engine.name == "local" and _gpu_count() > 0:  # pragma: no cover - GPU only
        nearest = _gpu_nearest(centroids, metric)
        parts = [_assign_chunk(piece, shared, nearest) for piece in row_chunks(len(x), step)]
    else:
        parts = engine.map(_assign_chunk, row_chunks(len(x), step), shared)
    labels = np.concatenate([label for label, _ in parts]) if parts else np.empty(0, np.int64)
    distances = np.concatenate([d for _, d in parts]) if parts else np.empty(0, centroids.dtype)
    return labels, distances


def _assign_chunk(
    piece: tuple[int, int],
    shared: tuple[np.ndarray, np.ndarray, str, float],
    nearest: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and working-unit distances of rows ``start:stop``; the chunk's memmap pages are released."""
    x, centroids, metric, scale = shared
    start, stop = piece
    view = x[start:stop]
    block = _working_rows(view, metric, scale, centroids.dtype)
    if nearest is not None:  # a faiss GPU index or torch
        label = nearest(block)
    elif metric == "cosine":
        label = np.argmax(block @ centroids.T, axis=1)
    else:  # ||x||^2 is the same for every centroid; the exact distance is taken from the difference
        squared_norms = np.einsum("ij,ij->i", centroids, centroids)
        label = np.argmin(squared_norms - 2 * (block @ centroids.T), axis=1)
    release_pages(view)
    return label.astype(np.int64, copy=False), _own_distances(block, centroids, label, metric)


def _own_distances(block: np.ndarray, centroids: np.ndarray, label: np.ndarray, metric: str) -> np.ndarray:
    """Distance of each working row to ``centroids[label]``: ``1 - cos`` (in [0, 2]) or ``||x - c||``."""
    if metric == "cosine":
        return np.clip(1 - np.einsum("ij,ij->i", block, centroids[label]), 0, 2)
    return row_norms(block - centroids[label])


def _gpu_nearest(
    centroids: np.ndarray, metric: str
) -> Callable[[np.ndarray], np.ndarray]:  # pragma: no cover
    """GPU only: a function from a row chunk to its nearest-centroid ids, by a faiss GPU flat index."""
    index = _flat_index(centroids.shape[1], metric)
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))

    def nearest(block: np.ndarray) -> np.ndarray:
        return index.search(np.ascontiguousarray(block, dtype=np.float32), 1)[1][:, 0].astype(np.int64)

    return nearest


# --- distinct rows ---------------------------------------------------------------------------------------


def _distinct(x: np.ndarray, k: int, metric: str, scale: float) -> tuple[int, np.ndarray | None]:
    """``(min(k, number of distinct working rows), group)``, reading ``x`` in chunks.

    Cosine counts the distinct directions of the nonzero rows (at least 1). Rows are compared by a
    128-bit digest of their bytes (:func:`_row_digests`, 16 bytes a row). Stops as soon as more than
    ``k`` are seen (usually within the first chunk), returning ``group=None``. Otherwise every row's
    group, numbered by first occurrence (-1 for a zero row under cosine), for
    :func:`_each_distinct_row_a_cluster`.
    """
    parts: list[np.ndarray] = []
    seen, pending = np.empty(0, _DIGEST), []
    for block in _growing_chunks(x, first=2 * k + 64, largest=chunk_rows_for(x, itemsize=8)):
        rows = _working_rows(block, metric, scale, float_dtype(x)) + 0.0  # -0.0 and 0.0 are one value
        digests = _row_digests(rows)
        digests[~rows.any(axis=1) if metric == "cosine" else np.zeros(len(rows), bool)] = _ZERO_DIGEST
        parts.append(digests)
        pending.append(np.unique(digests[digests != _ZERO_DIGEST]))
        if sum(map(len, pending)) >= len(seen):  # merging at doubling sizes: O(n log n) in all
            seen, pending = np.unique(np.concatenate([seen, *pending])), []
            if len(seen) > k:
                return k, None
    seen = np.unique(np.concatenate([seen, *pending]))
    if len(seen) > k:
        return k, None
    return max(1, len(seen)), _groups(np.concatenate(parts))


_ZERO_DIGEST = np.zeros((), _DIGEST)  # marks the zero rows of a cosine input: not a direction


def _growing_chunks(x: np.ndarray, *, first: int, largest: int) -> Iterator[np.ndarray]:
    """Consecutive row chunks of ``x``: ``first`` rows, then twice as many each time up to ``largest``.

    A small first chunk usually settles the distinct-row count at once. Each chunk's memmap pages are
    released once the caller asks for the next.
    """
    start, step = 0, max(1, min(first, largest))
    while start < len(x):
        view = x[start : start + step]
        yield view
        release_pages(view)
        start, step = start + step, min(2 * step, largest)


def _groups(digests: np.ndarray) -> np.ndarray:
    """Group id of every digest, numbered by first occurrence; ``_ZERO_DIGEST`` rows get -1."""
    values, first, inverse = np.unique(digests, return_index=True, return_inverse=True)
    live = values != _ZERO_DIGEST
    rank = np.full(len(values), -1, dtype=np.int64)
    order = np.argsort(first[live], kind="stable")
    rank[np.flatnonzero(live)[order]] = np.arange(int(live.sum()))
    return rank[inverse.ravel()]


def _row_digests(rows: np.ndarray) -> np.ndarray:
    """A 128-bit digest of the bytes of each row of a 2-D float array (two uint64 fields).

    Each 32- or 64-bit word ``w_j`` is xored with a salt of its position and mixed by the splitmix64
    finaliser (a bijection): ``m_j``. Field ``a`` is ``sum m_j``, field ``b`` is ``sum (2 j + 1) m_j``,
    both modulo ``2**64``: rows that differ in one word always differ, others collide with probability
    about ``2**-128``.
    """
    raw = np.ascontiguousarray(rows)
    words = raw.view(np.uint32 if raw.dtype.itemsize == 4 else np.uint64).astype(np.uint64)
    positions = np.arange(words.shape[1], dtype=np.uint64)
    mixed = _mix64(words ^ _mix64(positions + np.uint64(0x9E3779B97F4A7C15)))
    out = np.empty(len(rows), dtype=_DIGEST)
    out["a"] = mixed.sum(axis=1, dtype=np.uint64)
    out["b"] = (mixed * (2 * positions + np.uint64(1))).sum(axis=1, dtype=np.uint64)
    return out


def _mix64(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 values (wrapping arithmetic): a bijection of 64-bit words."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _each_distinct_row_a_cluster(
    x: np.ndarray, group: np.ndarray, metric: str, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact clustering when ``n_clusters`` is the number of distinct rows: one cluster per row value.

    Centroids are the working rows of each group's first row; a zero row under cosine goes to cluster 0
    (distance 1, as in the assignment rule). Returns working-unit centroids, labels and distances.
    """
    dtype = float_dtype(x)
    live = group >= 0
    first = np.flatnonzero(live)[np.unique(group[live], return_index=True)[1]]  # ascending, like the ids
    centroids = _working_rows(take_rows(x, first), metric, scale, dtype)
    if not len(centroids):  # cosine, every row zero: one cluster without a direction
        centroids = np.zeros((1, x.shape[1]), dtype=dtype)
    labels = np.where(live, group, 0)
    distances = np.empty(len(x), dtype=dtype)
    for start, block in iter_row_chunks(x, chunk_rows_for(x, itemsize=8)):
        stop = start + len(block)
        rows = _working_rows(block, metric, scale, dtype)
        distances[start:stop] = _own_distances(rows, centroids, labels[start:stop], metric)
    return centroids, labels, distances
