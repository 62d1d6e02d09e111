"""The clustering selectors (kmeans, prototypicality, semdedup, s2l) on inputs of any scale, their fidelity
on separated clusters, and the bounds of their parameters.

- Scale: ``x`` and ``x * 2**e`` give the same clustering bit for bit (distances and centroids exactly
  ``2**e`` times the others), in memory and memory-mapped; extreme magnitudes (float32 1e-30 .. 3e38,
  float64 1e-300 .. 1e300) give the same partition and selection as ordinary ones; rows whose values are
  all subnormal are refused with the reason.
- Fidelity: well-separated Gaussian blobs, small ones included, are found exactly by both engines for every
  seed (hypothesis over size profiles and dimensions, and the S2L hand case of shared/ALGORITHMS.md §4).
- Bounds: every numeric parameter is bounded; ``n_clusters`` at or above the number of distinct rows gives
  the exact one-cluster-per-row answer without running k-means.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from datadiet._core import chunks as _chunks
from datadiet.selection import _seeding
from datadiet.selection import kmeans as kmeans_module
from datadiet.selection.kmeans import NClustersClampedWarning, assign, kmeans
from datadiet.selection.prototypicality import Prototypicality
from datadiet.selection.s2l import S2L, balanced_allocation
from datadiet.selection.semdedup import SemDeDup, duplicate_scores

faiss = pytest.importorskip("faiss")

ENGINES = ["faiss", "sklearn"]
METRICS = ["euclidean", "cosine"]
HAND_SIZES = [500, 300, 100, 50, 20, 10, 5, 5, 5, 5]  # shared/ALGORITHMS.md §4, the S2L hand case


def _lattice_blobs(
    sizes: list[int], d: int, seed: int, separation: float = 6.0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-variance Gaussian blobs of ``sizes`` rows around lattice points, randomly rotated and shuffled.

    Neighbouring centres are ``delta = separation * sqrt(d * n / min(sizes))`` apart, so the smallest
    blob's mass ``min(sizes) * delta**2`` is ``separation**2`` times the whole within-blob scatter
    ``n * d``: the blobs are the optimal clustering and any D^2 seeding sees an unseeded blob. Returns the
    float32 rows and the blob id of each.
    """
    rng = np.random.default_rng(seed)
    k, n = len(sizes), sum(sizes)
    if d >= k:
        lattice = np.eye(d)[:k] / np.sqrt(2)  # pairwise distance 1
    else:
        side = int(np.ceil(k ** (1 / d)))
        cells = rng.permutation(side**d)[:k]
        lattice = np.stack(np.unravel_index(cells, (side,) * d), axis=1).astype(float)
    rotation = np.linalg.qr(rng.normal(size=(d, d)))[0]
    centres = lattice @ rotation * separation * np.sqrt(d * n / min(sizes))
    blob = rng.permutation(np.repeat(np.arange(k), sizes))
    return (centres[blob] + rng.normal(size=(n, d))).astype(np.float32), blob


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to relabelling: the label pairs define a bijection."""
    pairs = np.unique(np.stack([a, b]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def _times(x: np.ndarray, factor: float) -> np.ndarray:
    """``x * factor`` computed in float64 (no intermediate overflow), cast back to the dtype of ``x``."""
    return (x.astype(np.float64) * factor).astype(x.dtype)


def _unit_max(x: np.ndarray) -> np.ndarray:
    """``x`` divided by its largest magnitude (so ``_times(..., c)`` has ``max |x| = c``)."""
    return (x / np.abs(x).max()).astype(x.dtype)


def _as_memmap(array: np.ndarray, tmp_path) -> np.memmap:
    np.save(tmp_path / "x.npy", array)
    return np.load(tmp_path / "x.npy", mmap_mode="r")


def _assert_same_result(a, b) -> None:
    for field in ("centroids", "labels", "distances", "scaled_distances"):
        left, right = getattr(a, field), getattr(b, field)
        assert left.dtype == right.dtype and np.array_equal(left, right), field
    assert a.scale == b.scale


# --- scale: exact power-of-two rescaling ------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(
    ("dtype", "exponent"), [(np.float32, -40), (np.float32, 90), (np.float64, -500), (np.float64, 500)]
)
def test_a_power_of_two_rescaling_gives_the_same_clustering_bit_for_bit(engine, metric, dtype, exponent):
    x = _lattice_blobs([60, 30, 10], 5, seed=1, separation=1.0)[0].astype(dtype)
    base = kmeans(x, 3, metric=metric, rng=4, engine=engine)
    rescaled = kmeans(_times(x, 2.0**exponent), 3, metric=metric, rng=4, engine=engine)
    factor = 2.0**exponent if metric == "euclidean" else 1.0
    assert np.array_equal(base.labels, rescaled.labels)
    assert np.array_equal(base.scaled_distances, rescaled.scaled_distances)
    assert np.array_equal(base.distances.astype(np.float64) * factor, rescaled.distances.astype(np.float64))
    assert np.array_equal(base.centroids.astype(np.float64) * factor, rescaled.centroids.astype(np.float64))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("dtype", "factor"), [(np.float32, 1e30), (np.float32, 1e-30), (np.float64, 1e-170)])
def test_memmap_equals_in_memory_at_extreme_scales(engine, metric, dtype, factor, tmp_path, monkeypatch):
    x = _times(_lattice_blobs([50, 20, 5], 6, seed=2)[0].astype(dtype), factor)
    in_memory = kmeans(x, 3, metric=metric, rng=0, engine=engine)
    monkeypatch.setattr(_chunks, "CHUNK_BYTES", 512)  # many chunks over the memmap
    monkeypatch.setattr(kmeans_module, "_CHUNK_ENTRIES", 3 * 8)
    _assert_same_result(kmeans(_as_memmap(x, tmp_path), 3, metric=metric, rng=0, engine=engine), in_memory)


# --- scale: extreme magnitudes ----------------------------------------------------------------------------

MAGNITUDES = [
    (np.float32, 1e19),
    (np.float32, 1e25),
    (np.float32, 1e30),
    (np.float32, 1e35),
    (np.float32, 1e38),
    (np.float32, 3e38),
    (np.float32, 1e-30),
    (np.float64, 1e150),
    (np.float64, 1e300),
    (np.float64, 1e-170),
    (np.float64, 1e-300),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("dtype", "magnitude"), MAGNITUDES)
def test_kmeans_finds_the_blobs_at_any_magnitude(engine, metric, dtype, magnitude):
    x, blob = _lattice_blobs([40, 20, 10, 5], 4, seed=3)
    x = _times(_unit_max(x.astype(dtype)), magnitude)  # max |x| = magnitude
    result = kmeans(x, 4, metric=metric, rng=0, engine=engine)
    assert _same_partition(result.labels, blob)
    assert np.isfinite(result.scaled_distances).all() and np.isfinite(result.centroids).all()


def test_assign_labels_extreme_rows_like_kmeans():
    x, _ = _lattice_blobs([40, 20, 10, 5], 4, seed=3)
    x = _times(_unit_max(x), 1e30)
    result = kmeans(x, 4, rng=0)
    labels, distances = assign(x, result.centroids)
    assert np.array_equal(labels, result.labels)
    np.testing.assert_allclose(distances, result.distances, rtol=1e-5)


def _outlier_data() -> tuple[np.ndarray, list[int]]:
    """Two blobs along the axes (centre plus a ring of radius 1) and four outliers, as in
    test_prototypicality: keep-hard picks the outliers under both metrics. Returns data and outliers."""
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False) + np.pi / 40
    ring = np.column_stack([np.cos(angles), np.sin(angles)])
    centres = np.array([[10.0, 0.0], [0.0, 10.0]])
    outliers = np.array([[7.0, 4.0], [7.0, -4.0], [4.0, 7.0], [-4.0, 7.0]])
    x = np.vstack([*(np.vstack([c, c + ring]) for c in centres), outliers])
    return x, [82, 83, 84, 85]


def _duplicate_data() -> np.ndarray:
    """30 random rows and copies of rows 2, 7 and 11: SemDeDup at budget 30 drops exactly the copies."""
    base = np.random.default_rng(3).normal(size=(30, 16))
    return np.vstack([base, base[[2, 7, 11]]])


def _trajectory_data() -> tuple[np.ndarray, np.ndarray]:
    """Four far-apart blobs of 5-step trajectories of sizes 40, 20, 10, 5 and the blob of every row."""
    blob = np.repeat(np.arange(4), [40, 20, 10, 5])
    centres = np.array([[0.0] * 5, [100.0] + [0.0] * 4, [0.0, 100.0, 0, 0, 0], [0, 0, 100.0, 0, 0]])
    return centres[blob] + np.random.default_rng(0).normal(scale=0.1, size=(75, 5)), blob


@pytest.mark.parametrize(("dtype", "magnitude"), MAGNITUDES)
def test_selections_do_not_depend_on_the_magnitude(dtype, magnitude):
    x, outliers = _outlier_data()
    for metric in METRICS:
        selector = Prototypicality(n_clusters=2, metric=metric)
        assert selector.select(_times(_unit_max(x.astype(dtype)), magnitude), 4).indices.tolist() == outliers
    duplicates = _times(_unit_max(_duplicate_data().astype(dtype)), magnitude)
    assert SemDeDup().select(duplicates, 30, seed=0).indices.tolist() == list(range(30))
    trajectories, blob = _trajectory_data()
    selection = S2L(n_clusters=4).select(_times(_unit_max(trajectories.astype(dtype)), magnitude), 30, seed=0)
    # ascending sizes 5, 10, 20, 40, B = 30: all 5, then floor(25/3) = 8, floor(17/2) = 8, the last 9
    assert np.bincount(blob[selection.indices], minlength=4).tolist() == [9, 8, 8, 5]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("dtype", "factor"), [(np.float32, 1e-30), (np.float32, 1e30), (np.float64, 1e-170)])
def test_distinct_tiny_or_huge_rows_are_not_mistaken_for_duplicates(metric, dtype, factor):
    x = _times(np.random.default_rng(0).normal(size=(40, 6)).astype(dtype), factor)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NClustersClampedWarning)
        assert kmeans(x, 12, metric=metric, rng=0).n_clusters == 12


def test_prototypicality_scores_stay_finite_past_the_float32_range():
    # One cluster: the centroid is the mean (about 3.3e37 per axis), so row 0 lies 3.8e38 from it,
    # beyond float32's largest value (3.4e38).
    x = np.array([[3e38, 3e38], [-2e38, -2e38], [0.0, 0.0]], dtype=np.float32)
    result = kmeans(x, 1, rng=0)
    assert np.isinf(result.distances[0]) and np.isfinite(result.scaled_distances).all()
    selector = Prototypicality(n_clusters=1, metric="euclidean")
    scores = selector.score(x)
    centre = x.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(scores, np.linalg.norm(x - centre, axis=1), rtol=1e-6)
    assert selector.select(x, 1).indices.tolist() == [0]


# --- scale: subnormal rows are refused --------------------------------------------------------------------

SELECTORS = [
    Prototypicality(n_clusters=2),
    Prototypicality(n_clusters=2, metric="euclidean"),
    SemDeDup(n_clusters=2),
    S2L(n_clusters=2),
]


@pytest.mark.parametrize("selector", SELECTORS, ids=repr)
@pytest.mark.parametrize(("dtype", "factor"), [(np.float32, 1e-40), (np.float64, 1e-310)])
def test_all_subnormal_rows_are_refused_naming_the_field(selector, dtype, factor):
    x = _times(np.random.default_rng(0).normal(size=(20, 4)).astype(dtype) + 3, factor)
    message = re.escape("rep.values has 20 rows (first: [0, 1, 2, 3, 4]) whose values are all subnormal")
    with pytest.raises(ValueError, match=message):
        selector.select(x, 5)


@pytest.mark.parametrize("metric", METRICS)
def test_one_subnormal_row_of_a_memmap_is_refused(metric, tmp_path, monkeypatch):
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    x[37] = np.float32(1e-39)
    monkeypatch.setattr(_chunks, "CHUNK_BYTES", 64)
    with pytest.raises(
        ValueError, match=re.escape("x has 1 rows (first: [37]) whose values are all subnormal")
    ):
        kmeans(_as_memmap(x, tmp_path), 3, metric=metric, rng=0)
    with pytest.raises(ValueError, match="subnormal"):
        assign(x, np.ones((2, 4)), metric=metric)


def test_a_row_with_some_subnormal_values_is_accepted():
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    x[5, 1:] = np.float32(1e-40)  # x[5, 0] is a normal number
    assert kmeans(x, 3, rng=0).n_clusters == 3


# --- fidelity: separated blobs are found for every seed ---------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", range(20))
def test_both_engines_find_the_hand_case_blobs_for_every_seed(engine, seed):
    x, blob = _lattice_blobs(HAND_SIZES, 8, seed)
    assert _same_partition(kmeans(x, len(HAND_SIZES), rng=seed, engine=engine).labels, blob)


@pytest.mark.parametrize("seed", range(20))
def test_s2l_allocates_the_hand_case_as_the_paper_for_every_seed(seed):
    x, blob = _lattice_blobs(HAND_SIZES, 3, seed)
    selection = S2L(n_clusters=len(HAND_SIZES)).select(x, 400, seed=seed)
    taken = np.bincount(blob[selection.indices], minlength=len(HAND_SIZES))
    assert (
        taken.tolist()
        == balanced_allocation(HAND_SIZES, 400).tolist()
        == [100, 100, 100, 50, 20, 10, 5, 5, 5, 5]
    )


@settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.filter_too_much]
)
@given(
    sizes=st.lists(st.integers(5, 500), min_size=2, max_size=12),
    d=st.sampled_from([1, 2, 3, 8, 32]),
    seed=st.integers(0, 2**16),
)
def test_both_engines_find_separated_blobs_of_any_sizes(sizes, d, seed):
    # the faiss engine fits on at most 256 rows per centroid: here it sees every row (see the next test)
    assume(sum(sizes) <= 256 * len(sizes))
    x, blob = _lattice_blobs(sizes, d, seed)
    for engine in ENGINES:
        assert _same_partition(kmeans(x, len(sizes), rng=seed, engine=engine).labels, blob), engine


@pytest.mark.parametrize("seed", range(5))
def test_faiss_engine_finds_blobs_that_its_fitting_sample_holds(seed):
    sizes = [500] * 8 + [150, 150]  # 4,300 rows, a sample of 2,560: every blob keeps dozens of rows
    x, blob = _lattice_blobs(sizes, 8, seed)
    assert _same_partition(kmeans(x, len(sizes), rng=seed, engine="faiss").labels, blob)


@pytest.mark.parametrize("metric", METRICS)
def test_faiss_engine_seeding_is_deterministic(metric):
    x, _ = _lattice_blobs([200, 50, 5, 5], 16, seed=9, separation=0.5)
    first = kmeans(x, 4, metric=metric, rng=np.random.default_rng(11), engine="faiss")
    _assert_same_result(first, kmeans(x, 4, metric=metric, rng=11, engine="faiss"))


@pytest.mark.parametrize("metric", METRICS)
def test_faiss_engine_bits_do_not_depend_on_the_thread_count(metric, monkeypatch):
    x, _ = _lattice_blobs([900, 300, 40, 5], 24, seed=5, separation=0.3)
    two = kmeans(x, 12, metric=metric, rng=3, engine="faiss")
    monkeypatch.setattr(kmeans_module, "_OPENMP_THREADS", 1)  # faiss
    monkeypatch.setattr(_seeding, "_BLAS_THREADS", 1)  # the seeding's BLAS products
    _assert_same_result(kmeans(x, 12, metric=metric, rng=3, engine="faiss"), two)


# --- bounds -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "constraint"),
    [
        ("n_init", 101, "an int in the range [1, 100]"),
        ("n_init", 10**9, "an int in the range [1, 100]"),
        ("max_iter", 10_001, "an int in the range [1, 10000]"),
        ("max_iter", 2**40, "an int in the range [1, 10000]"),
        ("tol", float("nan"), "a float in the range [0, inf)"),
        ("tol", float("inf"), "a float in the range [0, inf)"),
        ("max_points_per_centroid", 0, "an int in the range [1, inf)"),
        ("max_points_per_centroid", 2.5, "an int in the range [1, inf)"),
    ],
)
def test_kmeans_numeric_parameters_are_bounded(name, value, constraint):
    expected = f"The '{name}' parameter of kmeans must be {constraint}. Got {value!r} instead."
    with pytest.raises(ValueError, match=re.escape(expected)):
        kmeans(np.eye(4), 2, rng=0, **{name: value})


@pytest.mark.parametrize("block_size", [0, 4097, 10**12])
def test_duplicate_scores_block_size_is_bounded(block_size):
    expected = f"duplicate_scores must be an int in the range [1, 4096]. Got {block_size} instead"
    with pytest.raises(ValueError, match=re.escape(expected)):
        duplicate_scores(np.eye(3), np.arange(3), block_size=block_size)


def _no_fit(*args, **kwargs):
    raise AssertionError("k-means ran although every distinct row is its own cluster")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("n_clusters", [7, 10**12])
def test_as_many_clusters_as_distinct_rows_is_exact_and_runs_no_kmeans(engine, n_clusters, monkeypatch):
    monkeypatch.setattr(kmeans_module, "_fit_faiss", _no_fit)
    monkeypatch.setattr(kmeans_module, "_fit_sklearn", _no_fit)
    rows = np.random.default_rng(0).normal(size=(7, 3)) * 1e30
    x = rows[[0, 1, 1, 2, 3, 0, 4, 5, 6, 6]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = kmeans(x, n_clusters, rng=0, engine=engine)
    assert [type(w.message) for w in caught] == ([NClustersClampedWarning] if n_clusters > 7 else [])
    assert result.labels.tolist() == [0, 1, 1, 2, 3, 0, 4, 5, 6, 6]  # numbered by first occurrence
    assert np.array_equal(result.centroids, rows) and np.array_equal(result.distances, np.zeros(10))


def test_cosine_counts_directions_of_nonzero_rows_and_zero_rows_go_to_cluster_zero(monkeypatch):
    monkeypatch.setattr(kmeans_module, "_fit_faiss", _no_fit)
    x = np.array([[0.0, 2.0], [0.0, 0.0], [3.0, 0.0], [0.0, 5e-30], [1.0, 0.0]])
    with pytest.warns(NClustersClampedWarning, match="the 2 distinct directions of the nonzero rows of x"):
        result = kmeans(x, 10**12, metric="cosine", rng=0)
    assert result.labels.tolist() == [0, 0, 1, 0, 1]
    np.testing.assert_array_equal(result.centroids, [[0.0, 1.0], [1.0, 0.0]])
    assert result.distances.tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]


def test_huge_n_clusters_on_many_distinct_rows_of_a_memmap_is_fast_and_exact(tmp_path, monkeypatch):
    monkeypatch.setattr(kmeans_module, "_fit_faiss", _no_fit)
    x = np.random.default_rng(0).normal(size=(5000, 8)).astype(np.float32)
    monkeypatch.setattr(_chunks, "CHUNK_BYTES", 1 << 12)
    with pytest.warns(NClustersClampedWarning, match="the 5000 distinct rows"):
        result = kmeans(_as_memmap(x, tmp_path), 10**12, rng=0)
    assert np.array_equal(result.labels, np.arange(5000)) and np.array_equal(result.centroids, x)


@pytest.mark.parametrize("selector", [Prototypicality, SemDeDup, S2L])
def test_selectors_accept_a_huge_n_clusters(selector):
    x = np.random.default_rng(0).normal(size=(40, 3))
    with pytest.warns(NClustersClampedWarning):
        assert len(selector(n_clusters=10**12).select(x, 10, seed=0).indices) == 10
