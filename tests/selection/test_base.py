from __future__ import annotations

import numpy as np
import pytest

from datadiet.selection.base import Selection, resolve_budget, top_k
from datadiet.selection.registry import Registry


@pytest.mark.parametrize(
    ("budget", "n", "k"),
    [
        (0.3, 600, 180),
        (0.29, 100, 29),
        (0.7, 10, 7),
        (1.0, 5, 5),
        (0.999, 1000, 999),
        (0.05, 39, 1),
        (12, 100, 12),
        (100, 100, 100),
        (np.int64(3), 10, 3),
        (np.float32(0.5), 10, 5),
    ],
)
def test_resolve_budget_floors_fractions_and_keeps_counts(budget, n, k):
    assert resolve_budget(budget, n) == k


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        (0, r"in \[1, n_examples=10\]"),
        (11, r"in \[1, n_examples=10\]"),
        (0.05, "floors to 0"),
        (1.5, r"fraction in \(0, 1\]"),
        (float("nan"), "fraction"),
        (-0.2, "fraction"),
    ],
)
def test_resolve_budget_refuses_bad_values_with_numbers(budget, message):
    with pytest.raises(ValueError, match=message):
        resolve_budget(budget, 10)


@pytest.mark.parametrize("budget", [True, "0.3", None, [3]])
def test_resolve_budget_refuses_wrong_types(budget):
    with pytest.raises(TypeError, match="budget"):
        resolve_budget(budget, 10)


def test_top_k_breaks_ties_by_lower_index():
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1, 0.5])
    assert top_k(scores, 1).tolist() == [1]
    assert top_k(scores, 3).tolist() == [0, 1, 3]
    assert top_k(scores, 4).tolist() == [0, 1, 2, 3]


def test_top_k_random_ties_are_seeded_and_only_reorder_ties():
    scores = np.array([2.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    picks = {tuple(top_k(scores, 3, rng=np.random.default_rng(s)).tolist()) for s in range(30)}
    assert all(0 in p and 5 not in p for p in picks)
    assert len(picks) > 1
    a = top_k(scores, 3, rng=np.random.default_rng(7))
    b = top_k(scores, 3, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_selection_round_trips_through_dict():
    sel = Selection(
        np.array([1, 4]),
        np.array([0.1, 0.2, 0.3, 0.4, 0.5]),
        np.array([1.0, 2.0]),
        {"algorithm": "x", "params": {}, "seed": 0},
    )
    back = Selection.from_dict(sel.to_dict())
    np.testing.assert_array_equal(back.indices, sel.indices)
    np.testing.assert_array_equal(back.scores, sel.scores)
    np.testing.assert_array_equal(back.weights, sel.weights)
    assert back.meta["algorithm"] == "x" and sel.to_dict()["budget"] == 2


def test_registry_lists_options_for_unknown_names_and_parameters():
    reg: Registry = Registry("widget")

    @reg.register("dial")
    class Dial:
        def __init__(self, *, size: int = 1) -> None:
            self.size = size

    unknown_name = r"Unknown widget 'dail'. Did you mean 'dial'\? Available: \['dial'\]"
    with pytest.raises(ValueError, match=unknown_name):
        reg.create("dail")
    unknown_param = r"Unknown parameter\(s\) \['colour'\] for widget 'dial'. Valid: \['size'\]"
    with pytest.raises(ValueError, match=unknown_param):
        reg.create("dial", colour=2)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("dial")(Dial)
