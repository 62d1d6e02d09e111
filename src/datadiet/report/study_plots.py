"""Figures of a pruning study: performance, overlap, label balance, data map, cost and label noise.

Each function takes the long results table of a study (or plain arrays) and returns a
:class:`matplotlib.figure.Figure` made by :func:`datadiet.report.figures.new_figure` (the Agg canvas,
never ``pyplot``: no global state, safe on headless machines). Render with
:func:`datadiet.report.figures.figure_to_png`; writing files is the caller's job.

Budgets are drawn as percentages of the training set; the x axis is logarithmic when the budgets
span a factor of 8 or more. Each selection keeps one colour across figures (:func:`selection_colors`);
``random`` is always the dark dashed line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from datadiet.analysis.overlap import overlap_matrix, random_overlap_expectation
from datadiet.analysis.stats import REFERENCE_BASELINES, budget_label
from datadiet.errors import ParameterError
from datadiet.report.figures import new_figure

__all__ = [
    "plot_costs",
    "plot_data_map",
    "plot_label_distribution",
    "plot_label_noise",
    "plot_overlap",
    "plot_performance",
    "selection_colors",
    "selection_order",
]

RANDOM = "random"
RANDOM_COLOR = "#333333"
HIGHLIGHT_COLOR = "#c44e52"
_PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#ccb974", "#64b5cd")


def _text(value: object) -> str:
    """``value`` as matplotlib text: a ``$`` would otherwise start mathtext."""
    return str(value).replace("$", r"\$")


def selection_order(results: pd.DataFrame, order: Sequence[str] | None = None) -> list[str]:
    """Budgeted selections of ``results``: ``random`` first, then ``order``, then the rest as they appear."""
    present = [s for s in pd.unique(results["selection"]) if s not in REFERENCE_BASELINES]
    ranked = [RANDOM, *(order or ()), *present]
    return [name for i, name in enumerate(ranked) if name in present and name not in ranked[:i]]


def selection_colors(names: Sequence[str]) -> dict[str, str]:
    """One colour per selection, ``random`` dark grey; the palette repeats after 9 selections."""
    others = [name for name in names if name != RANDOM]
    colors = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(others)}
    return {RANDOM: RANDOM_COLOR, **colors}


def _line_style(name: str, names: Sequence[str]) -> dict[str, Any]:
    """Dashed squares for ``random``; markers change each time the palette repeats."""
    if name == RANDOM:
        return {"linestyle": "--", "marker": "s", "linewidth": 1.6}
    position = [other for other in names if other != RANDOM].index(name)
    marker = ("o", "^", "D", "v")[position // len(_PALETTE) % 4]
    return {"linestyle": "-", "marker": marker, "linewidth": 1.4}


def _per_run(results: pd.DataFrame) -> pd.DataFrame:
    """One row per training run of a budgeted selection (the metric rows of a run share its costs)."""
    rows: pd.DataFrame = results.loc[
        ~results["selection"].isin(REFERENCE_BASELINES) & results["budget"].notna()
    ]
    key = ["cell"] if "cell" in rows.columns else ["selection", "budget", "seed"]
    return rows.drop_duplicates(key)


def _curve(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean and std of ``column`` over seeds per (selection, budget), budget in percent."""
    grouped = rows.groupby(["selection", "budget"], sort=True)[column]
    curve = grouped.agg(["mean", "std"]).reset_index()
    curve["std"] = curve["std"].fillna(0.0)
    curve["percent"] = 100 * curve["budget"].astype(float)
    return curve


def _budget_axis(ax, budgets: Iterable[float]) -> None:
    budgets = sorted({float(b) for b in budgets})
    if not budgets:
        return
    if budgets[-1] / budgets[0] >= 8:
        ax.set_xscale("log")
    ax.set_xticks([100 * b for b in budgets], [budget_label(b) for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("budget (% of the training set kept)")
    ax.grid(alpha=0.25)


def _bottom_legend(fig: Figure, ax, *, ncols: int = 5) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(ncols, len(handles)), fontsize=8)


def plot_performance(
    results: pd.DataFrame, *, metrics: Sequence[str], split: str = "test", order: Sequence[str] | None = None
) -> Figure:
    """The metric against the budget for every selection, one panel per metric.

    Parameters
    ----------
    results : DataFrame
        The long results table (``selection``, ``budget``, ``seed``, ``split``, ``metric``, ``value``).
    metrics : sequence of str
        One panel each, left to right.
    split : str, default="test"
        The evaluation split drawn.
    order : sequence of str, optional
        Selections to list first (after ``random``) in the legend.

    Notes
    -----
    Lines are the mean over seeds and the shaded band is ± one standard deviation. ``full`` (all
    training data) and ``dummy`` (majority class) are horizontal reference lines.
    """
    rows: pd.DataFrame = results.loc[results["split"] == split]
    names = selection_order(rows, order)
    colors = selection_colors(names)
    fig = new_figure(max(5.5, 5.2 * len(metrics)), 4.6)
    axes = fig.subplots(1, len(metrics), squeeze=False).ravel()
    for ax, metric in zip(axes, metrics, strict=True):
        _draw_metric_panel(ax, rows.loc[rows["metric"] == metric], names, colors)
        ax.set_title(f"{_text(metric)} on {_text(split)}", fontsize=10)
        ax.set_ylabel(_text(metric))
    _bottom_legend(fig, axes[0])
    return fig


def _draw_metric_panel(ax, rows: pd.DataFrame, names: list[str], colors: Mapping[str, str]) -> None:
    curve = _curve(rows.loc[rows["selection"].isin(names)], "value")
    for name in names:
        part = curve[curve["selection"] == name]
        ax.plot(
            part["percent"], part["mean"], color=colors[name], label=_text(name), **_line_style(name, names)
        )
        ax.fill_between(
            part["percent"],
            part["mean"] - part["std"],
            part["mean"] + part["std"],
            color=colors[name],
            alpha=0.15,
        )
    for name, style in (("full", "-"), ("dummy", ":")):
        values = rows.loc[rows["selection"] == name, "value"]
        if len(values):
            ax.axhline(float(values.mean()), color="black", linestyle=style, linewidth=1.1, label=name)
    _budget_axis(ax, curve["budget"])


def plot_overlap(selections: Mapping[str, np.ndarray], *, n_examples: int, title: str = "") -> Figure:
    """Overlap ratios ``|S_i ∩ S_j| / |S_i|`` between selections of one budget, values printed.

    Parameters
    ----------
    selections : mapping from name to ndarray of shape (k,)
        Selected indices of each selection, all at the same budget.
    n_examples : int
        Size of the training set ``N``; two random subsets overlap by ``k / N`` in expectation, which
        is written in the title and marked on the colour bar.
    title : str, optional
        Prefix of the title (e.g. the budget and seed).
    """
    names = list(selections)
    matrix = overlap_matrix([np.asarray(s) for s in selections.values()], n_examples=n_examples)
    k = round(float(np.mean([len(s) for s in selections.values()])))
    expectation = random_overlap_expectation(k, n_examples)
    m = len(names)
    fig = new_figure(max(5.0, 2.6 + 0.7 * m), 1.9 + 0.6 * m)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    for i in range(m):
        for j in range(m):
            color = "black" if matrix[i, j] > 0.6 else "white"
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8, color=color)
    labels = [_text(name) for name in names]
    ax.set_xticks(range(m), labels, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(m), labels, fontsize=8)
    heading = f"{_text(title)}\n" if title else ""
    ax.set_title(
        f"{heading}overlap |S_i ∩ S_j| / |S_i|;  random expectation k/N = {expectation:.3f}", fontsize=9
    )
    bar = fig.colorbar(image, ax=ax, shrink=0.85)
    bar.ax.axhline(expectation, color=HIGHLIGHT_COLOR, linewidth=2.5)
    transform = bar.ax.get_yaxis_transform()
    bar.ax.text(
        -0.3,
        expectation,
        "k/N",
        color=HIGHLIGHT_COLOR,
        ha="right",
        va="center",
        fontsize=8,
        transform=transform,
    )
    return fig


def plot_label_distribution(
    distributions: Mapping[str, pd.DataFrame], full_fractions: pd.Series, *, ncols: int = 4
) -> Figure:
    """The share of each class in each selection against the budget, one small panel per selection.

    Parameters
    ----------
    distributions : mapping from name to DataFrame
        For each selection, a frame indexed by budget fraction with one column per class holding the
        class's share of the selection (e.g. averaged over seeds).
    full_fractions : Series
        The share of each class in the full training set, indexed by class; drawn as dotted
        reference lines in the class's colour.
    ncols : int, default=4
        Panels per row.
    """
    names = list(distributions)
    ncols = max(1, min(ncols, len(names)))
    nrows = math.ceil(len(names) / ncols)
    fig = new_figure(1.0 + 3.0 * ncols, 0.9 + 2.5 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
    class_colors = _class_colors(list(full_fractions.index))
    for ax, name in zip(axes, names, strict=False):
        _draw_class_panel(ax, distributions[name].sort_index(), full_fractions, class_colors)
        ax.set_title(_text(name), fontsize=9)
    top = max(float(full_fractions.max()), *(float(np.nanmax(d.to_numpy())) for d in distributions.values()))
    axes[0].set_ylim(0.0, min(1.0, 1.08 * top))
    for ax in axes[::ncols]:
        ax.set_ylabel("share of the selection", fontsize=8)
    for ax in axes[len(names) :]:
        ax.set_axis_off()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=min(8, len(handles)),
        fontsize=8,
        title="class (dotted: share in the full training set)",
        title_fontsize=8,
    )
    return fig


def _draw_class_panel(ax, frame: pd.DataFrame, full: pd.Series, colors: Mapping[object, object]) -> None:
    for label, color in colors.items():
        ax.axhline(float(full.loc[label]), color=color, linestyle=":", linewidth=1.2)
        if label in frame.columns:
            percent = 100 * frame.index.to_numpy(dtype=float)
            ax.plot(percent, frame[label], marker="o", markersize=3, color=color, label=_text(label))
    _budget_axis(ax, frame.index)
    ax.set_xlabel("budget", fontsize=8)
    ax.tick_params(labelsize=7)


def _class_colors(classes: Sequence[object]) -> dict[object, tuple[float, ...]]:
    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(classes)}


def plot_data_map(
    confidence: np.ndarray,
    *,
    highlight: np.ndarray | None = None,
    highlight_label: str = "",
    flipped: np.ndarray | None = None,
) -> Figure:
    """The data map: mean against standard deviation of the correct-class probability over training.

    Parameters
    ----------
    confidence : ndarray of shape (n_examples, n_epochs)
        Correct-class probability of every training example at each recorded step of the reference run.
    highlight : ndarray of shape (k,), optional
        Indices of one selection, drawn on top in red.
    highlight_label : str, optional
        Its legend entry (e.g. ``"hard_to_learn, 30%, seed 0"``).
    flipped : ndarray of int, optional
        Indices of examples whose label was flipped, drawn as black crosses.

    Notes
    -----
    Easy-to-learn examples sit top left (confident, stable), hard-to-learn bottom left and ambiguous
    ones at high variability (Swayamdipta et al., 2020).
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    if confidence.ndim != 2:
        raise ParameterError(
            f"confidence must be an (n_examples, n_epochs) trajectory. Got shape {confidence.shape} instead."
        )
    mean, std = confidence.mean(axis=1), confidence.std(axis=1)
    fig = new_figure(6.0, 5.0)
    ax = fig.add_subplot()
    size = 6 if len(mean) > 2000 else 10
    ax.scatter(std, mean, s=size, color="#9aa5b1", alpha=0.5, linewidths=0, label=f"all ({len(mean)})")
    if highlight is not None and len(highlight):
        rows = np.asarray(highlight, dtype=np.int64)
        label = f"{_text(highlight_label) or 'selected'} ({len(rows)})"
        ax.scatter(
            std[rows], mean[rows], s=size + 4, color=HIGHLIGHT_COLOR, alpha=0.7, linewidths=0, label=label
        )
    if flipped is not None and len(flipped):
        rows = np.asarray(flipped, dtype=np.int64)
        style = {"s": 10, "marker": "x", "color": "black", "alpha": 0.7, "linewidths": 0.5}
        ax.scatter(std[rows], mean[rows], label=f"label flipped ({len(rows)})", **style)
    ax.set_xlabel("variability (std of the correct-class probability)")
    ax.set_ylabel("confidence (mean correct-class probability)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Data map of the training set", fontsize=10)
    ax.legend(loc="upper right", fontsize=8, markerscale=1.5)
    ax.grid(alpha=0.25)
    return fig


def plot_costs(results: pd.DataFrame, *, costs: Mapping[str, float]) -> Figure:
    """One-off selection overhead against the training time a subset saves, at each budget.

    Parameters
    ----------
    results : DataFrame
        The long results table with ``train_seconds`` (and optionally ``select_seconds``).
    costs : mapping
        ``reference_seconds`` (training the reference model), ``represent_seconds`` (extracting the
        representations) and ``full_train_seconds`` (training the main model on all data).

    Notes
    -----
    The saving at a budget is ``full_train_seconds`` minus the mean ``train_seconds`` of the runs at
    that budget (all selections and seeds). Pruning pays for itself where the saving line is above
    the overhead line; with several main-model runs the overhead is paid once.
    """
    missing = [c for c in ("reference_seconds", "represent_seconds", "full_train_seconds") if c not in costs]
    if missing:
        raise ParameterError(f"costs is missing {missing}; the study's costs block records all three.")
    runs = _per_run(results)
    per_budget = runs.groupby("budget")
    percent = 100 * np.asarray(list(per_budget.groups), dtype=float)
    train_mean = cast(pd.Series, per_budget["train_seconds"].mean())  # one column's means: a Series
    saved = float(costs["full_train_seconds"]) - train_mean.to_numpy(dtype=float)
    overhead = float(costs["reference_seconds"]) + float(costs["represent_seconds"])
    fig = new_figure(6.4, 4.4)
    ax = fig.add_subplot()
    ax.plot(
        percent,
        saved,
        marker="o",
        color="#4c72b0",
        linewidth=1.8,
        label="training time saved (full − subset)",
    )
    label = f"overhead: reference + representation = {overhead:.1f} s"
    ax.axhline(overhead, color=HIGHLIGHT_COLOR, linewidth=1.8, label=label)
    if "select_seconds" in runs.columns and runs["select_seconds"].notna().any():
        select_mean = cast(pd.Series, per_budget["select_seconds"].mean())
        select = select_mean.fillna(0.0).to_numpy(dtype=float)
        style = {"color": HIGHLIGHT_COLOR, "linestyle": "--", "linewidth": 1.0}
        ax.plot(percent, overhead + select, label="overhead + selection (mean)", **style)
    shade = {"where": saved > overhead, "interpolate": True, "color": "#55a868", "alpha": 0.2}
    ax.fill_between(percent, overhead, saved, label="net saving", **shade)
    ax.axhline(0.0, color="grey", linewidth=0.6)
    _mark_break_even(ax, percent, saved, overhead)
    _budget_axis(ax, cast(list[float], list(per_budget.groups)))  # the groups' keys are the budgets
    ax.set_ylabel("seconds")
    ax.set_title(f"Cost: full training takes {float(costs['full_train_seconds']):.1f} s", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return fig


def _mark_break_even(ax, percent: np.ndarray, saved: np.ndarray, overhead: float) -> None:
    crossing = _break_even(percent, saved, overhead)
    if crossing is not None:
        ax.axvline(crossing, color="grey", linestyle=":", linewidth=1.2)
        text = f"break-even ≈ {crossing:.3g}%"
        ax.annotate(text, (crossing, overhead), xytext=(4, 6), textcoords="offset points", fontsize=8)


def _break_even(percent: np.ndarray, saved: np.ndarray, overhead: float) -> float | None:
    """Budget (in %) where the saving meets the overhead, linearly interpolated; None if never."""
    gap = saved - overhead
    for i in range(len(gap) - 1):
        if gap[i] >= 0 > gap[i + 1] or gap[i] < 0 <= gap[i + 1]:
            return float(percent[i] + (percent[i + 1] - percent[i]) * gap[i] / (gap[i] - gap[i + 1]))
    return None


def plot_label_noise(
    results: pd.DataFrame, *, n_flipped: int, n_train: int, order: Sequence[str] | None = None
) -> Figure:
    """Examples with a flipped label that each selection keeps, against the random expectation.

    Parameters
    ----------
    results : DataFrame
        The long results table with ``n_flipped_kept`` and ``k``.
    n_flipped : int
        Number of flipped training labels.
    n_train : int
        Size of the training set ``N``. A uniform subset of ``k`` keeps ``n_flipped · k / N`` flipped
        examples in expectation (black dotted line).
    order : sequence of str, optional
        Selections to list first (after ``random``) in the legend.
    """
    runs = _per_run(results)
    runs = runs.loc[runs["n_flipped_kept"].notna()]
    names = selection_order(runs, order)
    colors = selection_colors(names)
    curve = _curve(runs, "n_flipped_kept")
    fig = new_figure(6.6, 4.8)
    ax = fig.add_subplot()
    for name in names:
        part = curve[curve["selection"] == name]
        ax.plot(
            part["percent"], part["mean"], color=colors[name], label=_text(name), **_line_style(name, names)
        )
    k = runs.groupby("budget")["k"].median()
    expected = n_flipped * k.to_numpy(dtype=float) / n_train
    ax.plot(
        100 * k.index.to_numpy(dtype=float),
        expected,
        color="black",
        linestyle=":",
        linewidth=2.0,
        label="random expectation flipped·k/N",
    )
    ax.axhline(n_flipped, color="grey", linewidth=0.8, linestyle="-.", label=f"all flipped ({n_flipped})")
    _budget_axis(ax, curve["budget"])
    ax.set_ylabel("flipped examples kept (mean over seeds)")
    ax.set_title("Label noise: flipped examples kept", fontsize=10)
    _bottom_legend(fig, ax, ncols=3)
    return fig
