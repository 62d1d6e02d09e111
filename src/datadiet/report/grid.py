"""Figures of a `datadiet grid` run: an overlap heatmap per budget and the summary bars.

The heatmap's rows and columns are the grid's selections (``<algorithm>@<representation>``) grouped by
representation, with lines between the groups and each entry ``|S_i ∩ S_j| / |S_i|`` written in its cell;
the title gives the random expectation k/N. The summary figure puts, per budget, the mean overlap of
same-representation pairs beside that of same-algorithm pairs and k/N (definitions in
:mod:`datadiet.analysis.grid`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from datadiet._core.files import atomic_write_bytes
from datadiet.pipeline.grid import GridResult, budget_tag
from datadiet.report.figures import figure_to_png, new_figure

__all__ = ["overlap_heatmap", "summary_figure", "write_grid_figures"]


def overlap_heatmap(labels: list[str], matrix: np.ndarray, *, budget: Any, k: int, random: float) -> Figure:
    """The overlap matrix of one budget as an annotated heatmap, grouped by representation.

    Parameters
    ----------
    labels : list of str
        ``<algorithm>@<representation>`` per row (and column), grouped by representation.
    matrix : ndarray of shape (n_labels, n_labels)
        ``|S_i ∩ S_j| / |S_i|``; NaN where a pair is missing.
    budget, k, random
        The budget as given, its exact size ``k`` and the random expectation ``k / N``.
    """
    n = len(labels)
    side = max(4.0, 0.32 * n + 2.5)
    fig = new_figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(matrix), vmin=0.0, vmax=1.0, cmap="viridis")
    fig.colorbar(image, ax=ax, shrink=0.8, label="|Si ∩ Sj| / |Si|")
    size = max(3.0, min(8.0, 200.0 / max(n, 1)))
    for i in range(n):
        for j in range(n):
            if np.isfinite(matrix[i, j]):
                color = "black" if matrix[i, j] > 0.6 else "white"
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=size, color=color)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=size + 1)
    ax.set_yticks(range(n), labels, fontsize=size + 1)
    reps = [label.partition("@")[2] for label in labels]
    for edge in (i for i in range(1, n) if reps[i] != reps[i - 1]):
        ax.axhline(edge - 0.5, color="white", linewidth=1.5)
        ax.axvline(edge - 0.5, color="white", linewidth=1.5)
    ax.set_title(f"overlap at budget {budget} (k={k}); random expectation k/N = {random:.3f}")
    return fig


def summary_figure(table: pd.DataFrame) -> Figure:
    """Per budget: mean overlap of same-representation pairs, of same-algorithm pairs, and k/N."""
    value: dict[tuple[Any, str], float] = {}
    chance: dict[Any, float] = {}
    for row in table.to_dict("records"):
        if row["measure"] in ("same_representation", "same_algorithm"):
            value[row["budget"], str(row["measure"])] = float(row["value"])
            chance[row["budget"]] = float(row["random"])
    budgets = list(chance)
    fig = new_figure(max(5.0, 1.4 * len(budgets) + 2.0), 3.6)
    ax = fig.add_subplot()
    x = np.arange(len(budgets))
    width = 0.27
    bars = (
        ("same_representation", "same representation, other algorithm"),
        ("same_algorithm", "same algorithm, other representation"),
    )
    for offset, (measure, name) in zip((-1, 0), bars, strict=True):
        ax.bar(x + offset * width, [value.get((b, measure), np.nan) for b in budgets], width, label=name)
    ax.bar(x + width, [chance[b] for b in budgets], width, label="random k/N", color="0.6")
    ax.set_xticks(x, [str(b) for b in budgets])
    ax.set_xlabel("budget")
    ax.set_ylabel("mean overlap")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Do selections agree more on one representation or with one algorithm?")
    return fig


def write_grid_figures(result: GridResult) -> list[Path]:
    """Write ``<out>/figures/overlap_b<budget>.png`` per budget and ``summary.png``; returns the paths."""
    folder = result.out / "figures"
    written = []
    for budget, entry in result.overlaps.items():
        fig = overlap_heatmap(
            entry["labels"], entry["mean"], budget=budget, k=entry["k"], random=entry["random"]
        )
        path = folder / f"overlap_{budget_tag(budget)}.png"
        atomic_write_bytes(path, figure_to_png(fig))
        written.append(path)
    if len(result.summary):
        path = folder / "summary.png"
        atomic_write_bytes(path, figure_to_png(summary_figure(result.summary)))
        written.append(path)
    return written
