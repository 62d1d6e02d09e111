"""A self-contained HTML report of a pruning study directory.

:func:`build_report` reads ``<study>/study.json``, ``results.parquet`` (or ``results.csv``), the saved
selections and the arrays named in ``study.json`` ``paths``, writes every figure as PNG into
``<study>/figures/`` and writes ``<study>/report.html``. The page embeds the figures as base64 data
URIs and its CSS inline: it makes no request and needs no JavaScript, so it can be mailed or archived
as one file. Every string that comes from the data is HTML-escaped.

``study.json`` and every selection file are checked field by field (type and range) before use; a damaged
one is refused naming the file, the field and the fix.
"""

from __future__ import annotations

import base64
import html
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from datadiet._core.files import atomic_write_bytes, atomic_write_text, load_array
from datadiet._core.records import (
    Check,
    FieldError,
    check_fields,
    integer,
    list_of,
    mapping,
    number,
    optional,
    read_record,
    text,
)
from datadiet.analysis.overlap import label_distribution
from datadiet.analysis.stats import budget_label, paired_difference
from datadiet.config import cell_id, selection_file
from datadiet.errors import ParameterError
from datadiet.experiments.synthetic.plots import figure_to_png
from datadiet.report import study_plots as plots

__all__ = ["Study", "build_report", "load_study"]

STUDY_KEYS = ("name", "label_names", "n_train", "budgets", "seeds", "metrics", "primary_metric", "selections")
REPORT_COLUMNS = ("cell", "selection", "budget", "k", "seed", "split", "metric", "value", "train_seconds")
DEFAULT_BUDGET = 0.3  # overlap and data-map budget when none is given: the nearest study budget
METRICS = ("accuracy", "macro_f1", "rouge1", "rouge2", "rougeL")
STUDY_FIX = "rerun the study: it rewrites study.json from its cells"


def _mapping_of(fields: dict[str, Check]) -> Check:
    """A JSON object whose listed fields, where present, pass their checks."""

    def check(value: Any) -> None:
        mapping()(value)
        for name, inner in fields.items():
            if name in value:
                try:
                    inner(value[name])
                except FieldError as exc:
                    raise FieldError(f"field '{name}' {exc}") from None

    return check


def _numbers_at_least_zero(value: Any) -> None:
    mapping()(value)
    for key, item in value.items():
        try:
            number(0)(item)
        except FieldError as exc:
            raise FieldError(f"field '{key}' {exc}") from None


SPEC_FIELDS: dict[str, Check] = {
    "name": text(),
    "algorithm": optional(text()),
    "representation": optional(text()),
    "balance": optional(text()),
    "calibrate": optional(number(0, 1)),
    "params": optional(mapping()),
}
STUDY_FIELDS: dict[str, Check] = {
    "name": text(),
    "task": optional(text()),
    "label_names": list_of(text()),
    "n_train": integer(1),
    "budgets": list_of(number(0, 1), min_len=1),
    "seeds": list_of(integer(0), min_len=1),
    "metrics": list_of(text(METRICS), min_len=1),
    "primary_metric": text(METRICS),
    "costs": optional(_numbers_at_least_zero),
    "label_noise": optional(_mapping_of({"fraction": number(0, 1), "n_flipped": integer(0)})),
    "selections": list_of(mapping()),
    "paths": optional(_mapping_of({key: optional(text()) for key in ("labels", "flipped", "confidence")})),
}


@dataclass(frozen=True)
class Study:
    """A study directory, loaded.

    Parameters
    ----------
    directory : Path
    meta : dict
        The parsed ``study.json``.
    results : DataFrame
        The long results table.
    labels : ndarray of shape (n_train,)
    flipped : ndarray of int, optional
        Indices of the training examples whose label was flipped (label-noise studies).
    confidence : ndarray of shape (n_train, n_epochs), optional
        Correct-class probability trajectory of the reference run.
    """

    directory: Path
    meta: dict[str, Any]
    results: pd.DataFrame
    labels: np.ndarray
    flipped: np.ndarray | None
    confidence: np.ndarray | None

    @property
    def order(self) -> list[str]:
        """Budgeted selections: ``random`` first, then ``study.json`` order, then any others."""
        names = [str(s["name"]) for s in self.meta["selections"]]
        return plots.selection_order(self.results, names)

    def selection(self, name: str, budget: float, seed: int) -> np.ndarray | None:
        """Indices saved for ``name`` at ``budget`` and ``seed``, or None when the file is absent.

        The file's ``indices`` must be distinct ints in ``[0, n_train)``; anything else is refused naming
        the file and the fix (delete it and its cell file, rerun the study).
        """
        path = self.directory / selection_file(name, budget, seed)
        if not path.exists():
            return None
        fix = (
            f"delete it and the cell file cells/{cell_id(name, budget, seed)}.json, then rerun the study: "
            "that cell is recomputed"
        )
        fields = {"indices": _indices(int(self.meta["n_train"]))}
        data = read_record(path, name="selection", fields=fields, fix=fix, required=("indices",))
        return np.sort(np.asarray(data["indices"], dtype=np.int64))


def _indices(n: int) -> Check:
    """A non-empty list of distinct ints in ``[0, n)``."""

    def check(value: Any) -> None:
        if not isinstance(value, list) or not value:
            raise FieldError(f"must be a non-empty list of example indices. Got {type(value).__name__}.")
        if not all(type(v) is int for v in value):
            raise FieldError("must hold only ints (example indices).")
        low, high = min(value), max(value)
        if low < 0 or high >= n:
            raise FieldError(f"must hold indices in [0, n_train={n}). Got {low if low < 0 else high}.")
        if len(np.unique(np.asarray(value, dtype=np.int64))) != len(value):
            raise FieldError("must hold distinct indices. Got a repeated one.")

    return check


def load_study(study_dir: str | os.PathLike[str]) -> Study:
    """Read a study directory (see the module docstring) and check that it has what the report needs."""
    directory = Path(study_dir)
    meta = read_record(
        directory / "study.json", name="study", fields=STUDY_FIELDS, fix=STUDY_FIX, required=STUDY_KEYS
    )
    where = f"study file '{directory / 'study.json'}'"
    if meta["primary_metric"] not in meta["metrics"]:
        raise ParameterError(f"{where}: field 'primary_metric' is not among its metrics; {STUDY_FIX}.")
    for i, spec in enumerate(meta["selections"]):
        check_fields(spec, SPEC_FIELDS, where=f"{where} selections[{i}]", fix=STUDY_FIX, required=("name",))
    results = _read_results(directory)
    paths = meta.get("paths") or {}
    labels = _optional_array(directory, paths.get("labels", "labels.train.npy"), "labels")
    if labels is None:  # generation: no labels, so no label-distribution section
        labels = np.full(int(meta["n_train"]), -1, dtype=np.int64)
    if len(labels) != int(meta["n_train"]):
        raise ParameterError(
            f"labels has {len(labels)} entries but study.json says n_train={meta['n_train']}."
        )
    flipped = _optional_array(directory, paths.get("flipped"), "flipped")
    confidence = _optional_array(directory, paths.get("confidence"), "confidence")
    if confidence is not None and (confidence.ndim != 2 or len(confidence) != len(labels)):
        raise ParameterError(
            f"confidence must have shape (n_train={len(labels)}, n_epochs). Got {confidence.shape} instead."
        )
    return Study(directory, meta, results, labels, flipped, confidence)


RESULTS_FIX = "rerun the study: it rewrites the results from its cells"
NUMERIC_COLUMNS = ("budget", "k", "seed", "value", "train_seconds")


def _read_results(directory: Path) -> pd.DataFrame:
    parquet, csv = directory / "results.parquet", directory / "results.csv"
    if not parquet.is_file() and not csv.is_file():
        raise FileNotFoundError(f"No results.parquet or results.csv in '{directory}'; run the study first.")
    path = parquet if parquet.is_file() else csv
    try:
        results = pd.read_parquet(path) if path == parquet else pd.read_csv(path)
    except Exception as exc:  # pyarrow and pandas raise their own types for a damaged file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParameterError(f"results file '{path}' cannot be read ({reason}); {RESULTS_FIX}.") from None
    missing = [c for c in REPORT_COLUMNS if c not in results.columns]
    if missing:
        raise ParameterError(f"The results table in '{directory}' is missing the columns {missing}.")
    wrong = [c for c in NUMERIC_COLUMNS if not pd.api.types.is_numeric_dtype(results[c])]
    if wrong:
        raise ParameterError(f"results file '{path}': column '{wrong[0]}' must hold numbers; {RESULTS_FIX}.")
    if not np.isfinite(results["value"].to_numpy(dtype=np.float64)).all():
        raise ParameterError(f"results file '{path}': column 'value' holds NaN or inf; {RESULTS_FIX}.")
    results["selection"] = results["selection"].astype(str)
    return results


def _optional_array(directory: Path, relative: str | None, name: str) -> np.ndarray | None:
    return np.asarray(load_array(directory / relative, name=name)) if relative else None


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


def _overlap_figure(study: Study, budget: float) -> tuple[Any, str] | None:
    seed = _first_seed(study)
    chosen = {name: study.selection(name, budget, seed) for name in study.order}
    chosen = {name: idx for name, idx in chosen.items() if idx is not None}
    if len(chosen) < 2:
        return None
    fig = plots.plot_overlap(
        chosen, n_examples=len(study.labels), title=f"budget {budget_label(budget)}, seed {seed}"
    )
    return fig, f"Selections at budget {budget_label(budget)}, seed {seed}."


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


def _class_names(study: Study) -> tuple[list[object], list[str]]:
    """The classes as stored in the labels, and their display names."""
    names = [str(n) for n in study.meta.get("label_names") or []]
    labels = study.labels
    if np.issubdtype(labels.dtype, np.integer) and len(names) > int(labels.max()):
        return list(range(len(names))), names
    classes = np.unique(labels).tolist()
    return classes, [str(c) for c in classes]


def _label_figure(study: Study) -> tuple[Any, str] | None:
    if (study.labels < 0).all():  # no labels (generation)
        return None
    classes, display = _class_names(study)
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
        "overlap": _overlap_figure(study, budget),
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
        Budget fraction of the overlap heatmap (one of the study budgets). Defaults to the study
        budget nearest 0.3; the heatmap uses seed 0.
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
    page = _render_page(study, images, notes)
    return atomic_write_text(study.directory / "report.html", page)


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _img(key: str, images: dict[str, bytes], alt: str) -> str:
    data = base64.b64encode(images[key]).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(alt)}"></figure>'


def _section(title: str, body: str, *, anchor: str) -> str:
    return f'<section id="{_esc(anchor)}">\n<h2>{_esc(title)}</h2>\n{body}\n</section>'


def _caption(text: str, note: str = "") -> str:
    note_html = f" <em>{_esc(note)}</em>" if note else ""
    return f'<p class="caption">{_esc(text)}{note_html}</p>'


SECTIONS = {  # figure key -> (heading, caption)
    "performance": (
        "Performance",
        "How to read it: each coloured line is one selection method, the mean of the metric over seeds at "
        "each budget, with a band of ± one standard deviation. The dark dashed line is uniform random "
        "selection at the same budget: the baseline a method has to beat. The solid black line is training "
        "on all the data, the dotted one the {dummy}.",
    ),
    "overlap": (
        "Overlap between selections",
        "Entry (i, j) is the share of the row selection i that selection j also picked. Two independent "
        "random subsets of the same size overlap by k/N in expectation (red mark on the colour bar): values "
        "near it mean two methods agree no more than chance.",
    ),
    "label_distribution": (
        "Label distribution",
        "Share of each class inside each selection, against the budget; dotted lines are the class shares "
        "of the full training set. Score-based selections often drop or over-represent classes at small "
        "budgets; stratified balancing holds them at the dotted lines.",
    ),
    "data_map": (
        "Data map",
        "Every training example placed by the reference run: confidence (mean correct-class probability "
        "over training) against variability (its standard deviation). Easy examples sit top left, "
        "hard-to-learn ones bottom left, ambiguous ones to the right. Red: the examples one selection keeps.",
    ),
    "costs": (
        "Cost and break-even",
        "Blue: the main-model training time a subset saves compared with all data. Red: the one-off cost "
        "of selecting (training the reference model and extracting the representation). Pruning pays for "
        "itself at the budgets where blue is above red (green area).",
    ),
    "label_noise": (
        "Label noise",
        "Examples with a flipped label that each selection keeps (mean over seeds). The dotted line is what "
        "a random subset keeps in expectation (flipped × k/N): below it a method filters noise, above it it "
        "seeks out mislabelled examples, as scores that favour hard examples tend to.",
    ),
}
WORSE_LEGEND = (
    "reliably worse than random at this budget: the whole bootstrap interval of the paired difference is "
    "below zero. This is the high-compression failure of score-based selection: at a small budget, keeping "
    "only the top-scored (hardest or easiest) examples gives a narrow, unrepresentative and often noisy "
    "subset. Randomized calibration (calibrate=α: only a share α of the budget comes from the scores, the "
    "rest is uniform random) restores coverage."
)
BETTER_LEGEND = "reliably better than random: the whole interval is above zero."
CSS = """
body { font-family: system-ui, Helvetica, Arial, sans-serif; color: #222; max-width: 1180px;
       margin: 1.5em auto; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; } code { font-size: 90%; }
figure { margin: 0.8em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
.caption { color: #444; font-size: 0.93em; max-width: 60em; } .legend { font-size: 0.88em; max-width: 62em; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.6em 0; } thead th { background: #f3f4f6; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.55em; text-align: left; vertical-align: top; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; } td .diff { color: #555; font-size: 90%; }
.worse { background: #f8d0d0; } .better { background: #d3ecd6; } td.base { background: #f6f6f6; }
.swatch { display: inline-block; width: 1em; height: 1em; vertical-align: -0.15em; border: 1px solid #bbb; }
dl.config { display: grid; grid-template-columns: max-content auto; gap: 0.15em 1em; }
dl.config dt { font-weight: 600; } dl.config dd { margin: 0; }
"""


def _render_page(study: Study, images: dict[str, bytes], notes: dict[str, str]) -> str:
    name = study.meta["name"]
    parts = [_section("Study", _config_html(study), anchor="config")]
    for split in _splits(study):
        key = _figure_key("performance", split)
        caption = SECTIONS["performance"][1].format(dummy=dummy_name(study.meta.get("task", "")))
        body = _img(key, images, f"performance on {split}") + _caption(caption)
        body += _table_html(study, split)
        parts.append(_section(f"Performance on {split}", body, anchor=key))
    for key, (title, caption) in SECTIONS.items():
        if key in images:
            body = _img(key, images, title) + _caption(caption, notes.get(key, ""))
            parts.append(_section(title, body, anchor=key))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>datadiet report: {_esc(name)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>datadiet report: {_esc(name)}</h1>\n" + "\n".join(parts) + "\n</body>\n</html>\n"
    )


def _config_html(study: Study) -> str:
    meta = study.meta
    noise = meta.get("label_noise")
    costs = meta.get("costs") or {}
    items = [
        ("task", meta.get("task", "")),
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
    rows = "".join(f"<dt>{_esc(key)}</dt><dd>{_esc(value)}</dd>" for key, value in items)
    header = "".join(
        f"<th>{h}</th>"
        for h in ("selection", "algorithm", "representation", "balance", "calibrate", "params")
    )
    body = "".join(_selection_row(s) for s in meta["selections"])
    table = f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"
    return f'<dl class="config">{rows}</dl>\n{table}'


def _selection_row(spec: dict[str, Any]) -> str:
    params = json.dumps(spec.get("params") or {}, sort_keys=True)
    cells = [spec.get(k) for k in ("name", "algorithm", "representation", "balance", "calibrate")]
    text = "".join(f"<td>{_esc('' if v is None else v)}</td>" for v in cells)
    return f"<tr>{text}<td><code>{_esc(params)}</code></td></tr>"


def _table_html(study: Study, split: str) -> str:
    metric = str(study.meta["primary_metric"])
    present = set(study.results.loc[study.results["split"] == split, "selection"])
    names = [name for name in study.order if name in present]  # "random" first when there is one
    if not names:
        return ""
    baseline = names[0]
    paired = paired_difference(study.results, metric=metric, split=split, baseline=baseline)
    budgets = sorted(pd.unique(paired["budget"]))
    head = "".join(f"<th>{_esc(budget_label(b))}</th>" for b in budgets)
    rows = [
        _table_row(name, part, budgets, baseline) for name, part in paired.groupby("selection", sort=False)
    ]
    caption = (
        f"{metric} on {split}: mean ± std over seeds; below it, Δ = the mean paired difference to {baseline} "
        "(same budget, same seed) and its 95% percentile bootstrap interval over seeds. With 3 seeds the "
        "interval is coarse: it cannot reach beyond the smallest and largest per-seed difference."
    )
    legend = (
        f'<p class="legend"><span class="swatch worse"></span> {_esc(WORSE_LEGEND)}<br>'
        f'<span class="swatch better"></span> {_esc(BETTER_LEGEND)}</p>'
    )
    table = f"<table><thead><tr><th>selection</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return _caption(caption) + _reference_line(study, metric, split) + table + legend


def _table_row(name: str, part: pd.DataFrame, budgets: list[float], baseline: str) -> str:
    by_budget = part.set_index("budget")
    cells = []
    for budget in budgets:
        if budget not in by_budget.index:
            cells.append("<td></td>")
            continue
        row = by_budget.loc[budget]
        css = "base" if name == baseline else "worse" if row["worse_than_baseline"] else ""
        css = "better" if row["better_than_baseline"] else css
        cells.append(f'<td class="num {css}">{_cell_text(row)}</td>')
    return f'<tr><th scope="row">{_esc(name)}</th>{"".join(cells)}</tr>'


def _cell_text(row: pd.Series) -> str:
    text = f"{row['mean']:.3f}" + ("" if np.isnan(row["std"]) else f" ± {row['std']:.3f}")
    if np.isnan(row["mean_diff"]):
        return _esc(text)
    interval = "" if np.isnan(row["ci_low"]) else f" [{_signed(row['ci_low'])}, {_signed(row['ci_high'])}]"
    return f'{_esc(text)}<br><span class="diff">Δ {_signed(row["mean_diff"])}{interval}</span>'


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
    rows = study.results[(study.results["metric"] == metric) & (study.results["split"] == split)]
    parts = []
    dummy = dummy_name(study.meta.get("task", ""))
    for name, label in (("full", "all training data"), ("dummy", dummy)):
        values = rows.loc[rows["selection"] == name, "value"]
        if len(values):
            spread = f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else ""
            parts.append(f"{label}: {values.mean():.3f}{spread}")
    return f'<p class="legend">{_esc("; ".join(parts))}</p>' if parts else ""
