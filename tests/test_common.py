"""Contract checks run over every registered selector (the sklearn `check_estimator` idea)."""

from __future__ import annotations

import numpy as np
import pytest

import datadiet
from datadiet import SELECTORS
from datadiet.selection.base import ScoreSelector
from tests.helpers import N, inputs_for

ALL = SELECTORS.names()
# Score is a function of the row alone, so permuting rows permutes the scores.
ROW_LOCAL = ["hard_to_learn", "ambiguous", "el2n", "self_influence", "less"]


def test_registry_holds_every_documented_algorithm():
    expected = {
        "random",
        "hard_to_learn",
        "ambiguous",
        "forgetting",
        "el2n",
        "self_influence",
        "prototypicality",
        "semdedup",
        "s2l",
        "less",
        "ccs",
    }
    assert expected <= set(ALL)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("budget", [1, 7, 0.3, 0.5, 1.0, N])
def test_selector_keeps_exactly_k_distinct_sorted_indices(name, budget):
    values, kwargs = inputs_for(name)
    sel = datadiet.select(name, values, budget, seed=3, **kwargs)
    k = datadiet.resolve_budget(budget, N)
    assert sel.budget == k
    assert len(np.unique(sel.indices)) == k
    assert np.all(np.diff(sel.indices) > 0)
    assert sel.indices.min() >= 0 and sel.indices.max() < N
    assert sel.meta["algorithm"] == name and sel.meta["budget"] == k and sel.meta["seed"] == 3


@pytest.mark.parametrize("name", ALL)
def test_selector_same_seed_same_selection(name):
    values, kwargs = inputs_for(name)
    a = datadiet.select(name, values, 0.3, seed=11, **kwargs)
    b = datadiet.select(name, values, 0.3, seed=11, **kwargs)
    np.testing.assert_array_equal(a.indices, b.indices)
    if a.scores is not None:
        np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.parametrize("name", ALL)
def test_selector_does_not_mutate_inputs(name):
    values, kwargs = inputs_for(name)
    before = values.copy()
    extra_before = {k: np.array(v, copy=True) for k, v in kwargs.items()}
    datadiet.select(name, values, 0.5, seed=0, **kwargs)
    np.testing.assert_array_equal(values, before)
    for key, value in kwargs.items():
        np.testing.assert_array_equal(value, extra_before[key])


@pytest.mark.parametrize("name", ROW_LOCAL)
def test_row_order_does_not_matter_once_mapped_back(name):
    values, kwargs = inputs_for(name)
    perm = np.random.default_rng(5).permutation(N)
    kwargs_perm = {k: (v[perm] if k == "labels" else v) for k, v in kwargs.items()}
    plain = datadiet.select(name, values, 0.3, **kwargs)
    shuffled = datadiet.select(name, values[perm], 0.3, **kwargs_perm)
    np.testing.assert_array_equal(np.sort(perm[shuffled.indices]), plain.indices)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("budget", [0, N + 1, -3, 1.5, 0.0])
def test_selector_refuses_budget_out_of_range(name, budget):
    values, kwargs = inputs_for(name)
    with pytest.raises(ValueError, match="budget"):
        datadiet.select(name, values, budget, **kwargs)


@pytest.mark.parametrize("name", ALL)
def test_selector_refuses_nan(name):
    values, kwargs = inputs_for(name)
    values = values.astype(float)
    values.flat[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        datadiet.select(name, values, 0.3, **kwargs)


@pytest.mark.parametrize("name", ALL)
def test_selector_refuses_unknown_parameter(name):
    values, kwargs = inputs_for(name)
    with pytest.raises(ValueError, match="Unknown parameter"):
        datadiet.select(name, values, 0.3, bogus=1, **kwargs)


@pytest.mark.parametrize("name", ALL)
def test_stratified_balancing_meets_per_class_budgets(name):
    values, kwargs = inputs_for(name)
    labels = kwargs.pop("labels", np.random.default_rng(2).integers(0, 3, size=N))
    sel = datadiet.select(name, values, 0.5, labels=labels, balance="stratified", **kwargs)
    _, k_c = datadiet.selection.balancing.stratified_budgets(labels, 30)
    np.testing.assert_array_equal(np.bincount(labels[sel.indices], minlength=3), k_c)


@pytest.mark.parametrize("name", [n for n in ALL if issubclass(SELECTORS.get(n), ScoreSelector)])
def test_calibration_alpha_one_equals_plain_method(name):
    values, kwargs = inputs_for(name)
    plain = datadiet.select(name, values, 0.2, seed=4, **kwargs)
    calibrated = datadiet.select(name, values, 0.2, seed=4, calibrate=1.0, **kwargs)
    np.testing.assert_array_equal(plain.indices, calibrated.indices)
    assert calibrated.meta["calibrate"] == {"alpha": 1.0, "weighting": "none"}
