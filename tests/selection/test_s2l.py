from __future__ import annotations

import numpy as np
import pytest

from datadiet.selection.registry import SELECTORS
from datadiet.selection.s2l import S2L, balanced_allocation, balanced_sample, du_compat_allocation

SIZES = [500, 300, 100, 50, 20, 10, 5, 5, 5, 5]


def test_balanced_allocation_hand_computed():
    # Ascending (equal sizes: lower id first), R_j = floor((400 - |S|) / (10 - j + 1)):
    #   j=1..4  (sizes 5; ids 6-9): R = 40, 43, 48, 55 -> take all 5 each      |S| = 20
    #   j=5     (size 10):          R = floor(380/6) = 63 -> take all 10       |S| = 30
    #   j=6     (size 20):          R = floor(370/5) = 74 -> take all 20       |S| = 50
    #   j=7     (size 50):          R = floor(350/4) = 87 -> take all 50       |S| = 100
    #   j=8     (size 100):         R = floor(300/3) = 100 -> 100 <= 100, all  |S| = 200
    #   j=9     (size 300):         R = floor(200/2) = 100 -> sample 100       |S| = 300
    #   j=10    (size 500):         R = floor(100/1) = 100 -> sample 100       |S| = 400
    takes = balanced_allocation(SIZES, 400)
    assert takes.tolist() == [100, 100, 100, 50, 20, 10, 5, 5, 5, 5]
    assert takes.sum() == 400


def test_du_compat_allocation_underfills_the_same_budget():
    # Descending, take = min(int((400 - sel) / (10 - idx)), |C|):
    #   500: 40, 300: 40, 100: 40, 50: 40 (sel 160); 20: min(40, 20) = 20; 10: min(44, 10) = 10;
    #   then 5 each (min(52, 5), min(70, 5), min(102, 5), min(200, 5)) -> 40*4 + 20 + 10 + 20 = 210
    takes = du_compat_allocation(SIZES, 400)
    assert takes.tolist() == [40, 40, 40, 40, 20, 10, 5, 5, 5, 5]
    assert takes.sum() == 210


def test_balanced_allocation_breaks_size_ties_by_lower_cluster_id():
    # sizes 3, 3, 3 with budget 4: R = 1, 1, 2 in id order
    assert balanced_allocation([3, 3, 3], 4).tolist() == [1, 1, 2]


@pytest.mark.parametrize("seed", range(5))
def test_balanced_allocation_fills_every_budget_exactly(seed):
    sizes = np.random.default_rng(seed).integers(0, 30, size=8)
    for budget in range(sizes.sum() + 1):
        takes = balanced_allocation(sizes, budget)
        assert takes.sum() == budget
        assert np.all((takes >= 0) & (takes <= sizes))


@pytest.mark.parametrize(
    ("sizes", "budget", "error", "message"),
    [
        ([3, 4], 8, ValueError, r"budget=8 should be in \[0, sum\(sizes\)=7\]"),
        ([3, -1], 1, ValueError, "sizes must be"),
        ([], 0, ValueError, "sizes must be"),
        ([3, 4], 2.0, TypeError, "budget must be an int"),
    ],
)
def test_allocations_reject_bad_input(sizes, budget, error, message):
    for allocate in (balanced_allocation, du_compat_allocation):
        with pytest.raises(error, match=message):
            allocate(sizes, budget)


def test_balanced_sample_takes_whole_clusters_and_samples_the_rest():
    members = [np.array([0, 1]), np.array([2, 3, 4, 5])]
    chosen = balanced_sample(members, np.array([2, 1]), rng=np.random.default_rng(0))
    assert chosen[:2].tolist() == [0, 1] and len(chosen) == 3 and 2 <= chosen[2] <= 5


BLOB_SIZES = [40, 20, 10, 5]


def _blobs() -> tuple[np.ndarray, np.ndarray]:
    """Four tight, far-apart blobs of 3-step trajectories, with the blob id of every row."""
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [0.0, 100.0, 0.0], [0.0, 0.0, 100.0]])
    blob = np.repeat(np.arange(4), BLOB_SIZES)
    return centers[blob] + rng.normal(scale=0.1, size=(len(blob), 3)), blob


def test_s2l_on_separated_blobs_gives_the_hand_computed_counts():
    # Ascending sizes 5, 10, 20, 40 with B = 30: R = floor(30/4) = 7 -> all 5 (|S| = 5);
    # floor(25/3) = 8 -> sample 8 (13); floor(17/2) = 8 -> sample 8 (21); floor(9/1) = 9 -> sample 9 (30).
    x, blob = _blobs()
    selection = S2L(n_clusters=4).select(x, 30, seed=0)
    assert np.bincount(blob[selection.indices], minlength=4).tolist() == [9, 8, 8, 5]
    assert selection.scores is None


@pytest.mark.parametrize("budget", [1, 2, 3, 4, 7, 19, 30, 44, 60, 74, 75, 0.5, 1.0])
def test_s2l_keeps_exactly_k(budget):
    x, _ = _blobs()
    selection = S2L(n_clusters=4).select(x, budget, seed=1)
    k = budget if isinstance(budget, int) else int(budget * 75)
    assert len(selection.indices) == len(np.unique(selection.indices)) == k


def test_s2l_same_seed_same_output_different_seeds_differ():
    x = np.random.default_rng(2).normal(size=(80, 5))
    first = S2L().select(x, 20, seed=7).indices
    assert np.array_equal(first, S2L().select(x, 20, seed=7).indices)
    assert not np.array_equal(first, S2L().select(x, 20, seed=8).indices)


def test_s2l_rejects_bad_n_clusters():
    with pytest.raises(ValueError, match=r"The 'n_clusters' parameter of S2L must be None or an int"):
        S2L(n_clusters=0).select(np.eye(4), 2)


def test_s2l_reads_2d_arrays_only():
    with pytest.raises(ValueError, match="reads an \\(n_examples, T\\) array of loss trajectories"):
        S2L().select(np.zeros((6, 2, 2)), 2)


def test_s2l_is_registered_and_du_compat_is_not():
    assert SELECTORS.get("s2l") is S2L
    assert SELECTORS.parameters("s2l") == {"n_clusters": None}
    assert "s2l_du_compat" not in SELECTORS
