"""The one k-means backend behind every clustering selector (prototypicality, semdedup, s2l).

Definition
----------
``kmeans(x, n_clusters, metric=..., rng=...)`` seeds with greedy k-means++, runs Lloyd iterations, then
assigns every row in chunks:

- ``metric="euclidean"``: label = nearest centroid, distance = ``||x - c||`` (not squared).
- ``metric="cosine"`` (spherical): rows are L2-normalised (zero rows stay zero), centroids are unit norm,
  each row goes to the centroid of largest cosine, distance = ``1 - cos`` (a zero row has cosine 0 with
  every centroid: cluster 0, distance 1).

``n_clusters=None`` means :func:`default_n_clusters` (``round(sqrt(n))``). A request above the number of
distinct rows (distinct directions, for cosine) is lowered to it with a :class:`NClustersClampedWarning`.

Engines
-------
``engine="faiss"`` (the default ``"auto"`` when faiss imports; ``pip install datadiet[fast]``):

1. *Fitting sample*: at most ``max_points_per_centroid * k`` rows (faiss's own cap, 256 by default), drawn
   from ``rng`` without replacement and read in ascending row order; every row when ``n`` is smaller.
2. *Seeding*: greedy k-means++ (D^2 sampling keeping the best of ``4 * (2 + ln k)`` candidates per seed,
   four times scikit-learn's count, so fewer separated clusters are left without a seed) in numpy, from
   ``rng``, on at most ``32 * k`` rows of the fitting sample. faiss's own random init is not used: on
   well-separated blobs it ends with about 2.5 times the inertia.
3. *Lloyd*: ``faiss.Clustering`` from those seeds on the fitting sample, float32, until the objective
   improves by less than ``tol`` (relative) or after ``max_iter`` iterations. For cosine, faiss
   re-normalises the centroids at every iteration (``spherical=True``) and assigns by inner product.
   Empty clusters are re-split by faiss (seeded from ``rng``).
4. *Assignment*: every row, in chunks, in the input's precision (float32 stays float32, anything else is
   float64), with the same exact-distance rule for both engines.

``engine="sklearn"``: scikit-learn's ``KMeans(init="k-means++")`` on every row, in memory, with its
center-shift ``tol``; the same chunked assignment. The two engines give partitions of equal quality (on
blobs the faiss engine's inertia is at or below scikit-learn's) but not the same bits; the faiss engine is
an order of magnitude faster (``bench/bench_kmeans.py``).

The reference codes (S2L, SemDeDup, Du et al.) run faiss with its random init and ``niter`` 20 or 100; the
clusters here match theirs in kind, not bit for bit.

Memory
------
``x`` may be a read-only ``np.memmap`` much larger than RAM. The faiss engine reads it in row chunks
(finiteness check, distinct-row count, normalisation, assignment), releasing each chunk's pages, and holds
in memory only the float32 fitting sample (``max_points_per_centroid * k * d * 4`` bytes), the centroids
and the ``n``-long ``labels`` and ``distances``. :func:`assign` labels further rows (another shard, a
memmap) against fitted centroids the same way. The sklearn engine needs the whole (normalised) data in
memory.

Determinism
-----------
The same ``rng`` state gives the same centroids, labels and distances bit for bit on one machine, for
in-memory and memory-mapped input alike. faiss runs with at most two OpenMP threads (its setting is
restored afterwards); scikit-learn adds per-thread partial sums in whichever order the threads finish, so
it too gets at most two (two partial sums commute). With faiss-gpu and a visible GPU (used automatically
for fitting and assignment), results are reproducible only up to floating-point reduction order.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from datadiet._chunks import chunk_rows_for, iter_row_chunks, release_pages
from datadiet._validation import as_finite_array, check_rng
from datadiet.selection.base import param_error

try:
    import faiss
except ImportError:  # pragma: no cover - faiss is the optional extra "fast"
    faiss = None  # type: ignore[assignment]

METRICS: tuple[str, ...] = ("euclidean", "cosine")
ENGINES: tuple[str, ...] = ("auto", "faiss", "sklearn")
_CHUNK_ENTRIES = 1 << 22  # row-by-centroid (and row-by-feature) entries per chunk (32 MiB of float64)
_OPENMP_THREADS = 2
_SEED_POINTS_PER_CENTROID = 32  # rows per centroid in the k-means++ seeding sample
_TRIALS_FACTOR = 4  # candidates per seed, as a multiple of scikit-learn's 2 + ln k


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
    tol: float = 1e-4,
    engine: str = "auto",
    max_points_per_centroid: int = 256,
) -> KMeansResult:
    """Cluster the rows of ``x`` (see the module docstring for the exact definition).

    Parameters
    ----------
    x : array-like or memmap of shape (n_examples, d)
        Rows to cluster; not modified. A memmap is read in chunks (engine "faiss"), never loaded whole.
    n_clusters : int or None, default=None
        Number of clusters; None means ``round(sqrt(n_examples))``. Lowered, with a
        :class:`NClustersClampedWarning`, to the number of distinct rows.
    metric : {"euclidean", "cosine"}, default="euclidean"
        "cosine" is spherical k-means on L2-normalised rows.
    rng : int or numpy.random.Generator
        Source of every random draw (fitting sample, seeding, the engine's own seed).
    n_init : int, default=1
        Number of k-means++ restarts (the best objective wins).
    max_iter : int, default=300
        Lloyd iterations per restart, at most.
    tol : float, default=1e-4
        Convergence tolerance: relative objective change (faiss) or relative center shift (sklearn).
    engine : {"auto", "faiss", "sklearn"}, default="auto"
        "auto" is "faiss" when faiss is installed, else "sklearn".
    max_points_per_centroid : int, default=256
        The faiss engine fits on at most ``max_points_per_centroid * n_clusters`` sampled rows.

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
    _check_params(n_clusters, metric, n_init, max_iter, tol, engine, max_points_per_centroid)
    engine = _resolve_engine(engine)
    rng = check_rng(rng)
    requested = default_n_clusters(len(x)) if n_clusters is None else int(n_clusters)
    k = _clamp_to_distinct(x, requested, metric)
    if k < requested:
        warnings.warn(
            f"n_clusters={requested} is more than the {k} distinct rows of x; using n_clusters={k}.",
            NClustersClampedWarning,
            stacklevel=2,
        )
    if engine == "sklearn":
        centroids = _fit_sklearn(x, k, metric=metric, rng=rng, n_init=n_init, max_iter=max_iter, tol=tol)
    else:
        sample = _fit_sample(x, max_points_per_centroid * k, metric, rng)
        centroids = _fit_faiss(sample, k, metric=metric, rng=rng, n_init=n_init, max_iter=max_iter, tol=tol)
        centroids = centroids.astype(_float_dtype(x))
    if metric == "cosine":
        centroids = normalize_rows(centroids)
    labels, distances = _assign(x, centroids, metric)
    return KMeansResult(centroids, labels, distances)


def assign(
    x: np.ndarray, centroids: np.ndarray, *, metric: str = "euclidean"
) -> tuple[np.ndarray, np.ndarray]:
    """Label rows of ``x`` with their nearest centroid, reading ``x`` in chunks (a memmap stays on disk).

    Parameters
    ----------
    x : array-like or memmap of shape (n_examples, d)
    centroids : ndarray of shape (n_clusters, d)
        For example ``kmeans(...).centroids`` (unit norm for ``metric="cosine"``).
    metric : {"euclidean", "cosine"}, default="euclidean"

    Returns
    -------
    labels : ndarray of shape (n_examples,)
        int64 cluster ids.
    distances : ndarray of shape (n_examples,)
        ``||x - c||`` or ``1 - cos``, in the precision of ``x`` (float32 or float64).

    >>> assign(np.array([[0.0, 1.0], [9.0, 0.0]]), np.array([[0.0, 0.0], [10.0, 0.0]]))[0].tolist()
    [0, 1]
    """
    x = as_finite_array(x, name="x", ndim=(2,))
    check_choice("assign", "metric", metric, METRICS)
    centroids = as_finite_array(centroids, name="centroids", ndim=(2,))
    if centroids.shape[1] != x.shape[1]:
        raise ValueError(f"centroids have d={centroids.shape[1]} features but x has d={x.shape[1]}.")
    return _assign(x, np.asarray(centroids, dtype=_float_dtype(x)), metric)


def _check_params(n_clusters, metric, n_init, max_iter, tol, engine, max_points_per_centroid) -> None:
    check_n_clusters("kmeans", n_clusters)
    check_choice("kmeans", "metric", metric, METRICS)
    check_choice("kmeans", "engine", engine, ENGINES)
    counts = {"n_init": n_init, "max_iter": max_iter, "max_points_per_centroid": max_points_per_centroid}
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise param_error("kmeans", name, "an int in the range [1, inf)", value)
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not 0 <= tol < math.inf:
        raise param_error("kmeans", "tol", "a float in the range [0, inf)", tol)


def _resolve_engine(engine: str) -> str:
    if engine == "auto":
        return "sklearn" if faiss is None else "faiss"
    if engine == "faiss" and faiss is None:
        raise ImportError("kmeans(engine='faiss') needs faiss: pip install 'datadiet[fast]' (faiss-cpu).")
    return engine


# --- scikit-learn engine ---------------------------------------------------------------------------------


def _fit_sklearn(
    x: np.ndarray, k: int, *, metric: str, rng: np.random.Generator, n_init: int, max_iter: int, tol: float
) -> np.ndarray:
    """Centroids of scikit-learn's k-means++ / Lloyd on every row (in memory)."""
    from sklearn.cluster import KMeans

    data = normalize_rows(x) if metric == "cosine" else _as_float(x)
    model = KMeans(
        n_clusters=k,
        init="k-means++",
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        random_state=int(rng.integers(2**31 - 1)),
    )
    with threadpool_limits(limits=_OPENMP_THREADS, user_api="openmp"):
        model.fit(data)
    return np.asarray(model.cluster_centers_, dtype=data.dtype)


# --- faiss engine ----------------------------------------------------------------------------------------


def _fit_sample(x: np.ndarray, size: int, metric: str, rng: np.random.Generator) -> np.ndarray:
    """float32 rows to fit on: ``size`` rows drawn without replacement (all rows if fewer), in row order.

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
        block = np.asarray(window[rows[lo:hi] - start], dtype=_float_dtype(x))
        out[lo:hi] = normalize_rows(block) if metric == "cosine" else block
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
    """float32 centroids of the best of ``n_init`` k-means++-seeded faiss Lloyd runs on ``sample``."""
    best, best_loss = None, math.inf
    with _faiss_threads(_OPENMP_THREADS):
        for _ in range(n_init):
            seeds = _kmeans_plusplus(sample, k, rng, skip_zero_rows=metric == "cosine")
            centroids, objective = _lloyd_faiss(
                sample, seeds, metric, max_iter, tol, int(rng.integers(2**31 - 1))
            )
            loss = -objective if metric == "cosine" else objective  # inner products are maximised
            if best is None or loss < best_loss:
                best, best_loss = centroids, loss
    return best


def _kmeans_plusplus(
    sample: np.ndarray, k: int, rng: np.random.Generator, *, skip_zero_rows: bool
) -> np.ndarray:
    """Greedy k-means++ seeds from at most ``32 * k`` rows of ``sample``.

    Each new seed is the best, by resulting potential, of ``4 * (2 + int(ln k))`` candidates drawn with
    probability proportional to the squared distance to the nearest seed so far. With
    ``skip_zero_rows`` (cosine), zero rows get weight 0: a zero centroid attracts nothing.

    Returns
    -------
    ndarray of shape (k, d)
        Rows of ``sample``.
    """
    size = _SEED_POINTS_PER_CENTROID * k
    if len(sample) > size:
        sample = sample[np.sort(rng.choice(len(sample), size, replace=False))]
    n_trials = _TRIALS_FACTOR * (2 + int(math.log(k)))
    squared_norms = np.einsum("ij,ij->i", sample, sample)
    transposed = np.ascontiguousarray(sample.T)
    weight = (squared_norms > 0) if skip_zero_rows and squared_norms.any() else np.ones(len(sample), bool)
    pool = np.flatnonzero(weight)
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = pool[rng.integers(len(pool))]
    with threadpool_limits(limits=1, user_api="blas"):  # small products: threads cost more than they save
        closest = _squared_distances(sample, transposed, chosen[:1], squared_norms)[0] * weight
        for c in range(1, k):
            cumulative = np.cumsum(closest, dtype=np.float64)
            candidates = np.searchsorted(cumulative, rng.random(n_trials) * cumulative[-1])
            candidates = np.minimum(candidates, len(sample) - 1)
            trial = np.minimum(closest, _squared_distances(sample, transposed, candidates, squared_norms))
            best = int(np.argmin(trial.sum(axis=1, dtype=np.float64)))
            chosen[c], closest = candidates[best], trial[best]
    return sample[chosen]


def _squared_distances(
    sample: np.ndarray, transposed: np.ndarray, rows: np.ndarray, squared_norms: np.ndarray
) -> np.ndarray:
    """``||sample[rows[i]] - sample[j]||^2`` of shape (len(rows), n), clipped at 0."""
    products = sample[rows] @ transposed
    return np.maximum(squared_norms[rows, None] - 2 * products + squared_norms[None, :], 0)


def _lloyd_faiss(
    sample: np.ndarray, seeds: np.ndarray, metric: str, max_iter: int, tol: float, seed: int
) -> tuple[np.ndarray, float]:
    """faiss Lloyd iterations from ``seeds`` on all of ``sample``; centroids and final objective."""
    k, d = seeds.shape
    params = faiss.ClusteringParameters()
    params.niter, params.seed, params.spherical = max_iter, seed, metric == "cosine"
    params.max_points_per_centroid = -(-len(sample) // k)  # never subsample again: the sample is ours
    params.min_points_per_centroid = 1  # no "too few points" warnings on small inputs
    params.early_stop_threshold = tol
    clustering = faiss.Clustering(d, k, params)
    faiss.copy_array_to_vector(np.ascontiguousarray(seeds, dtype=np.float32).ravel(), clustering.centroids)
    clustering.train(np.ascontiguousarray(sample, dtype=np.float32), _flat_index(d, metric))
    centroids = faiss.vector_float_to_array(clustering.centroids).reshape(k, d)
    stats = clustering.iteration_stats
    return centroids, stats.at(stats.size() - 1).obj if stats.size() else 0.0


def _flat_index(d: int, metric: str):
    """An exact faiss index (inner product for cosine), on the GPU when faiss-gpu sees one."""
    index = faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
    if _gpu_count() > 0:  # pragma: no cover - GPU only
        index = faiss.index_cpu_to_all_gpus(index)
    return index


def _gpu_count() -> int:
    """Visible faiss GPUs (0 without faiss-gpu)."""
    if faiss is None or not hasattr(faiss, "StandardGpuResources"):
        return 0
    return faiss.get_num_gpus()  # pragma: no cover - GPU builds only


@contextlib.contextmanager
def _faiss_threads(limit: int) -> Iterator[None]:
    """Run faiss with at most ``limit`` OpenMP threads, restoring its setting afterwards."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(min(limit, previous))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


# --- shared: assignment and distinct rows ----------------------------------------------------------------


def _assign(x: np.ndarray, centroids: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid and distance to it for every row, in chunks of rows (normalised per chunk).

    The chunks are a map on the current :mod:`datadiet.engine` (this process by default, Ray tasks with
    ``--engine ray``); the centroids travel once and every chunk is computed alike on either engine.
    """
    from datadiet.engine import current_engine, row_chunks

    step = max(1, min(_CHUNK_ENTRIES // len(centroids), _CHUNK_ENTRIES // x.shape[1]))
    engine = current_engine()
    if engine.name == "local" and _gpu_count() > 0:  # pragma: no cover - GPU only
        nearest = _gpu_nearest(centroids, metric)
        parts = [_assign_chunk(piece, (x, centroids, metric), nearest) for piece in row_chunks(len(x), step)]
    else:
        parts = engine.map(_assign_chunk, row_chunks(len(x), step), (x, centroids, metric))
    labels = np.concatenate([label for label, _ in parts]) if parts else np.empty(0, np.int64)
    distances = np.concatenate([d for _, d in parts]) if parts else np.empty(0, centroids.dtype)
    return labels, distances


def _assign_chunk(
    piece: tuple[int, int],
    shared: tuple[np.ndarray, np.ndarray, str],
    nearest: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and distances of rows ``start:stop``; the chunk's memmap pages are released after."""
    x, centroids, metric = shared
    start, stop = piece
    view = x[start:stop]
    block = np.asarray(view, dtype=centroids.dtype)
    if metric == "cosine":
        block = normalize_rows(block)
    if nearest is not None:  # pragma: no cover - GPU only
        label = nearest(block)
    elif metric == "cosine":
        label = np.argmax(block @ centroids.T, axis=1)
    else:  # ||x||^2 is the same for every centroid; the exact distance is taken from the difference
        squared_norms = np.einsum("ij,ij->i", centroids, centroids)
        label = np.argmin(squared_norms - 2 * (block @ centroids.T), axis=1)
    if metric == "cosine":
        distance = np.clip(1 - np.einsum("ij,ij->i", block, centroids[label]), 0, 2)
    else:
        diff = block - centroids[label]
        distance = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    release_pages(view)
    return label.astype(np.int64, copy=False), distance


def _gpu_nearest(
    centroids: np.ndarray, metric: str
) -> Callable[[np.ndarray], np.ndarray]:  # pragma: no cover
    """GPU only: a function from a row chunk to its nearest-centroid ids, by a faiss GPU flat index."""
    index = _flat_index(centroids.shape[1], metric)
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))

    def nearest(block: np.ndarray) -> np.ndarray:
        return index.search(np.ascontiguousarray(block, dtype=np.float32), 1)[1][:, 0].astype(np.int64)

    return nearest


def _clamp_to_distinct(x: np.ndarray, k: int, metric: str) -> int:
    """``min(k, number of distinct rows)`` (directions, for cosine), reading ``x`` in chunks.

    Stops as soon as ``k`` distinct rows are seen (usually within the first chunk) and never holds more
    than ``k`` distinct rows.
    """
    seen: set[bytes] = set()
    for _, block in iter_row_chunks(x, chunk_rows_for(x, itemsize=8), dtype=_float_dtype(x)):
        block = np.ascontiguousarray(normalize_rows(block) if metric == "cosine" else block) + 0.0  # -0 == 0
        rows = np.unique(block.view(np.dtype((np.void, block.dtype.itemsize * block.shape[1]))).ravel())
        seen.update(rows.tolist())
        if len(seen) >= k:
            return k
    return len(seen)


def _float_dtype(x: np.ndarray) -> type:
    """float32 for float32 input, float64 for anything else."""
    return np.float32 if x.dtype == np.float32 else np.float64


def _as_float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)
