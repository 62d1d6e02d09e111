"""Run the reproduction of Du et al. (ACL 2025) on the embedded datasets and check its findings.

``run_paper(out)`` runs, for each dataset of :data:`~datadiet.experiments.paper.setup.PAPER_DATASETS`, its
study (resumable: a rerun reuses every finished cell) and the grid on that study's represent output, then
computes every :class:`~datadiet.experiments.paper.findings.Finding`. Rendering (figures, docs/paper.md) is
the report layer's (:mod:`datadiet.report.paper`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from datadiet._core.files import atomic_write_json, load_array
from datadiet.analysis.stats import paired_difference
from datadiet.config import selection_file
from datadiet.config.study import StudyConfig
from datadiet.errors import MissingAssetError
from datadiet.experiments.paper import findings as F
from datadiet.experiments.paper.setup import (
    DEFAULT_DATASETS,
    GRID_BUDGETS,
    GRID_SEEDS,
    MAIN_MODEL_DATASET,
    MAIN_MODEL_SEEDS,
    OVERLAP_BUDGET,
    PAPER_DATASETS,
    main_model_config,
    paper_config,
)
from datadiet.selection.base import Selection
from datadiet.selection.registry import SELECTORS


@dataclass
class DatasetResult:
    """What the reproduction measured on one dataset."""

    name: str
    title: str
    study_dir: Path
    config: StudyConfig
    grid: Any
    """The :class:`~datadiet.pipeline.grid.GridResult`."""
    results: pd.DataFrame
    paired: pd.DataFrame
    findings: list[F.Finding]
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class MainModelResult:
    """The proxy -> main-model comparison: the same selections trained with another main model."""

    study_dir: Path
    config: StudyConfig
    results: pd.DataFrame
    finding: F.Finding
    seconds: float


@dataclass
class PaperRun:
    """Everything :func:`run_paper` measured."""

    datasets: list[DatasetResult]
    main_model: MainModelResult | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    """Datasets not run, with the reason (an embedded asset that is not installed or cached)."""


def run_paper(
    out: str | Path, datasets: Sequence[str] = DEFAULT_DATASETS, *, progress: bool = True,
    main_model: bool = True,
) -> PaperRun:  # fmt: skip
    """Run (or resume) every dataset's study and grid under ``out``, then (with ``main_model`` and its
    dataset among ``datasets``) the proxy -> main-model comparison. A dataset whose files are not there
    (WinoGrande's BIG-bench files before ``make data``) is skipped, with the reason."""
    run = PaperRun([])
    for name in datasets:
        try:
            run.datasets.append(run_dataset(name, Path(out) / name, progress=progress))
        except MissingAssetError as exc:
            run.skipped[name] = " ".join(str(exc).split())
    base = next((r for r in run.datasets if r.name == MAIN_MODEL_DATASET), None)
    if main_model and base is not None:
        run.main_model = run_main_model(
            base, Path(out) / f"{MAIN_MODEL_DATASET}_main_model", progress=progress
        )
    return run


def run_main_model(base: DatasetResult, out: Path, *, progress: bool = True) -> MainModelResult:
    """Train :data:`~datadiet.experiments.paper.setup.MAIN_MODEL` on selections of ``base``'s frozen proxy
    (its reference run and store are reused: nothing is trained or extracted again)."""
    from datadiet.pipeline.study import run_study

    cfg = main_model_config(str(base.study_dir), str(out))
    tick = time.perf_counter()
    study_dir = run_study(cfg, progress=progress)
    seconds = time.perf_counter() - tick
    results = pd.read_parquet(study_dir / "results.parquet")
    metric = str(cfg.primary_metric)
    same_seeds = base.results.seed.isin([*MAIN_MODEL_SEEDS, -1])  # the same seeds on both sides
    shared = cast(pd.DataFrame, base.results[same_seeds])
    proxy = paired_difference(shared, metric=metric)
    main = paired_difference(results, metric=metric)
    names = {s.label for s in cfg.selections} | {"random"}
    proxy = cast(pd.DataFrame, proxy[proxy.selection.isin(names)])
    finding = F.proxy_transfer(proxy, main, proxy_name="frozen head", main_name="LoRA MiniLM")
    return MainModelResult(study_dir, cfg, results, finding, seconds)


def run_dataset(name: str, out: Path, *, progress: bool = True) -> DatasetResult:
    """One dataset: its study, then the grid on the study's representations, then the findings."""
    from datadiet.pipeline.grid import plan_grid, run_grid
    from datadiet.pipeline.study import run_study

    cfg = paper_config(name, str(out))
    tick = time.perf_counter()
    if PAPER_DATASETS[name].grid_only:
        study_dir = _represent_only(cfg, out)
    else:
        study_dir = run_study(cfg, progress=progress)
    study_s = time.perf_counter() - tick
    tick = time.perf_counter()
    plan = plan_grid(study_dir, algorithms=builtin_selectors())
    grid = run_grid(plan, study_dir / "grid", budgets=GRID_BUDGETS, seeds=GRID_SEEDS,
                    progress=progress)  # fmt: skip
    grid_s = time.perf_counter() - tick
    if PAPER_DATASETS[name].grid_only:
        results = paired = pd.DataFrame()
    else:
        results = pd.read_parquet(study_dir / "results.parquet")
        paired = paired_difference(results, metric=str(cfg.primary_metric))
    found = findings(cfg, study_dir, grid, results)
    seconds = {"study_s": study_s, "grid_s": grid_s, **first_run_costs(study_dir)}
    return DatasetResult(PAPER_DATASETS[name].name, PAPER_DATASETS[name].title, study_dir, cfg, grid, results,
                         paired, found, seconds)  # fmt: skip


COSTS = "costs.json"
"""The first (uncached) run's reference and represent seconds: a study writes it; so does a grid-only run."""


def first_run_costs(folder: Path) -> dict[str, float]:
    """The first run's ``reference_seconds`` and ``represent_seconds`` in ``folder`` (empty if unknown)."""
    path = folder / COSTS
    if not path.is_file():
        return {}
    import json

    record = json.loads(path.read_text(encoding="utf-8"))
    return {k: float(v) for k, v in record.items() if k in ("reference_seconds", "represent_seconds")}


def _represent_only(cfg: StudyConfig, out: Path) -> Path:
    """Train the reference and extract its representations (cached); record the costs when this call is
    the one that trained it (a reused run's are unknown, so none are written)."""
    from datadiet.pipeline.reference import prepare, run_reference
    from datadiet.pipeline.represent import run_represent
    from datadiet.representations.dynamics import RunLayout

    stage = prepare(cfg.reference)
    fresh = not RunLayout(stage.run_dir).done.is_file()
    tick = time.perf_counter()
    run_reference(cfg.reference, stage)
    reference_s = time.perf_counter() - tick
    tick = time.perf_counter()
    run_represent(cfg.reference, stage)
    if fresh:
        costs = {"reference_seconds": reference_s, "represent_seconds": time.perf_counter() - tick}
        atomic_write_json(out / COSTS, costs)
    return out


def builtin_selectors() -> list[str]:
    """The selectors datadiet itself ships (a plugin's would make the page depend on the install), but
    ``random``, the grid's k/N baseline."""
    return [
        name
        for name in SELECTORS.registered()
        if name != "random" and SELECTORS.owner(name).startswith("module 'datadiet.")
    ]


def findings(cfg: StudyConfig, study_dir: Path, grid: Any, results: pd.DataFrame) -> list[F.Finding]:
    """Every finding, from the grid's selections and the study's results and selections."""
    sels = F.GridSelections(dict(grid.selections), int(grid.n_examples))
    gradient = next(
        (c.name for c in grid.combinations
         if (c.algorithm, c.representation, c.status) == ("prototypicality", "gradients/train", "allowed")),
        "gradients/train",
    )  # fmt: skip
    overlaps = [
        F.same_representation_vs_algorithm(sels),
        F.diversity_varies_least(sels, OVERLAP_BUDGET),
        F.gradients_agree_with_loss(sels, OVERLAP_BUDGET),
        F.proto_hidden_vs_hard_loss(sels, OVERLAP_BUDGET),
        F.paper_pairs(sels, OVERLAP_BUDGET, gradient),
    ]
    if results.empty:  # a grid-only dataset: no main model was trained
        return overlaps
    labels = load_array(study_dir / "labels.train.npy", name="labels").astype(np.int64)
    names = list(pd.read_json(study_dir / "study.json", typ="series")["label_names"])
    metric = str(cfg.primary_metric)
    paired = paired_difference(results, metric=metric)
    smallest = min(cfg.budgets)
    by_name = {s.label: s for s in cfg.selections}
    score_based = [s.label for s in cfg.selections if s.algorithm in F.SCORE_BASED and s.calibrate is None
                   and s.balance == "none"]  # fmt: skip
    lifts = {}
    for spec in cfg.selections:
        if spec.calibrate is None:
            continue
        plain = next((s.label for s in cfg.selections if s.algorithm == spec.algorithm
                      and s.representation == spec.representation and s.calibrate is None
                      and s.balance == spec.balance), None)  # fmt: skip
        if plain is not None:
            lifts[spec.label] = paired_difference(results, metric=metric, baseline=plain)
    less = [s.label for s in cfg.selections if s.algorithm == "less"]
    plain_less = next((n for n in less if by_name[n].balance == "none"), None)
    balanced_less = next((n for n in less if by_name[n].balance != "none"), None)

    def study_selection(label: str, budget: float, seed: int) -> np.ndarray | None:
        path = study_dir / selection_file(label, budget, seed)
        if not path.is_file():
            return None
        import json

        return Selection.from_dict(json.loads(path.read_text(encoding="utf-8")), where=str(path)).indices

    out = list(overlaps)
    if plain_less and balanced_less:
        out.append(F.less_majority(study_selection, labels, names, cfg.budgets, cfg.seeds, plain=plain_less,
                                   balanced=balanced_less))  # fmt: skip
    out.append(F.collapse_at_high_compression(paired, smallest, score_based))
    out.append(F.calibration_lifts(lifts, smallest))
    return out
