"""Hypothesis properties of every registered selector (a new selector is covered by registering it).

For any data of the shape and values a selector declares (``tests.helpers.inputs_for``), any n <= 60 and
any budget (an int in [1, n] or a fraction in [1/n, 1]):

- it keeps exactly ``k = resolve_budget(budget, n)`` distinct, sorted indices in ``[0, n)``;
- the same seed gives the same ``Selection`` (indices, scores, weights, meta);
- ``balance="stratified"`` keeps exactly ``stratified_budgets(labels, k)`` examples per class;
- calibration with ``alpha=1`` (the share of the budget taken by the scores) equals the plain method;
- a selector whose definition is scale-free (``scale_free``) selects the same indices, bit for bit, when
  its input (and validation input) is multiplied by a power of two from ``2**-900`` to ``2**900`` (float64)
  or ``2**-100`` to ``2**100`` (float32): squares of such values overflow or underflow, so this checks
  that no selector computes with unscaled squares;
- complex input is refused by every selector (its imaginary part would be dropped).

Examples are derandomized and no example database is kept, so every run checks the same cases.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datadiet
from datadiet import SELECTORS
from datadiet.selection.balancing import stratified_budgets
from datadiet.selection.base import ScoreSelector
from datadiet.selection.kmeans import NClustersClampedWarning
from tests.helpers import assert_same_selection, inputs_for

ALL = SELECTORS.names()
SCORE_BASED = [name for name in ALL if issubclass(SELECTORS.get(name), ScoreSelector)]
SCALE_FREE = [name for name in ALL if SELECTORS.get(name).scale_free]
PROPERTY = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def problems(draw: st.DrawFn) -> tuple[int, int, int | float, int]:
    """(n, data seed, budget, selection seed)."""
    n = draw(st.integers(min_value=4, max_value=60))
    budget = draw(
        st.one_of(
            st.integers(min_value=1, max_value=n),
            st.floats(min_value=1 / n, max_value=1.0, allow_nan=False, allow_infinity=False),
        )
    )
    return n, draw(st.integers(0, 2**16)), budget, draw(st.integers(0, 2**16))


def run(name: str, n: int, data_seed: int, budget: int | float, seed: int, **options) -> datadiet.Selection:
    values, kwargs = inputs_for(name, n=n, seed=data_seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NClustersClampedWarning)  # k-means on tiny n lowers n_clusters
        return datadiet.select(name, values, budget, seed=seed, **kwargs, **options)


def labels_for(name: str, n: int, data_seed: int) -> np.ndarray:
    """The labels the selector already reads (``needs_labels``), else three seeded classes."""
    _, kwargs = inputs_for(name, n=n, seed=data_seed)
    return kwargs.get("labels", np.random.default_rng(data_seed + 1).integers(0, 3, size=n))


@pytest.mark.parametrize("name", ALL)
@PROPERTY
@given(problem=problems())
def test_selector_keeps_exactly_k_distinct_sorted_indices_in_range(name, problem):
    n, data_seed, budget, seed = problem
    sel = run(name, n, data_seed, budget, seed)
    k = datadiet.resolve_budget(budget, n)
    assert sel.indices.shape == (k,) and sel.budget == k == sel.meta["budget"]
    assert np.issubdtype(sel.indices.dtype, np.integer)
    assert np.all(np.diff(sel.indices) > 0), "indices must be sorted and distinct"
    assert sel.indices[0] >= 0 and sel.indices[-1] < n
    if sel.scores is not None:
        assert sel.scores.shape == (n,)
    if sel.weights is not None:
        assert sel.weights.shape == (k,)


@pytest.mark.parametrize("name", ALL)
@PROPERTY
@given(problem=problems())
def test_selector_same_seed_gives_identical_selection(name, problem):
    n, data_seed, budget, seed = problem
    first = run(name, n, data_seed, budget, seed)
    again = run(name, n, data_seed, budget, seed)
    assert_same_selection(first, again)


@pytest.mark.parametrize("name", ALL)
@PROPERTY
@given(problem=problems())
def test_stratified_balancing_meets_per_class_budgets_exactly(name, problem):
    n, data_seed, budget, seed = problem
    labels = labels_for(name, n, data_seed)
    options = {} if SELECTORS.get(name).needs_labels else {"labels": labels}  # inputs already carry them
    sel = run(name, n, data_seed, budget, seed, balance="stratified", **options)
    classes, k_c = stratified_budgets(labels, datadiet.resolve_budget(budget, n))
    kept = labels[sel.indices]
    np.testing.assert_array_equal([np.sum(kept == c) for c in classes], k_c)


@pytest.mark.parametrize("name", SCORE_BASED)
@PROPERTY
@given(problem=problems(), weighting=st.sampled_from(["none", "unbiased"]))
def test_calibration_with_alpha_one_equals_the_plain_method(name, problem, weighting):
    n, data_seed, budget, seed = problem
    plain = run(name, n, data_seed, budget, seed)
    calibrated = run(name, n, data_seed, budget, seed, calibrate=1.0, weighting=weighting)
    np.testing.assert_array_equal(calibrated.indices, plain.indices)
    np.testing.assert_array_equal(calibrated.scores, plain.scores)
    assert calibrated.weights is None  # alpha=1 leaves no random part to reweight


@pytest.mark.parametrize("name", SCALE_FREE)
@PROPERTY
@given(
    problem=problems(),
    dtype_and_exponent=st.one_of(
        st.tuples(st.just(np.float64), st.sampled_from([-900, -500, -170, 150, 500, 900])),
        st.tuples(st.just(np.float32), st.sampled_from([-100, -60, 60, 100])),
    ),
)
def test_scale_free_selector_selects_the_same_indices_after_a_power_of_two_rescaling(
    name, problem, dtype_and_exponent
):
    n, data_seed, budget, seed = problem
    dtype, exponent = dtype_and_exponent
    values, kwargs = inputs_for(name, n=n, seed=data_seed)
    values = np.asarray(values, dtype=dtype)
    if "val" in kwargs:
        kwargs["val"] = np.asarray(kwargs["val"], dtype=dtype)
    factor = dtype(2.0**exponent)
    scaled_kwargs = {**kwargs, **({"val": kwargs["val"] * factor} if "val" in kwargs else {})}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # clamped n_clusters on tiny n; rescaled-score notices
        plain = datadiet.select(name, values, budget, seed=seed, **kwargs)
        scaled = datadiet.select(name, values * factor, budget, seed=seed, **scaled_kwargs)
    np.testing.assert_array_equal(scaled.indices, plain.indices)


@pytest.mark.parametrize("name", ALL)
def test_every_selector_refuses_complex_input_naming_the_dtype(name):
    values, kwargs = inputs_for(name)
    with pytest.raises(TypeError, match=r"complex dtype complex(64|128); datadiet selects on real values"):
        datadiet.select(name, np.asarray(values) + 1j, 3, **kwargs)


def test_every_registered_selector_is_covered():
    """The properties loop over the registry, so a new selector needs no edit here."""
    assert set(ALL) >= {"random", "less", "s2l", "ccs", "prototypicality", "semdedup"}
    assert set(SCORE_BASED) <= set(ALL) and SCORE_BASED
    assert {"less", "self_influence", "semdedup", "prototypicality", "s2l", "ccs"} <= set(SCALE_FREE)
