"""A self-contained HTML report of a pruning study directory.

:func:`build_report` reads the study directory (:func:`datadiet.report.study.load_study`), writes every
figure as PNG into ``<study>/figures/`` and writes ``<study>/report.html`` from the jinja2 templates in
``report/templates/``. The page embeds the figures as base64 data URIs and its CSS inline: it makes no
request and needs no JavaScript, so it can be mailed or archived as one file. Autoescape is on: every
string that comes from the data is HTML-escaped.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from datadiet._core.files import atomic_write_bytes, atomic_write_text
from datadiet.analysis.grid import summary as agreement_summary
from datadiet.analysis.overlap import label_distribution
from datadiet.analysis.stats import MIN_SEEDS_FOR_FLAG, budget_label, paired_difference
from datadiet.config import budget_text
from datadiet.errors import ParameterError
from datadiet.report import study_plots as plots
from datadiet.report import templates
from datadiet.report.figures import figure_to_png
from datadiet.report.study import Study, load_study

__all__ = ["Study", "build_report", "load_study", "render_page"]

DEFAULT_BUDGET = 0.3  # overlap and data-map budget when none is given: the nearest study budget
INTERVAL = "t"  # the interval of the paired differences in the performance tables (analysis.stats)
INTERVAL_NOTES = {
    "t": "the mean ± the t quantile times the standard error; it assumes roughly normal per-seed differences",
    "sign-flip": "exact when the per-seed differences are symmetric about their mean",
}


# --- figures ----------------------------------------------------------------------------------
def _nearest_budget(study: Study, budget: float | None, *, parameter: str) -> float:
    budgets = sorted(float(b) for b in study.meta["budgets"])
    if budget is None:
        return min(budgets, key=lambda b: (abs(b - DEFAULT_BUDGET), b))
    if not any(np.isclose(budget, b) for b in budgets):
        raise ParameterError(
            f"The '{parameter}' parameter must be one of the study budgets {budgets}. Got {budget!r}."
        )
    return float(budget)


def _first_seed(study: Study) -> int:
    seeds = [int(s) for s in study.meta["seeds"]]
    return 0 if 0 in seeds else seeds[0]


def _study_budgets(study: Study) -> list[float]:
    return sorted(float(b) for b in study.meta["budgets"])


def _overlap_key(budget: float, default: float) -> str:
    """``overlap`` for the budget shown first (``figures/overlap.png``), ``overlap_<budget>`` for the rest."""
    return "overlap" if np.isclose(budget, default) else _figure_key("overlap", budget_text(budget))


def _overlap_figures(study: Study, default: float) -> dict[str, tuple[Any, str]]:
    """An overlap heatmap per study budget with two or more saved selections (keys: :func:`_overlap_key`)."""
    figures = {}
    for budget in _study_budgets(study):
        drawn = _overlap_figure(study, budget)
        if drawn is not None:
            figures[_overlap_key(budget, default)] = drawn
    return figures


def _overlap_figure(study: Study, budget: float) -> tuple[Any, str] | None:
    seed = _first_seed(study)
    chosen = {name: study.selection(name, budget, seed) for name in study.order}
    chosen = {name: idx for name, idx in chosen.items() if idx is not None}
    if len(chosen) < 2:
        return None
    n, label = len(study.labels), budget_label(budget)
    fig = plots.plot_overlap(chosen, n_examples=n, title=f"budget {label}, seed {seed}")
    k = round(float(np.mean([len(idx) for idx in chosen.values()])))
    note = f"Selections at budget {label}, seed {seed}; random expectation k/N = {k}/{n} = {k / n:.3f}."
    return fig, note


def _highlight_name(study: Study, highlight: str | None) -> str | None:
    if highlight is not None:
        if highlight not in study.order:
            raise ParameterError(f"Unknown highlight selection {highlight!r}. Available: {study.order}.")
        return highlight
    configured = study.meta["selections"]
    hard = [str(s["name"]) for s in configured if s.get("algorithm") == "hard_to_learn"]
    names = hard or [str(s["name"]) for s in configured] or study.order
    return names[0] if names else None


def _data_map_figure(study: Study, highlight: str | None, budget: float) -> tuple[Any, str] | None:
    if study.confidence is None:
        return None
    name = _highlight_name(study, highlight)
    seed = _first_seed(study)
    indices = None if name is None else study.selection(name, budget, seed)
    label = f"{name}, {budget_label(budget)}, seed {seed}" if indices is not None else ""
    fig = plots.plot_data_map(
        study.confidence, highlight=indices, highlight_label=label, flipped=study.flipped
    )
    note = f"Highlighted: {label}." if indices is not None else "No saved selection to highlight."
    return fig, note


def _label_figure(study: Study) -> tuple[Any, str] | None:
    if (study.labels < 0).all():  # no labels (generation)
        return None
    classes, display = study.classes()
    distributions = {}
    for name in study.order:
        frame = _selection_fractions(study, name, classes)
        if frame is not None:
            distributions[name] = frame.set_axis(display, axis=1)
    if not distributions:
        return None
    full = label_distribution(np.arange(len(study.labels)), study.labels, classes)["frac_total"]
    fig = plots.plot_label_distribution(distributions, full.set_axis(display))
    return fig, "Shares averaged over the seeds whose selections were saved."


def _selection_fractions(study: Study, name: str, classes: list[object]) -> pd.DataFrame | None:
    rows = {}
    for budget in sorted(float(b) for b in study.meta["budgets"]):
        picks = [study.selection(name, budget, int(seed)) for seed in study.meta["seeds"]]
        fractions = [
            label_distribution(p, study.labels, classes)["frac_selected"] for p in picks if p is not None
        ]
        if fractions:
            rows[budget] = pd.concat(fractions, axis=1).mean(axis=1).to_numpy()
    return pd.DataFrame.from_dict(rows, orient="index") if rows else None


def _noise_figure(study: Study) -> tuple[Any, str] | None:
    noise = study.meta.get("label_noise")
    if (
        not noise
        or "n_flipped_kept" not in study.results.columns
        or study.results["n_flipped_kept"].isna().all()
    ):
        return None
    n_flipped = int(noise["n_flipped"])
    fig = plots.plot_label_noise(
        study.results, n_flipped=n_flipped, n_train=len(study.labels), order=study.order
    )
    return (
        fig,
        f"{n_flipped} of {len(study.labels)} training labels flipped ({float(noise['fraction']):.0%}).",
    )


def _cost_figure(study: Study) -> tuple[Any, str] | None:
    costs = study.meta.get("costs")
    if not costs or study.results["train_seconds"].isna().all():
        return None
    return plots.plot_costs(study.results, costs=costs), ""


def _splits(study: Study) -> list[str]:
    present = [str(s) for s in pd.unique(study.results["split"])]
    return sorted(present, key=lambda s: (s != "test", s != "ood", present.index(s)))


def _figure_key(prefix: str, value: str) -> str:
    return f"{prefix}_{''.join(c if c.isalnum() or c in '-_' else '_' for c in value)}"


def _collect_figures(study: Study, overlap_budget: float | None, highlight: str | None) -> dict[str, Any]:
    """Figure key -> (figure, note) for every figure the data allows, in page order."""
    figures: dict[str, Any] = {}
    for split in _splits(study):
        fig = plots.plot_performance(
            study.results, metrics=study.meta["metrics"], split=split, order=study.order
        )
        figures[_figure_key("performance", split)] = (fig, "")
    budget = _nearest_budget(study, overlap_budget, parameter="overlap_budget")
    optional = {
        **_overlap_figures(study, budget),
        "label_distribution": _label_figure(study),
        "data_map": _data_map_figure(study, highlight, _nearest_budget(study, None, parameter="budget")),
        "costs": _cost_figure(study),
        "label_noise": _noise_figure(study),
    }
    figures.update({key: value for key, value in optional.items() if value is not None})
    return figures


# --- page -------------------------------------------------------------------------------------
def build_report(
    study_dir: str | os.PathLike[str], *, overlap_budget: float | None = None, highlight: str | None = None
) -> Path:
    """Write ``<study>/figures/*.png`` and a self-contained ``<study>/report.html``.

    Parameters
    ----------
    study_dir : path
        A study directory as the study runner writes it (``study.json``, ``results.parquet``,
        ``selections/``, the label and confidence arrays).
    overlap_budget : float, optional
        The budget whose overlap heatmap the page shows first (one of the study budgets; a selector
        switches between one heatmap per budget, written to ``figures/overlap.png`` for this budget and
        ``figures/overlap_<budget>.png`` for the others). Defaults to the study budget nearest 0.3; the
        heatmaps use seed 0.
    highlight : str, optional
        Selection highlighted on the data map (at the budget nearest 0.3, seed 0). Defaults to the
        first ``hard_to_learn`` selection of ``study.json``, else its first selection.

    Returns
    -------
    Path
        The written ``report.html``.
    """
    study = load_study(study_dir)
    figures = _collect_figures(study, overlap_budget, highlight)
    images = {}
    for key, (fig, _) in figures.items():
        images[key] = figure_to_png(fig, dpi=110)
        atomic_write_bytes(study.directory / "figures" / f"{key}.png", images[key])
    notes = {key: note for key, (_, note) in figures.items()}
    page = render_page(study, images, notes, overlap_budget=overlap_budget)
    return atomic_write_text(study.directory / "report.html", page)


def render_page(
    study: Study, images: dict[str, bytes], notes: dict[str, str], *, overlap_budget: float | None = None
) -> str:
    """The report page: ``templates/report.html.j2`` filled with the study's tables and PNG ``images``.

    ``overlap_budget`` is the budget whose overlap heatmap is selected when the page opens (see
    :func:`build_report`).
    """
    encoded = {key: base64.b64encode(png).decode("ascii") for key, png in images.items()}
    default = _nearest_budget(study, overlap_budget, parameter="overlap_budget")
    performance = []
    for split in _splits(study):
        key = _figure_key("performance", split)
        performance.append({"key": key, "split": split, "image": encoded[key], "table": _table(study, split)})
    figures = {key: {"image": encoded[key], "note": notes.get(key, "")} for key in encoded}
    return templates.render(
        "report.html.j2",
        name=study.meta["name"],
        dummy=dummy_name(study.meta.get("task", "")),
        config=_config_items(study),
        selections=[_selection_row(spec) for spec in study.meta["selections"]],
        performance=performance,
        figures=figures,
        overlap=_overlap_panels(study, figures, default),
        agreement=agreement_rows(study),
    )


def agreement_rows(study: Study) -> list[dict[str, str]]:
    """Per budget, how much the saved selections agree (:func:`datadiet.analysis.grid.summary`): the mean
    overlap of pairs on the same representation and of pairs of the same algorithm, the mean seed stability,
    each beside k/N. Empty when fewer than two selections were saved."""
    selections: dict[tuple[str, str, float, int], np.ndarray] = {}
    for spec in study.meta["selections"]:
        name = str(spec["name"])
        if name == "random" or not spec.get("representation"):
            continue  # random is the k/N line itself
        variant = name.partition("@")[2].partition("+")[2]  # "balanced", "cal0.5": a variant of the algorithm
        algorithm = str(spec["algorithm"]) + (f"+{variant}" if variant else "")
        for budget in _study_budgets(study):
            for seed in study.meta["seeds"]:
                picked = study.selection(name, budget, int(seed))
                if picked is not None:
                    selections[str(spec["representation"]), algorithm, budget, int(seed)] = picked
    if len({key[:2] for key in selections}) < 2:
        return []
    try:
        table = agreement_summary(selections, n_examples=int(study.meta["n_train"]))
    except ParameterError:  # e.g. a budget at which the saved selections differ in size
        return []
    rows = []
    for budget, part in table.groupby("budget", sort=True):
        values = {
            m: cast(pd.DataFrame, part[part.measure == m])
            for m in ("same_representation", "same_algorithm", "seed_stability")
        }
        rows.append({
            "budget": budget_label(float(budget)),  # type: ignore[arg-type]
            "k/N": f"{float(part.random.iloc[0]):.3f}",
            **{m.replace("_", " "): _mean_text(v) for m, v in values.items()},
        })  # fmt: skip
    return rows


def _mean_text(part: pd.DataFrame) -> str:
    values = part.value.dropna()
    if values.empty:
        return "n/a"
    pairs = int(part.n_pairs.sum())
    return f"{float(values.mean()):.3f} ({pairs} pairs)"


def _overlap_panels(study: Study, figures: dict[str, dict[str, str]], default: float) -> list[dict[str, Any]]:
    """The overlap heatmaps in budget order, for the page's budget selector (one of them checked)."""
    panels = []
    for budget in _study_budgets(study):
        key = _overlap_key(budget, default)
        if key in figures:
            panels.append(
                {"key": key, "label": budget_label(budget), "checked": key == "overlap", **figures[key]}
            )
    if panels and not any(panel["checked"] for panel in panels):
        panels[0]["checked"] = True
    return panels


def _config_items(study: Study) -> list[tuple[str, object]]:
    """The study's settings as (name, value) pairs, in page order."""
    meta = study.meta
    noise = meta.get("label_noise")
    costs = meta.get("costs") or {}
    models = [
        (f"{who} model", str(record.get("description", "")))
        for who in ("reference", "main")
        if isinstance(record := meta.get(f"{who}_model"), dict)  # absent from older studies
    ]
    return [
        ("task", meta.get("task", "")),
        *models,
        ("training examples", meta["n_train"]),
        ("classes", ", ".join(map(str, meta["label_names"]))),
        ("budgets", ", ".join(budget_label(b) for b in meta["budgets"])),
        ("seeds", ", ".join(map(str, meta["seeds"]))),
        ("metrics", f"{', '.join(map(str, meta['metrics']))} (primary: {meta['primary_metric']})"),
        (
            "label noise",
            "none" if not noise else f"{noise['n_flipped']} flipped ({float(noise['fraction']):.0%})",
        ),
        ("costs", ", ".join(f"{key.replace('_seconds', '')} {float(v):.1f} s" for key, v in costs.items())),
    ]


def _selection_row(spec: dict[str, Any]) -> dict[str, Any]:
    cells = [spec.get(k) for k in ("name", "algorithm", "representation", "balance", "calibrate")]
    params = json.dumps(spec.get("params") or {}, sort_keys=True)
    return {"cells": ["" if v is None else v for v in cells], "params": params}


def _table(study: Study, split: str) -> dict[str, Any] | None:
    """The primary metric per selection and budget on ``split``, paired against the first selection."""
    metric = str(study.meta["primary_metric"])
    present = set(study.results.loc[study.results["split"] == split, "selection"])
    names = [name for name in study.order if name in present]  # "random" first when there is one
    if not names:
        return None
    baseline = names[0]
    paired = paired_difference(
        study.results, metric=metric, split=split, baseline=baseline, interval=INTERVAL
    )
    budgets = sorted(pd.unique(paired["budget"]))
    rows = [
        {"name": name, "cells": _row_cells(str(name), part, budgets, baseline)}
        for name, part in paired.groupby("selection", sort=False)
    ]
    compared = paired[paired["selection"] != baseline]
    return {
        "metric": metric,
        "split": split,
        "baseline": baseline,
        "reference": _reference_line(study, metric, split),
        "budgets": [budget_label(b) for b in budgets],
        "rows": rows,
        "seeds": seed_count_text(paired["n_seeds"]),
        "interval": str(paired["interval"].iloc[0]),
        "interval_note": INTERVAL_NOTES[INTERVAL],
        "min_seeds": MIN_SEEDS_FOR_FLAG,
        "paired": int(compared["n_paired"].max()) if len(compared) else 0,
        "flaggable": bool(compared["flaggable"].any()),
    }


def seed_count_text(counts: pd.Series) -> str:
    """How many seeds the cells have, from the data: ``"3 seeds"``, ``"1 seed"`` or ``"2–3 seeds"``.

    >>> [seed_count_text(pd.Series(counts)) for counts in ([3, 3], [1], [3, 2])]
    ['3 seeds', '1 seed', '2–3 seeds']
    """
    low, high = int(counts.min()), int(counts.max())
    return f"{low}–{high} seeds" if low != high else f"{low} seed" + ("" if low == 1 else "s")


def _row_cells(name: str, part: pd.DataFrame, budgets: list[float], baseline: str) -> list[dict | None]:
    """One table cell per budget (None where the selection has no run at that budget)."""
    by_budget = part.set_index("budget")
    cells: list[dict | None] = []
    for budget in budgets:
        if budget not in by_budget.index:
            cells.append(None)
            continue
        row = by_budget.loc[budget]
        css = "base" if name == baseline else "worse" if row["worse_than_baseline"] else ""
        css = "better" if row["better_than_baseline"] else css
        cells.append({"css": css, **_cell_text(row)})
    return cells


def _cell_text(row: Any) -> dict[str, str | None]:
    """``mean ± std``, and ``Δ`` the paired difference with its interval (None for the baseline).

    ``row`` is one row (a Series) of :func:`~datadiet.analysis.stats.paired_difference`.
    """
    text = f"{row['mean']:.3f}" + ("" if np.isnan(row["std"]) else f" ± {row['std']:.3f}")
    if np.isnan(row["mean_diff"]):
        return {"text": text, "diff": None}
    interval = "" if np.isnan(row["ci_low"]) else f" [{_signed(row['ci_low'])}, {_signed(row['ci_high'])}]"
    return {"text": text, "diff": f"Δ {_signed(row['mean_diff'])}{interval}"}


DUMMIES = {
    "generation": "LEAD-1 dummy (the first sentence of the input)",
    "multiple_choice": "dummy (the better of always the most common answer position and a random one)",
}


def dummy_name(task: str) -> str:
    """What the study's dummy baseline predicts, for the given task."""
    return DUMMIES.get(task, "majority-class dummy")


def _signed(value: float) -> str:
    """``value`` with 3 decimals and a sign, never ``-0.000``."""
    return f"{round(float(value), 3) + 0.0:+.3f}"


def _reference_line(study: Study, metric: str, split: str) -> str:
    """``all training data: mean ± std; <dummy>: mean`` for the baselines present, else ``""``."""
    rows = study.results[(study.results["metric"] == metric) & (study.results["split"] == split)]
    parts = []
    dummy = dummy_name(study.meta.get("task", ""))
    for name, label in (("full", "all training data"), ("dummy", dummy)):
        values = rows.loc[rows["selection"] == name, "value"]
        if len(values):
            spread = f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else ""
            parts.append(f"{label}: {values.mean():.3f}{spread}")
    return "; ".join(parts)
