"""Square-root class budgets (``sqrt_budgets``, ``balance="sqrt"``): exact totals, caps, hand cases.

The definition (balancing.py): real shares ``min(n_c, t * sqrt(n_c))`` with ``t`` solved so they sum to
``k`` (capped classes keep ``n_c``, ``t`` is solved again on the rest), floors, then the missing examples
to the uncapped classes with the largest fractional parts (ties: larger class, then class order).

Not asserted: that a class's budget never falls when ``k`` grows. Largest-remainder rounding does not
have that property (the Alabama paradox): counts 29/35/3 give [1, 1, 1] at k=3 but [2, 2, 0] at k=4.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import datadiet
from datadiet.errors import ParameterError
from datadiet.selection.balancing import sqrt_budgets, stratified_budgets


def budgets(sizes: list[int], k: int) -> list[int]:
    return sqrt_budgets(np.repeat(np.arange(len(sizes)), sizes), k)[1].tolist()


@pytest.mark.parametrize(
    ("sizes", "k", "expected"),
    [
        # sqrt = 10, 5, 2 (sum 17): t = 1, shares exactly 10, 5, 2.
        ([100, 25, 4], 17, [10, 5, 2]),
        # t = 60/17: class 2's share 7.06 > 4, capped at 4; t = 56/15 on the rest: 37.33, 18.67 -> 37, 18;
        # one left, to the larger fraction (class 1).
        ([100, 25, 4], 60, [37, 19, 4]),
        # sqrt = 3, 2, 1, t = 1/2: 1.5, 1.0, 0.5 -> 1, 1, 0; one left, fractions .5 and .5 tie between
        # classes 0 and 2: the larger class (0) wins.
        ([9, 4, 1], 3, [2, 1, 0]),
        # t = 1: class 2's share 1 reaches its size (capped); t = 5/5 on the rest: 3, 2.
        ([9, 4, 1], 6, [3, 2, 1]),
        # sqrt = 4, 4, 1, t = 5/9: 2.22, 2.22, 0.56 -> 2, 2, 0; one left, to the largest fraction (class 2).
        # (stratified: 2.42, 2.42, 0.15 -> [3, 2, 0], the rare class gets nothing.)
        ([16, 16, 1], 5, [2, 2, 1]),
        # equal classes: 1.5, 1.5; the tie goes by class order.
        ([4, 4], 3, [2, 1]),
        # sqrt = 1, 1, 10, t = 7/12: 0.58, 0.58, 5.83 -> 0, 0, 5; two left: class 2 (.83), then the tie
        # between the equal classes 0 and 1 by class order.
        ([1, 1, 100], 7, [1, 0, 6]),
        # t = 1: classes 0 and 1 reach their size and are capped; t = 10/10 on class 2.
        ([1, 1, 100], 12, [1, 1, 10]),
        ([5], 3, [3]),
        ([7, 2], 0, [0, 0]),
        ([7, 2, 30], 39, [7, 2, 30]),
    ],
)
def test_sqrt_budgets_hand_cases(sizes, k, expected):
    assert budgets(sizes, k) == expected


def test_sqrt_budgets_returns_the_sorted_classes_of_any_label_values():
    labels = np.array([7] * 4 + [-2] * 16 + [3] * 1)
    classes, k_c = sqrt_budgets(labels, 5)
    assert classes.tolist() == [-2, 3, 7]
    # sizes 16, 1, 4 (sqrt 4, 1, 2), t = 5/7: 2.86, 0.71, 1.43 -> 2, 0, 1; two left, fractions .86 and .71
    assert k_c.tolist() == [3, 1, 1]


@pytest.mark.parametrize("k", [-1, 22])
def test_sqrt_budgets_refuses_a_budget_outside_zero_to_n(k):
    with pytest.raises(ParameterError, match=rf"budget={k} should be in \[0, n_examples=21\]"):
        sqrt_budgets(np.repeat([0, 1], [20, 1]), k)


def test_sqrt_budgets_sum_to_k_and_never_exceed_class_sizes_for_every_k(rng):
    for _ in range(60):
        sizes = rng.integers(1, 50, size=rng.integers(1, 7)).tolist()
        for k in range(sum(sizes) + 1):  # k = 0 and k = n included
            k_c = budgets(sizes, k)
            assert sum(k_c) == k
            assert all(0 <= b <= s for b, s in zip(k_c, sizes, strict=True))
        assert budgets(sizes, sum(sizes)) == sizes


sizes_strategy = st.lists(st.integers(1, 400), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(sizes=sizes_strategy, data=st.data())
def test_sqrt_budgets_sum_to_k_within_class_sizes(sizes, data):
    k = data.draw(st.integers(0, sum(sizes)))
    k_c = budgets(sizes, k)
    assert sum(k_c) == k
    assert all(0 <= b <= s for b, s in zip(k_c, sizes, strict=True))


@settings(max_examples=150, deadline=None)
@given(size=st.integers(1, 300), n_classes=st.integers(1, 8), data=st.data())
def test_sqrt_budgets_on_equal_classes_are_the_stratified_budgets(size, n_classes, data):
    labels = np.repeat(np.arange(n_classes), size)
    k = data.draw(st.integers(0, len(labels)))
    assert sqrt_budgets(labels, k)[1].tolist() == stratified_budgets(labels, k)[1].tolist()


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(1, 400), min_size=2, max_size=6), data=st.data())
def test_sqrt_budgets_give_rarer_classes_a_larger_real_share_up_to_rounding(sizes, data):
    """The real share per row, ``t / sqrt(n_c)`` (or 1 when capped), falls with class size; rounding moves
    a budget by less than one example, so ``(k_rare + 1) / n_rare > (k_big - 1) / n_big``."""
    k = data.draw(st.integers(0, sum(sizes)))
    k_c = budgets(sizes, k)
    rare, big = int(np.argmin(sizes)), int(np.argmax(sizes))
    assert (k_c[rare] + 1) / sizes[rare] > (k_c[big] - 1) / sizes[big]


@pytest.mark.parametrize(("k", "expected"), [(17, [10, 5, 2]), (30, [18, 9, 3])])
def test_the_rare_class_keeps_a_larger_fraction_of_its_rows_than_the_big_class(k, expected):
    # k=30: t = 30/17 -> 17.6, 8.8, 3.5 -> 17, 8, 3, the two left to the fractions .65 and .82.
    k_c = budgets([100, 25, 4], k)
    assert k_c == expected
    assert k_c[2] / 4 > k_c[1] / 25 > k_c[0] / 100
    stratified = stratified_budgets(np.repeat([0, 1, 2], [100, 25, 4]), k)[1].tolist()
    assert k_c[2] > stratified[2]  # more than its proportional share


@pytest.mark.parametrize("algorithm", ["random", "hard_to_learn"])  # per-class runs, and per-class top-k
def test_select_with_sqrt_balance_keeps_the_sqrt_budget_of_each_class(algorithm, rng):
    labels = np.repeat([2, 0, 1], [100, 25, 4])
    rng.shuffle(labels)
    values = rng.random((len(labels), 3))
    sel = datadiet.select(algorithm, values, 17, labels=labels, balance="sqrt", seed=3)
    assert len(sel.indices) == 17 == len(np.unique(sel.indices))
    classes, k_c = sqrt_budgets(labels, 17)
    kept = np.bincount(labels[sel.indices], minlength=3)
    assert kept[classes].tolist() == k_c.tolist() == [5, 2, 10]  # classes 0, 1, 2 hold 25, 4, 100 rows
    assert sel.meta["balance"] == "sqrt"


def test_sqrt_balance_needs_labels():
    with pytest.raises(ValueError, match="needs labels"):
        datadiet.select("random", np.zeros((5, 2)), 2, balance="sqrt")
