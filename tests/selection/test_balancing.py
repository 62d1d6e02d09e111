from __future__ import annotations

import numpy as np
import pytest

import datadiet
from datadiet.selection.balancing import stratified_budgets


@pytest.mark.parametrize(
    ("sizes", "k", "expected"),
    [
        # 10 examples, k=5: exact shares 3.0, 1.5, 0.5 -> floors 3,1,0; remainders (k*n_c mod n) 0,5,5:
        # the two tied remainders go to the larger class first -> [3, 2, 0].
        ([6, 3, 1], 5, [3, 2, 0]),
        # 69:1 imbalance (Reuters-like), k=7 of 70: 6.9 -> 6, 0.1 -> 0; one left, larger remainder -> class 0.
        ([69, 1], 7, [7, 0]),
        ([5, 5, 5], 4, [2, 1, 1]),
        ([2, 3], 5, [2, 3]),
    ],
)
def test_stratified_budgets_hand_cases(sizes, k, expected):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    _, k_c = stratified_budgets(labels, k)
    assert k_c.tolist() == expected
    assert k_c.sum() == k and np.all(k_c <= np.array(sizes))


def test_stratified_budgets_never_exceed_class_size_and_sum_to_k(rng):
    for _ in range(200):
        labels = rng.integers(0, rng.integers(1, 8), size=rng.integers(1, 80))
        k = int(rng.integers(0, len(labels) + 1))
        _, k_c = stratified_budgets(labels, k)
        assert k_c.sum() == k
        assert np.all(k_c <= np.bincount(labels)[np.unique(labels)])


def test_stratified_score_selector_keeps_top_within_each_class():
    # hard_to_learn keeps the lowest mean probability; class 0 = rows 0..3, class 1 = rows 4..5.
    p = np.array([[0.9], [0.1], [0.5], [0.3], [0.95], [0.2]])
    labels = np.array([0, 0, 0, 0, 1, 1])
    sel = datadiet.select("hard_to_learn", p, 3, labels=labels, balance="stratified")
    # k_c = [2, 1]: class 0 keeps rows 1 and 3, class 1 keeps row 5 (global top-3 would be 1, 5, 3 too, so
    # check a budget where they differ).
    assert sel.indices.tolist() == [1, 3, 5]
    sel = datadiet.select("hard_to_learn", p, 2, labels=labels, balance="stratified")  # k_c = [1, 1]
    assert sel.indices.tolist() == [1, 5]
    assert datadiet.select("hard_to_learn", p, 2).indices.tolist() == [1, 5]
    sel = datadiet.select("hard_to_learn", p, 4, labels=labels, balance="stratified")  # k_c = [3, 1]
    assert sel.indices.tolist() == [1, 2, 3, 5]
    assert sel.meta["balance"] == "stratified"


def test_stratified_needs_labels():
    with pytest.raises(ValueError, match="needs labels"):
        datadiet.select("random", np.zeros((5, 2)), 2, balance="stratified")


def test_unknown_balance_mode_lists_options():
    with pytest.raises(ValueError, match=r"'balance'.*\['none', 'stratified', 'sqrt'\]"):
        datadiet.select("random", np.zeros((5, 2)), 2, balance="equal")
