"""Seed-paired differences to the random baseline, checked against hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from datadiet.analysis.stats import budget_label, paired_difference, summary_table

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


def test_paired_difference_three_seed_interval_spans_the_per_seed_extremes():
    # Resampling 3 seeds, "all three the same seed" has probability 1/27 > 2.5%, so the 95% interval
    # is exactly [min d, max d]: coarse, as documented.
    worse = _row(paired_difference(_results({"worse": [-0.1, -0.2, -0.3]}), metric="macro_f1"), "worse")
    assert (worse["ci_low"], worse["ci_high"]) == pytest.approx((-0.3, -0.1))


def test_clearly_worse_is_flagged_and_clearly_better_is_not():
    results = _results({"worse": [-0.1, -0.2, -0.3], "better": [0.1, 0.2, 0.3], "mixed": [-0.1, 0.0, 0.1]})
    frame = paired_difference(results, metric="macro_f1")
    flags = frame.set_index("selection")[["worse_than_baseline", "better_than_baseline"]]
    assert flags.loc["worse"].tolist() == [True, False]
    assert flags.loc["better"].tolist() == [False, True]
    assert flags.loc["mixed"].tolist() == [False, False]
    assert flags.loc["random"].tolist() == [False, False]


def test_baseline_rows_have_no_difference():
    random = _row(paired_difference(_results({}), metric="macro_f1"), "random")
    assert random["mean"] == pytest.approx(0.6) and random["std"] == pytest.approx(0.1)
    assert math.isnan(random["mean_diff"]) and math.isnan(random["ci_low"]) and random["n_paired"] == 0


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


def test_bootstrap_is_seeded():
    results = _results({"a": [0.3, -0.2, 0.05]})
    first = paired_difference(results, metric="macro_f1", seed=3)
    pd.testing.assert_frame_equal(first, paired_difference(results, metric="macro_f1", seed=3))
    wide = paired_difference(results, metric="macro_f1", alpha=0.5)
    assert (
        _row(wide, "a")["ci_high"] - _row(wide, "a")["ci_low"]
        < _row(first, "a")["ci_high"] - _row(first, "a")["ci_low"]
    )


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


@pytest.mark.parametrize(("option", "value"), [("n_boot", 0), ("alpha", 1.0), ("alpha", True)])
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
    assert detailed.loc["a", "10%"] == "0.40 ± 0.10 (Δ -0.20 [-0.30, -0.10]) *"
    assert detailed.loc["random", "10%"] == "0.60 ± 0.10"


def test_budget_label():
    assert [budget_label(b) for b in (0.05, 0.3, 0.125, 1.0)] == ["5%", "30%", "12.5%", "100%"]
