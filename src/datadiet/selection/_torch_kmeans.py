"""The ``"torch"`` engine of :func:`datadiet.selection.kmeans.kmeans`: Lloyd and nearest centroids in torch.

:mod:`datadiet.selection.kmeans` draws the fitting sample and :mod:`~datadiet.selection._seeding` the seeds
(k-means|| then greedy k-means++, in numpy from ``rng``) exactly as for the faiss engine, and they are handed
here with the device (:func:`datadiet._core.device.resolve_device`: the first CUDA GPU when one is visible,
else the CPU).

Lloyd (:func:`lloyd`), float32, on every row of the fitting sample, in row chunks of at most
``CHUNK_ENTRIES`` row-by-centroid entries:

1. *Assign*: each row goes to the centroid of smallest ``||c||^2 - 2 x.c`` (Euclidean) or largest ``x.c``
   (cosine), the lower centroid id on ties; its loss is ``max(||x||^2 + that, 0)`` (the squared distance) or
   ``min(max(1 - x.c, 0), 2)``. The objective ``L`` is the sum of the losses (in float64).
2. *Update*: each centroid moves to the mean of its rows, summed in float64 and rounded to float32; for
   cosine the mean is brought to unit norm (a cluster whose rows sum to zero keeps its centroid).
3. *Empty clusters*: each centroid left without rows moves onto a sample row far from its own centroid:
   the empty clusters, in ascending id, take the sample rows of largest loss in that assignment, in
   descending loss (ties to the lower row), one row each; under cosine zero rows are never taken (they
   attract nothing). No random draw is involved.
4. *Stop* after the iteration whose ``L`` improved on the previous one's by at most ``tol * L_previous``
   (relative), or after ``max_iter`` iterations. The centroids after that iteration's update and its ``L``
   are returned; the restart of lowest ``L`` wins.

Assignment of all rows (:func:`nearest`): the same rule, on the device, in the precision of the working rows
(float32 or float64); :mod:`~datadiet.selection.kmeans` computes the reported distances on the host by its
exact rule.

Seeding on a GPU (:class:`Placed`, :func:`nearest_drawn`, :func:`cell_sums`, :func:`greedy_plusplus`): the
large products of :mod:`~datadiet.selection._seeding`, by its formulas and precisions; every random draw
stays in numpy there (``greedy_plusplus`` calls back for each one with the same float64 mass). The sample is
placed once per seeding, as for Lloyd.

Memory: on a GPU the fitting sample is copied to the device when it takes at most half of its free memory,
else each chunk is copied in turn at every iteration (slower, the same numbers); a chunk's temporaries
take at most a few times ``CHUNK_ENTRIES["cuda"]`` floats (256 MiB each). On the CPU torch reads the sample
in place.

Determinism: the chunks are fixed by the shapes and the device type, never by free memory. On the CPU the
same sample and seeds give the same bits in one environment (sums by ``index_add_`` run in row order). On a
GPU the float64 cluster sums are atomic adds in no fixed order: results are reproducible up to
floating-point reduction order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

CHUNK_ENTRIES = {"cpu": 1 << 22, "cuda": 1 << 26}
"""Row-by-centroid entries per chunk (float32: 16 MiB on the CPU, as numpy's assignment; 256 MiB on a GPU)."""
ROW_ENTRIES = {"cpu": 1 << 22, "cuda": 1 << 24}
"""Row-by-feature entries per chunk (its float64 copy for the cluster sums: 32 MiB, 128 MiB)."""


def chunk_rows(k: int, d: int, device: torch.device) -> int:
    """Rows per chunk for ``k`` centroids of ``d`` features on ``device`` (at least 1).

    >>> chunk_rows(1000, 64, torch.device("cpu"))
    4194
    """
    kind = "cuda" if device.type == "cuda" else "cpu"
    return max(1, min(CHUNK_ENTRIES[kind] // max(k, 1), ROW_ENTRIES[kind] // max(d, 1)))


def lloyd(
    sample: np.ndarray, seeds: np.ndarray, *, metric: str, max_iter: int, tol: float, device: torch.device
) -> tuple[np.ndarray, float]:
    """Lloyd iterations from ``seeds`` on every row of ``sample`` (see the module docstring).

    Parameters
    ----------
    sample : ndarray of shape (n, d), float32
        Working rows (scaled, or unit rows for cosine).
    seeds : ndarray of shape (k, d)
        Initial centroids (unit norm for cosine).
    metric : {"euclidean", "cosine"}
    max_iter : int
    tol : float
        Relative objective improvement below which the iterations stop.
    device : torch.device

    Returns
    -------
    centroids : ndarray of shape (k, d), float32
    objective : float
        ``L`` of the last assignment: the sum of squared distances, or of ``1 - cos``.

    Examples
    --------
    >>> x = np.array([[0.0, 0.0], [0.0, 0.5], [0.5, 0.0], [0.5, 0.5]], dtype=np.float32)
    >>> centroids, objective = lloyd(x, x[[0, 2]], metric="euclidean", max_iter=10, tol=0.0,
    ...                              device=torch.device("cpu"))
    >>> centroids.tolist(), objective
    ([[0.0, 0.25], [0.5, 0.25]], 0.25)
    """
    points = _resident(sample, device)
    centroids = _tensor(seeds, torch.float32, device)
    step = chunk_rows(len(seeds), sample.shape[1], device)
    eligible = _eligible(points, metric, step, device)
    previous, objective = math.inf, math.inf
    for _ in range(max_iter):
        losses, sums, sizes = _sweep(points, centroids, metric, step, device)
        objective = float(losses.sum(dtype=torch.float64))
        centroids = _update(points, centroids, sums, sizes, losses, eligible, metric)
        if math.isfinite(previous) and previous - objective <= tol * previous:
            break
        previous = objective
    return centroids.cpu().numpy(), objective


def nearest(centroids: np.ndarray, metric: str, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """A function from a chunk of working rows to its nearest-centroid ids (int64), computed on ``device``.

    The centroids travel once; rows are compared in the centroids' precision (float32 or float64).

    >>> labels = nearest(np.array([[0.0, 0.0], [1.0, 0.0]]), "euclidean", torch.device("cpu"))
    >>> labels(np.array([[0.9, 0.0], [0.2, 0.1]])).tolist()
    [1, 0]
    """
    table = _tensor(centroids, _TORCH_DTYPES[np.dtype(centroids.dtype)], device)
    norms = (table * table).sum(dim=1)

    def labels(block: np.ndarray) -> np.ndarray:
        rows = _tensor(block, table.dtype, device)
        return _best(rows, table, norms, metric)[1].cpu().numpy().astype(np.int64, copy=False)

    return labels


_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def _tensor(array: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``array`` as a ``dtype`` tensor on ``device`` (read in place on the CPU when already that dtype)."""
    array = np.asarray(array)
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, order="C")  # torch.from_numpy needs a writable C-ordered buffer
    return torch.from_numpy(array).to(device=device, dtype=dtype)


def _resident(sample: np.ndarray, device: torch.device) -> torch.Tensor:
    """The sample as a float32 tensor: on the GPU when it fits in half its free memory, else on the host."""
    host = _tensor(sample, torch.float32, torch.device("cpu"))
    if device.type == "cuda" and host.nbytes <= torch.cuda.mem_get_info(device)[0] // 2:  # pragma: no cover
        return host.to(device)
    return host


def _chunks(points: torch.Tensor, step: int, device: torch.device) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, rows)`` of consecutive row chunks of ``points``, each on ``device``."""
    for start in range(0, len(points), step):
        yield start, points[start : start + step].to(device)


def _eligible(points: torch.Tensor, metric: str, step: int, device: torch.device) -> torch.Tensor | None:
    """Rows an empty cluster may take: for cosine the nonzero rows (when some are), else every row (None)."""
    if metric != "cosine":
        return None
    live = torch.cat([rows.abs().amax(dim=1) > 0 for _, rows in _chunks(points, step, device)])
    return live if bool(live.any()) else None


def _best(
    rows: torch.Tensor, centroids: torch.Tensor, norms: torch.Tensor, metric: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row the best score and its centroid: largest ``x.c`` (cosine) or smallest ``||c||^2 - 2 x.c``."""
    products = rows @ centroids.T
    if metric == "cosine":
        return products.max(dim=1)
    return products.mul_(-2).add_(norms).min(dim=1)


def _sweep(
    points: torch.Tensor, centroids: torch.Tensor, metric: str, step: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One assignment of every sample row: per-row losses, per-cluster float64 sums and sizes."""
    k, d = centroids.shape
    norms = (centroids * centroids).sum(dim=1)
    losses = torch.empty(len(points), dtype=torch.float32, device=device)
    sums = torch.zeros((k, d), dtype=torch.float64, device=device)
    sizes = torch.zeros(k, dtype=torch.int64, device=device)
    for start, rows in _chunks(points, step, device):
        best, label = _best(rows, centroids, norms, metric)
        if metric == "cosine":
            loss = (1 - best).clamp_(0, 2)
        else:
            loss = (best + (rows * rows).sum(dim=1)).clamp_(min=0)
        losses[start : start + len(rows)] = loss
        sums.index_add_(0, label, rows.to(torch.float64))
        sizes += torch.bincount(label, minlength=k)
    return losses, sums, sizes


def _update(
    points: torch.Tensor,
    centroids: torch.Tensor,
    sums: torch.Tensor,
    sizes: torch.Tensor,
    losses: torch.Tensor,
    eligible: torch.Tensor | None,
    metric: str,
) -> torch.Tensor:
    """The new centroids: cluster means (cosine: at unit norm), empty clusters moved onto far rows."""
    keep = sizes == 0
    means = sums / sizes.clamp(min=1)[:, None].to(torch.float64)
    if metric == "cosine":
        norms = (means * means).sum(dim=1, keepdim=True).sqrt()
        keep |= norms[:, 0] == 0
        means = means / torch.where(norms > 0, norms, torch.ones_like(norms))
    updated = torch.where(keep[:, None], centroids, means.to(torch.float32))
    empty = torch.nonzero(sizes == 0).flatten()
    if len(empty):
        candidates = losses if eligible is None else torch.where(eligible, losses, -1.0)
        order = torch.sort(candidates, descending=True, stable=True).indices[: len(empty)]
        updated[empty] = points[order.to(points.device)].to(updated.device)
    return updated


# --- seeding on the device -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """The fitting sample placed for the seeding's products on ``device``: ``points`` is its float32 copy
    there when it fits in half the free memory, else on the host (chunks then travel in turn)."""

    points: torch.Tensor
    device: torch.device

    @classmethod
    def of(cls, sample: np.ndarray, device: torch.device) -> Placed:
        return cls(_resident(sample, device), device)


def nearest_drawn(
    placed: Placed, squared_norms: np.ndarray
) -> Callable[[np.ndarray], Iterator[tuple[int, np.ndarray, np.ndarray]]]:
    """k-means||'s nearest-drawn-row search on the device (``_seeding._update_nearest`` consumes it).

    The float32 ``squared_norms`` travel once. The returned function maps drawn ``rows`` to
    ``(start, which, squared)`` per chunk of :func:`chunk_rows` rows (by ``len(rows)`` drawn rows): the
    position in ``rows`` of each row's nearest drawn row (the first on ties), by smallest
    ``||c||^2 - 2 x.c`` in float32, and ``max(||x||^2 + that, 0)``, as numpy arrays.

    >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0]], dtype=np.float32)
    >>> search = nearest_drawn(Placed.of(x, torch.device("cpu")), (x * x).sum(axis=1))
    >>> [(start, which.tolist(), squared.tolist()) for start, which, squared in search(np.array([2, 0]))]
    [(0, [1, 1, 0], [0.0, 1.0, 0.0])]
    """
    points, device = placed.points, placed.device
    norms = _tensor(squared_norms, torch.float32, device)

    def search(rows: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        centres = points[index.to(points.device)].to(device)
        centre_norms = norms[index.to(device)]
        for start, block in _chunks(points, chunk_rows(len(rows), points.shape[1], device), device):
            best, which = (block @ centres.T).mul_(-2).add_(centre_norms).min(dim=1)
            squared = best.add_(norms[start : start + len(block)]).clamp_(min=0)
            yield start, which.cpu().numpy(), squared.cpu().numpy()

    return search


def cell_sums(placed: Placed, nearest: np.ndarray, eligible: np.ndarray, n_cells: int) -> np.ndarray:
    """Per cell, the float64 sum of the eligible sample rows whose ``nearest`` drawn row it is.

    Summed by ``index_add_`` over chunks of ``ROW_ENTRIES // d`` rows (in row order on the CPU, atomic adds
    on a GPU). Returns an array of shape (n_cells, d).

    >>> x = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]], dtype=np.float32)
    >>> cell_sums(Placed.of(x, torch.device("cpu")), np.array([0, 0, 1]), np.ones(3, bool), 2).tolist()
    [[4.0, 2.0], [5.0, 5.0]]
    """
    points, device = placed.points, placed.device
    kind = "cuda" if device.type == "cuda" else "cpu"
    cells = torch.from_numpy(np.where(eligible, nearest, -1)).to(device)
    sums = torch.zeros((n_cells, points.shape[1]), dtype=torch.float64, device=device)
    for start, block in _chunks(points, max(1, ROW_ENTRIES[kind] // points.shape[1]), device):
        label = cells[start : start + len(block)]
        live = label >= 0
        sums.index_add_(0, label[live], block[live].to(torch.float64))
    return sums.cpu().numpy()


def greedy_plusplus(
    points: np.ndarray,
    weights: np.ndarray,
    k: int,
    n_trials: int,
    draw: Callable[[np.ndarray, int], np.ndarray],
    device: torch.device,
) -> np.ndarray:
    """:func:`datadiet.selection._seeding._greedy_plusplus` with its distances and potentials on ``device``.

    Every draw is ``draw(mass, size)`` on the host, with the same float64 ``mass`` (``weights``, then
    ``w * D^2``) in the same order. The candidates' potentials ``sum w * min(D^2, d^2)`` are summed over
    column chunks of at most ``CHUNK_ENTRIES // n_trials`` points; ``D^2`` then takes the winner's column,
    computed again. Returns the ``k`` chosen indices into ``points``.

    >>> points = np.array([[0.0, 0.0], [0.0, 0.5], [4.0, 0.0]], dtype=np.float32)
    >>> greedy_plusplus(points, np.ones(3), 2, 3, lambda mass, size: np.array([2] * size),
    ...                 torch.device("cpu")).tolist()
    [2, 2]
    """
    kind = "cuda" if device.type == "cuda" else "cpu"
    step = max(1, CHUNK_ENTRIES[kind] // n_trials)
    table = _tensor(points, torch.float32, device)
    norms = _tensor(np.einsum("ij,ij->i", points, points), torch.float32, device)
    mass = _tensor(weights, torch.float64, device)
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = draw(weights, 1)[0]
    closest = _squared_distances(table, norms, chosen[:1], 0, len(points))[0]
    for c in range(1, k):
        candidates = draw((closest.to(torch.float64) * mass).cpu().numpy(), n_trials)
        chosen[c] = candidates[int(torch.argmin(_potentials(table, norms, closest, mass, candidates, step)))]
        winner = _squared_distances(table, norms, chosen[c : c + 1], 0, len(points))[0]
        closest = torch.minimum(closest, winner)
    return chosen


def _potentials(
    table: torch.Tensor,
    norms: torch.Tensor,
    closest: torch.Tensor,
    mass: torch.Tensor,
    candidates: np.ndarray,
    step: int,
) -> torch.Tensor:
    """Per candidate ``c``: ``sum_j w_j min(D_j^2, ||c - p_j||^2)`` (float64), over ``step``-point chunks."""
    total = torch.zeros(len(candidates), dtype=torch.float64, device=closest.device)
    for start in range(0, len(closest), step):
        stop = min(start + step, len(closest))
        trial = torch.minimum(closest[start:stop], _squared_distances(table, norms, candidates, start, stop))
        total += trial.to(torch.float64) @ mass[start:stop]
    return total


def _squared_distances(
    table: torch.Tensor, norms: torch.Tensor, rows: np.ndarray, start: int, stop: int
) -> torch.Tensor:
    """``||table[rows[i]] - table[j]||^2`` for ``j`` in ``start:stop``, shape (len(rows), stop - start),
    clipped at 0 (the numpy formula ``||a||^2 - 2 a.b + ||b||^2``, in its order)."""
    index = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(table.device)
    products = table[index] @ table[start:stop].T
    return (norms[index, None] - 2 * products + norms[None, start:stop]).clamp_(min=0)
