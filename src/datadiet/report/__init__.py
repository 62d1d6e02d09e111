"""Matplotlib figures and reports (figure modules import matplotlib; import them explicitly).

``build_report`` and ``load_study`` are re-exported lazily, so importing this package stays free of
matplotlib until one of them is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datadiet.report.html import build_report, load_study

__all__ = ["build_report", "load_study"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from datadiet.report import html

        return getattr(html, name)
    raise AttributeError(f"module 'datadiet.report' has no attribute {name!r}")
