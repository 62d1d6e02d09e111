"""Seed-paired comparison of each selection with a baseline (by default uniform random selection).

A study trains the main model on every (selection, budget, seed). Selections at the same budget and
seed are compared *paired by seed*: ``d_s = metric(selection, s) - metric(baseline, s)``, and the
reported difference is the mean of the ``n`` paired ``d_s``. Its ``1 - alpha`` interval is one of
(:data:`INTERVALS`):

``"t"`` (default): the paired t interval
    ``mean(d) ± t_{1 - alpha/2, n - 1} · sd(d) / sqrt(n)`` (``sd`` with ``ddof=1``). It assumes the
    per-seed differences are independent draws from a normal distribution; under that assumption it
    is exact at any ``n >= 2``, and its ``t`` quantile widens it honestly at small ``n`` (4.30 at
    ``n = 3``, 2.78 at ``n = 5``).
``"sign-flip"``: the exact sign-flip permutation interval
    It assumes only that the ``d_s`` are independent and symmetric about their centre ``mu``. For a
    shift ``mu`` let ``x_s = d_s - mu``; under ``H0: centre = mu`` each of the ``2^n`` sign patterns
    ``(±x_1, ..., ±x_n)`` is equally likely, and all ``2^n`` are enumerated (``n <= 16``). With the
    statistic ``sum(x)`` the one-sided p-values are ``p_hi(mu)`` (share of patterns whose sum is
    ``>=`` the observed one, the observed pattern included) and ``p_lo(mu)`` (``<=``). The interval is
    the set of ``mu`` that neither one-sided test rejects at level ``alpha / 2``
    (``p_hi(mu) > alpha / 2`` and ``p_lo(mu) > alpha / 2``). Flipping the signs of a subset ``A`` lowers
    the sum by ``2 · sum_{s in A} x_s``, so ``p_hi(mu) = (1 + #{A non-empty: mean_A(d) <= mu}) / 2^n``:
    the interval is ``[m_(c), m_(2^n - c)]`` over the sorted ``2^n - 1`` subset means ``m`` of the
    ``d_s``, with ``c = floor(alpha · 2^(n - 1))`` (Hartigan, 1969). Where ``c = 0`` no shift is
    rejected and the interval is ``(-inf, inf)``: at ``alpha = 0.05`` that is every ``n <= 5``, since
    the smallest attainable two-sided p-value with 5 seeds is ``2 / 32 = 0.0625``.

Fewer than two paired seeds give a NaN interval. A cell is called worse (better) than the baseline only
when at least :data:`MIN_SEEDS_FOR_FLAG` ``= 5`` seeds are paired *and* its whole interval lies below
(above) zero; with fewer seeds the interval is reported but the cell is never flagged (column
``flaggable``), since a 2- or 3-seed interval rests almost entirely on its distributional assumption.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import cast

import numpy as np
import pandas as pd
from scipy import stats

from datadiet.errors import ParameterError, ParameterTypeError

__all__ = [
    "INTERVALS",
    "MIN_SEEDS_FOR_FLAG",
    "REFERENCE_BASELINES",
    "RESULT_COLUMNS",
    "budget_label",
    "interval_name",
    "paired_difference",
    "paired_t_interval",
    "sign_flip_interval",
    "summary_table",
]

#: Selections that are references, not points of the budget grid: excluded from the comparison.
REFERENCE_BASELINES = ("full", "dummy")
#: Columns of the results table that :func:`paired_difference` reads.
RESULT_COLUMNS = ("selection", "budget", "seed", "split", "metric", "value")
#: A cell is flagged better or worse than the baseline only with at least this many paired seeds.
MIN_SEEDS_FOR_FLAG = 5
#: The intervals :func:`paired_difference` computes, by option value: their display names.
INTERVALS = {"t": "paired t", "sign-flip": "sign-flip"}
#: Most paired seeds the sign-flip interval enumerates (``2^16`` sign patterns).
MAX_SIGN_FLIP_SEEDS = 16

_BUDGET_DECIMALS = 9  # budgets are matched after rounding, so CSV round trips still pair
_Cells = Iterable[tuple[tuple[str, float], pd.DataFrame]]  # what iterating a two-key groupby yields


def interval_name(interval: str = "t", alpha: float = 0.05) -> str:
    """The display name of an interval, e.g. ``"paired t 95%"``.

    >>> interval_name("t"), interval_name("sign-flip", 0.1)
    ('paired t 95%', 'sign-flip 90%')
    """
    _check_options(interval, alpha)
    return f"{INTERVALS[interval]} {100 * (1 - alpha):.6g}%"


def paired_t_interval(diffs: np.ndarray, *, alpha: float = 0.05) -> tuple[float, float]:
    """The paired t interval ``mean ± t_{1 - alpha/2, n - 1} · sd / sqrt(n)`` (NaN below two diffs).

    >>> low, high = paired_t_interval(np.array([1.0, 2.0, 3.0]))
    >>> round(low, 4), round(high, 4)  # 2 ± 4.3027 · 1 / sqrt(3)
    (-0.4841, 4.4841)
    """
    diffs = np.asarray(diffs, dtype=np.float64)
    n = len(diffs)
    if n < 2:
        return math.nan, math.nan
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * float(diffs.std(ddof=1)) / math.sqrt(n)
    mean = float(diffs.mean())
    return mean - half, mean + half


def sign_flip_interval(diffs: np.ndarray, *, alpha: float = 0.05) -> tuple[float, float]:
    """The exact sign-flip permutation interval of the centre of ``diffs`` (see the module docstring).

    ``[m_(c), m_(2^n - c)]`` over the sorted means of the ``2^n - 1`` non-empty subsets of ``diffs``,
    ``c = floor(alpha · 2^(n - 1))``; ``(-inf, inf)`` when ``c = 0``; NaN below two diffs.

    >>> sign_flip_interval(np.array([1.0, 2.0, 4.0]), alpha=0.5)  # subset means 1, 1.5, 2, 7/3, 2.5, 3, 4
    (1.5, 3.0)
    """
    diffs = np.asarray(diffs, dtype=np.float64)
    n = len(diffs)
    if n < 2:
        return math.nan, math.nan
    if n > MAX_SIGN_FLIP_SEEDS:
        raise ParameterError(
            f"The sign-flip interval enumerates 2^n sign patterns and takes at most {MAX_SIGN_FLIP_SEEDS} "
            f"paired seeds. Got n={n}; use interval='t'."
        )
    c = math.floor(alpha * 2 ** (n - 1) + 1e-12)
    if c == 0:
        return -math.inf, math.inf
    members = (np.arange(1, 2**n)[:, None] >> np.arange(n)) & 1  # every non-empty subset, as 0/1 rows
    means = np.sort(members @ diffs / members.sum(axis=1))
    return float(means[c - 1]), float(means[len(means) - c])


_INTERVAL_FUNCTIONS = {"t": paired_t_interval, "sign-flip": sign_flip_interval}


def paired_difference(
    results: pd.DataFrame,
    *,
    baseline: str = "random",
    metric: str,
    split: str = "test",
    interval: str = "t",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Mean, spread and seed-paired difference to ``baseline`` of each (selection, budget).

    Parameters
    ----------
    results : DataFrame
        The long results table of a study, one row per (cell, split, metric), with at least the
        columns ``selection``, ``budget``, ``seed``, ``split``, ``metric`` and ``value``. Rows of the
        reference baselines ``"full"`` and ``"dummy"`` and rows without a budget are ignored.
    baseline : str, default="random"
        The selection every other one is compared with, at the same budget and seed.
    metric : str
        Which metric to compare (e.g. ``"macro_f1"``).
    split : str, default="test"
        Which evaluation split to compare on.
    interval : {"t", "sign-flip"}, default="t"
        The interval of the mean paired difference: the paired t interval or the exact sign-flip
        permutation interval (see the module docstring).
    alpha : float, default=0.05
        The interval has level ``1 - alpha``.

    Returns
    -------
    DataFrame
        One row per (selection, budget), selections in order of appearance (the baseline first),
        budgets ascending, with columns ``selection``, ``budget``, ``k``, ``n_seeds``, ``mean``,
        ``std`` (over seeds, ``ddof=1``; NaN for one seed), ``n_paired`` (seeds shared with the
        baseline), ``mean_diff``, ``ci_low``, ``ci_high``, ``interval`` (its name, e.g.
        ``"paired t 95%"``), ``flaggable`` (``n_paired >= MIN_SEEDS_FOR_FLAG``),
        ``worse_than_baseline`` (flaggable and ``ci_high < 0``) and ``better_than_baseline``
        (flaggable and ``ci_low > 0``). The baseline's own rows have NaN differences and interval;
        cells with fewer than two paired seeds a NaN interval. Neither is ever flagged.

    Examples
    --------
    >>> results = pd.DataFrame({
    ...     "selection": ["random"] * 5 + ["hard"] * 5, "budget": 0.1, "seed": [0, 1, 2, 3, 4] * 2,
    ...     "split": "test", "metric": "acc",
    ...     "value": [0.8, 0.7, 0.9, 0.8, 0.7, 0.6, 0.5, 0.7, 0.5, 0.6]})
    >>> row = paired_difference(results, metric="acc").iloc[1]
    >>> row["selection"], round(float(row["mean_diff"]), 3), row["interval"], bool(row["worse_than_baseline"])
    ('hard', -0.2, 'paired t 95%', True)
    """
    name = interval_name(interval, alpha)  # checks the options
    rows = _filter_rows(results, metric=metric, split=split, baseline=baseline)
    base = rows[rows["selection"] == baseline].set_index(["budget", "seed"])["value"]
    out = [
        _cell_stats(group, selection, budget, base, baseline, interval, alpha)
        for (selection, budget), group in cast(_Cells, rows.groupby(["selection", "budget"], sort=False))
    ]
    frame = pd.DataFrame(out)
    frame.insert(list(frame.columns).index("ci_high") + 1, "interval", name)
    order = {name: i for i, name in enumerate(_selection_order(rows, baseline))}
    frame["_order"] = frame["selection"].map(order)
    frame = frame.sort_values(["_order", "budget"], kind="stable").drop(columns="_order")
    return frame.reset_index(drop=True)


def _cell_stats(
    group: pd.DataFrame,
    name: str,
    budget: float,
    base: pd.Series,
    baseline: str,
    interval: str,
    alpha: float,
) -> dict[str, object]:
    values: pd.Series = group.set_index("seed")["value"]
    row: dict[str, object] = {
        "selection": name,
        "budget": budget,
        "k": int(group["k"].iloc[0]) if "k" in group and pd.notna(group["k"].iloc[0]) else -1,
        "n_seeds": len(values),
        "mean": float(values.mean()),
        "std": float(cast(float, values.std(ddof=1))) if len(values) > 1 else math.nan,
    }
    paired = _paired_diffs(values, base, budget) if name != baseline else np.empty(0)
    mean_diff = float(paired.mean()) if len(paired) else math.nan
    low, high = _INTERVAL_FUNCTIONS[interval](paired, alpha=alpha)
    flaggable = len(paired) >= MIN_SEEDS_FOR_FLAG
    row.update(n_paired=len(paired), mean_diff=mean_diff, ci_low=low, ci_high=high, flaggable=flaggable)
    row.update(worse_than_baseline=flaggable and high < 0, better_than_baseline=flaggable and low > 0)
    return row


def _paired_diffs(values: pd.Series, base: pd.Series, budget: float) -> np.ndarray:
    if budget not in base.index.get_level_values("budget"):
        return np.empty(0)
    base_at = base.xs(budget, level="budget")
    seeds = values.index.intersection(base_at.index)
    return (values.loc[seeds] - base_at.loc[seeds]).to_numpy(dtype=np.float64)


def _filter_rows(results: pd.DataFrame, *, metric: str, split: str, baseline: str) -> pd.DataFrame:
    if not isinstance(results, pd.DataFrame):
        raise ParameterTypeError(f"results must be a pandas DataFrame. Got {type(results).__name__} instead.")
    missing = [c for c in RESULT_COLUMNS if c not in results.columns]
    if missing:
        raise ParameterError(
            f"results is missing the columns {missing}; it needs {list(RESULT_COLUMNS)} "
            "(the long results table a study writes to results.parquet)."
        )
    for column, wanted in (("metric", metric), ("split", split)):
        available = sorted(map(str, results[column].dropna().unique()))
        if wanted not in available:
            raise ParameterError(f"Unknown {column} {wanted!r}. Available in results: {available}.")
    rows = cast(pd.DataFrame, results[(results["metric"] == metric) & (results["split"] == split)])
    rows = rows[~rows["selection"].isin(REFERENCE_BASELINES) & rows["budget"].notna()].copy()
    rows["budget"] = rows["budget"].astype(np.float64).round(_BUDGET_DECIMALS)
    if baseline not in set(rows["selection"]):
        raise ParameterError(
            f"Unknown baseline {baseline!r}: it has no budgeted rows for metric={metric!r}, split={split!r}. "
            f"Available: {list(pd.unique(rows['selection']))}."
        )
    duplicated = rows.duplicated(["selection", "budget", "seed"])
    if duplicated.any():
        first = rows[duplicated].iloc[0]
        raise ParameterError(
            f"results has {int(duplicated.sum())} repeated (selection, budget, seed) rows for "
            f"metric={metric!r}, split={split!r}, e.g. selection={first['selection']!r}, "
            f"budget={first['budget']}, seed={first['seed']}; keep one row per training run."
        )
    return rows


def _selection_order(rows: pd.DataFrame, baseline: str) -> list[str]:
    names = list(pd.unique(rows["selection"]))
    return [baseline, *(name for name in names if name != baseline)]


def _check_options(interval: str, alpha: float) -> None:
    if interval not in INTERVALS:
        raise ParameterError(
            f"The 'interval' parameter of paired_difference must be one of {list(INTERVALS)}. "
            f"Got {interval!r} instead."
        )
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
        raise ParameterError(
            f"The 'alpha' parameter of paired_difference must be a float in (0, 1). Got {alpha!r} instead."
        )


def summary_table(paired: pd.DataFrame, *, digits: int = 3, with_difference: bool = False) -> pd.DataFrame:
    """The output of :func:`paired_difference` as "mean ± std" strings, selections × budgets.

    Parameters
    ----------
    paired : DataFrame
        The frame returned by :func:`paired_difference`.
    digits : int, default=3
        Decimals shown.
    with_difference : bool, default=False
        Append the paired difference and its interval, e.g. ``"0.612 ± 0.010 (Δ -0.081 [-0.090, -0.070])"``,
        and a trailing ``" *"`` on cells worse than the baseline.

    Returns
    -------
    DataFrame
        Indexed by selection (in ``paired``'s order), one column per budget labelled as a percentage
        (``"10%"``); empty strings where a selection has no result at a budget.

    Examples
    --------
    >>> paired = pd.DataFrame({"selection": ["random"], "budget": [0.1], "mean": [0.8], "std": [0.1],
    ...                        "mean_diff": [float("nan")], "ci_low": [float("nan")],
    ...                        "ci_high": [float("nan")], "worse_than_baseline": [False]})
    >>> summary_table(paired).loc["random", "10%"]
    '0.800 ± 0.100'
    """
    missing = [c for c in ("selection", "budget", "mean", "std") if c not in paired.columns]
    if missing:
        raise ParameterError(
            f"paired is missing the columns {missing}; pass the output of paired_difference."
        )
    cells = [_format_cell(row, digits, with_difference) for row in paired.itertuples(index=False)]
    frame = paired.assign(cell=cells, column=[budget_label(b) for b in paired["budget"]])
    table = frame.pivot(index="selection", columns="column", values="cell")
    budgets = sorted(pd.unique(paired["budget"]))
    table = table.reindex(
        index=list(pd.unique(paired["selection"])), columns=[budget_label(b) for b in budgets]
    )
    table.columns.name = "budget"
    return table.fillna("")


def _format_cell(row: object, digits: int, with_difference: bool) -> str:
    mean, std = row.mean, row.std  # type: ignore[attr-defined]
    text = f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")
    diff = getattr(row, "mean_diff", math.nan)
    if with_difference and not math.isnan(diff):
        low, high = row.ci_low, row.ci_high  # type: ignore[attr-defined]
        interval = "" if math.isnan(low) else f" [{low:+.{digits}f}, {high:+.{digits}f}]"
        text += f" (Δ {diff:+.{digits}f}{interval})"
        text += " *" if getattr(row, "worse_than_baseline", False) else ""
    return text


def budget_label(budget: float) -> str:
    """A budget fraction as a short percentage label.

    >>> budget_label(0.05), budget_label(0.125), budget_label(1.0)
    ('5%', '12.5%', '100%')
    """
    return f"{100 * float(budget):.6g}%"
