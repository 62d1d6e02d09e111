"""A study directory as the report reads it: ``study.json``, the results table, the saved selections, arrays.

:func:`load_study` reads ``<study>/study.json``, ``results.parquet`` (or ``results.csv``) and the arrays
named in ``study.json`` ``paths``; :meth:`Study.selection` reads one saved selection. ``study.json`` and
every selection file are checked field by field (type and range) before use; a damaged one is refused
naming the file, the field and the fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from datadiet._core.files import load_array
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
from datadiet.config import cell_id, selection_file
from datadiet.errors import ParameterError
from datadiet.report import study_plots as plots

__all__ = ["Study", "load_study"]

STUDY_KEYS = ("name", "label_names", "n_train", "budgets", "seeds", "metrics", "primary_metric", "selections")
REPORT_COLUMNS = ("cell", "selection", "budget", "k", "seed", "split", "metric", "value", "train_seconds")
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

    def classes(self) -> tuple[list[object], list[str]]:
        """The classes as stored in the labels, and their display names (``label_names`` where they fit)."""
        names = [str(n) for n in self.meta.get("label_names") or []]
        labels = self.labels
        if np.issubdtype(labels.dtype, np.integer) and len(names) > int(labels.max()):
            return list(range(len(names))), names
        classes = np.unique(labels).tolist()
        return classes, [str(c) for c in classes]

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
