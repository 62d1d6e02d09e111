"""Contract checks run over every registered selector (the sklearn `check_estimator` idea).

Inputs come from each selector's declarations (``input_ndim``, ``input_values``, ``needs_labels``,
``needs_val``; :func:`tests.helpers.selector_inputs`), and every declared ``ndim`` is checked, so a newly
registered selector is covered without an edit here or in ``tests/helpers.py``:
``test_a_new_selector_is_covered_from_its_declarations`` registers one and runs every check on it.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator

import numpy as np
import pytest

import datadiet
from datadiet import SELECTORS
from datadiet._core.checks import check_number
from datadiet.errors import ParameterError
from datadiet.selection.base import ScoreSelector
from tests.helpers import N, assert_same_selection, declared_cases, inputs_for, selector_inputs

ALL = SELECTORS.names()
CASES = declared_cases()
BUDGETS = [1, 7, 0.3, 0.5, 1.0, N]
BAD_BUDGETS = [0, N + 1, -3, 1.5, 0.0]
# Score is a function of the row alone, so permuting rows permutes the scores.
ROW_LOCAL = ["hard_to_learn", "ambiguous", "el2n", "self_influence", "less"]


def _ids(case: tuple[str, int]) -> str:
    return f"{case[0]}-{case[1]}d"


def _score_based(name: str) -> bool:
    return issubclass(SELECTORS.get(name), ScoreSelector)


# --- the checks (each takes a registered name and a declared ndim) ------------------------------------------
def check_keeps_exactly_k_distinct_sorted_indices(name: str, ndim: int, budget: int | float) -> None:
    values, kwargs = inputs_for(name, ndim=ndim)
    sel = datadiet.select(name, values, budget, seed=3, **kwargs)
    k = datadiet.resolve_budget(budget, N)
    assert sel.budget == k
    assert len(np.unique(sel.indices)) == k
    assert np.all(np.diff(sel.indices) > 0)
    assert sel.indices.min() >= 0 and sel.indices.max() < N
    assert sel.meta["algorithm"] == name and sel.meta["budget"] == k and sel.meta["seed"] == 3


def check_same_seed_same_selection(name: str, ndim: int) -> None:
    values, kwargs = inputs_for(name, ndim=ndim)
    a = datadiet.select(name, values, 0.3, seed=11, **kwargs)
    b = datadiet.select(name, values, 0.3, seed=11, **kwargs)
    np.testing.assert_array_equal(a.indices, b.indices)
    if a.scores is not None:
        np.testing.assert_array_equal(a.scores, b.scores)


def check_does_not_mutate_inputs(name: str, ndim: int) -> None:
    values, kwargs = inputs_for(name, ndim=ndim)
    before = values.copy()
    extra_before = {k: np.array(v, copy=True) for k, v in kwargs.items()}
    datadiet.select(name, values, 0.5, seed=0, **kwargs)
    np.testing.assert_array_equal(values, before)
    for key, value in kwargs.items():
        np.testing.assert_array_equal(value, extra_before[key])


def check_row_order_does_not_matter_once_mapped_back(name: str, ndim: int) -> None:
    values, kwargs = inputs_for(name, ndim=ndim)
    perm = np.random.default_rng(5).permutation(N)
    kwargs_perm = {k: (v[perm] if k == "labels" else v) for k, v in kwargs.items()}
    plain = datadiet.select(name, values, 0.3, **kwargs)
    shuffled = datadiet.select(name, values[perm], 0.3, **kwargs_perm)
    np.testing.assert_array_equal(np.sort(perm[shuffled.indices]), plain.indices)


def check_refuses_budget_out_of_range(name: str, ndim: int, budget: int | float) -> None:
    values, kwargs = inputs_for(name, ndim=ndim)
    with pytest.raises(ValueError, match="budget"):
        datadiet.select(name, values, budget, **kwargs)


def check_refuses_nan(name: str, ndim: int) -> None:
    values, kwargs = inputs_for(name, ndim=ndim)
    values = values.astype(float)
    values.flat[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        datadiet.select(name, values, 0.3, **kwargs)


def check_refuses_unknown_parameter(name: str, ndim: int) -> None:
    values, kwargs = inputs_for(name, ndim=ndim)
    with pytest.raises(ValueError, match="Unknown parameter"):
        datadiet.select(name, values, 0.3, bogus=1, **kwargs)


def check_stratified_balancing_meets_per_class_budgets(name: str, ndim: int) -> None:
    values, kwargs = inputs_for(name, ndim=ndim)
    labels = kwargs.pop("labels", np.random.default_rng(2).integers(0, 3, size=N))
    sel = datadiet.select(name, values, 0.5, labels=labels, balance="stratified", **kwargs)
    _, k_c = datadiet.selection.balancing.stratified_budgets(labels, 30)
    np.testing.assert_array_equal(np.bincount(labels[sel.indices], minlength=3), k_c)


def check_calibration_alpha_one_equals_plain_method(name: str, ndim: int) -> None:
    values, kwargs = inputs_for(name, ndim=ndim)
    plain = datadiet.select(name, values, 0.2, seed=4, **kwargs)
    calibrated = datadiet.select(name, values, 0.2, seed=4, calibrate=1.0, **kwargs)
    np.testing.assert_array_equal(plain.indices, calibrated.indices)
    assert calibrated.meta["calibrate"] == {"alpha": 1.0, "weighting": "none"}


def check_get_params_round_trip(name: str, ndim: int, params: dict[str, typing.Any]) -> None:
    """``type(s)(**s.get_params())`` has equal params and selects the same, for the same seed."""
    selector = SELECTORS.create(name, **params)
    assert {key: selector.get_params()[key] for key in params} == params  # stored unchanged
    clone = type(selector)(**selector.get_params())
    assert clone.get_params() == selector.get_params()
    values, kwargs = inputs_for(name, ndim=ndim)
    a, b = (s.select(values, 0.3, seed=9, **kwargs) for s in (selector, clone))
    assert_same_selection(a, b)


def other_values(name: str) -> Iterator[dict[str, typing.Any]]:
    """One non-default value per parameter, derived from its declared default and annotation.

    A ``Literal`` gives its other options, a bool its negation, an int ``default + 1``, a float
    ``default + 0.25``, an optional int (default None) 3. Parameters whose valid values depend on the data
    (optional sequences: one weight per checkpoint, one group per validation row) keep their default.
    """
    cls = SELECTORS.get(name)
    hints = typing.get_type_hints(cls.__init__)
    for key, default in SELECTORS.parameters(name).items():
        hint = hints.get(key)
        if typing.get_origin(hint) is typing.Literal:
            yield from ({key: option} for option in typing.get_args(hint) if option != default)
        elif isinstance(default, bool):
            yield {key: not default}
        elif isinstance(default, int):
            yield {key: default + 1}
        elif isinstance(default, float):
            yield {key: default + 0.25}
        elif default is None and hint == int | None:
            yield {key: 3}


PARAM_CASES = [(name, params) for name in ALL for params in [{}, *other_values(name)]]


# --- the tests over every registered selector ---------------------------------------------------------------
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


def test_every_declared_input_shape_of_every_selector_is_checked():
    assert {name for name, _ in CASES} == set(ALL)
    for name in ALL:
        assert {ndim for case, ndim in CASES if case == name} == set(SELECTORS.get(name).input_ndim)


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("budget", BUDGETS)
def test_selector_keeps_exactly_k_distinct_sorted_indices(case, budget):
    check_keeps_exactly_k_distinct_sorted_indices(*case, budget)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_selector_same_seed_same_selection(case):
    check_same_seed_same_selection(*case)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_selector_does_not_mutate_inputs(case):
    check_does_not_mutate_inputs(*case)


@pytest.mark.parametrize("case", declared_cases(ROW_LOCAL), ids=_ids)
def test_row_order_does_not_matter_once_mapped_back(case):
    check_row_order_does_not_matter_once_mapped_back(*case)


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("budget", BAD_BUDGETS)
def test_selector_refuses_budget_out_of_range(case, budget):
    check_refuses_budget_out_of_range(*case, budget)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_selector_refuses_nan(case):
    check_refuses_nan(*case)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_selector_refuses_unknown_parameter(case):
    check_refuses_unknown_parameter(*case)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_stratified_balancing_meets_per_class_budgets(case):
    check_stratified_balancing_meets_per_class_budgets(*case)


@pytest.mark.parametrize("case", [c for c in CASES if _score_based(c[0])], ids=_ids)
def test_calibration_alpha_one_equals_plain_method(case):
    check_calibration_alpha_one_equals_plain_method(*case)


@pytest.mark.parametrize(("name", "params"), PARAM_CASES, ids=[f"{n}-{p}" for n, p in PARAM_CASES])
def test_get_params_round_trip_gives_equal_params_and_the_same_selection(name, params):
    check_get_params_round_trip(name, max(SELECTORS.get(name).input_ndim), params)


def test_non_default_parameter_values_are_drawn_for_every_declared_kind():
    drawn = {name: [params for case, params in PARAM_CASES if case == name and params] for name in ALL}
    assert drawn["ccs"] == [{"beta": 0.25}, {"n_strata": 51}, {"hard_end": "low"}]
    assert drawn["prototypicality"] == [{"n_clusters": 3}, {"metric": "euclidean"}, {"keep": "easy"}]
    assert [{"keep": "easy"}, {"keep": "random"}] == [p for p in drawn["semdedup"] if "keep" in p]
    assert {"normalize": False} in drawn["less"]


# --- a new selector, registered for one test ----------------------------------------------------------------
class MeanProbability(ScoreSelector):
    """A throwaway plugin declaring what no built-in declares together: 1-D or 3-D probabilities, with
    labels and a validation set, and one parameter. It refuses every input that breaks a declaration."""

    reads = "an (n_examples,) or (n_examples, R, K) array of probabilities"
    input_ndim = (1, 3)
    input_values = "probabilities"
    needs_labels = True
    needs_val = True
    scale_free = False

    def __init__(self, *, shift: float = 0.5) -> None:
        self.shift = shift

    def validate_params(self, n: int) -> None:
        check_number(type(self).__name__, "shift", self.shift, integer=False, low=0)

    def _scores(self, values, *, labels, val, rng):
        if values.min() < 0 or values.max() > 1:
            raise ParameterError(f"'{self.name}' reads probabilities in [0, 1].")
        assert labels is not None and val is not None  # the base class refuses inputs without them
        rows = values.reshape(len(values), -1).mean(axis=1)
        return np.abs(rows - val.mean() - self.shift) + labels / 10


NEW = "mean_probability_plugin"


@pytest.fixture
def new_selector() -> Iterator[str]:
    """``MeanProbability`` registered as ``NEW`` for the test, and unregistered after it."""
    assert NEW not in SELECTORS
    SELECTORS.register(NEW)(MeanProbability)
    try:
        yield NEW
    finally:
        SELECTORS.unregister(NEW)
    assert NEW not in SELECTORS


def test_a_new_selector_is_covered_from_its_declarations(new_selector):
    cases = declared_cases([new_selector])
    assert cases == [(new_selector, 1), (new_selector, 3)]
    assert (new_selector, 3) in declared_cases()  # the suite's own case list picks it up
    for case in cases:
        values, kwargs = inputs_for(case[0], ndim=case[1])
        assert values.ndim == case[1] and 0 <= values.min() and values.max() <= 1
        assert set(kwargs) == {"labels", "val"}
        for budget in BUDGETS:
            check_keeps_exactly_k_distinct_sorted_indices(*case, budget)
        for budget in BAD_BUDGETS:
            check_refuses_budget_out_of_range(*case, budget)
        for check in (
            check_same_seed_same_selection,
            check_does_not_mutate_inputs,
            check_row_order_does_not_matter_once_mapped_back,
            check_refuses_nan,
            check_refuses_unknown_parameter,
            check_stratified_balancing_meets_per_class_budgets,
            check_calibration_alpha_one_equals_plain_method,
        ):
            check(*case)
        for params in [{}, *other_values(new_selector)]:
            check_get_params_round_trip(*case, params)
    assert list(other_values(new_selector)) == [{"shift": 0.75}]


def test_a_new_selector_refuses_inputs_that_ignore_its_declarations(new_selector):
    """What makes the built inputs valid is the declarations: without them, the selector refuses."""
    values, kwargs = inputs_for(new_selector, ndim=3)
    with pytest.raises(ValueError, match="needs labels"):
        datadiet.select(new_selector, values, 3, val=kwargs["val"])
    with pytest.raises(ValueError, match="needs a validation representation"):
        datadiet.select(new_selector, values, 3, labels=kwargs["labels"])
    with pytest.raises(ValueError, match="reads an"):
        datadiet.select(new_selector, values[:, 0], 3, **kwargs)  # 2-D is not declared
    real = type("Real", (MeanProbability,), {"input_values": "real"})
    signed, real_kwargs = selector_inputs(real, ndim=3)  # real 3-D input is signed
    with pytest.raises(ValueError, match="reads probabilities"):
        datadiet.select(new_selector, signed, 3, **real_kwargs)


@pytest.mark.parametrize("key", ["name", "algorithm"])
def test_a_parameter_named_like_the_registry_arguments_is_an_unknown_parameter(key):
    """``name``/``algorithm`` in the parameters reach the unknown-parameter check (no TypeError)."""
    import datadiet

    with pytest.raises(ParameterError, match=rf"Unknown parameter\(s\) \['{key}'\] for selector 'random'"):
        SELECTORS.create("random", **{key: None})
    with pytest.raises(ParameterError, match=rf"Unknown parameter\(s\) \['{key}'\]"):
        datadiet.build_selector("random", **{key: None})


@pytest.mark.parametrize(
    ("name", "params"),
    [("ccs", {"beta": "0.1"}), ("ccs", {"n_strata": 2.5}), ("less", {"normalize": "false"})],
)
def test_a_parameter_of_the_wrong_type_is_a_type_error_that_is_also_a_value_error(name, params):
    from datadiet.errors import ParameterTypeError

    values, kwargs = inputs_for(name)
    with pytest.raises(ParameterTypeError, match="parameter of") as caught:
        SELECTORS.create(name, **params).select(values, 5, **kwargs)
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, ValueError)


def test_a_calibration_alpha_of_the_wrong_type_is_a_type_error():
    import datadiet
    from datadiet.errors import ParameterTypeError

    values, kwargs = inputs_for("hard_to_learn")
    with pytest.raises(ParameterTypeError, match="'alpha' parameter of calibration"):
        datadiet.select("hard_to_learn", values, 5, calibrate="0.5", **kwargs)  # type: ignore[arg-type]
