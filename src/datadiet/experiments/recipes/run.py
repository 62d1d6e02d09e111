"""Run the recipe evidence study and judge ``auto`` against its target.

``run_recipes(out, tasks)`` runs one study per task of :data:`~datadiet.experiments.recipes.setup.TASKS`
(resumable: a rerun reuses every finished cell) and returns, per task, the results, the seed-paired
differences of every recipe to random (:func:`~datadiet.analysis.stats.paired_difference`, paired t 95%)
and the costs. :func:`target_verdicts` applies the target of docs/recipes.md to ``auto``. Rendering is the
report layer's (:mod:`datadiet.report.recipes`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from datadiet.analysis.stats import paired_difference
from datadiet.config.study import StudyConfig
from datadiet.experiments.recipes.setup import (
    BUDGETS,
    SEEDS,
    SMALL_BUDGET,
    TARGET_MEAN,
    TASKS,
    VERDICT_SEEDS,
    recipes_config,
    verdict_config,
)

METRIC = "macro_f1"


@dataclass
class TaskResult:
    """What the evidence study measured on one task."""

    name: str
    title: str
    note: str
    study_dir: Path
    config: StudyConfig
    results: pd.DataFrame
    paired: pd.DataFrame
    costs: dict[str, float] = field(default_factory=dict)
    verdict_paired: pd.DataFrame | None = None
    """``auto`` and random with :data:`~datadiet.experiments.recipes.setup.VERDICT_SEEDS` (the verdict's)."""


def run_recipes(out: str | Path, names: Sequence[str], *, progress: bool = True) -> list[TaskResult]:
    """Run (or reuse) the study of every task in ``names``; its outputs go to ``<out>/<task>``."""
    from datadiet.pipeline.study import run_study

    done = []
    for name in names:
        task = TASKS[name]
        study_dir = Path(out) / name
        cfg = recipes_config(name, str(study_dir))
        started = time.perf_counter()
        run_study(cfg, progress=progress, report=False)
        results = pd.read_parquet(study_dir / "results.parquet")
        paired = paired_difference(results, metric=METRIC)
        verdict_dir = Path(out) / f"{name}-auto"
        _reuse_cells(study_dir, verdict_dir, ("full", "random", "recipe:auto"))
        run_study(verdict_config(name, str(verdict_dir), str(study_dir)), progress=progress, report=False)
        verdict = paired_difference(pd.read_parquet(verdict_dir / "results.parquet"), metric=METRIC)
        costs = _costs(study_dir, results, time.perf_counter() - started)
        done.append(TaskResult(name, task.title, task.note, study_dir, cfg, results, paired, costs, verdict))
    return done


def _reuse_cells(source: Path, target: Path, labels: Sequence[str]) -> None:
    """Copy the finished cells of ``labels`` from the study ``source`` into ``target`` (which shares its
    reference run and data): the study reuses a copied cell only if its hash matches, else recomputes it."""
    from datadiet._core.files import atomic_write_bytes, safe_name

    prefixes = tuple(f"{safe_name(label)}__" for label in labels)
    for cell in sorted((source / "cells").glob("*.json")):
        copy = target / "cells" / cell.name
        if cell.name.startswith(prefixes) and not copy.exists():
            atomic_write_bytes(copy, cell.read_bytes())


def _costs(study_dir: Path, results: pd.DataFrame, seconds: float) -> dict[str, float]:
    """The first run's reference and represent seconds, and this run's wall time."""
    path = study_dir / "costs.json"
    stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return {**{k: float(v) for k, v in stored.items()}, "this_run_seconds": seconds}


@dataclass(frozen=True)
class Verdict:
    """``auto`` against random at one budget of one task."""

    task: str
    budget: float
    mean_diff: float
    ci_low: float
    ci_high: float
    n_paired: int

    @property
    def not_worse(self) -> bool:
        """Mean paired difference at least :data:`TARGET_MEAN` and the 95% interval reaching 0."""
        return self.mean_diff >= TARGET_MEAN and self.ci_high >= 0

    @property
    def better(self) -> bool:
        """Reliably better: the interval above 0."""
        return self.ci_low > 0


def target_verdicts(results: Sequence[TaskResult], recipe: str = "auto") -> list[Verdict]:
    """``recipe``'s verdict at every budget of every task (the rows of its paired differences)."""
    label = f"recipe:{recipe}"
    verdicts = []
    for result in results:
        paired = result.paired if result.verdict_paired is None or recipe != "auto" else result.verdict_paired
        rows = paired[paired.selection == label]
        for row in rows.itertuples():
            values = row._asdict()
            verdicts.append(
                Verdict(result.name, float(values["budget"]), float(values["mean_diff"]),
                        float(values["ci_low"]), float(values["ci_high"]), int(values["n_paired"]))
            )  # fmt: skip
    return verdicts


def target_met(verdicts: Sequence[Verdict]) -> tuple[bool, bool, list[str]]:
    """(never reliably worse everywhere, reliably better at <= 15% on at least two tasks, those tasks)."""
    never_worse = bool(verdicts) and all(v.not_worse for v in verdicts)
    better = sorted({v.task for v in verdicts if v.better and v.budget <= SMALL_BUDGET + 1e-9})
    return never_worse, len(better) >= 2, better


def setup_values() -> dict[str, object]:
    """The study's set-up as plain values, for the page."""
    return {"budgets": BUDGETS, "seeds": SEEDS, "verdict_seeds": VERDICT_SEEDS, "target_mean": TARGET_MEAN,
            "small_budget": SMALL_BUDGET, "tasks": list(TASKS)}  # fmt: skip
