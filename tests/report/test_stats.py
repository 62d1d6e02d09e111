"""Seed-paired differences to the random baseline, checked against hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from datadiet.analysis.stats import (
    MIN_SEEDS_FOR_FLAG,
    budget_label,
    interval_name,
    paired_difference,
    paired_t_interval,
    sign_flip_interval,
    summary_table,
)

RANDOM = [0.60, 0.50, 0.70]  # per seed 0, 1, 2


def _results(
    diffs: dict[str, list[float]], *, budget: float = 0.1, random: list[float] = RANDOM
) -> pd.DataFrame:
    """Rows for ``random`` and one selection per entry of ``diffs`` (value = random + diff, per seed)."""
    rows = []
    for name, offsets in {"random": [0.0] * len(random), **diffs}.items():
        for seed, (base, offset) in enumerate(zip(random, offsets, strict=True)):
            rows.append(
                {
                    "selection": name,
                    "budget": budget,
                    "k": 10,
                    "seed": seed,
                    "split": "test",
                    "metric": "macro_f1",
                    "value": base + offset,
                }
            )
    return pd.DataFrame(rows)


def _row(frame: pd.DataFrame, name: str, budget: float = 0.1) -> pd.Series:
    return frame[(frame["selection"] == name) & np.isclose(frame["budget"], budget)].iloc[0]


def test_paired_difference_mean_std_and_difference_by_hand():
    frame = paired_difference(_results({"worse": [-0.1, -0.2, -0.3]}), metric="macro_f1")
    worse = _row(frame, "worse")
    assert worse["mean"] == pytest.approx(np.mean([0.5, 0.3, 0.4]))
    assert worse["std"] == pytest.approx(0.1)  # ddof=1 over seeds: values 0.5, 0.3, 0.4
    assert worse["mean_diff"] == pytest.approx(-0.2)
    assert worse["n_seeds"] == worse["n_paired"] == 3
    assert worse["ci_low"] <= -0.2 <= worse["ci_high"]


def test_paired_t_interval_by_hand():
    diffs = np.array([0.01, 0.03, -0.02, 0.04, 0.02])
    mean = 0.08 / 5  # 0.016
    # deviations -0.006, 0.014, -0.036, 0.024, 0.004; squares sum to 0.00212; var = 0.00212 / 4
    se = math.sqrt(0.00212 / 4 / 5)  # 0.0102956...
    half = 2.7764451051977987 * se  # t_{0.975, 4}
    assert paired_t_interval(diffs) == pytest.approx((mean - half, mean + half), abs=1e-12)
    assert (mean - half, mean + half) == pytest.approx((-0.012585, 0.044585), abs=1e-6)
    frame = paired_difference(_results({"a": list(diffs)}, random=[0.5] * 5), metric="macro_f1")
    row = _row(frame, "a")
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((mean - half, mean + half), abs=1e-12)
    assert row["mean_diff"] == pytest.approx(mean) and row["interval"] == "paired t 95%"
    assert row["flaggable"] and not row["worse_than_baseline"] and not row["better_than_baseline"]


def test_sign_flip_interval_by_hand_on_three_seeds():
    # Subset means of [1, 2, 4]: 1, 2, 4, 1.5, 2.5, 3, 7/3 -> sorted 1, 1.5, 2, 7/3, 2.5, 3, 4.
    # alpha=0.5: c = floor(0.5 * 2^2) = 2, so [m_(2), m_(6)] = [1.5, 3].
    diffs = np.array([1.0, 2.0, 4.0])
    assert sign_flip_interval(diffs, alpha=0.5) == (1.5, 3.0)
    # alpha=0.3: c = floor(1.2) = 1 -> [min, max] of the subset means; alpha=0.2: c = 0 -> unbounded.
    assert sign_flip_interval(diffs, alpha=0.3) == (1.0, 4.0)
    assert sign_flip_interval(diffs, alpha=0.2) == (-math.inf, math.inf)


def _sign_flip_accepts(diffs: np.ndarray, mu: float, alpha: float) -> bool:
    """The test inverted, enumerated directly: neither one-sided p-value is <= alpha / 2."""
    x = diffs - mu
    flips = np.array(np.meshgrid(*[[1.0, -1.0]] * len(x))).reshape(len(x), -1).T
    sums, observed = flips @ x, x.sum()
    tol = 1e-12
    p_hi, p_lo = np.mean(sums >= observed - tol), np.mean(sums <= observed + tol)
    return bool(p_hi > alpha / 2 and p_lo > alpha / 2)


@pytest.mark.parametrize(("diffs", "alpha"), [([1.0, 2.0, 4.0], 0.5), ([0.3, -0.1, 0.2, 0.5], 0.25)])
def test_sign_flip_interval_is_the_set_of_shifts_the_test_keeps(diffs, alpha):
    diffs = np.array(diffs)
    low, high = sign_flip_interval(diffs, alpha=alpha)
    assert _sign_flip_accepts(diffs, low, alpha) and _sign_flip_accepts(diffs, high, alpha)
    for mu in np.linspace(low - 1, high + 1, 201):
        assert _sign_flip_accepts(diffs, mu, alpha) == (low - 1e-9 <= mu <= high + 1e-9), mu


def test_sign_flip_interval_at_95_percent_needs_six_seeds():
    # With 5 seeds the smallest two-sided p-value is 2/32 > 0.05: no shift is rejected.
    assert sign_flip_interval(np.full(5, -0.1) - np.arange(5) / 100) == (-math.inf, math.inf)
    six = np.array([-0.1, -0.2, -0.3, -0.15, -0.25, -0.05])  # c = floor(0.05 * 32) = 1: [min, max]
    assert sign_flip_interval(six) == (-0.3, -0.05)
    results = _results({"a": list(six)}, random=[0.5] * 6)
    row = _row(paired_difference(results, metric="macro_f1", interval="sign-flip"), "a")
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((-0.3, -0.05))
    assert row["interval"] == "sign-flip 95%" and row["worse_than_baseline"]


def test_sign_flip_refuses_more_than_sixteen_seeds():
    with pytest.raises(ValueError, match=r"at most 16 paired seeds\. Got n=17; use interval='t'"):
        sign_flip_interval(np.zeros(17))


@pytest.mark.parametrize("n", [2, 3, 4])
def test_no_flag_below_five_seeds_even_when_every_difference_is_negative(n):
    frame = paired_difference(_results({"worse": [-0.3] * n}, random=[0.6] * n), metric="macro_f1")
    row = _row(frame, "worse")
    assert row["n_paired"] == n and row["ci_high"] < 0  # the interval itself excludes 0
    assert not row["flaggable"] and not row["worse_than_baseline"] and not row["better_than_baseline"]


def test_five_clearly_worse_seeds_are_flagged():
    assert MIN_SEEDS_FOR_FLAG == 5
    frame = paired_difference(
        _results({"worse": [-0.3, -0.31, -0.29, -0.3, -0.32]}, random=[0.6] * 5), metric="macro_f1"
    )
    row = _row(frame, "worse")
    assert row["flaggable"] and row["worse_than_baseline"] and not row["better_than_baseline"]


def test_baseline_rows_have_no_difference():
    random = _row(paired_difference(_results({}), metric="macro_f1"), "random")
    assert random["mean"] == pytest.approx(0.6) and random["std"] == pytest.approx(0.1)
    assert math.isnan(random["mean_diff"]) and math.isnan(random["ci_low"]) and random["n_paired"] == 0
    assert not random["flaggable"]


def test_pairing_is_by_seed_and_budget_not_by_row_order():
    results = pd.concat(
        [_results({"a": [0.1, 0.2, 0.3]}, budget=0.1), _results({"a": [-0.05, -0.05, -0.05]}, budget=0.3)]
    )
    results = results.sample(frac=1.0, random_state=0)
    results = results[~((results["selection"] == "random") & (results["seed"] == 2))]  # baseline lacks seed 2
    frame = paired_difference(results, metric="macro_f1")
    assert _row(frame, "a", 0.1)["mean_diff"] == pytest.approx(0.15)  # seeds 0 and 1 only
    assert _row(frame, "a", 0.1)["n_paired"] == 2
    assert _row(frame, "a", 0.3)["mean_diff"] == pytest.approx(-0.05)
    assert frame["selection"].tolist() == ["random", "random", "a", "a"]
    assert frame["budget"].tolist() == [0.1, 0.3, 0.1, 0.3]


def test_budgets_pair_after_a_float_round_trip():
    results = _results({"a": [0.1, 0.1, 0.1]})
    results.loc[results["selection"] == "a", "budget"] = 0.1 + 1e-13
    assert _row(paired_difference(results, metric="macro_f1"), "a")["mean_diff"] == pytest.approx(0.1)


def test_one_seed_gives_no_interval_and_no_flag():
    frame = paired_difference(_results({"a": [-0.5]}, random=[0.6]), metric="macro_f1")
    row = _row(frame, "a")
    assert row["mean_diff"] == pytest.approx(-0.5)
    assert math.isnan(row["std"]) and math.isnan(row["ci_high"]) and not row["worse_than_baseline"]


def test_reference_baselines_and_other_metrics_are_ignored():
    results = _results({"a": [0.0, 0.1, 0.2]})
    extra = pd.DataFrame(
        [
            {
                "selection": "full",
                "budget": 1.0,
                "k": 100,
                "seed": 0,
                "split": "test",
                "metric": "macro_f1",
                "value": 0.9,
            },
            {
                "selection": "dummy",
                "budget": np.nan,
                "k": 0,
                "seed": -1,
                "split": "test",
                "metric": "macro_f1",
                "value": 0.1,
            },
            {
                "selection": "a",
                "budget": 0.1,
                "k": 10,
                "seed": 0,
                "split": "ood",
                "metric": "macro_f1",
                "value": 0.0,
            },
            {
                "selection": "a",
                "budget": 0.1,
                "k": 10,
                "seed": 0,
                "split": "test",
                "metric": "accuracy",
                "value": 0.0,
            },
        ]
    )
    frame = paired_difference(pd.concat([results, extra]), metric="macro_f1")
    assert set(frame["selection"]) == {"random", "a"}
    assert _row(frame, "a")["mean_diff"] == pytest.approx(0.1)


def test_interval_is_deterministic_and_narrows_with_alpha():
    results = _results({"a": [0.3, -0.2, 0.05]})
    first = paired_difference(results, metric="macro_f1")
    pd.testing.assert_frame_equal(first, paired_difference(results, metric="macro_f1"))
    wide = paired_difference(results, metric="macro_f1", alpha=0.5)
    assert _row(wide, "a")["interval"] == "paired t 50%"
    assert (
        _row(wide, "a")["ci_high"] - _row(wide, "a")["ci_low"]
        < _row(first, "a")["ci_high"] - _row(first, "a")["ci_low"]
    )
    assert interval_name("sign-flip", 0.1) == "sign-flip 90%"


def test_columns_of_the_paired_table():
    frame = paired_difference(_results({"a": [0.0, 0.1, 0.2]}), metric="macro_f1")
    assert frame.columns.tolist() == [
        "selection", "budget", "k", "n_seeds", "mean", "std", "n_paired", "mean_diff", "ci_low", "ci_high",
        "interval", "flaggable", "worse_than_baseline", "better_than_baseline",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.drop(columns=["seed", "value"]), r"missing the columns \['seed', 'value'\]"),
        (
            lambda r: r.assign(metric="accuracy"),
            r"Unknown metric 'macro_f1'. Available in results: \['accuracy'\]",
        ),
        (lambda r: r[r["selection"] != "random"], r"Unknown baseline 'random'.*Available: \['a'\]"),
        (lambda r: pd.concat([r, r.iloc[:1]]), r"1 repeated \(selection, budget, seed\) rows"),
    ],
)
def test_bad_results_raise_and_name_the_problem(change, message):
    with pytest.raises(ValueError, match=message):
        paired_difference(change(_results({"a": [0.0, 0.1, 0.2]})), metric="macro_f1")


@pytest.mark.parametrize(("option", "value"), [("interval", "bootstrap"), ("alpha", 1.0), ("alpha", True)])
def test_bad_options_raise(option, value):
    with pytest.raises(ValueError, match=f"'{option}' parameter"):
        paired_difference(_results({}), metric="macro_f1", **{option: value})


def test_summary_table_formats_mean_and_std_by_budget():
    results = pd.concat(
        [_results({"a": [-0.1, -0.2, -0.3]}, budget=0.1), _results({"a": [0.0, 0.0, 0.0]}, budget=0.5)]
    )
    table = summary_table(paired_difference(results, metric="macro_f1"))
    assert table.columns.tolist() == ["10%", "50%"]
    assert table.index.tolist() == ["random", "a"]
    assert table.loc["random", "10%"] == "0.600 ± 0.100"
    assert table.loc["a", "10%"] == "0.400 ± 0.100"
    detailed = summary_table(paired_difference(results, metric="macro_f1"), with_difference=True, digits=2)
    # t_{0.975, 2} = 4.3027 and se = 0.1 / sqrt(3): -0.2 ± 0.2484; 3 seeds, so no "*"
    assert detailed.loc["a", "10%"] == "0.40 ± 0.10 (Δ -0.20 [-0.45, +0.05])"
    assert detailed.loc["random", "10%"] == "0.60 ± 0.10"
    five = _results({"a": [-0.3, -0.31, -0.29, -0.3, -0.3]}, random=[0.6] * 5)
    starred = summary_table(paired_difference(five, metric="macro_f1"), with_difference=True, digits=2)
    assert starred.loc["a", "10%"].endswith(" *")


def test_budget_label():
    assert [budget_label(b) for b in (0.05, 0.3, 0.125, 1.0)] == ["5%", "30%", "12.5%", "100%"]
