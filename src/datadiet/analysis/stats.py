"""Seed-paired comparison of each selection with a baseline (by default uniform random selection).

A study trains the main model on every (selection, budget, seed). Selections at the same budget and
seed are compared *paired by seed*: ``d_s = metric(selection, s) - metric(baseline, s)``, and the
reported difference is the mean of ``d_s`` over the seeds both have. Its uncertainty is a percentile
bootstrap over seeds (resample the ``d_s`` with replacement, take the ``alpha / 2`` and
``1 - alpha / 2`` quantiles of the resampled means).

With the usual 3 seeds the bootstrap has only 10 distinct resamples, and the interval always lies
within ``[min d_s, max d_s]``: it is coarse, and a cell flagged as worse than the baseline means
"worse on every resample of these seeds", not a calibrated 95% statement. More seeds tighten it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import cast

import numpy as np
import pandas as pd

from datadiet._core.checks import check_rng
from datadiet.errors import ParameterError, ParameterTypeError

__all__ = ["REFERENCE_BASELINES", "RESULT_COLUMNS", "budget_label", "paired_difference", "summary_table"]

#: Selections that are references, not points of the budget grid: excluded from the comparison.
REFERENCE_BASELINES = ("full", "dummy")
#: Columns of the results table that :func:`paired_difference` reads.
RESULT_COLUMNS = ("selection", "budget", "seed", "split", "metric", "value")

_BUDGET_DECIMALS = 9  # budgets are matched after rounding, so CSV round trips still pair
_Cells = Iterable[tuple[tuple[str, float], pd.DataFrame]]  # what iterating a two-key groupby yields


def paired_difference(
    results: pd.DataFrame,
    *,
    baseline: str = "random",
    metric: str,
    split: str = "test",
    n_boot: int = 2000,
    seed: int | np.random.Generator = 0,
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
    n_boot : int, default=2000
        Number of bootstrap resamples of the seeds.
    seed : int or numpy Generator, default=0
        Seeds the bootstrap. The same resampled seed positions are used for every cell with the
        same number of paired seeds, so adding a selection leaves the others' intervals unchanged.
    alpha : float, default=0.05
        The interval is the ``[alpha / 2, 1 - alpha / 2]`` percentile interval.

    Returns
    -------
    DataFrame
        One row per (selection, budget), selections in order of appearance (the baseline first),
        budgets ascending, with columns ``selection``, ``budget``, ``k``, ``n_seeds``, ``mean``,
        ``std`` (over seeds, ``ddof=1``; NaN for one seed), ``n_paired`` (seeds shared with the
        baseline), ``mean_diff``, ``ci_low``, ``ci_high``, ``worse_than_baseline``
        (``ci_high < 0``) and ``better_than_baseline`` (``ci_low > 0``). The baseline's own rows
        and cells with fewer than two paired seeds have NaN differences and interval, never a flag.

    Examples
    --------
    >>> results = pd.DataFrame({
    ...     "selection": ["random"] * 3 + ["hard"] * 3, "budget": 0.1, "seed": [0, 1, 2] * 2,
    ...     "split": "test", "metric": "acc", "value": [0.8, 0.7, 0.9, 0.6, 0.5, 0.7]})
    >>> row = paired_difference(results, metric="acc").iloc[1]
    >>> row["selection"], round(float(row["mean_diff"]), 3), bool(row["worse_than_baseline"])
    ('hard', -0.2, True)
    """
    _check_options(n_boot, alpha)
    rows = _filter_rows(results, metric=metric, split=split, baseline=baseline)
    rng = check_rng(seed)
    sizes = cast(pd.Series, rows.groupby(["selection", "budget"]).size())
    max_seeds = int(sizes.max())
    resamples = {n: rng.integers(0, n, size=(n_boot, n)) for n in range(2, max_seeds + 1)}
    base = rows[rows["selection"] == baseline].set_index(["budget", "seed"])["value"]
    out = [
        _cell_stats(group, name, budget, base, baseline, resamples, alpha)
        for (name, budget), group in cast(_Cells, rows.groupby(["selection", "budget"], sort=False))
    ]
    frame = pd.DataFrame(out)
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
    resamples: dict[int, np.ndarray],
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
    low, high = _bootstrap_ci(paired, resamples, alpha)
    row.update(n_paired=len(paired), mean_diff=mean_diff, ci_low=low, ci_high=high)
    row.update(worse_than_baseline=bool(high < 0), better_than_baseline=bool(low > 0))
    return row


def _paired_diffs(values: pd.Series, base: pd.Series, budget: float) -> np.ndarray:
    if budget not in base.index.get_level_values("budget"):
        return np.empty(0)
    base_at = base.xs(budget, level="budget")
    seeds = values.index.intersection(base_at.index)
    return (values.loc[seeds] - base_at.loc[seeds]).to_numpy(dtype=np.float64)


def _bootstrap_ci(diffs: np.ndarray, resamples: dict[int, np.ndarray], alpha: float) -> tuple[float, float]:
    """Percentile interval of the mean of ``diffs`` over seed resamples (NaN below two seeds)."""
    n = len(diffs)
    if n < 2:
        return math.nan, math.nan
    means = diffs[resamples[n]].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


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


def _check_options(n_boot: int, alpha: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 1:
        raise ParameterError(
            f"The 'n_boot' parameter of paired_difference must be an int in the range [1, inf). "
            f"Got {n_boot!r} instead."
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
