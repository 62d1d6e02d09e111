from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from datadiet._core import chunks as _chunks
from datadiet.selection import kmeans as kmeans_module
from datadiet.selection._numerics import normalize_rows
from datadiet.selection.kmeans import (
    KMeansResult,
    NClustersClampedWarning,
    default_n_clusters,
    kmeans,
)
from tests.helpers import assert_within, gamma


def _data(n: int = 300, d: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def _assert_nearest(labels: np.ndarray, distances: np.ndarray, tolerance: np.ndarray | float) -> None:
    """Each row's label is a nearest centroid up to ``tolerance``: the code computes its distances by
    another formula (and BLAS kernel) than the test, so an exact argmin could differ on near-ties only."""
    chosen = distances[np.arange(len(labels)), labels]
    assert_within(chosen, distances.min(axis=1), tolerance, "distance to the assigned centroid")


def _assert_same(a: KMeansResult, b: KMeansResult) -> None:
    for field in ("centroids", "labels", "distances"):
        left, right = getattr(a, field), getattr(b, field)
        assert left.dtype == right.dtype
        assert np.array_equal(left, right), field


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kmeans_same_seed_is_bit_identical(metric, dtype):
    x = _data().astype(dtype)
    a = kmeans(x, 7, metric=metric, rng=np.random.default_rng(5))
    b = kmeans(x, 7, metric=metric, rng=np.random.default_rng(5))
    _assert_same(a, b)
    assert a.centroids.dtype == dtype and a.distances.dtype == dtype and a.labels.dtype == np.int64


def test_kmeans_different_seeds_can_give_different_clusters():
    x = _data(n=400, d=2)
    runs = [kmeans(x, 12, rng=seed).centroids for seed in range(4)]
    assert any(not np.allclose(np.sort(runs[0], 0), np.sort(other, 0)) for other in runs[1:])


def test_kmeans_clamps_n_clusters_to_distinct_rows():
    x = np.repeat([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]], [4, 3, 2], axis=0)
    with pytest.warns(NClustersClampedWarning, match="n_clusters=5 is more than the 3 distinct rows"):
        result = kmeans(x, 5, rng=0)
    assert result.n_clusters == 3
    assert sorted(result.sizes().tolist()) == [2, 3, 4]
    assert np.array_equal(result.distances, np.zeros(9))


def test_kmeans_cosine_clamps_to_distinct_directions():
    x = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])  # two directions
    with pytest.warns(NClustersClampedWarning):
        result = kmeans(x, 3, metric="cosine", rng=0)
    assert result.n_clusters == 2
    assert result.labels[0] == result.labels[1] != result.labels[2]


def test_kmeans_single_row_works():
    result = kmeans(np.array([[1.0, 2.0]]), rng=0)
    assert result.n_clusters == 1 and result.labels.tolist() == [0] and result.distances.tolist() == [0.0]


def test_kmeans_cosine_centroids_are_unit_norm_and_distances_are_one_minus_cos():
    x = _data() + 1.0
    result = kmeans(x, 6, metric="cosine", rng=1)
    np.testing.assert_allclose(np.linalg.norm(result.centroids, axis=1), 1.0, rtol=1e-12)
    cosines = normalize_rows(x) @ result.centroids.T
    _assert_nearest(result.labels, -cosines, 4 * gamma(x.shape[1] + 2, np.float64))
    np.testing.assert_allclose(result.distances, 1 - cosines.max(axis=1), atol=1e-12)


def test_kmeans_euclidean_distance_is_to_the_nearest_centroid():
    x = _data()
    result = kmeans(x, 6, rng=2)
    all_distances = np.linalg.norm(x[:, None, :] - result.centroids[None], axis=2)
    scale = np.linalg.norm(x, axis=1) + np.linalg.norm(result.centroids, axis=1).max()
    _assert_nearest(result.labels, all_distances, gamma(2 * x.shape[1] + 4, np.float64) * scale)
    np.testing.assert_allclose(result.distances, all_distances.min(axis=1), rtol=1e-12)


def test_kmeans_cosine_zero_row_has_distance_one():
    x = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0], [0.0, 0.0]])
    result = kmeans(x, 2, metric="cosine", rng=0)
    assert result.distances[4] == 1.0
    assert result.labels[0] == result.labels[1] != result.labels[2] == result.labels[3]


@pytest.mark.parametrize(("n", "k"), [(1, 1), (2, 1), (3, 2), (60, 8), (600, 24), (1000, 32)])
def test_default_n_clusters_is_rounded_sqrt(n, k):
    assert default_n_clusters(n) == k


def test_kmeans_none_uses_default_n_clusters():
    assert kmeans(_data(n=100), rng=0).n_clusters == 10


def test_kmeans_chunked_assignment_equals_one_pass(monkeypatch):
    x = _data(n=257)
    one_pass = kmeans(x, 5, metric="cosine", rng=3)
    monkeypatch.setattr(kmeans_module, "_CHUNK_ENTRIES", 5 * 16)  # 16 rows per chunk
    _assert_same(kmeans(x, 5, metric="cosine", rng=3), one_pass)


def test_kmeans_members_and_sizes_agree_with_labels():
    result = kmeans(_data(n=50), 4, rng=0)
    members = result.members()
    assert [len(m) for m in members] == result.sizes().tolist()
    for cluster, rows in enumerate(members):
        assert np.array_equal(rows, np.flatnonzero(result.labels == cluster))


def test_kmeans_does_not_modify_input():
    x = _data()
    before = x.copy()
    kmeans(x, 4, rng=0)
    kmeans(x, 4, metric="cosine", rng=0)
    assert np.array_equal(x, before)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n_clusters": 0}, ValueError, r"The 'n_clusters' parameter of kmeans must be None or an int"),
        ({"n_clusters": 2.5}, TypeError, "n_clusters"),
        ({"metric": "manhattan"}, ValueError, r"'metric' parameter of kmeans must be one of \['euclidean'"),
        ({"n_init": 0}, ValueError, "'n_init'"),
        ({"max_iter": 0}, ValueError, "'max_iter'"),
    ],
)
def test_kmeans_rejects_bad_parameters(kwargs, error, message):
    with pytest.raises(error, match=message):
        kmeans(_data(n=20), rng=0, **kwargs)


def test_kmeans_rejects_non_2d_input():
    with pytest.raises(ValueError, match="2-D"):
        kmeans(np.zeros(5), rng=0)


def test_normalize_rows_keeps_zero_rows_and_float32():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    out = normalize_rows(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)


# --- engines: faiss (default when installed) vs sklearn ---------------------------------------------------

faiss = pytest.importorskip("faiss")


def _blobs(n: int, d: int, n_centres: int, scale: float = 3.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_centres, d)) * scale
    return (centres[rng.integers(0, n_centres, n)] + rng.normal(size=(n, d))).astype(np.float32)


def _inertia(result: KMeansResult) -> float:
    return float(np.sum(result.distances.astype(np.float64) ** 2))


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to relabelling: the label pairs define a bijection."""
    pairs = np.unique(np.stack([a, b]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def test_kmeans_auto_engine_is_faiss_when_installed(monkeypatch):
    calls = []
    monkeypatch.setattr(kmeans_module, "_fit_faiss", lambda *a, **k: calls.append(1) or np.zeros((2, 8)))
    kmeans(_data(), 2, rng=0)
    assert calls == [1]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_kmeans_faiss_known_answer_on_two_pairs(metric):
    x = np.array([[1.0, 0.0], [1.0, 0.2], [0.0, 3.0], [0.2, 3.0]], dtype=np.float32)
    result = kmeans(x, 2, metric=metric, rng=0, engine="faiss")
    assert _same_partition(result.labels, np.array([0, 0, 1, 1]))
    if metric == "cosine":  # spherical centroid: the normalised mean of the normalised rows
        unit = normalize_rows(x)
        centres = normalize_rows(np.repeat([unit[:2].mean(0), unit[2:].mean(0)], 2, axis=0))
        expected = 1 - np.einsum("ij,ij->i", unit, centres)
    else:
        expected = np.full(4, 0.1)
    np.testing.assert_allclose(result.distances, expected, atol=1e-6)


def test_kmeans_faiss_equals_sklearn_partition_on_separated_blobs():
    x = _blobs(600, 8, 6, scale=20.0)
    faiss_result = kmeans(x, 6, rng=0, engine="faiss")
    sklearn_result = kmeans(x, 6, rng=0, engine="sklearn")
    assert _same_partition(faiss_result.labels, sklearn_result.labels)
    for result in (faiss_result, sklearn_result):  # converged: both are the cluster means, in float32
        _assert_centroids_are_cluster_means(result, x)


def _assert_centroids_are_cluster_means(result: KMeansResult, x: np.ndarray) -> None:
    """Each centroid is the mean of its rows up to the float32 rounding of a sum of that many rows."""
    x64 = x.astype(np.float64)
    for centroid, members in zip(result.centroids, result.members(), strict=True):
        rows = x64[members]
        bound = 2 * gamma(len(rows) + 1, x.dtype) * np.abs(rows).mean(axis=0)
        assert_within(centroid, rows.mean(axis=0), bound, "centroid vs its cluster's mean")


def test_kmeans_faiss_inertia_is_within_one_percent_of_sklearn():
    x = _blobs(5000, 32, 70)
    faiss_inertia = _inertia(kmeans(x, 70, rng=0, engine="faiss"))
    sklearn_inertia = _inertia(kmeans(x, 70, rng=0, engine="sklearn"))
    assert faiss_inertia <= 1.01 * sklearn_inertia


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kmeans_faiss_reruns_are_bit_identical(metric, dtype):
    x = _blobs(3000, 16, 30).astype(dtype)
    kwargs = {"metric": metric, "engine": "faiss", "max_points_per_centroid": 40, "n_init": 2}
    _assert_same(kmeans(x, 30, rng=np.random.default_rng(7), **kwargs), kmeans(x, 30, rng=7, **kwargs))


def test_kmeans_faiss_result_does_not_depend_on_the_thread_setting():
    x = _blobs(2000, 16, 20)
    previous = faiss.omp_get_max_threads()
    try:
        faiss.omp_set_num_threads(1)
        one = kmeans(x, 20, rng=3, engine="faiss")
        assert faiss.omp_get_max_threads() == 1  # restored
    finally:
        faiss.omp_set_num_threads(previous)
    _assert_same(kmeans(x, 20, rng=3, engine="faiss"), one)


def test_kmeans_faiss_fits_on_a_sample_when_n_exceeds_the_cap(monkeypatch):
    x = _blobs(1000, 4, 10)
    sizes = []
    fit = kmeans_module._fit_faiss
    monkeypatch.setattr(
        kmeans_module, "_fit_faiss", lambda sample, *a, **k: sizes.append(len(sample)) or fit(sample, *a, **k)
    )
    result = kmeans(x, 10, rng=0, engine="faiss", max_points_per_centroid=20)
    kmeans(x, 10, rng=0, engine="faiss")
    assert sizes == [200, 1000]
    assert len(result.labels) == 1000 and result.sizes().sum() == 1000  # every row is still assigned
    x64, centroids = x.astype(np.float64), result.centroids.astype(np.float64)
    all_distances = np.linalg.norm(x64[:, None, :] - centroids[None], axis=2)
    scale = np.linalg.norm(x64, axis=1) + np.linalg.norm(centroids, axis=1).max()
    _assert_nearest(result.labels, all_distances, gamma(2 * x.shape[1] + 4, x.dtype) * scale)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_kmeans_faiss_memmap_equals_in_memory(metric, tmp_path, monkeypatch):
    x = _blobs(1500, 12, 25)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    kwargs = {"metric": metric, "engine": "faiss", "max_points_per_centroid": 30}
    in_memory = kmeans(x, 25, rng=1, **kwargs)
    monkeypatch.setattr(kmeans_module, "_CHUNK_ENTRIES", 25 * 64)  # many chunks over the memmap
    _assert_same(kmeans(mapped, 25, rng=1, **kwargs), in_memory)


def test_assign_labels_a_memmap_like_kmeans(tmp_path):
    x = _blobs(500, 6, 8)
    np.save(tmp_path / "x.npy", x)
    result = kmeans(x, 8, metric="cosine", rng=0)
    labels, distances = kmeans_module.assign(
        np.load(tmp_path / "x.npy", mmap_mode="r"), result.centroids, metric="cosine"
    )
    assert np.array_equal(labels, result.labels) and np.array_equal(distances, result.distances)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_kmeans_sklearn_engine_still_works(metric):
    x = _data()
    result = kmeans(x, 5, metric=metric, rng=0, engine="sklearn")
    assert result.n_clusters == 5 and len(result.labels) == len(x) and result.centroids.dtype == np.float64
    _assert_same(result, kmeans(x, 5, metric=metric, rng=0, engine="sklearn"))


def test_kmeans_rejects_unknown_engine():
    message = r"The 'engine' parameter of kmeans must be one of \['auto', 'faiss', 'sklearn', 'torch'\]"
    with pytest.raises(ValueError, match=message):
        kmeans(_data(n=20), rng=0, engine="cuml")


@pytest.mark.parametrize(("name", "value"), [("max_points_per_centroid", 0), ("tol", -1.0)])
def test_kmeans_rejects_bad_fit_options(name, value):
    with pytest.raises(ValueError, match=f"'{name}' parameter of kmeans"):
        kmeans(_data(n=20), rng=0, **{name: value})


def test_kmeans_engine_faiss_without_faiss_says_what_to_install(monkeypatch):
    monkeypatch.setattr(kmeans_module, "faiss", None)
    with pytest.raises(ImportError, match=r"pip install 'datadiet\[fast\]'"):
        kmeans(_data(n=20), rng=0, engine="faiss")
    assert kmeans(_data(n=20), 2, rng=0).n_clusters == 2  # "auto" falls back to sklearn


def test_kmeans_faiss_on_a_memmap_allocates_no_full_size_temporary(tmp_path, monkeypatch):
    x = _blobs(20_000, 64, 10)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    monkeypatch.setattr(kmeans_module, "_CHUNK_ENTRIES", 1 << 14)
    monkeypatch.setattr(_chunks, "CHUNK_BYTES", 1 << 16)
    kmeans(x[:100], 10, metric="cosine", rng=0)  # first-call imports are not temporaries
    tracemalloc.start()
    try:
        kmeans(mapped, 10, metric="cosine", rng=0, engine="faiss", max_points_per_centroid=50)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.25 * mapped.nbytes
