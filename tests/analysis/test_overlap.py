"""Overlap ratios, rank correlations and label distributions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from datadiet.analysis.overlap import (
    label_distribution,
    overlap_matrix,
    random_overlap_expectation,
    rank_correlation,
)
from datadiet.selection.base import Selection


def test_overlap_matrix_hand_computed_with_unequal_sizes():
    a, b, c = [0, 1, 2, 3], [2, 3, 4], [5]
    expected = np.array(
        [
            [1.0, 2 / 4, 0.0],
            [2 / 3, 1.0, 0.0],
            [0.0, 0.0, 1.0],
        ]
    )
    np.testing.assert_allclose(overlap_matrix([a, b, c]), expected)


def test_overlap_matrix_is_symmetric_for_equal_sizes_and_accepts_selections():
    s1 = Selection(np.array([0, 1, 2]), meta={"n_examples": 10})
    s2 = Selection(np.array([1, 2, 9]), meta={"n_examples": 10})
    out = overlap_matrix([s1, s2, np.array([9, 2, 1])])
    np.testing.assert_allclose(out, out.T)
    np.testing.assert_allclose(np.diag(out), 1.0)
    assert out[0, 1] == pytest.approx(2 / 3)
    assert out[1, 2] == pytest.approx(1.0)


def test_overlap_matrix_accepts_a_2d_array_of_equal_size_selections():
    out = overlap_matrix(np.array([[0, 1], [1, 2]]))
    np.testing.assert_allclose(out, [[1.0, 0.5], [0.5, 1.0]])


@pytest.mark.parametrize(
    ("selections", "kwargs", "message"),
    [
        ([[0, 1], [1, 10]], {"n_examples": 10}, "out of range"),
        ([[0, -1]], {}, "out of range"),
        ([[0, 1, 1]], {}, "duplicate"),
        ([[]], {}, "empty"),
        ([], {}, "non-empty"),
        ([[[0, 1]]], {}, "1-D"),
    ],
)
def test_overlap_matrix_rejects_bad_indices(selections, kwargs, message):
    with pytest.raises(ValueError, match=message):
        overlap_matrix(selections, **kwargs)


def test_overlap_matrix_rejects_selections_from_different_pools():
    s1 = Selection(np.array([0, 1]), meta={"n_examples": 10})
    s2 = Selection(np.array([0, 1]), meta={"n_examples": 12})
    with pytest.raises(ValueError, match="different sizes"):
        overlap_matrix([s1, s2])


def test_overlap_matrix_checks_range_against_recorded_pool_size():
    s1 = Selection(np.array([0, 1]), meta={"n_examples": 5})
    with pytest.raises(ValueError, match="n_examples=5"):
        overlap_matrix([s1, [3, 7]])


def test_overlap_matrix_rejects_non_integer_indices():
    with pytest.raises(TypeError, match="integer"):
        overlap_matrix([[0.5, 1.0]])


def test_random_overlap_expectation_is_budget_fraction():
    assert random_overlap_expectation(180, 600) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="k=7"):
        random_overlap_expectation(7, 5)
    with pytest.raises(TypeError):
        random_overlap_expectation(0.5, 5)


def test_overlap_of_random_subsets_matches_expectation_over_many_seeds():
    n, k = 600, 180
    rng = np.random.default_rng(0)
    values = [
        overlap_matrix([rng.choice(n, k, replace=False), rng.choice(n, k, replace=False)])[0, 1]
        for _ in range(400)
    ]
    # std of one draw is about sqrt(k (k/n)(1-k/n)(n-k)/(n-1)) / k ~ 0.03; of the mean ~ 0.0015
    assert np.mean(values) == pytest.approx(random_overlap_expectation(k, n), abs=0.006)


def test_rank_correlation_hand_example():
    a = [1.0, 2.0, 3.0, 4.0, 5.0]
    b = [5.0, 6.0, 7.0, 8.0, 7.0]  # ranks 1, 2, 3.5, 5, 3.5
    c = [5.0, 4.0, 3.0, 2.0, 1.0]
    out = rank_correlation([a, b, c])
    # d = ranks(a) - ranks(b) = (0, 0, -0.5, -1, 1.5); with ties use Pearson on ranks:
    ra, rb = np.array([1, 2, 3, 4, 5.0]), np.array([1, 2, 3.5, 5, 3.5])
    expected_ab = np.corrcoef(ra, rb)[0, 1]
    assert out[0, 1] == pytest.approx(expected_ab)
    assert out[0, 1] == pytest.approx(0.8207826816681233)
    assert out[0, 2] == pytest.approx(-1.0)
    np.testing.assert_allclose(np.diag(out), 1.0)
    np.testing.assert_allclose(out, out.T)


def test_rank_correlation_of_two_arrays_is_a_matrix():
    out = rank_correlation([np.array([1, 2, 3]), np.array([3, 2, 1])])
    np.testing.assert_allclose(out, [[1.0, -1.0], [-1.0, 1.0]])


def test_rank_correlation_constant_vector_gives_nan_and_warns():
    with pytest.warns(RuntimeWarning, match=r"\[1\] are constant"):
        out = rank_correlation([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0], [3.0, 1.0, 2.0]])
    assert np.isnan(out[1]).all() and np.isnan(out[:, 1]).all()
    assert out[0, 0] == 1.0 and out[0, 2] == pytest.approx(-0.5)


def test_rank_correlation_uses_selection_scores_and_checks_lengths():
    s = Selection(np.array([0]), scores=np.array([0.1, 0.2, 0.3]))
    assert rank_correlation([s, [1, 2, 3]])[0, 1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same length"):
        rank_correlation([[1, 2, 3], [1, 2]])
    with pytest.raises(ValueError, match="without scores"):
        rank_correlation([Selection(np.array([0])), [1, 2]])
    with pytest.raises(ValueError, match="NaN"):
        rank_correlation([[1, np.nan, 3], [1, 2, 3]])


def test_label_distribution_counts():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    frame = label_distribution([0, 3, 4, 9], labels, classes=[0, 1, 2, 3])
    assert isinstance(frame, pd.DataFrame)
    assert frame["n_selected"].tolist() == [1, 2, 1, 0]
    assert frame["n_total"].tolist() == [3, 2, 5, 0]
    np.testing.assert_allclose(frame["frac_selected"], [0.25, 0.5, 0.25, 0.0])
    np.testing.assert_allclose(frame["frac_total"], [0.3, 0.2, 0.5, 0.0])
    np.testing.assert_allclose(frame["kept_rate"][:3], [1 / 3, 1.0, 0.2])
    assert np.isnan(frame["kept_rate"].iloc[3])
    assert frame.index.tolist() == [0, 1, 2, 3]


def test_label_distribution_string_labels_default_classes_and_selection_input():
    frame = label_distribution(Selection(np.array([1, 2])), ["b", "a", "a", "b"])
    assert frame.index.tolist() == ["a", "b"]
    assert frame["n_selected"].tolist() == [2, 0]


def test_label_distribution_errors():
    with pytest.raises(ValueError, match="out of range"):
        label_distribution([0, 4], [0, 1, 0, 1])
    with pytest.raises(ValueError, match="not in classes"):
        label_distribution([0], [0, 1, 2], classes=[0, 1])
    with pytest.raises(ValueError, match="1-D"):
        label_distribution([0], [[0, 1]])
