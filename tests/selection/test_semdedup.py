from __future__ import annotations

import numpy as np
import pytest

from datadiet.selection._numerics import normalize_rows
from datadiet.selection.registry import SELECTORS
from datadiet.selection.semdedup import SemDeDup, duplicate_scores, semdedup_eps, semdedup_scores


def _unit(degrees: float) -> np.ndarray:
    radians = np.deg2rad(degrees)
    return np.array([np.cos(radians), np.sin(radians)])


def _full_matrix_scores(x: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The original code: S = X X^T in sorted order, T = triu(S, 1), M = column max of T."""
    x_sorted = x[order]
    m_sorted = np.triu(x_sorted @ x_sorted.T, k=1).max(axis=0)
    out = np.empty_like(m_sorted)
    out[order] = m_sorted
    return out


def test_duplicate_scores_hand_computed_with_transitivity():
    # a; b = a rotated by t (cos t = 0.96, sin t = 0.28); c = b rotated by t again; d = c exactly.
    a = np.array([1.0, 0.0])
    b = np.array([0.96, 0.28])
    c = np.array([0.96**2 - 0.28**2, 2 * 0.96 * 0.28])  # (0.8432, 0.5376)
    x = np.vstack([a, b, c, c])
    m = duplicate_scores(x, np.arange(4))
    # M[a] = 0 (first); M[b] = a.b = 0.96; M[c] = max(a.c = 0.8432, b.c = 0.96) = 0.96;
    # M[d] = max(a.d = 0.8432, b.d = 0.96, c.d = 1) = 1 (exact duplicate).
    np.testing.assert_allclose(m, [0.0, 0.96, 0.96, 1.0], atol=1e-12)
    # eps = 0.05 removes M > 0.95: b (near duplicate of a), d (exact duplicate of c) and c itself. c is
    # removed for its similarity to b, which is itself removed; c.a = 0.8432 alone would have kept it.
    assert semdedup_eps(m, 0.05).tolist() == [0]
    # A tiny eps removes only the exact duplicate.
    assert semdedup_eps(m, 1e-9).tolist() == [0, 1, 2]


def test_duplicate_scores_are_aligned_with_the_rows_not_the_order():
    x = np.vstack([_unit(0), _unit(60), _unit(0)])
    # processing order: row 1, row 2, row 0 -> M[1] = 0, M[2] = cos 60, M[0] = max(cos 60, 1)
    np.testing.assert_allclose(duplicate_scores(x, np.array([1, 2, 0])), [1.0, 0.0, 0.5], atol=1e-12)


def test_duplicate_scores_clip_negative_similarities_to_zero():
    x = np.vstack([_unit(0), _unit(120), _unit(240)])  # pairwise cosine -0.5
    assert duplicate_scores(x, np.arange(3)).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("block_size", [1, 3, 7, 16, 50, 64])
def test_blockwise_scores_equal_the_full_matrix_scores(block_size):
    rng = np.random.default_rng(0)
    x = normalize_rows(rng.normal(size=(50, 8)))
    order = rng.permutation(50)
    blockwise = duplicate_scores(x, order, block_size=block_size)
    np.testing.assert_allclose(blockwise, _full_matrix_scores(x, order), rtol=0, atol=1e-14)


def test_duplicate_scores_rejects_an_order_that_is_not_a_permutation():
    with pytest.raises(ValueError, match="permutation"):
        duplicate_scores(np.eye(3), np.array([0, 0, 1]))


def test_exact_duplicates_are_dropped_first_as_the_budget_shrinks():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(30, 16))
    x = np.vstack([base, base[[2, 7, 11]]])  # rows 30, 31, 32 copy rows 2, 7, 11
    selector = SemDeDup()
    assert selector.select(x, 33, seed=0).indices.tolist() == list(range(33))
    # Equal rows are equally far from their centroid: the lower index comes first and survives.
    assert selector.select(x, 30, seed=0).indices.tolist() == list(range(30))
    kept = selector.select(x, 31, seed=0).indices.tolist()
    assert kept[:30] == list(range(30)) and len({30, 31, 32} & set(kept)) == 1


# One cluster of unit vectors at -40, 40, 10 and 12 degrees: the unit rows average to a centroid at 6.2
# degrees, so 10 (3.8 degrees off) and 12 (5.8 degrees off) are a near-duplicate pair (cos 2 = 0.9994).
PAIR = np.vstack([_unit(-40), _unit(40), _unit(10), _unit(12)])


def test_keep_hard_keeps_the_pair_member_farther_from_the_centroid():
    # hard order -40, 40, 12, 10, so by row: M[-40] = 0, M[40] = cos 80, M[10] = max(cos 50, cos 30, cos 2),
    # M[12] = max(cos 52, cos 28)
    m = semdedup_scores(PAIR, n_clusters=1, keep="hard", rng=0)
    np.testing.assert_allclose(m, np.cos(np.deg2rad([90, 80, 2, 28])), atol=1e-12)
    assert SemDeDup(n_clusters=1).select(PAIR, 3).indices.tolist() == [0, 1, 3]


def test_keep_easy_keeps_the_pair_member_nearer_the_centroid():
    # easy order 10, 12, 40, -40, so by row: M[-40] = max(cos 50, cos 52, cos 80),
    # M[40] = max(cos 30, cos 28), M[10] = 0, M[12] = cos 2
    m = semdedup_scores(PAIR, n_clusters=1, keep="easy", rng=0)
    np.testing.assert_allclose(m, np.cos(np.deg2rad([50, 28, 90, 2])), atol=1e-12)
    assert SemDeDup(n_clusters=1, keep="easy").select(PAIR, 3).indices.tolist() == [0, 1, 2]


def test_keep_random_is_seeded():
    x = np.random.default_rng(1).normal(size=(40, 5))
    a = SemDeDup(keep="random").score(x, seed=2)
    assert np.array_equal(a, SemDeDup(keep="random").score(x, seed=2))
    assert not np.array_equal(a, SemDeDup(keep="random").score(x, seed=3))


def test_singleton_clusters_score_zero():
    assert semdedup_scores(np.eye(3), n_clusters=3, rng=0).tolist() == [0.0, 0.0, 0.0]


def test_semdedup_eps_is_strict_at_one_minus_eps():
    m = np.array([0.0, 0.75, 0.8, 0.5])
    assert semdedup_eps(m, 0.25).tolist() == [0, 1, 3]  # M == 1 - eps is kept
    assert semdedup_eps(m, 0.2).tolist() == [0, 1, 2, 3]
    assert semdedup_eps(m, 0.5).tolist() == [0, 3]
    assert semdedup_eps(m, 1.0).tolist() == [0]  # 1 - eps = 0: any positive similarity removes


def test_eps_at_the_kth_smallest_score_reproduces_the_budget():
    x = np.random.default_rng(5).normal(size=(60, 4))
    m = semdedup_scores(x, rng=7)
    k = 40
    threshold = np.sort(m)[k - 1]
    assert threshold > 0 and np.sum(m == threshold) == 1  # no tie at the cut
    kept = semdedup_eps(m, 1 - threshold)
    assert kept.tolist() == SemDeDup().select(x, k, seed=7).indices.tolist()


@pytest.mark.parametrize(
    ("eps", "error"),
    [(0, ValueError), (-0.1, ValueError), (1.5, ValueError), (float("nan"), ValueError), ("0.1", TypeError)],
)
def test_semdedup_eps_rejects_bad_eps(eps, error):
    with pytest.raises(
        error, match=r"The 'eps' parameter of semdedup_eps must be a float in the range \(0, 1\]"
    ):
        semdedup_eps(np.zeros(3), eps)


def test_semdedup_accepts_float32():
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    scores = SemDeDup().score(x, seed=0)
    assert scores.dtype == np.float32 and np.all(scores <= 0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"keep": "first"}, r"The 'keep' parameter of SemDeDup must be one of \['hard', 'easy', 'random'\]"),
        ({"n_clusters": -1}, r"'n_clusters' parameter of SemDeDup must be None or an int"),
    ],
)
def test_semdedup_rejects_bad_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        SemDeDup(**params).select(np.eye(4), 2)


def test_semdedup_is_registered_with_its_parameters():
    assert SELECTORS.get("semdedup") is SemDeDup
    assert SELECTORS.parameters("semdedup") == {"n_clusters": None, "keep": "hard"}
