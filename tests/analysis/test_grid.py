"""The grid's overlap matrices and summary numbers on a hand-computed case (N = 10, k = 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from datadiet.analysis.grid import grid_label, overlap_matrices, summary
from datadiet.errors import ParameterError

N = 10
# two representations (h, g) x two algorithms (a, b) x two seeds, k = 4 of N = 10
SEED0 = {"a@h": [0, 1, 2, 3], "b@h": [0, 1, 4, 5], "a@g": [0, 1, 2, 6], "b@g": [4, 5, 8, 9]}
SEED1 = {"a@h": [0, 1, 2, 3], "b@h": [0, 1, 4, 6], "a@g": [0, 1, 2, 7], "b@g": [4, 5, 8, 9]}


def _selections(budget=4):
    out = {}
    for seed, table in ((0, SEED0), (1, SEED1)):
        for label, indices in table.items():
            algorithm, _, rep = label.partition("@")
            out[rep, algorithm, budget, seed] = np.array(indices)
    return out


def _row(frame, measure, representation="", algorithm=""):
    rows = frame[
        (frame.measure == measure) & (frame.representation == representation) & (frame.algorithm == algorithm)
    ]
    assert len(rows) == 1, (measure, representation, algorithm)
    return rows.iloc[0]


def test_overlap_matrices_group_labels_by_representation_per_seed_and_on_average():
    seed0 = overlap_matrices(_selections(), n_examples=N, seed=0)
    labels, matrix = seed0[4]
    assert labels == ["a@h", "b@h", "a@g", "b@g"]
    # a@h∩b@h={0,1}; a@h∩a@g={0,1,2}; a@h∩b@g={}; b@h∩a@g={0,1}; b@h∩b@g={4,5}; a@g∩b@g={}
    expected = [[1, 0.5, 0.75, 0], [0.5, 1, 0.5, 0.5], [0.75, 0.5, 1, 0], [0, 0.5, 0, 1]]
    np.testing.assert_array_equal(matrix, expected)
    labels, mean = overlap_matrices(_selections(), n_examples=N)[4]
    assert labels == ["a@h", "b@h", "a@g", "b@g"]
    assert mean[1, 3] == mean[3, 1] == pytest.approx((0.5 + 0.25) / 2)  # b@h vs b@g: {4,5} then {4}
    assert mean[0, 2] == 0.75 and mean[1, 2] == 0.5 and np.all(np.diag(mean) == 1)


def test_summary_numbers_match_the_hand_computed_ones():
    frame = summary(_selections(), n_examples=N)
    assert set(frame.budget) == {4} and set(frame.k) == {4}
    # same representation, other algorithm: (a@h, b@h) = 0.5 and (a@g, b@g) = 0
    same_rep = _row(frame, "same_representation")
    assert (same_rep.value, same_rep.n_pairs, same_rep.random) == (pytest.approx(0.25), 2, 0.4)
    # same algorithm, other representation: (a@h, a@g) = 0.75 and (b@h, b@g) = 0.375
    same_algo = _row(frame, "same_algorithm")
    assert (same_algo.value, same_algo.n_pairs, same_algo.random) == (pytest.approx(0.5625), 2, 0.4)
    variation_a = _row(frame, "cross_representation_variation", algorithm="a")
    variation_b = _row(frame, "cross_representation_variation", algorithm="b")
    assert variation_a.value == pytest.approx(0.25) and variation_b.value == pytest.approx(0.625)
    assert variation_a.random == pytest.approx(0.6)  # independent random selections: 1 - k/N
    stability = {
        grid_label(r, a): v for r, a, v in frame[frame.measure == "seed_stability"][
            ["representation", "algorithm", "value"]].itertuples(index=False)
    }  # fmt: skip
    assert stability == {"a@h": 1.0, "b@h": 0.75, "a@g": 0.75, "b@g": 1.0}


def test_summary_separates_budgets_and_leaves_undefined_numbers_nan():
    selections = _selections()
    selections["h", "a", 2, 0] = np.array([0, 1])
    selections["h", "b", 2, 0] = np.array([1, 2])
    frame = summary(selections, n_examples=N)
    small = frame[frame.budget == 2]
    assert set(small.k) == {2}
    assert _row(small, "same_representation").value == 0.5
    assert _row(small, "same_representation").random == pytest.approx(0.2)
    assert math.isnan(_row(small, "same_algorithm").value)  # one representation only
    assert math.isnan(_row(small, "seed_stability", "h", "a").value)  # one seed only
    assert _row(small, "seed_stability", "h", "a").n_pairs == 0


def test_a_missing_selection_averages_the_seeds_where_both_exist():
    selections = _selections()
    del selections["g", "b", 4, 1]
    labels, mean = overlap_matrices(selections, n_examples=N)[4]
    assert mean[labels.index("b@h"), labels.index("b@g")] == 0.5  # seed 0 only


def test_bad_selections_are_refused():
    with pytest.raises(ParameterError, match="non-empty mapping"):
        summary({}, n_examples=N)
    with pytest.raises(ParameterError, match="different numbers of examples"):
        summary({("h", "a", 0.5, 0): [0, 1], ("h", "b", 0.5, 0): [0, 1, 2]}, n_examples=N)
    with pytest.raises(ParameterError, match="out of range"):
        overlap_matrices({("h", "a", 0.5, 0): [0, 10]}, n_examples=N)
