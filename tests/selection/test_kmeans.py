from __future__ import annotations

import numpy as np
import pytest

from datadiet.selection import kmeans as kmeans_module
from datadiet.selection.kmeans import (
    KMeansResult,
    NClustersClampedWarning,
    default_n_clusters,
    kmeans,
    normalize_rows,
)


def _data(n: int = 300, d: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


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
    assert np.array_equal(result.labels, cosines.argmax(axis=1))
    np.testing.assert_allclose(result.distances, 1 - cosines.max(axis=1), atol=1e-12)


def test_kmeans_euclidean_distance_is_to_the_nearest_centroid():
    x = _data()
    result = kmeans(x, 6, rng=2)
    all_distances = np.linalg.norm(x[:, None, :] - result.centroids[None], axis=2)
    assert np.array_equal(result.labels, all_distances.argmin(axis=1))
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
