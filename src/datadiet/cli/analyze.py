"""Analyses as commands: ``results`` (paired differences), ``labels`` (class shares), ``overlap``.

``results`` and ``labels`` read a study folder through :func:`datadiet.report.study.load_study`, the reader
the report uses; ``labels --labels`` and ``overlap`` read ``selection.json`` files. Every command prints a
rich table, or JSON with ``--json`` (strict JSON: a missing or unbounded number is ``null``), and
``--csv PATH`` also writes the table as CSV.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from datadiet._core.files import atomic_write_text, load_array
from datadiet.cli import _common_size, _friendly_errors, app, check_option, console, read_selection
from datadiet.errors import ParameterError

if TYPE_CHECKING:
    import pandas as pd

    from datadiet.report.study import Study

CsvOption = Annotated[Path | None, typer.Option("--csv", help="Also write the table to this CSV file.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
FULL_ROW = "training set"  # the first row of `labels`: the class shares of the whole training set
STUDY_HINT = "pass the output folder of `datadiet study` (the one holding study.json)"
_SELECTION_FILE = re.compile(r"b(?P<budget>[0-9][0-9.eE+-]*)_s(?P<seed>[0-9]+)\.json")


# --- reading ----------------------------------------------------------------------------------
def _load_study(folder: Path) -> Study:
    """The study in ``folder``, or a one-line error saying what to pass."""
    from datadiet.report.study import load_study

    if not folder.exists():
        raise FileNotFoundError(f"Study folder '{folder}' does not exist; {STUDY_HINT}.")
    if not folder.is_dir():
        raise ParameterError(f"'{folder}' is a file, not a study folder; {STUDY_HINT}.")
    if not (folder / "study.json").is_file():
        raise ParameterError(f"'{folder}' is not a study folder (no study.json); {STUDY_HINT}.")
    return load_study(folder)


def selection_row_name(path: Path) -> str:
    """``<name>@<budget>/s<seed>`` for a study's ``selections/<name>/b<budget>_s<seed>.json``, else the stem.

    >>> selection_row_name(Path("out/selections/random/b0.30_s0.json")), selection_row_name(Path("a.json"))
    ('random@30%/s0', 'a')
    """
    from datadiet.analysis.stats import budget_label
    from datadiet.config import selection_file

    match = _SELECTION_FILE.fullmatch(path.name)
    if match is None or path.parent.parent.name != "selections":
        return path.stem
    try:
        budget, seed = float(match["budget"]), int(match["seed"])
    except ValueError:
        return path.stem
    name = path.parent.name
    if selection_file(name, budget, seed) != f"selections/{name}/{path.name}":  # not the study's spelling
        return path.stem
    return f"{name}@{budget_label(budget)}/s{seed}"


def row_names(paths: list[Path]) -> list[str]:
    """Row names of selection files (:func:`selection_row_name`), unique: names that collide get the folders
    above the named part prepended, one at a time; a file given again is numbered (``a#2``)."""
    unique = list(dict.fromkeys(paths))
    base = [selection_row_name(path) for path in unique]
    anchors = [p.parent.parent.parent if n != p.stem else p.parent for n, p in zip(base, unique, strict=True)]
    names = list(base)
    for depth in range(1, 1 + max(len(anchor.parts) for anchor in anchors)):
        clashing = _clashing(names)
        if not clashing:
            break
        for i in clashing:
            names[i] = str(Path(*anchors[i].parts[-depth:], base[i]))
    by_path = dict(zip(unique, names, strict=True))
    seen: Counter[Path] = Counter()
    out = []
    for path in paths:
        seen[path] += 1
        out.append(by_path[path] if seen[path] == 1 else f"{by_path[path]}#{seen[path]}")
    return out


def _clashing(names: list[str]) -> list[int]:
    counts = Counter(names)
    return [i for i, name in enumerate(names) if counts[name] > 1]


# --- output -----------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """``value`` as strict JSON: numpy scalars as Python numbers, NaN and infinities as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _number(value: Any, digits: int = 3, *, signed: bool = False) -> str:
    value = float(value)
    if math.isnan(value):
        return ""
    return f"{round(value, digits) + 0.0:{'+' if signed else ''}.{digits}f}"


def _write_csv(path: Path | None, frame: pd.DataFrame) -> None:
    if path is not None:
        atomic_write_text(path, frame.to_csv(index=False))
        console.print(f"wrote {len(frame)} rows to {path}")


def _print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A rich table of plain text: names from the data are escaped, never read as rich markup."""
    table = Table(title=escape(title))
    for column in columns:
        table.add_column(escape(column), overflow="fold")
    for row in rows:
        table.add_row(*map(escape, row))
    Console().print(table)


# --- results ----------------------------------------------------------------------------------
@app.command()
@_friendly_errors
def results(
    study_dir: Annotated[Path, typer.Argument(help="A study folder (the `output` of `datadiet study`).")],
    metric: Annotated[str | None, typer.Option(help="Metric to compare; default: the primary one.")] = None,
    split: Annotated[str, typer.Option(help="Evaluation split (test, ood, ...).")] = "test",
    baseline: Annotated[str, typer.Option(help="The selection every other is compared with.")] = "random",
    interval: Annotated[str, typer.Option(help="t (paired t) | sign-flip (exact permutation).")] = "t",
    alpha: Annotated[float, typer.Option(help="The interval has level 1 - alpha.")] = 0.05,
    csv: CsvOption = None,
    as_json: JsonOption = False,
) -> None:
    """Paired differences to a baseline per selection and budget, with an interval and a verdict."""
    from datadiet.analysis.stats import MIN_SEEDS_FOR_FLAG, interval_name, paired_difference

    study = _load_study(study_dir)
    metric, seeds = _check_results_options(study, metric, split, baseline, interval, alpha)
    table = paired_difference(
        study.results, metric=metric, split=split, baseline=baseline, interval=interval, alpha=alpha
    )
    table["verdict"] = [_verdict(row, baseline) for row in table.to_dict(orient="records")]
    table = table.reindex(columns=list(RESULT_COLUMNS))
    name = interval_name(interval, alpha)
    header = (
        f"{metric} on {split}: {name} interval (alpha={alpha:g}) of the mean paired difference to "
        f"{baseline!r} over seeds {seeds} ({len(seeds)}); a cell is better or worse only with >= "
        f"{MIN_SEEDS_FOR_FLAG} paired seeds and an interval that excludes 0."
    )
    _write_csv(csv, table)
    if as_json:
        summary = {"metric": metric, "split": split, "baseline": baseline, "interval": name, "alpha": alpha}
        summary.update(seeds=seeds, min_seeds_for_flag=MIN_SEEDS_FOR_FLAG, header=header)
        typer.echo(json.dumps(_plain({**summary, "rows": table.to_dict(orient="records")})))
        return
    typer.echo(header)
    _print_table(f"{metric} on {split} against {baseline}", _RESULT_HEADINGS, _result_rows(table))


RESULT_COLUMNS = (
    *("selection", "budget", "k", "n_seeds", "mean", "std", "n_paired", "mean_diff"),
    *("ci_low", "ci_high", "interval", "verdict"),
)
"""Columns of ``datadiet results --csv`` and of the rows of its ``--json``."""
_RESULT_HEADINGS = ["selection", "budget", "n", "mean ± std", "Δ mean", "interval", "verdict"]


def _check_results_options(
    study: Study, metric: str | None, split: str, baseline: str, interval: str, alpha: float
) -> tuple[str, list[int]]:
    """The metric to compare (default: the primary one) and the baseline's seeds; refuse unknown choices."""
    from datadiet.analysis.stats import INTERVALS

    table = study.results
    metric = check_option("--metric", metric or str(study.meta["primary_metric"]), _present(table, "metric"))
    check_option("--split", split, _present(table, "split"))
    rows = table[(table["metric"] == metric) & (table["split"] == split)]
    check_option("--baseline", baseline, tuple(n for n in study.order if n in set(rows["selection"])))
    check_option("--interval", interval, tuple(INTERVALS))
    if not 0 < alpha < 1:
        raise ParameterError(f"--alpha must be in (0, 1), e.g. 0.05 for a 95% interval. Got {alpha}.")
    return metric, sorted(int(s) for s in set(rows.loc[rows["selection"] == baseline, "seed"]))


def _result_rows(table: pd.DataFrame) -> list[list[str]]:
    from datadiet.analysis.stats import budget_label

    out = []
    for row in table.to_dict(orient="records"):
        mean = _number(row["mean"]) + ("" if math.isnan(row["std"]) else f" ± {_number(row['std'])}")
        low, high = _number(row["ci_low"], signed=True), _number(row["ci_high"], signed=True)
        bounds = f"[{low}, {high}]" if low else ""
        diff = _number(row["mean_diff"], signed=True)
        budget = budget_label(row["budget"])
        out.append([str(row["selection"]), budget, str(row["n_seeds"]), mean, diff, bounds, row["verdict"]])
    return out


def _verdict(row: dict[str, Any], baseline: str) -> str:
    """``baseline``, ``too few seeds (n<5)``, ``worse``, ``better`` or ``no reliable difference``."""
    from datadiet.analysis.stats import MIN_SEEDS_FOR_FLAG

    if row["selection"] == baseline:
        return "baseline"
    if not row["flaggable"]:
        return f"too few seeds (n<{MIN_SEEDS_FOR_FLAG})"
    if row["worse_than_baseline"]:
        return "worse"
    return "better" if row["better_than_baseline"] else "no reliable difference"


def _present(table: pd.DataFrame, column: str) -> tuple[str, ...]:
    return tuple(sorted(map(str, table[column].dropna().unique())))


# --- labels -----------------------------------------------------------------------------------
@app.command("labels")
@_friendly_errors
def labels_command(
    paths: Annotated[
        list[Path], typer.Argument(help="A study folder, or selection.json files with --labels.")
    ],
    labels_file: Annotated[
        Path | None, typer.Option("--labels", help="Training labels (.npy/.txt) for selection.json files.")
    ] = None,
    budget: Annotated[str | None, typer.Option(help="Only this study budget (0.3 or 30%).")] = None,
    seed: Annotated[int | None, typer.Option(help="Only this study seed (default: mean over seeds).")] = None,
    csv: CsvOption = None,
    as_json: JsonOption = False,
) -> None:
    """Share of each class in every selection against the full training set, and the largest deviation."""
    if labels_file is None:
        classes, rows = _study_label_rows(paths, budget, seed)
    else:
        if budget is not None or seed is not None:
            raise ParameterError(
                "--budget and --seed pick from a study folder; with --labels, list the files."
            )
        classes, rows = _file_label_rows(paths, labels_file)
    _write_csv(csv, _label_frame(classes, rows))
    if as_json:
        typer.echo(json.dumps(_plain({"classes": classes, "rows": rows})))
        return
    from datadiet.analysis.stats import budget_label

    table = [
        [
            row["selection"],
            budget_label(row["budget"]),
            ",".join(map(str, row["seeds"])),
            str(row["k"]),
            *(_number(row["shares"][c]) for c in classes),
            _number(row["max_abs_deviation"]),
        ]
        for row in rows
    ]
    columns = ["selection", "budget", "seeds", "k", *classes, "max |Δ|"]
    _print_table("class shares: selection vs full training set", columns, table)


def _study_label_rows(
    paths: list[Path], budget: str | None, seed: int | None
) -> tuple[list[str], list[dict]]:
    if len(paths) != 1:
        raise ParameterError(
            f"labels takes one study folder; got {len(paths)} paths. For selection.json files, add --labels "
            "labels.npy (the training labels)."
        )
    if paths[0].is_file() and paths[0].suffix == ".json":
        raise ParameterError(
            f"'{paths[0]}' is a selection file; add --labels labels.npy (the training labels), or "
            f"{STUDY_HINT}."
        )
    study = _load_study(paths[0])
    if (study.labels < 0).all():
        raise ParameterError(
            f"study '{paths[0]}' has no class labels (a generation task): there are no shares."
        )
    classes, display = study.classes()
    budgets, seeds = _pick_budgets(study, budget), _pick_seeds(study, seed)
    full = _full_row(study.labels, classes, display)
    rows = [full]
    for name in study.order:
        for value in budgets:
            picks = {s: study.selection(name, value, s) for s in seeds}
            saved = [p for p in picks.values() if p is not None]
            if saved:
                shares = [_shares(p, study.labels, classes, display) for p in saved]
                mean = {c: float(np.mean([one[c] for one in shares])) for c in display}
                seeds_saved = [s for s, p in picks.items() if p is not None]
                rows.append(_label_row(name, value, seeds_saved, len(saved[0]), mean, full["shares"]))
    if len(rows) == 1:
        raise ParameterError(
            f"study '{paths[0]}' has no saved selection at budgets {budgets}, seeds {seeds}."
        )
    return display, rows


def _pick_budgets(study: Study, budget: str | None) -> list[float]:
    from datadiet.analysis.stats import budget_label

    budgets = sorted(float(b) for b in study.meta["budgets"])
    if budget is None:
        return budgets
    text = budget.strip()
    try:
        given = text if text.endswith("%") else budget_label(float(text))
    except ValueError:
        given = text
    labels = {budget_label(b): b for b in budgets}
    return [labels[check_option("--budget", given, tuple(labels))]]


def _pick_seeds(study: Study, seed: int | None) -> list[int]:
    seeds = [int(s) for s in study.meta["seeds"]]
    if seed is not None and seed not in seeds:
        raise ParameterError(f"--seed must be one of the study seeds {seeds}. Got {seed} instead.")
    return seeds if seed is None else [seed]


def _shares(picks: np.ndarray, labels: np.ndarray, classes: list, display: list[str]) -> dict[str, float]:
    """Share of each class (by display name) among the examples ``picks``."""
    from datadiet.analysis.overlap import label_distribution

    frame = label_distribution(picks, labels, classes)
    return dict(zip(display, frame["frac_selected"].astype(float), strict=True))


def _full_row(labels: np.ndarray, classes: list, display: list[str]) -> dict[str, Any]:
    shares = _shares(np.arange(len(labels)), labels, classes, display)
    return _label_row(FULL_ROW, 1.0, [], len(labels), shares, shares)


def _label_row(
    name: str, budget: float, seeds: list, k: int, shares: dict[str, float], full: dict[str, float]
) -> dict[str, Any]:
    deviation = max(abs(shares[c] - full[c]) for c in shares)
    return {
        "selection": name,
        "budget": budget,
        "seeds": seeds,
        "k": k,
        "shares": shares,
        "max_abs_deviation": deviation,
    }


def _file_label_rows(paths: list[Path], labels_file: Path) -> tuple[list[str], list[dict]]:
    labels = load_array(labels_file, name="labels")
    if labels.ndim != 1:
        raise ParameterError(
            f"labels file '{labels_file}' must hold one label per example. Got shape {labels.shape}."
        )
    n = len(labels)
    for path in paths:
        if (path / "study.json").is_file():
            raise ParameterError(
                f"'{path}' is a study folder; drop --labels to read its selections and labels."
            )
    selections = [read_selection(path) for path in paths]
    _common_size(paths, selections)
    for path, sel in zip(paths, selections, strict=True):
        recorded = sel.meta.get("n_examples")
        if (recorded is not None and recorded != n) or int(sel.indices.max()) >= n:
            size = f"n_examples={recorded}" if recorded is not None else f"index {int(sel.indices.max())}"
            raise ParameterError(
                f"selection file '{path}' ({size}) does not fit labels file '{labels_file}' with {n} labels; "
                "pass the labels of the dataset it selects from."
            )
    classes = np.unique(labels).tolist()
    display = [str(c) for c in classes]
    full = _full_row(labels, classes, display)
    rows = [full]
    for name, sel in zip(row_names(paths), selections, strict=True):
        seeds = [] if sel.meta.get("seed") is None else [sel.meta["seed"]]
        shares = _shares(sel.indices, labels, classes, display)
        rows.append(_label_row(name, len(sel.indices) / n, seeds, len(sel.indices), shares, full["shares"]))
    return display, rows


def _label_frame(classes: list[str], rows: list[dict]) -> pd.DataFrame:
    import pandas as pd

    records = [
        {
            "selection": row["selection"],
            "budget": row["budget"],
            "seeds": ";".join(map(str, row["seeds"])),
            "k": row["k"],
            **{f"share:{c}": row["shares"][c] for c in classes},
            "max_abs_deviation": row["max_abs_deviation"],
        }
        for row in rows
    ]
    return pd.DataFrame(records)


# --- overlap ----------------------------------------------------------------------------------
@app.command()
@_friendly_errors
def overlap(
    selections: Annotated[list[Path], typer.Argument(help="selection.json files.")],
    as_json: JsonOption = False,
) -> None:
    """Overlap matrix |Si ∩ Sj| / |Si| between selections, with the random expectation k/N.

    Rows are named ``<name>@<budget>/s<seed>`` for a study's ``selections/<name>/b<budget>_s<seed>.json``
    and by the file stem otherwise; names that collide get their folders prepended.
    """
    from datadiet.analysis.overlap import overlap_matrix, random_overlap_expectation

    loaded = [read_selection(path) for path in selections]
    names = row_names(selections)
    n = _common_size(selections, loaded)
    matrix = overlap_matrix(loaded)
    expected = [None if n is None else random_overlap_expectation(sel.budget, n) for sel in loaded]
    if as_json:
        typer.echo(json.dumps({"names": names, "matrix": matrix.tolist(), "random_expectation": expected}))
        return
    rows = [
        [name, *(f"{v:.3f}" for v in row), "n/a" if exp is None else f"{exp:.3f}"]
        for name, row, exp in zip(names, matrix, expected, strict=True)
    ]
    _print_table("overlap |Si ∩ Sj| / |Si| (row i)", ["", *names, "random k/N"], rows)
