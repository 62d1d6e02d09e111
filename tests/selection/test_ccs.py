"""CCS: hand-computed allocations, the hard cutoff, strata edges and budget errors."""

from __future__ import annotations

import numpy as np
import pytest

from datadiet.selection.ccs import CCS, assign_strata, stratified_allocation
from datadiet.selection.registry import SELECTORS


@pytest.mark.parametrize(
    ("sizes", "budget", "expected"),
    [
        # sorted [1, 2, 10, 10]: 12//4=3 -> 1; 11//3=3 -> 2; 9//2=4 -> 4; the last takes 5
        ([1, 2, 10, 10], 12, [1, 2, 4, 5]),
        # same strata in another order; equal sizes keep input order, so the later 10 takes 5
        ([10, 1, 10, 2], 12, [4, 1, 5, 2]),
        # the empty stratum goes first and takes 0: 4//3=1 -> 0; 4//2=2 -> 2; the last takes 2
        ([5, 0, 5], 4, [2, 0, 2]),
        # 10//3=3 -> 1; 9//2=4 -> 1; the last takes 8
        ([100, 1, 1], 10, [8, 1, 1]),
        ([5, 5], 3, [1, 2]),
        ([3, 3, 3], 9, [3, 3, 3]),
        ([3, 3, 3], 0, [0, 0, 0]),
    ],
)
def test_stratified_allocation_by_hand(sizes, budget, expected):
    takes = stratified_allocation(np.array(sizes), budget)
    assert takes.tolist() == expected


@pytest.mark.parametrize(("sizes", "budget"), [([1, 2], 4), ([1, -1], 0), ([1.5, 2.0], 1), ([3, 3], -1)])
def test_stratified_allocation_rejects_impossible_inputs(sizes, budget):
    with pytest.raises(ValueError, match=r"sizes|budget"):
        stratified_allocation(np.array(sizes), budget)


def strata_scores():
    """23 scores in 4 equal-width strata of sizes 1, 2, 10, 10 over [0, 3.9], in shuffled order."""
    scores = np.concatenate([[0.0], [1.0, 1.1], 2.0 + np.arange(10) / 10, 3.0 + np.arange(10) / 10])
    stratum = np.repeat([0, 1, 2, 3], [1, 2, 10, 10])
    order = np.random.default_rng(0).permutation(len(scores))
    return scores[order], stratum[order]


def test_assign_strata_equal_width_over_min_to_max():
    scores, stratum = strata_scores()
    np.testing.assert_array_equal(assign_strata(scores, 4), stratum)


def test_ccs_samples_each_stratum_by_the_allocation():
    scores, stratum = strata_scores()
    for seed in range(5):
        picked = SELECTORS.create("ccs", n_strata=4).select(scores, 12, seed=seed).indices
        assert np.bincount(stratum[picked], minlength=4).tolist() == [1, 2, 4, 5]


def test_ccs_keeps_exactly_k_and_same_seed_same_subset():
    scores = np.random.default_rng(1).normal(size=200)
    selection = CCS(beta=0.1).select(scores, 37, seed=3)
    assert len(selection.indices) == 37 == len(np.unique(selection.indices))
    np.testing.assert_array_equal(selection.indices, CCS(beta=0.1).select(scores, 37, seed=3).indices)
    assert not np.array_equal(selection.indices, CCS(beta=0.1).select(scores, 37, seed=4).indices)
    assert selection.scores is None


@pytest.mark.parametrize(("hard_end", "dropped"), [("high", [8, 9]), ("low", [0, 1])])
def test_ccs_beta_drops_exactly_floor_beta_n_hardest(hard_end, dropped):
    order = np.random.default_rng(2).permutation(10)
    scores = np.arange(10.0)[order]  # scores 0..9 at shuffled positions
    # floor(0.25 * 10) = 2 dropped; k = 8 keeps every remaining example
    kept = CCS(beta=0.25, n_strata=3, hard_end=hard_end).select(scores, 8).indices
    assert sorted(scores[kept].tolist()) == [s for s in range(10) if s not in dropped]


def test_ccs_budget_above_what_beta_leaves_raises():
    with pytest.raises(ValueError, match=r"k=9.*beta=0.25.*floor\(beta\*N\)=2 of N=10.*lower beta"):
        CCS(beta=0.25).select(np.arange(10.0), 9)


def test_ccs_all_equal_scores_form_one_stratum():
    scores = np.full(7, 2.0)
    assert assign_strata(scores, 50).tolist() == [0] * 7
    subsets = {tuple(CCS().select(scores, 3, seed=s).indices) for s in range(10)}
    assert len(subsets) > 1 and all(len(subset) == 3 for subset in subsets)
    # with a cutoff, equal scores drop the lower indices first
    assert CCS(beta=0.3).select(scores, 5).indices.tolist() == [2, 3, 4, 5, 6]


def test_ccs_negative_max_stays_in_the_last_stratum():
    scores = np.array([-5.0, -4.0, -3.0, -2.0, -1.0])
    # edges -5, -3+, -1+: the reference's 1.0001 * max = -1.0001 would leave -1 in no stratum
    assert assign_strata(scores, 2).tolist() == [0, 0, 0, 1, 1]
    picks = [CCS(n_strata=2).select(scores, 2, seed=s).indices.tolist() for s in range(20)]
    assert all(sum(i in (3, 4) for i in p) == 1 for p in picks)
    assert any(4 in p for p in picks)
    assert CCS(n_strata=2).select(scores, 5).indices.tolist() == [0, 1, 2, 3, 4]


def test_ccs_averages_a_trajectory_over_t():
    trajectory = np.random.default_rng(5).random((30, 4))
    from_trajectory = CCS(beta=0.1, n_strata=5).select(trajectory, 10, seed=9).indices
    from_means = CCS(beta=0.1, n_strata=5).select(trajectory.mean(axis=1), 10, seed=9).indices
    np.testing.assert_array_equal(from_trajectory, from_means)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"beta": 1.0}, "beta"),
        ({"beta": -0.1}, "beta"),
        ({"beta": "0.1"}, "beta"),
        ({"beta": True}, "beta"),
        ({"n_strata": 0}, "n_strata"),
        ({"n_strata": 2.5}, "n_strata"),
        ({"hard_end": "middle"}, "hard_end"),
    ],
)
def test_ccs_rejects_bad_params(params, name):
    with pytest.raises(ValueError, match=f"The '{name}' parameter of CCS must be"):
        CCS(**params).select(np.arange(10.0), 2)


def test_ccs_wrong_ndim_names_the_selector():
    with pytest.raises(ValueError, match="'ccs' reads an \\(n_examples,\\) array of importance scores"):
        CCS().select(np.ones((4, 2, 2)), 1)


def test_ccs_defaults():
    assert CCS().get_params() == {"beta": 0.0, "n_strata": 50, "hard_end": "high"}
