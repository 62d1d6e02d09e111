"""The torch k-means engine on the CPU: the same sample and seeds as faiss, torch Lloyd, exact assignment.

Invariants checked here: on well-separated blobs the true partition is found for every seed; the inertia is
at most 1% above the faiss engine's on unstructured data; the same ``rng`` gives the same bits; the empty-
cluster rule is the documented one (the farthest eligible row, never a zero row under cosine); and on a CPU
machine ``engine="auto"`` is exactly the engine it was before the torch engine existed.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from datadiet._core.device import ENV
from datadiet.selection import _seeding, _torch_kmeans
from datadiet.selection import kmeans as kmeans_module
from datadiet.selection._numerics import normalize_rows
from datadiet.selection.kmeans import KMeansResult, NClustersClampedWarning, kmeans
from tests.helpers import assert_within, gamma

CPU = torch.device("cpu")
HAS_FAISS = importlib.util.find_spec("faiss") is not None


@pytest.fixture(autouse=True)
def _cpu_device(monkeypatch):
    """Every test here runs torch on the CPU, whatever the machine has."""
    monkeypatch.setenv(ENV, "cpu")


def _blobs(
    n: int, d: int, n_centres: int, seed: int, *, cosine: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Rows around ``n_centres`` far-apart centres (unit directions for cosine) and their true labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_centres, d))
    centres = normalize_rows(centres) * 5 if cosine else centres * 20
    labels = rng.permutation(np.arange(n) % n_centres)  # every cluster holds rows
    noise = 0.05 if cosine else 1.0
    return (centres[labels] + noise * rng.normal(size=(n, d))).astype(np.float32), labels


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to relabelling: the label pairs define a bijection."""
    pairs = np.unique(np.stack([a, b]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def _assert_same(a: KMeansResult, b: KMeansResult) -> None:
    for field in ("centroids", "labels", "distances"):
        left, right = getattr(a, field), getattr(b, field)
        assert left.dtype == right.dtype, field
        assert np.array_equal(left, right), field


def _objective(result: KMeansResult, metric: str) -> float:
    distances = result.distances.astype(np.float64)
    return float(np.sum(distances**2 if metric == "euclidean" else distances))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_torch_kmeans_recovers_separated_blobs_for_every_seed(metric, seed):
    x, truth = _blobs(600, 8, 6, seed, cosine=metric == "cosine")
    result = kmeans(x, 6, metric=metric, rng=seed, engine="torch")
    assert _same_partition(result.labels, truth)
    assert result.sizes().tolist() == [100] * 6


@pytest.mark.skipif(not HAS_FAISS, reason="the comparison needs faiss")
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_torch_kmeans_objective_is_within_one_percent_of_faiss(metric):
    x = np.random.default_rng(0).normal(size=(4000, 16)).astype(np.float32)  # no cluster structure
    torch_objective = _objective(kmeans(x, 40, metric=metric, rng=0, engine="torch"), metric)
    faiss_objective = _objective(kmeans(x, 40, metric=metric, rng=0, engine="faiss"), metric)
    # distances come from the same exact rule for both engines, so a lower objective is a better fit; for
    # cosine torch stops later (its tol is on sum(1 - cos), faiss's on sum(cos)) and is often slightly lower
    assert torch_objective <= 1.01 * faiss_objective


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_kmeans_same_rng_gives_the_same_bits(metric, dtype):
    x = np.random.default_rng(3).normal(size=(1500, 12)).astype(dtype)
    kwargs = {"metric": metric, "engine": "torch", "n_init": 2, "max_points_per_centroid": 40}
    first = kmeans(x, 20, rng=np.random.default_rng(7), **kwargs)
    _assert_same(first, kmeans(x, 20, rng=7, **kwargs))
    assert first.centroids.dtype == first.distances.dtype == dtype and first.labels.dtype == np.int64


def test_torch_kmeans_cosine_centroids_are_unit_norm_and_distances_one_minus_cos():
    x = np.random.default_rng(1).normal(size=(500, 6)) + 0.5
    x[7] = 0.0  # a zero row: cosine 0 with every centroid
    result = kmeans(x, 6, metric="cosine", rng=1, engine="torch")
    np.testing.assert_allclose(np.linalg.norm(result.centroids, axis=1), 1.0, rtol=1e-12)
    assert result.distances.min() >= 0 and result.distances.max() <= 2
    cosines = normalize_rows(x) @ result.centroids.T
    expected = 1 - cosines[np.arange(len(x)), result.labels]
    assert_within(result.distances, expected, 4 * gamma(8, np.float64), "1 - cos")
    assert result.labels[7] == 0 and result.distances[7] == 1.0


def test_torch_kmeans_euclidean_labels_are_nearest_and_distances_exact():
    x = np.random.default_rng(2).normal(size=(400, 5))
    result = kmeans(x, 7, rng=2, engine="torch")
    all_distances = np.linalg.norm(x[:, None, :] - result.centroids[None], axis=2)
    chosen = all_distances[np.arange(len(x)), result.labels]
    scale = np.linalg.norm(x, axis=1) + np.linalg.norm(result.centroids, axis=1).max()
    assert_within(chosen, all_distances.min(axis=1), gamma(2 * x.shape[1] + 4, np.float64) * scale, "nearest")
    assert_within(result.distances, chosen, 4 * gamma(8, np.float64) * chosen, "||x - c||")


def test_torch_kmeans_clamps_n_clusters_to_distinct_rows():
    x = np.repeat([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]], [4, 3, 2], axis=0)
    with pytest.warns(NClustersClampedWarning, match="n_clusters=5 is more than the 3 distinct rows"):
        result = kmeans(x, 5, rng=0, engine="torch")
    assert result.n_clusters == 3 and sorted(result.sizes().tolist()) == [2, 3, 4]


def test_torch_kmeans_memmap_and_small_chunks_equal_in_memory(tmp_path, monkeypatch):
    x, _ = _blobs(900, 10, 9, 4)
    np.save(tmp_path / "x.npy", x)
    in_memory = kmeans(x, 9, rng=5, engine="torch")
    monkeypatch.setattr(kmeans_module, "_CHUNK_ENTRIES", 9 * 64)  # 64-row chunks: many over the memmap
    lloyd_chunks = {"cpu": 9 * 50, "cuda": 9 * 50}  # 50-row chunks in Lloyd
    monkeypatch.setattr(_torch_kmeans, "CHUNK_ENTRIES", lloyd_chunks)
    chunked = kmeans(np.load(tmp_path / "x.npy", mmap_mode="r"), 9, rng=5, engine="torch")
    assert np.array_equal(chunked.labels, in_memory.labels)
    np.testing.assert_allclose(chunked.centroids, in_memory.centroids, rtol=0, atol=1e-5)


def test_torch_lloyd_moves_an_empty_cluster_onto_the_farthest_row():
    sample = np.array([[0, 0], [0, 0.5], [10, 0], [10, 0.5], [10, 5]], dtype=np.float32)
    seeds = np.array([[0, 0.25], [100, 100], [10, 0.25]], dtype=np.float32)  # seed 1 attracts nothing
    centroids, objective = _torch_kmeans.lloyd(
        sample, seeds, metric="euclidean", max_iter=10, tol=0.0, device=CPU
    )
    assert centroids.tolist() == [[0, 0.25], [10, 5], [10, 0.25]]  # [10, 5] was 4.75 from its centroid
    assert objective == 4 * 0.25**2


def test_torch_lloyd_cosine_never_moves_an_empty_cluster_onto_a_zero_row():
    diagonal = np.sqrt(0.5)
    sample = np.array(
        [[1, 0], [0.995, 0.0999], [0, 1], [0.0999, 0.995], [0, 0], [diagonal, diagonal]], dtype=np.float32
    )
    seeds = np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float32)  # the zero row's loss, 1, is the largest
    centroids, _ = _torch_kmeans.lloyd(sample, seeds, metric="cosine", max_iter=10, tol=0.0, device=CPU)
    np.testing.assert_allclose(centroids[2], [diagonal, diagonal], rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-6)


def test_torch_lloyd_stops_when_the_objective_stops_improving(monkeypatch):
    sweeps = []
    sweep = _torch_kmeans._sweep
    monkeypatch.setattr(_torch_kmeans, "_sweep", lambda *a: sweeps.append(1) or sweep(*a))
    x = np.array([[0, 0], [0, 0.5], [0.5, 0], [0.5, 0.5]], dtype=np.float32)
    _torch_kmeans.lloyd(x, x[[0, 2]], metric="euclidean", max_iter=50, tol=0.0, device=CPU)
    assert len(sweeps) == 3  # L = 0.5, then 0.25 twice: no improvement, stop
    sweeps.clear()
    _torch_kmeans.lloyd(x, x[[0, 2]], metric="euclidean", max_iter=1, tol=0.0, device=CPU)
    assert len(sweeps) == 1


def test_kmeans_rejects_unknown_engine_naming_torch():
    with pytest.raises(ValueError) as caught:
        kmeans(np.random.default_rng(0).normal(size=(20, 3)), rng=0, engine="cuml")
    assert str(caught.value) == (
        "The 'engine' parameter of kmeans must be one of ['auto', 'faiss', 'sklearn', 'torch']. "
        "Got 'cuml' instead."
    )


def test_auto_engine_on_a_cpu_machine_is_the_engine_it_was(monkeypatch):
    monkeypatch.delenv(ENV)
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: 'auto' may pick the GPU")
    assert kmeans_module._resolve_engine("auto") == ("faiss" if HAS_FAISS else "sklearn")
    monkeypatch.setattr(kmeans_module, "faiss", None)
    assert kmeans_module._resolve_engine("auto") == "sklearn"


def test_auto_engine_prefers_a_faiss_gpu_then_torch_on_a_gpu(monkeypatch):
    monkeypatch.setattr(kmeans_module, "on_gpu", lambda: True)
    monkeypatch.setattr(kmeans_module, "_gpu_count", lambda: 0)
    assert kmeans_module._resolve_engine("auto") == "torch"
    monkeypatch.setattr(kmeans_module, "_gpu_count", lambda: 1)
    assert kmeans_module._resolve_engine("auto") == "faiss"


def test_auto_on_a_gpu_without_faiss_gpu_runs_the_torch_engine(monkeypatch):
    fits = []
    fit = kmeans_module._fit_torch
    monkeypatch.setattr(kmeans_module, "on_gpu", lambda: True)  # the device itself stays the CPU (ENV)
    monkeypatch.setattr(kmeans_module, "_gpu_count", lambda: 0)
    monkeypatch.setattr(kmeans_module, "_fit_torch", lambda *a, **k: fits.append(k["device"]) or fit(*a, **k))
    x, truth = _blobs(300, 4, 3, 0)
    assert _same_partition(kmeans(x, 3, rng=0).labels, truth)
    assert fits == [CPU]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_torch_engine_refuses_a_cuda_device_that_is_not_there(monkeypatch):
    monkeypatch.setenv(ENV, "cuda:0")
    with pytest.raises(ValueError, match=r"device 'cuda:0' was requested but 0 CUDA device\(s\) are visible"):
        kmeans(np.random.default_rng(0).normal(size=(50, 3)), 4, rng=0, engine="torch")


# --- the seeding's products in torch (used on a GPU) -----------------------------------------------------


def _frozen_seed(sample: np.ndarray, k: int, rng: np.random.Generator, eligible: np.ndarray) -> np.ndarray:
    """The numpy seeding exactly as it was before the device path existed (kmeans.py at 61d88b0).

    Frozen here so that the refactored numpy path can be checked against it bit for bit.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):
        squared_norms = np.einsum("ij,ij->i", sample, sample)
        closest = np.full(len(sample), np.inf, dtype=np.float32)
        nearest = np.zeros(len(sample), dtype=np.int64)
        pool = np.flatnonzero(eligible)
        drawn = [pool[rng.integers(len(pool))][None]]
        _frozen_update(sample, squared_norms, drawn[0], 0, closest, nearest)
        closest[~eligible] = 0
        count = 1
        for _ in range(5):
            phi = float(np.sum(closest, dtype=np.float64))
            if phi <= 0:
                break
            new = np.flatnonzero(rng.random(len(sample)) * phi < k * closest.astype(np.float64))
            if len(new):
                _frozen_update(sample, squared_norms, new, count, closest, nearest)
                closest[~eligible] = 0
                drawn.append(new)
                count += len(new)
        rows = np.concatenate(drawn)
    points, weights = _frozen_cell_means(sample, rows, nearest, eligible)
    with threadpool_limits(limits=1, user_api="blas"):
        return points[_frozen_greedy(points, weights, k, rng)]


def _frozen_update(sample, squared_norms, rows, offset, closest, nearest) -> None:
    centres, centre_norms = sample[rows], squared_norms[rows]
    step = max(1, (1 << 18) // len(rows))
    for start in range(0, len(sample), step):
        stop = min(start + step, len(sample))
        partial = sample[start:stop] @ centres.T
        partial *= -2
        partial += centre_norms
        which = np.argmin(partial, axis=1)
        squared = np.maximum(partial[np.arange(stop - start), which] + squared_norms[start:stop], 0)
        better = squared < closest[start:stop]
        closest[start:stop][better] = squared[better]
        nearest[start:stop][better] = offset + which[better]
    closest[rows] = 0
    nearest[rows] = offset + np.arange(len(rows))


def _frozen_cell_means(sample, rows, nearest, eligible) -> tuple[np.ndarray, np.ndarray]:
    from scipy.sparse import csr_array

    sums = np.zeros((len(rows), sample.shape[1]), dtype=np.float64)
    step = max(1, (1 << 22) // sample.shape[1])
    for start in range(0, len(sample), step):
        members = start + np.flatnonzero(eligible[start : start + step])
        onehot = csr_array(
            (np.ones(len(members)), (nearest[members], np.arange(len(members)))),
            shape=(len(rows), len(members)),
        )
        sums += onehot @ sample[members].astype(np.float64)
    sizes = np.bincount(nearest[eligible], minlength=len(rows)).astype(np.float64)
    means = np.where(sizes[:, None] > 0, sums / np.maximum(sizes, 1)[:, None], sample[rows])
    return means.astype(sample.dtype), sizes


def _frozen_greedy(points, weights, k, rng) -> np.ndarray:
    n_trials = 4 * (2 + int(np.log(k)))
    squared_norms = np.einsum("ij,ij->i", points, points)
    transposed = np.ascontiguousarray(points.T)
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = _seeding.draw(weights, 1, rng)[0]
    closest = _seeding._squared_distances(points, transposed, chosen[:1], squared_norms)[0]
    for c in range(1, k):
        candidates = _seeding.draw(closest * weights, n_trials, rng)
        trial = np.minimum(
            closest, _seeding._squared_distances(points, transposed, candidates, squared_norms)
        )
        best = int(np.argmin(trial @ weights))
        chosen[c], closest = candidates[best], trial[best]
    return chosen


def _seeding_input(metric: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fitting sample of separated blobs (working units) and its eligible rows (cosine: a zero row)."""
    x, _ = _blobs(1200, 6, 12, seed, cosine=metric == "cosine")
    if metric == "cosine":
        x[5] = 0.0
        sample = normalize_rows(x).astype(np.float32)
        return sample, np.abs(sample).max(axis=1) > 0
    return (x / 64).astype(np.float32), np.ones(len(x), dtype=bool)


def _float32_close(actual: np.ndarray, expected: np.ndarray, sample: np.ndarray, what: str) -> None:
    """Within one float32 rounding of ``expected`` plus float64 summation noise (cell means, Lloyd means)."""
    bound = (
        2 * np.finfo(np.float32).eps * np.abs(expected)
        + gamma(len(sample), np.float64) * np.abs(sample).max()
    )
    assert_within(actual, expected, bound, what)


@pytest.fixture
def torch_seeding(monkeypatch):
    """Route the torch engine's seeding through its device code, on the CPU; counts the torch calls."""
    monkeypatch.setattr(kmeans_module, "on_gpu", lambda: True)  # DATADIET_DEVICE=cpu keeps it on the CPU
    calls: list[str] = []
    for name in ("nearest_drawn", "cell_sums", "greedy_plusplus"):
        original = getattr(_torch_kmeans, name)
        monkeypatch.setattr(_torch_kmeans, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    return calls


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_numpy_seeding_is_bit_for_bit_the_frozen_code(metric):
    sample, eligible = _seeding_input(metric)
    frozen_rng, rng = np.random.default_rng(3), np.random.default_rng(3)
    frozen = _frozen_seed(sample, 12, frozen_rng, eligible)
    seeds = _seeding.seed(sample, 12, rng, eligible)
    assert seeds.dtype == frozen.dtype and np.array_equal(seeds, frozen)
    assert rng.bit_generator.state == frozen_rng.bit_generator.state  # the same draws, in number


ENGINES_WITH_SEEDING = [
    "torch",
    pytest.param("faiss", marks=pytest.mark.skipif(not HAS_FAISS, reason="faiss")),
]


def _no_torch_seeding(monkeypatch) -> None:
    for name in ("nearest_drawn", "cell_sums", "greedy_plusplus"):
        monkeypatch.setattr(_torch_kmeans, name, lambda *a, _n=name: pytest.fail(f"{_n} ran"))


@pytest.mark.parametrize("engine", ENGINES_WITH_SEEDING)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_cpu_kmeans_runs_the_frozen_numpy_seeding_bit_for_bit(engine, metric, monkeypatch):
    x = np.random.default_rng(4).normal(size=(800, 5)).astype(np.float32)  # no structure: any drift shows
    kwargs = {"metric": metric, "rng": 2, "engine": engine, "n_init": 2}
    _no_torch_seeding(monkeypatch)
    current = kmeans(x, 16, **kwargs)
    monkeypatch.setattr(_seeding, "seed", lambda s, k, r, e, device=None: _frozen_seed(s, k, r, e))
    _assert_same(current, kmeans(x, 16, **kwargs))


@pytest.mark.skipif(not HAS_FAISS, reason="needs faiss")
def test_faiss_engine_keeps_the_numpy_seeding_where_torch_would_use_the_gpu(monkeypatch):
    x = np.random.default_rng(5).normal(size=(600, 4)).astype(np.float32)
    cpu = kmeans(x, 9, rng=1, engine="faiss")
    monkeypatch.setattr(kmeans_module, "on_gpu", lambda: True)
    monkeypatch.setattr(kmeans_module, "_gpu_count", lambda: 0)
    monkeypatch.setattr(kmeans_module, "_assign_device", lambda engine: None)  # only the seeding differs
    _no_torch_seeding(monkeypatch)
    _assert_same(cpu, kmeans(x, 9, rng=1, engine="faiss"))
    with pytest.raises(pytest.fail.Exception, match="ran"):  # the probe fires where the torch path runs
        kmeans(x, 9, rng=1, engine="torch")


def _assert_same_nearest(
    sample: np.ndarray, rows: np.ndarray, nearest: np.ndarray, expected: np.ndarray
) -> None:
    """``nearest`` is ``expected`` except at near-ties: rows whose two drawn rows lie at the same distance up
    to the rounding of ``||x||^2 - 2 x.c + ||c||^2`` in float32 (the only place two products may differ)."""
    differ = np.flatnonzero(nearest != expected)
    assert len(differ) <= len(sample) // 100, f"{len(differ)} rows changed cell"
    x = sample[differ].astype(np.float64)
    got, want = (((x - sample[rows[which[differ]]]) ** 2).sum(axis=1) for which in (nearest, expected))
    norms = (x * x).sum(axis=1) + np.einsum("ij,ij->i", sample[rows], sample[rows]).max()
    assert_within(got, want, 4 * gamma(sample.shape[1] + 3) * norms, "distance to another nearest drawn row")


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_torch_seeding_draws_what_the_numpy_seeding_draws(metric, torch_seeding):
    sample, eligible = _seeding_input(metric)
    placed = _torch_kmeans.Placed.of(sample, CPU)
    numpy_rng, torch_rng = np.random.default_rng(3), np.random.default_rng(3)
    rows, nearest = _seeding._parallel_candidates(sample, 12, numpy_rng, eligible)
    torch_rows, torch_nearest = _seeding._parallel_candidates(sample, 12, torch_rng, eligible, placed)
    assert np.array_equal(torch_rows, rows)
    _assert_same_nearest(sample, rows, torch_nearest, nearest)
    points, weights = _seeding._cell_means(sample, rows, nearest, eligible)
    torch_points, torch_weights = _seeding._cell_means(sample, rows, nearest, eligible, placed)
    assert np.array_equal(torch_weights, weights) and torch_points.dtype == np.float32
    _float32_close(torch_points, points, sample, "cell means")
    chosen = _seeding._greedy_plusplus(points, weights, 12, numpy_rng)
    assert np.array_equal(_seeding._greedy_plusplus(points, weights, 12, torch_rng, CPU), chosen)
    assert torch_rng.bit_generator.state == numpy_rng.bit_generator.state  # the same draws, in number
    assert set(torch_seeding) == {"nearest_drawn", "cell_sums", "greedy_plusplus"}


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_torch_engine_seeded_on_the_device_finds_the_numpy_seeded_result(metric, torch_seeding):
    x, truth = _blobs(1500, 6, 15, 1, cosine=metric == "cosine")
    kwargs = {"metric": metric, "rng": 4, "engine": "torch", "n_init": 2}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kmeans_module, "on_gpu", lambda: False)
        numpy_seeded = kmeans(x, 15, **kwargs)
    assert torch_seeding == []
    device_seeded = kmeans(x, 15, **kwargs)
    assert torch_seeding.count("greedy_plusplus") == 2 and torch_seeding.count("cell_sums") == 2
    assert np.array_equal(device_seeded.labels, numpy_seeded.labels)
    assert _same_partition(device_seeded.labels, truth)
    _float32_close(device_seeded.centroids, numpy_seeded.centroids, x, "centroids")


def _device_products(sample, drawn, nearest, eligible, points, weights) -> tuple:
    """What the device seeding computes on the CPU: chunk starts, nearest drawn rows and D^2 of ``drawn``,
    the cell sums of ``nearest``, and the greedy choice among ``points`` (16 candidates a seed)."""
    placed = _torch_kmeans.Placed.of(sample, CPU)
    chunks = list(_torch_kmeans.nearest_drawn(placed, np.einsum("ij,ij->i", sample, sample))(drawn))
    rng = np.random.default_rng(8)
    return (
        [start for start, _, _ in chunks],
        np.concatenate([which for _, which, _ in chunks]),
        np.concatenate([squared for _, _, squared in chunks]),
        _torch_kmeans.cell_sums(placed, nearest, eligible, int(nearest.max()) + 1),
        _torch_kmeans.greedy_plusplus(points, weights, 12, 16, lambda m, n: _seeding.draw(m, n, rng), CPU),
    )


def test_torch_seeding_in_small_chunks_computes_the_same_products(monkeypatch):
    sample, eligible = _seeding_input("euclidean", seed=2)
    rows, nearest = _seeding._parallel_candidates(sample, 12, np.random.default_rng(6), eligible)
    points, weights = _seeding._cell_means(sample, rows, nearest, eligible)
    drawn = np.arange(0, 1200, 30)  # 40 drawn rows
    starts, which, squared, sums, chosen = _device_products(sample, drawn, nearest, eligible, points, weights)
    monkeypatch.setattr(_torch_kmeans, "CHUNK_ENTRIES", {"cpu": 400, "cuda": 400})  # 10 rows, 25 means
    monkeypatch.setattr(_torch_kmeans, "ROW_ENTRIES", {"cpu": 600, "cuda": 600})  # cell sums: 100 rows
    small = _device_products(sample, drawn, nearest, eligible, points, weights)
    assert starts == [0] and small[0] == list(range(0, 1200, 10)) and len(points) > 25
    _assert_same_nearest(sample, drawn, small[1], which)
    norms = np.einsum("ij,ij->i", sample, sample)
    assert_within(small[2], squared, 4 * gamma(6 + 3) * (norms + norms[drawn].max()), "D^2 in small chunks")
    assert_within(small[3], sums, gamma(len(sample), np.float64) * np.abs(sample).sum(axis=0), "cell sums")
    assert np.array_equal(small[4], chosen)  # the potentials summed over several chunks pick the same seeds


def test_torch_seeding_finds_every_nearest_drawn_row_and_distance():
    sample = np.random.default_rng(7).normal(size=(300, 5)).astype(np.float32)
    rows = np.array([3, 40, 41, 299, 150])
    search = _torch_kmeans.nearest_drawn(
        _torch_kmeans.Placed.of(sample, CPU), np.einsum("ij,ij->i", sample, sample)
    )
    ((start, which, squared),) = list(search(rows))
    exact = ((sample[:, None, :].astype(np.float64) - sample[rows][None]) ** 2).sum(axis=2)
    assert start == 0 and which.dtype == np.int64 and squared.dtype == np.float32
    assert np.array_equal(which, exact.argmin(axis=1)) and np.array_equal(which[rows], np.arange(5))
    norms = np.einsum("ij,ij->i", sample, sample).astype(np.float64)
    assert_within(squared, exact.min(axis=1), 4 * gamma(5 + 3) * (norms + norms[rows].max()), "D^2")
