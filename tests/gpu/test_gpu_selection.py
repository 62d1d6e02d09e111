"""Selection on a CUDA device agrees with the CPU (run only where one is visible; skipped elsewhere).

Invariants checked here: the torch k-means engine on CUDA finds the partition it finds on the CPU (the true
one) on separated blobs, with an objective within 0.1% (:data:`MAX_OBJECTIVE_GAP`); its seeding on CUDA
makes the numpy seeding's draws and picks its seeds (cell means within float32 rounding), in default and
in small chunks; ``engine="auto"`` on a GPU is faiss with a faiss GPU, else torch; the float64 assignment
on CUDA labels every row with a nearest centroid; LESS and self-influence on CUDA equal the numpy scores
within the float64 rounding of the products they reorder. GPU and CPU differ only in reduction order (TF32
is off by default for matmuls), so the bounds are loose against that noise and tight against a wrong
device path (a float32 product, a missed scaling).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datadiet._core.device import ENV
from datadiet.selection import _seeding, _torch_kmeans
from datadiet.selection import kmeans as kmeans_module
from datadiet.selection._numerics import checked_scale, normalize_rows
from datadiet.selection.kmeans import kmeans
from datadiet.selection.less import less_scores
from datadiet.selection.self_influence import gpu_device, self_influence_scores
from tests.helpers import assert_within, gamma

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

MAX_OBJECTIVE_GAP = 1e-3
"""Relative gap allowed between the CUDA and CPU k-means objectives (the same seeds, the same Lloyd)."""


def _on(device: str, fn, *args, **kwargs):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV, device)
        return fn(*args, **kwargs)


def _blobs(n: int, d: int, n_centres: int, seed: int, *, cosine: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_centres, d))
    centres = normalize_rows(centres) * 5 if cosine else centres * 20
    labels = rng.permutation(np.arange(n) % n_centres)
    noise = 0.05 if cosine else 1.0
    return (centres[labels] + noise * rng.normal(size=(n, d))).astype(np.float32), labels


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a, b]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def _objective(distances: np.ndarray, metric: str) -> float:
    values = distances.astype(np.float64)
    return float(np.sum(values**2 if metric == "euclidean" else values))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_torch_kmeans_on_cuda_finds_the_cpu_partition_and_objective(metric):
    x, truth = _blobs(20_000, 32, 40, 0, cosine=metric == "cosine")
    cuda = _on("cuda", kmeans, x, 40, metric=metric, rng=0, engine="torch")
    cpu = _on("cpu", kmeans, x, 40, metric=metric, rng=0, engine="torch")
    assert _same_partition(cuda.labels, cpu.labels) and _same_partition(cuda.labels, truth)
    gap = abs(_objective(cuda.distances, metric) - _objective(cpu.distances, metric))
    assert gap <= MAX_OBJECTIVE_GAP * _objective(cpu.distances, metric)


def _spread_blobs(
    n: int, d: int, n_centres: int, seed: int, *, cosine: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Separated blobs (rows and centres; unit centres for cosine) whose spread is not tiny against their
    norm: ``||x||^2 - 2 x.c + ||c||^2`` loses few digits, so near-ties between drawn rows are rare."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_centres, d))
    centres = normalize_rows(centres) if cosine else centres * 6
    labels = rng.permutation(np.arange(n) % n_centres)
    noise = 0.05 if cosine else 1.0
    return (centres[labels] + noise * rng.normal(size=(n, d))).astype(np.float32), centres


def _assert_same_nearest(
    sample: np.ndarray, rows: np.ndarray, nearest: np.ndarray, expected: np.ndarray
) -> None:
    """Equal cells except at near-ties: both drawn rows at the same distance up to float32 rounding."""
    differ = np.flatnonzero(nearest != expected)
    assert len(differ) <= len(sample) // 1000, f"{len(differ)} rows changed cell"
    x = sample[differ].astype(np.float64)
    got, want = (((x - sample[rows[which[differ]]]) ** 2).sum(axis=1) for which in (nearest, expected))
    norms = (x * x).sum(axis=1) + np.einsum("ij,ij->i", sample[rows], sample[rows]).max()
    assert_within(got, want, 4 * gamma(sample.shape[1] + 3) * norms, "distance to another nearest drawn row")


@pytest.mark.parametrize("small_chunks", [False, True])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_seeding_on_cuda_picks_the_cpu_seeds_on_separated_blobs(metric, small_chunks, monkeypatch):
    if small_chunks:  # many chunks in every product: 51 rows by 40 drawn rows, 102 means, 256 rows summed
        monkeypatch.setattr(_torch_kmeans, "CHUNK_ENTRIES", {"cpu": 1 << 22, "cuda": 1 << 11})
        monkeypatch.setattr(_torch_kmeans, "ROW_ENTRIES", {"cpu": 1 << 22, "cuda": 1 << 12})
    x, centres = _spread_blobs(20_000, 16, 40, 1, cosine=metric == "cosine")
    scale = checked_scale(x, name="x") if metric == "euclidean" else 1.0
    sample = kmeans_module._fit_sample(x, len(x), metric, scale, np.random.default_rng(0))  # every row
    eligible = np.ones(len(sample), dtype=bool)
    placed = _torch_kmeans.Placed.of(sample, torch.device("cuda", 0))
    assert placed.points.device.type == "cuda"
    cpu_rng, cuda_rng = np.random.default_rng(5), np.random.default_rng(5)
    rows, nearest = _seeding._parallel_candidates(sample, 40, cpu_rng, eligible)
    cuda_rows, cuda_nearest = _seeding._parallel_candidates(sample, 40, cuda_rng, eligible, placed)
    assert np.array_equal(cuda_rows, rows)  # the same k-means|| draws
    _assert_same_nearest(sample, rows, cuda_nearest, nearest)
    points, weights = _seeding._cell_means(sample, rows, nearest, eligible)
    cuda_points, cuda_weights = _seeding._cell_means(sample, rows, nearest, eligible, placed)
    assert np.array_equal(cuda_weights, weights)
    bound = (
        2 * np.finfo(np.float32).eps * np.abs(points) + gamma(len(sample), np.float64) * np.abs(sample).max()
    )
    assert_within(cuda_points, points, bound, "cell means on CUDA")
    chosen = _seeding._greedy_plusplus(points, weights, 40, cpu_rng)
    assert np.array_equal(_seeding._greedy_plusplus(points, weights, 40, cuda_rng, placed.device), chosen)
    assert cuda_rng.bit_generator.state == cpu_rng.bit_generator.state  # the same draws, in number
    working = centres * scale if metric == "euclidean" else centres
    blob_of_seed = np.argmin(((points[chosen][:, None, :] - working[None]) ** 2).sum(axis=2), axis=1)
    assert sorted(blob_of_seed.tolist()) == list(range(40))  # one seed in every blob


def test_auto_engine_on_a_gpu_is_faiss_gpu_else_torch(monkeypatch):
    monkeypatch.setenv(ENV, "cuda")
    expected = "faiss" if kmeans_module._gpu_count() > 0 else "torch"
    assert kmeans_module._resolve_engine("auto") == expected


def test_kmeans_float64_assignment_on_cuda_matches_numpy():
    x = np.random.default_rng(2).normal(size=(5000, 16))
    fitted = _on("cpu", kmeans, x, 30, rng=2, engine="torch")
    labels, distances = _on("cuda", kmeans_module.assign, x, fitted.centroids)
    assert distances.dtype == np.float64
    all_distances = np.linalg.norm(x[:, None, :] - fitted.centroids[None], axis=2)
    scale = np.linalg.norm(x, axis=1) + np.linalg.norm(fitted.centroids, axis=1).max()
    chosen = all_distances[np.arange(len(x)), labels]
    assert_within(chosen, all_distances.min(axis=1), gamma(2 * x.shape[1] + 4, np.float64) * scale, "nearest")


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_less_on_cuda_matches_numpy(normalize, dtype):
    rng = np.random.default_rng(3)
    n, c, d = 3000, 2, 256
    train, val = rng.normal(size=(n, c, d)).astype(dtype), rng.normal(size=(40, c, d)).astype(dtype)
    groups = np.arange(40) % 4
    kwargs = {"lr_weights": [1.0, 3.0], "val_groups": groups, "normalize": normalize, "chunk_size": 700}
    assert _on("cuda", gpu_device) == torch.device("cuda", 0)
    cuda = _on("cuda", less_scores, train, val, **kwargs)
    cpu = _on("cpu", less_scores, train, val, **kwargs)
    rows = train.astype(np.float64)
    if normalize:
        rows = rows / np.linalg.norm(rows, axis=-1, keepdims=True)
    peak = np.abs(rows).reshape(n, -1).sum(axis=1) * np.abs(val).max()  # >= max_j |x| . |t_j|
    assert_within(cuda, cpu, 2 * gamma(c * d + d + 2, np.float64) * peak, "LESS on CUDA")


def test_self_influence_on_cuda_matches_numpy():
    grads = np.random.default_rng(4).normal(size=(4000, 3, 128)).astype(np.float32) * 1e20
    cuda = _on("cuda", self_influence_scores, grads, [0.5, 1.0, 2.0], chunk_size=900)
    cpu = _on("cpu", self_influence_scores, grads, [0.5, 1.0, 2.0], chunk_size=900)
    assert_within(cuda, cpu, 2 * gamma(3 * 128 + 3, np.float64) * cpu, "self-influence on CUDA")
