"""Figures of the synthetic study (Du et al., ACL 2025, Figures 1 and 2a).

Every function takes plain arrays and returns a :class:`matplotlib.figure.Figure` made by
:func:`datadiet.report.figures.new_figure` (the Agg canvas, no ``pyplot`` state); render it with
:func:`datadiet.report.figures.figure_to_png`. Writing files is the caller's job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from datadiet.report.figures import new_figure

__all__ = [
    "draw_selection",
    "plot_discriminative_power",
    "plot_overlap_heatmap",
    "plot_selection",
    "plot_selection_grid",
]

CLASS_COLORS = ("#4c72b0", "#dd8452")
SELECTED_COLOR = "#c44e52"


def draw_selection(
    ax, x: np.ndarray, y: np.ndarray, indices: np.ndarray, w: np.ndarray, b: float, *, title: str = ""
) -> None:
    """Draw the points coloured by class, the boundary ``wᵀx + b = 0`` and the selected points on ``ax``."""
    for label, color in zip((0, 1), CLASS_COLORS, strict=True):
        mask = y == label
        ax.scatter(x[mask, 0], x[mask, 1], s=8, c=color, alpha=0.35, linewidths=0, label=f"class {label}")
    ax.scatter(
        x[indices, 0],
        x[indices, 1],
        s=22,
        facecolors="none",
        edgecolors=SELECTED_COLOR,
        linewidths=0.9,
        label=f"selected ({len(indices)})",
    )
    _draw_boundary(ax, x, w, b)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_boundary(ax, x: np.ndarray, w: np.ndarray, b: float) -> None:
    pad = 0.5
    lo, hi = x.min(axis=0) - pad, x.max(axis=0) + pad
    if abs(w[1]) >= abs(w[0]):
        xs = np.array([lo[0], hi[0]])
        ys = -(w[0] * xs + b) / w[1]
    else:
        ys = np.array([lo[1], hi[1]])
        xs = -(w[1] * ys + b) / w[0]
    ax.plot(xs, ys, color="black", linewidth=1.2, label="decision boundary")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])


def plot_selection(
    x: np.ndarray, y: np.ndarray, indices: np.ndarray, w: np.ndarray, b: float, *, title: str = ""
) -> Figure:
    """One selection on the 2-D training points.

    Parameters
    ----------
    x : ndarray of shape (n, 2)
    y : ndarray of shape (n,)
        Labels in {0, 1}.
    indices : ndarray of shape (k,)
        Selected rows.
    w, b : ndarray of shape (2,), float
        Reference model; its decision boundary is drawn.
    """
    fig = new_figure(4.2, 4.0)
    ax = fig.add_subplot()
    draw_selection(ax, x, y, indices, w, b, title=title)
    ax.legend(loc="best", fontsize=7)
    return fig


def plot_selection_grid(
    x: np.ndarray,
    y: np.ndarray,
    selections: Mapping[str, np.ndarray],
    w: np.ndarray,
    b: float,
    *,
    ncols: int = 3,
) -> Figure:
    """All selections side by side, ``ncols`` per row, in the mapping's order."""
    nrows = math.ceil(len(selections) / ncols)
    fig = new_figure(3.2 * ncols, 3.1 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (name, indices) in zip(axes, selections.items(), strict=False):
        draw_selection(ax, x, y, np.asarray(indices), w, b, title=name)
    for ax in axes[len(selections) :]:
        ax.set_axis_off()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, [label.split(" (")[0] for label in labels], loc="outside lower center", ncols=4)
    return fig


def plot_overlap_heatmap(matrix: np.ndarray, labels: Sequence[str], *, expectation: float) -> Figure:
    """Overlap ratios ``|S_i ∩ S_j| / |S_i|`` with each value printed and the random baseline ``k / n``."""
    matrix = np.asarray(matrix, dtype=float)
    m = len(labels)
    fig = new_figure(1.0 + 0.62 * m, 0.8 + 0.55 * m)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    for i in range(m):
        for j in range(m):
            color = "black" if matrix[i, j] > 0.6 else "white"
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(m), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(m), labels, fontsize=7)
    ax.set_title(f"overlap |S_i ∩ S_j| / |S_i|   (random expectation k/N = {expectation:.3f})", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def plot_discriminative_power(
    z: np.ndarray, loss_sensitivity: np.ndarray, gradient_bounds: Mapping[float, np.ndarray], *, w_norm: float
) -> Figure:
    """``C_l`` and the ``C_g`` bounds (one per α) against the margin ``z``.

    Parameters
    ----------
    z : ndarray of shape (m,)
        Margins.
    loss_sensitivity : ndarray of shape (m,)
        ``C_l`` at each margin.
    gradient_bounds : mapping from α to ndarray of shape (m,)
        The bound on ``C_g`` at each margin, for each α = ||w|| ||h||.
    w_norm : float
        ``||w||`` used for ``C_l`` (shown in the legend).
    """
    fig = new_figure(5.5, 3.8)
    ax = fig.add_subplot()
    ax.plot(z, loss_sensitivity, color="black", linewidth=2, label=f"C_l (loss), ||w||={w_norm:.2f}")
    for alpha, bound in gradient_bounds.items():
        ax.plot(z, bound, linestyle="--", label=f"C_g bound (gradient), α={alpha:.2f}")
    ax.axvline(0.0, color="grey", linewidth=0.6)
    ax.set_xlabel("margin z = y·(wᵀh)")
    ax.set_ylabel("sensitivity to h")
    ax.set_title("Discriminative power: both vanish for confident correct points", fontsize=9)
    ax.legend(fontsize=7)
    return fig
