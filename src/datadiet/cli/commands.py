"""Imports every command module of the ``datadiet`` command, so each registers on the one ``app``."""

from __future__ import annotations

from datadiet.cli import analyze, grid, paper, prune  # noqa: F401
