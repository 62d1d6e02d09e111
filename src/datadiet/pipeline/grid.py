"""The grid: every training representation of a represent run x every registered selector (Du et al. Fig. 2b).

:func:`plan_grid` lists, from a finished represent output folder (one holding ``representations.json``),
every training-split representation (``labels/*`` and validation ones left out) against every selector of
:data:`~datadiet.selection.registry.SELECTORS` (plugins included; ``random`` is the k/N baseline, not a row)
and decides each pair *allowed* or *impossible with a reason*, from the selector's own checks
(:meth:`~datadiet.selection.base.BaseSelector.refusal`) on the representation's shape, kind and values. An
(N, C, d) gradient stack goes to a selector that reads only 2-D arrays through a view (``flatten`` by
default, :func:`~datadiet.representations.views.apply_view`). :func:`run_grid` then runs every allowed pair
at every budget and seed and writes under ``out``:

- ``combinations.csv``: representation, view, algorithm, status (allowed/impossible), reason;
- ``selections/<algorithm>@<representation>/b<budget>_s<seed>.json``: ``Selection.to_dict`` plus its
  ``name``, the grid cell and the ``inputs_hash`` (a rerun reuses a file whose hash matches);
- ``overlap/b<budget>.csv`` (the seed-mean matrix) and ``overlap.json`` (every budget: labels, mean and
  per-seed matrices, k/N);
- ``summary.csv`` and ``summary.json`` (:func:`datadiet.analysis.grid.summary`);
- ``grid.json``: the run folder, budgets, seeds, counts and timings.

A pair that ``select`` refuses only when it reads the values (say EL2N's labels beyond the K columns) is
recorded impossible with that message once it has been run, so the table says what ``select`` accepts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd

from datadiet._core.checks import did_you_mean
from datadiet._core.chunks import chunk_rows_for, iter_row_chunks
from datadiet._core.files import (
    atomic_write_json,
    atomic_write_text,
    cached_sha256_file,
    load_array,
    safe_name,
)
from datadiet._core.progress import ProgressBar
from datadiet.analysis.grid import grid_label, overlap_matrices, summary
from datadiet.analysis.overlap import random_overlap_expectation
from datadiet.errors import DatadietError, ParameterError, ParameterTypeError
from datadiet.pipeline.represent import read_index
from datadiet.representations.base import KINDS, Representation
from datadiet.representations.extractors import is_val, val_counterpart
from datadiet.representations.views import VIEW_KINDS, apply_view, check_view
from datadiet.selection.base import (
    Budget,
    InputValues,
    ScoreSelector,
    Selection,
    jsonable,
    resolve_budget,
    top_k,
)
from datadiet.selection.registry import SELECTORS
from datadiet.store import RepresentationStore
from datadiet.store.keys import fingerprint

__all__ = [
    "BASELINE",
    "DEFAULT_BUDGETS",
    "DEFAULT_SEEDS",
    "Combination",
    "GridPlan",
    "GridResult",
    "budget_tag",
    "plan_grid",
    "run_grid",
]

DEFAULT_BUDGETS: tuple[float, ...] = (0.05, 0.1, 0.3, 0.5)
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
BASELINE = "random"
"""Not a grid row: its expected overlap k/N is printed beside every number instead."""
INDEX = "representations.json"
Status = Literal["allowed", "impossible"]
_REFUSED = (ParameterError, ParameterTypeError)


@dataclass(frozen=True)
class Combination:
    """One representation x selector pair and whether the grid runs it."""

    representation: str
    """The name in ``representations.json`` (``gradients/train``)."""
    view: str | None
    """The view it is read through (``flatten``), or None."""
    algorithm: str
    status: Status
    reason: str = ""
    """Why it is impossible (or, for an allowed pair, where ``select`` refused some runs)."""

    @property
    def name(self) -> str:
        """The representation with its view: ``gradients/train:flatten``."""
        return self.representation if self.view is None else f"{self.representation}:{self.view}"

    @property
    def label(self) -> str:
        return grid_label(self.name, self.algorithm)


@dataclass
class GridPlan:
    """The combinations of a represent folder, with its representations loaded once (memory-mapped)."""

    folder: Path
    inputs: _Inputs
    combinations: list[Combination]
    planned_s: float = 0.0
    """Seconds spent loading the representations and deciding the combinations."""

    @property
    def n_examples(self) -> int:
        return self.inputs.n_examples

    @property
    def allowed(self) -> list[Combination]:
        return [c for c in self.combinations if c.status == "allowed"]


@dataclass
class GridResult:
    """What :func:`run_grid` wrote (paths under ``out``) and computed."""

    out: Path
    combinations: list[Combination]
    overlaps: dict[Budget, dict[str, Any]]
    """Per budget: ``labels``, ``mean`` (the seed-mean matrix), ``per_seed`` ({seed: matrix}), ``k`` and
    ``random`` (k/N)."""
    summary: pd.DataFrame
    n_examples: int = 0
    selections: dict[tuple[str, str, Budget, int], np.ndarray] = field(default_factory=dict)
    """The selected indices of every run, keyed ``(representation with view, algorithm, budget, seed)``."""
    seeds: list[int] = field(default_factory=list)
    n_computed: int = 0
    n_reused: int = 0
    timings: dict[str, Any] = field(default_factory=dict)


# --- the plan ------------------------------------------------------------------------------------------
def plan_grid(
    folder: str | Path,
    *,
    algorithms: Sequence[str] | None = None,
    representations: Sequence[str] | None = None,
    gradient_view: str = "flatten",
) -> GridPlan:
    """Every training representation of ``folder`` x every selector, each allowed or impossible.

    Parameters
    ----------
    folder : path
        A represent output folder (holding ``representations.json``).
    algorithms : sequence of str, optional
        Selector names (default: all registered but ``random``).
    representations : sequence of str, optional
        Training representation names of the index (default: all of them).
    gradient_view : str
        The view through which an (N, C, d) gradient stack goes to a selector that reads 2-D arrays.
    """
    tick = time.perf_counter()
    check_view(gradient_view)
    inputs = _Inputs(Path(folder))
    names = _chosen(representations, inputs.names, what="representation", where=str(inputs.index_path))
    default = [a for a in SELECTORS.registered() if a != BASELINE]
    if algorithms is not None and BASELINE in algorithms:
        raise ParameterError(
            f"'{BASELINE}' is the grid's baseline (its expected overlap k/N is printed beside every number), "
            "not a grid row; leave it out of --algorithms."
        )
    chosen = _chosen(algorithms, default, what="algorithm", where="datadiet.SELECTORS")
    combos = [_decide(inputs, name, algorithm, gradient_view) for name in names for algorithm in chosen]
    return GridPlan(inputs.folder, inputs, combos, round(time.perf_counter() - tick, 3))


def _chosen(wanted: Sequence[str] | None, available: list[str], *, what: str, where: str) -> list[str]:
    if wanted is None:
        return list(available)
    for name in wanted:
        if name not in available:
            hint = did_you_mean(name, available)
            raise ParameterError(f"Unknown {what} {name!r} (in {where}).{hint} Available: {available}.")
    return list(dict.fromkeys(wanted))


def _decide(inputs: _Inputs, name: str, algorithm: str, gradient_view: str) -> Combination:
    """Allowed or impossible (with the reason) for ``algorithm`` on the representation ``name``."""
    try:
        selector = SELECTORS.create(algorithm)
    except (DatadietError, TypeError) as exc:
        return Combination(name, None, algorithm, "impossible", f"cannot be built with defaults: {exc}")
    rep = inputs.rep(name)
    ndim = tuple(getattr(selector, "input_ndim", (1, 2, 3)))
    stack = rep.values.ndim == 3 and rep.kind in VIEW_KINDS
    view = gradient_view if stack and 3 not in ndim and 2 in ndim else None
    refusal = getattr(selector, "refusal", None)
    try:
        viewed = inputs.rep(name, view)
        val = inputs.val(name, view) if getattr(selector, "needs_val", False) else None
    except _REFUSED as exc:
        return Combination(name, view, algorithm, "impossible", str(exc))
    if refusal is None:  # a selector outside BaseSelector: decided when it runs
        return Combination(name, view, algorithm, "allowed")
    shape = tuple(viewed.values.shape)
    val_shape = (1, *shape[1:]) if val is None else tuple(val.values.shape)
    reason = refusal(
        shape, inputs.values_class(name, view), kind=viewed.kind, labels=True, val_shape=val_shape
    )
    if reason is None and selector.needs_labels and inputs.labels is None:
        reason = f"no labels/train in {inputs.index_path} (the reference dataset has no labels)"
    if reason is None and selector.needs_val and val is None:
        reason = (
            f"no validation representation {val_counterpart(name)} in {inputs.index_path} (needs "
            "reference.dataset.val_split, and for dynamics a run recorded with validation dynamics)"
        )
    return Combination(name, view, algorithm, "impossible" if reason else "allowed", reason or "")


# --- the run -------------------------------------------------------------------------------------------
def run_grid(
    plan: GridPlan,
    out: str | Path | None = None,
    *,
    budgets: Sequence[int | float] = DEFAULT_BUDGETS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    progress: bool = True,
) -> GridResult:
    """Run every allowed combination at every budget and seed, then write overlaps and the summary.

    Resumable: a selection file whose ``inputs_hash`` matches is read back instead of recomputed. Writes are
    atomic. ``out`` defaults to ``<folder>/grid``.
    """
    started = time.perf_counter()
    out = plan.folder / "grid" if out is None else Path(out)
    budgets, seeds = _check_grid(budgets, seeds, plan.n_examples)
    runs = _Runs(plan, out)
    total = len(plan.allowed) * len(budgets) * len(seeds)
    with ProgressBar("grid selections", total=total, enabled=progress) as bar:
        for combo in plan.allowed:
            bar.note(combo.label)
            for seed in seeds:  # the budgets of one seed in a row: a ranking's scores are reused
                for budget in budgets:
                    runs.run(combo, budget, seed)
                    bar.advance()
    combos = _with_failures(plan.combinations, runs.failures, len(budgets) * len(seeds))
    selected = time.perf_counter()
    result = _write_results(plan, out, combos, runs.selections, budgets, seeds)
    result.n_computed, result.n_reused = runs.computed, runs.reused
    result.timings = {
        "plan_s": plan.planned_s,
        "select_s": round(selected - started, 3),
        "analysis_s": round(time.perf_counter() - selected, 3),
        "total_s": round(time.perf_counter() - started + plan.planned_s, 3),
        "per_algorithm_s": {a: round(t, 3) for a, t in runs.seconds.items()},
    }
    atomic_write_json(out / "grid.json", _grid_record(plan, result, budgets, seeds))
    return result


def budget_tag(budget: int | float) -> str:
    """The file-name form of a budget: ``b0.05``, ``b1200``.

    >>> budget_tag(0.05), budget_tag(1200)
    ('b0.05', 'b1200')
    """
    return f"b{budget:g}" if isinstance(budget, float) else f"b{budget}"


def _check_grid(budgets: Sequence[int | float], seeds: Sequence[int], n: int) -> tuple[list[Any], list[int]]:
    """Budgets (each a valid budget of ``n`` examples) and seeds (ints >= 0), each listed once."""
    if not budgets or not seeds:
        raise ParameterError("The grid needs at least one budget and one seed.")
    for budget in budgets:
        resolve_budget(budget, n)
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ParameterError(f"Seeds must be ints >= 0. Got {seed!r} instead.")
    tags = [budget_tag(b) for b in budgets]
    for what, values in (("budget", tags), ("seed", list(seeds))):
        if len(set(values)) != len(values):
            raise ParameterError(f"Each {what} may be listed once. Got {list(values)}.")
    return list(budgets), [int(s) for s in seeds]


class _Runs:
    """The grid's selections as they are read back or computed, the refusals and the time per algorithm."""

    def __init__(self, plan: GridPlan, out: Path) -> None:
        self.plan, self.out = plan, out
        self.selections: dict[tuple[str, str, Budget, int], np.ndarray] = {}
        self.failures: dict[str, list[tuple[Budget, int, str]]] = {}
        self.seconds: dict[str, float] = {}
        self.computed = self.reused = 0
        self._ranking: tuple[tuple[str, int], Selection] | None = None

    def run(self, combo: Combination, budget: int | float, seed: int) -> None:
        """One grid cell: read back when its file holds the same inputs, else selected and written."""
        tick = time.perf_counter()
        path = self.out / "selections" / safe_name(combo.label) / f"{budget_tag(budget)}_s{seed}.json"
        digest = _inputs_hash(self.plan.inputs, combo, budget, seed)
        indices = _reusable(path, digest)
        if indices is None:
            indices = self._select(combo, budget, seed, path, digest)
        else:
            self.reused += 1
        if isinstance(indices, str):
            self.failures.setdefault(combo.label, []).append((budget, seed, indices))
        else:
            self.selections[combo.name, combo.algorithm, budget, seed] = indices
        self.seconds[combo.algorithm] = self.seconds.get(combo.algorithm, 0.0) + time.perf_counter() - tick

    def _select(
        self, combo: Combination, budget: int | float, seed: int, path: Path, digest: str
    ) -> np.ndarray | str:
        """The selected indices (written to ``path``), or ``select``'s one-line refusal."""
        try:
            selection = self._ranked(combo, budget, seed) or self._selected(combo, budget, seed)
        except _REFUSED as exc:
            return str(exc)
        cell = {"representation": combo.representation, "view": combo.view, "budget": budget, "seed": seed}
        atomic_write_json(
            path, {"name": combo.label, **selection.to_dict(), "grid": cell, "inputs_hash": digest}
        )
        self.computed += 1
        return selection.indices

    def _selected(self, combo: Combination, budget: int | float, seed: int) -> Selection:
        from datadiet.api import select

        inputs = self.plan.inputs
        rep = inputs.rep(combo.representation, combo.view)
        val = inputs.val(combo.representation, combo.view) if _needs_val(combo.algorithm) else None
        selection = select(combo.algorithm, rep, budget, labels=inputs.labels, val=val, seed=seed)
        if _plain_ranking(combo.algorithm):
            self._ranking = ((combo.label, seed), selection)
        return selection

    def _ranked(self, combo: Combination, budget: int | float, seed: int) -> Selection | None:
        """The selection at ``budget`` from the scores ``select`` gave this selector and seed at another one.

        Only for a plain ranking (a score selector keeping the top ``k``, ties to the lower index): its scores
        do not depend on the budget, so this is what ``select`` returns, without computing them again.
        """
        if self._ranking is None or self._ranking[0] != (combo.label, seed):
            return None
        first = self._ranking[1]
        scores = cast(np.ndarray, first.scores)
        k = resolve_budget(budget, len(scores))
        return Selection(top_k(scores, k), scores, None, {**first.meta, "budget": k})


def _reusable(path: Path, digest: str) -> np.ndarray | None:
    """The indices in ``path`` when it is a valid selection made from the same inputs (else None)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or record.get("inputs_hash") != digest:
            return None
        return Selection.from_dict(record, where=str(path)).indices
    except (ValueError, OSError, DatadietError):  # damaged: it is recomputed and replaced
        return None


def _inputs_hash(inputs: _Inputs, combo: Combination, budget: int | float, seed: int) -> str:
    """A fingerprint of everything one selection depends on (data, view, selector and its defaults, cell)."""
    params = json.dumps(jsonable(SELECTORS.parameters(combo.algorithm)), sort_keys=True, default=repr)
    needs_val = _needs_val(combo.algorithm)
    return fingerprint({
        "representation": combo.name,
        "source": inputs.source(combo.representation),
        "val": inputs.source(val_counterpart(combo.representation)) if needs_val else None,
        "labels": inputs.source("labels/train") if inputs.labels is not None else None,
        "algorithm": combo.algorithm,
        "owner": SELECTORS.owner(combo.algorithm),
        "params": params,
        "budget": budget_tag(budget),
        "seed": seed,
    })  # fmt: skip


def _plain_ranking(algorithm: str) -> bool:
    """Whether ``algorithm`` keeps the top ``k`` of budget-free scores, ties to the lower index."""
    cls = SELECTORS.get(algorithm)
    return (
        isinstance(cls, type)
        and issubclass(cls, ScoreSelector)
        and not cls.random_ties
        and all(getattr(cls, m) is getattr(ScoreSelector, m) for m in ("select", "_select", "pick"))
    )


def _needs_val(algorithm: str) -> bool:
    return bool(getattr(SELECTORS.get(algorithm), "needs_val", False))


def _with_failures(
    combos: list[Combination], failures: dict[str, list[tuple[Budget, int, str]]], n_runs: int
) -> list[Combination]:
    """The combinations, those ``select`` refused when run made impossible (all runs) or annotated (some)."""
    out = []
    for combo in combos:
        failed = failures.get(combo.label, [])
        if not failed:
            out.append(combo)
        elif len(failed) == n_runs:
            out.append(replace(combo, status="impossible", reason=f"refused by select: {failed[0][2]}"))
        else:
            where = sorted({budget_tag(b) for b, _, _ in failed})  # type: ignore[arg-type]
            out.append(replace(combo, reason=f"refused by select at {', '.join(where)}: {failed[0][2]}"))
    return out


# --- outputs -------------------------------------------------------------------------------------------
def _write_results(
    plan: GridPlan,
    out: Path,
    combos: list[Combination],
    selections: dict[tuple[str, str, Budget, int], np.ndarray],
    budgets: list[Any],
    seeds: list[int],
) -> GridResult:
    n = plan.n_examples
    frame = pd.DataFrame(
        [(c.representation, c.view or "", c.algorithm, c.status, c.reason) for c in combos],
        columns=["representation", "view", "algorithm", "status", "reason"],
    )
    atomic_write_text(out / "combinations.csv", frame.to_csv(index=False))
    overlaps: dict[Budget, dict[str, Any]] = {}
    table = pd.DataFrame()
    if selections:
        overlaps = _overlaps(selections, budgets, seeds, n)
        table = summary(selections, n_examples=n)
    for budget, entry in overlaps.items():
        matrix = pd.DataFrame(entry["mean"], index=entry["labels"], columns=entry["labels"])
        atomic_write_text(
            out / "overlap" / f"{budget_tag(budget)}.csv", matrix.to_csv(index_label="selection")
        )
    record = [_jsonable_overlap(budget, entry) for budget, entry in overlaps.items()]
    atomic_write_json(out / "overlap.json", {"n_examples": n, "budgets": record})
    atomic_write_text(out / "summary.csv", table.to_csv(index=False))
    atomic_write_json(out / "summary.json", _summary_record(table, n))
    return GridResult(out, combos, overlaps, table, n, dict(selections), list(seeds))


def _overlaps(
    selections: dict[tuple[str, str, Budget, int], np.ndarray], budgets: list[Any], seeds: list[int], n: int
) -> dict[Budget, dict[str, Any]]:
    means = overlap_matrices(selections, n_examples=n)
    per_seed = {s: overlap_matrices(selections, n_examples=n, seed=s) for s in seeds}
    out: dict[Budget, dict[str, Any]] = {}
    for budget in budgets:
        if budget not in means:
            continue
        labels, mean = means[budget]
        k = resolve_budget(budget, n)
        seeds_of = {s: _aligned(per_seed[s].get(budget), labels) for s in seeds}
        out[budget] = {"labels": labels, "mean": mean, "per_seed": seeds_of, "k": k,
                       "random": random_overlap_expectation(k, n)}  # fmt: skip
    return out


def _aligned(entry: tuple[list[str], np.ndarray] | None, labels: list[str]) -> np.ndarray:
    """A per-seed matrix laid out on the mean's labels (NaN where a selection is missing at that seed)."""
    out = np.full((len(labels), len(labels)), np.nan)
    if entry is not None:
        where = [labels.index(label) for label in entry[0]]
        out[np.ix_(where, where)] = entry[1]
    return out


def _finite(matrix: np.ndarray) -> list[list[float | None]]:
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in matrix]


def _jsonable_overlap(budget: Budget, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "budget": budget,
        "k": entry["k"],
        "random": entry["random"],
        "labels": entry["labels"],
        "mean": _finite(entry["mean"]),
        "per_seed": {str(s): _finite(m) for s, m in entry["per_seed"].items()},
    }


def _summary_record(table: pd.DataFrame, n: int) -> dict[str, Any]:
    """``summary.json``: per budget the pair means, each algorithm's variation, each selection's stability."""
    rows: list[dict[str, Any]] = [
        {**row, "value": _number(row["value"]), "random": _number(row["random"])}
        for row in table.to_dict("records")
    ]
    budgets: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = budgets.setdefault(budget_tag(row["budget"]), {
            "budget": row["budget"], "k": int(row["k"]), "random": row["random"],
            "cross_representation_variation": {}, "seed_stability": {},
        })  # fmt: skip
        measure = row["measure"]
        if measure == "cross_representation_variation":
            entry[measure][row["algorithm"]] = row["value"]
        elif measure == "seed_stability":
            entry[measure][grid_label(row["representation"], row["algorithm"])] = row["value"]
        else:
            entry[measure] = row["value"]
    return {"n_examples": n, "budgets": list(budgets.values()), "rows": rows}


def _number(value: Any) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def _grid_record(plan: GridPlan, result: GridResult, budgets: list[Any], seeds: list[int]) -> dict[str, Any]:
    return {
        "run": str(plan.folder.resolve()),
        "out": str(result.out),
        "n_examples": plan.n_examples,
        "budgets": budgets,
        "seeds": seeds,
        "representations": list(dict.fromkeys(c.name for c in result.combinations)),
        "n_combinations": len(result.combinations),
        "n_allowed": sum(c.status == "allowed" for c in result.combinations),
        "n_computed": result.n_computed,
        "n_reused": result.n_reused,
        "timings": result.timings,
    }


# --- the represent folder ---------------------------------------------------------------------------
class _Inputs:
    """A represent folder's index, its training representations (each loaded once) and labels."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.index_path = folder / INDEX
        if not self.index_path.is_file():
            raise ParameterError(
                f"'{folder}' is not a represent output folder (no {INDEX}); pass the `output` folder of "
                "`datadiet represent` (or `--config study.yaml`)."
            )
        self.index = read_index(folder)
        self.names = [name for name in self.index if not name.startswith("labels/") and not is_val(name)]
        if not self.names:
            raise ParameterError(f"{self.index_path} lists no training-split representation.")
        self._reps: dict[tuple[str, str | None], Representation] = {}
        self._classes: dict[tuple[str, str | None], InputValues] = {}
        self.n_examples = self._common_size()
        labels = self.index.get("labels/train")
        self.labels = None if labels is None else load_array(labels["path"], name="labels/train")
        if self.labels is not None and len(self.labels) != self.n_examples:
            raise ParameterError(
                f"labels/train in {self.index_path} has {len(self.labels)} entries for n_examples="
                f"{self.n_examples}; rerun `datadiet represent`."
            )

    def _common_size(self) -> int:
        sizes = {name: int(self.index[name]["shape"][0]) for name in self.names}
        if len(set(sizes.values())) != 1:
            raise ParameterError(
                f"The training representations in {self.index_path} have different numbers of examples "
                f"{sizes}; they must come from one reference run."
            )
        return next(iter(sizes.values()))

    def rep(self, name: str, view: str | None = None) -> Representation:
        """The representation ``name`` (through ``view``), loaded and viewed once."""
        if (name, view) not in self._reps:
            self._reps[name, view] = self._load(name) if view is None else apply_view(self.rep(name), view)
        return self._reps[name, view]

    def val(self, name: str, view: str | None) -> Representation | None:
        """The validation counterpart of ``name`` (through ``view``), or None when the index lacks it."""
        return self.rep(val_counterpart(name), view) if val_counterpart(name) in self.index else None

    def values_class(self, name: str, view: str | None) -> InputValues:
        """The narrowest class the values fall in: "binary", "probabilities" or "real" (read in chunks)."""
        view = None if view == "flatten" else view  # the same values, side by side
        if (name, view) not in self._classes:
            self._classes[name, view] = _values_class(self.rep(name, view).values)
        return self._classes[name, view]

    def source(self, name: str) -> str:
        """What identifies the data of ``name``: its store key, or the sha256 of its file."""
        entry = self.index[name]
        return str(entry["key"]) if entry.get("key") else cached_sha256_file(entry["path"])

    def _load(self, name: str) -> Representation:
        entry = self.index[name]
        path = Path(entry["path"])
        if entry.get("key"):
            rep = RepresentationStore(path.parent.parent).load(str(entry["key"]))
            if rep is None:
                raise FileNotFoundError(
                    f"{name} in {self.index_path}: the store entry '{path.parent}' is missing or partial; "
                    "rerun `datadiet represent` to rebuild it."
                )
            return rep
        kind = entry.get("kind")
        return Representation(load_array(path, name=name, mmap=True), kind if kind in KINDS else "features")


def _values_class(values: np.ndarray) -> InputValues:
    low, high, binary = np.inf, -np.inf, True
    for _, block in iter_row_chunks(values, chunk_rows_for(values)):
        low, high = min(low, float(block.min())), max(high, float(block.max()))
        binary = binary and bool(((block == 0) | (block == 1)).all())
    if binary:
        return "binary"
    return "probabilities" if 0 <= low and high <= 1 else "real"
