"""The matplotlib set-up every figure module shares: a new figure on the Agg canvas, and PNG bytes.

Figures are built with the object-oriented API on their own Agg canvas: no ``pyplot`` state and no
global backend switch, so they are safe on headless machines and in threads. Writing files is the
caller's job.
"""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["figure_to_png", "new_figure"]


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of ``width`` x ``height`` inches at 100 dpi, constrained layout, on an Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_to_png(fig: Figure, *, dpi: int = 100) -> bytes:
    """The figure rendered as PNG bytes (no ``Software`` metadata, so the bytes depend on the figure only)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()
