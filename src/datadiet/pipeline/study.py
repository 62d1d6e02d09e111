"""The study: which selection, on which representation, at which budget, trains the better main model.

``run_study(cfg)`` runs the reference model and the representations once (cached, via
:mod:`datadiet.pipeline.represent`), then every cell — (selection, budget, seed), plus the baselines
full data (per seed), random (same budgets and seeds) and dummy — selects a subset, trains the main model
on it and evaluates it on the test split (and an optional out-of-distribution split). Each finished cell
is written atomically to ``cells/<id>.json``; a rerun skips every cell whose file matches the current
configuration, and a cell runs under the lock ``cells/.<id>.lock``, so two studies sharing an output never
both run it.
Results go to ``results.parquet`` / ``results.csv`` (long format, one row per cell x split x metric), the
selections to ``selections/<name>/b<budget>_s<seed>.json``, and ``report.html`` is built at the end.

Every check that can refuse a study runs before it writes anything: the config (at load), the plan
(selector names and parameters, representation names), the data, the metrics, the evaluation splits and
every existing cell file and ``costs.json`` (each field's type and range; a damaged one is named, with the
fix). A refusal of the reference stage puts the previous ``study.resolved.json`` back.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

import datadiet
from datadiet._core.checks import did_you_mean
from datadiet._core.faults import fault_point
from datadiet._core.files import atomic_write_bytes, atomic_write_text, npy_bytes
from datadiet._core.locks import FileLock
from datadiet._core.progress import ProgressBar
from datadiet._core.records import Check, check_fields, integer, list_of, mapping, number, read_record, text
from datadiet.config import (
    ConfigError,
    ModelConfig,
    SelectionSpec,
    StudyConfig,
    cell_id,
    dumps_strict,
    main_defaults,
    selection_file,
    to_dict,
)
from datadiet.config.plan import check_plan, check_representation, check_task, task_metrics  # noqa: F401
from datadiet.data.dataset import Dataset, DatasetError
from datadiet.errors import ParameterError
from datadiet.metrics import dummy_scores, score
from datadiet.pipeline.reference import Stage, embeddings, prepare, run_reference
from datadiet.pipeline.represent import run_fingerprint, run_represent
from datadiet.recipes import RECIPES, RecipeInputs, dataset_duplicates, select_recipe
from datadiet.representations.base import Representation
from datadiet.representations.extractors import is_val
from datadiet.representations.views import apply_view, split_view
from datadiet.store import make_key

RANDOM = SelectionSpec("random", "", name="random")
"""The random baseline: uniform over the training split; it reads the split's size, no representation."""
RANDOM_HASH_SPEC = SelectionSpec("random", "dynamics/prob", name="random").model_dump()
"""What the random baseline's cells are hashed with: its spec from when it was bound to dynamics/prob. Its
draws never depended on that representation (only on the number of rows, which the hash holds through the
training split's fingerprint), so the finished random cells of existing studies stay valid."""
METRICS = ("accuracy", "macro_f1", "rouge1", "rouge2", "rougeL")
MAIN_KEYS = ("epochs", "head", "batch_size", "lr", "weight_decay", "warmup_ratio")
"""The ``main`` settings every cell hash has held (``main.model`` enters it only when set)."""
MODEL_KEYS = ("path", "mode", "head", "lora", "max_length", "max_new_tokens")
"""The ``main.model`` fields its hash always holds."""
CELL_FIX = "delete it and rerun the study: that cell is recomputed"
COSTS_FIX = "delete it and rerun the study: it only records timings"
COST_KEYS = ("reference_seconds", "represent_seconds")
LEGACY_VAL = "gradients/val"
"""The validation representation every selection read before it defaulted to its own counterpart."""


@dataclass(frozen=True)
class Cell:
    """One unit of work: a selection (None = full data) at a budget with a seed."""

    label: str
    spec: SelectionSpec | None
    budget: float
    seed: int
    kind: str

    @property
    def id(self) -> str:
        """``<name>__b<budget>__s<seed>``: one file name per cell (see :func:`datadiet.config.cell_id`)."""
        return cell_id(self.label, self.budget, self.seed)

    @property
    def selection_file(self) -> str:
        """Where the cell's selection is saved, relative to the study folder."""
        return selection_file(self.label, self.budget, self.seed)


def plan_cells(cfg: StudyConfig) -> list[Cell]:
    """Every cell of the study, baselines first."""
    cells = [Cell("full", None, 1.0, seed, "baseline") for seed in cfg.seeds]
    specs = [(RANDOM, "baseline")] + [(spec, "selection") for spec in cfg.selections]
    for spec, kind in specs:
        cells += [Cell(spec.label, spec, b, s, kind) for b in cfg.budgets for s in cfg.seeds]
    ids = [cell.id for cell in cells]
    if len(set(ids)) != len(ids):  # budgets or seeds listed twice in a config built by hand
        raise ConfigError("budgets and seeds must each be listed once; two cells would share one file.")
    return cells


class StudyRunner:
    """Holds what every cell shares: data, representations, embeddings, paths."""

    def __init__(self, cfg: StudyConfig, *, progress: bool = True) -> None:
        self.cfg = cfg
        self.progress = progress
        self.out = Path(cfg.output)
        self.ref_cfg = cfg.reference  # its output is the study's (resolved at load)
        self._reps: dict[str, Representation] = {}
        self._embeddings: dict[str, np.ndarray] = {}

    # --- set-up -------------------------------------------------------------------------------------
    def prepare(self, cells: list[Cell] | None = None) -> None:
        """Load and check everything a refusal can come from, then train, extract and record."""
        self.stage: Stage = prepare(self.ref_cfg)  # loads the data, once; writes nothing
        self.train = self.stage.train
        self.metrics: list[str] = [str(m) for m in self.cfg.metrics or ()]  # resolved at load
        self.primary_metric = str(self.cfg.primary_metric)
        self.evals = self._eval_sets()
        stored = self._stored_costs()
        for cell in cells or []:
            self.read_cell(cell)  # a damaged cell file is refused now, before any work
        # nothing was written before this line
        resolved = self.out / "study.resolved.json"
        with _restored_on_refusal(resolved):
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(resolved, dumps_strict(to_dict(self.cfg), what=str(resolved)))
            start = time.perf_counter()
            run_reference(self.ref_cfg, self.stage)
            reference_seconds = time.perf_counter() - start
            start = time.perf_counter()
            self.index = run_represent(self.ref_cfg, self.stage)
        self.costs = self._costs(stored, reference_seconds, time.perf_counter() - start)
        self.run_id = run_fingerprint(self.stage.run_dir)

    def _stored_costs(self) -> dict[str, Any]:
        path = self.out / "costs.json"
        if not path.is_file():
            return {}
        fields: dict[str, Check] = {key: number(0) for key in COST_KEYS}
        return read_record(path, name="costs", fields=fields, fix=COSTS_FIX, required=())

    def _costs(self, stored: dict[str, Any], reference_s: float, represent_s: float) -> dict[str, float]:
        """Seconds spent on the reference run and representations (the first, uncached run's, if larger)."""
        costs = {"reference_seconds": reference_s, "represent_seconds": represent_s}
        costs = {key: max(value, float(stored.get(key, 0.0))) for key, value in costs.items()}
        path = self.out / "costs.json"
        atomic_write_text(path, dumps_strict(costs, what=str(path)))
        return costs

    def _eval_sets(self) -> dict[str, Dataset]:
        from datadiet.data.loaders import load_dataset

        d = self.ref_cfg.dataset
        evals = {"test": _split(self.stage.splits, self.cfg.test_split, d.source, "test_split")}
        if self.cfg.test_slice is not None and self.cfg.test_slice < len(evals["test"]):
            from datadiet.data.slicing import stratified_slice

            evals["test"] = stratified_slice(evals["test"], self.cfg.test_slice, seed=d.seed)
        if self.cfg.ood is not None:
            try:
                ood = load_dataset(self.cfg.ood.source, label_names=list(self.train.label_names))
            except (DatasetError, FileNotFoundError) as exc:
                raise type(exc)(f"ood.source: {exc}") from None
            evals["ood"] = _split(ood, self.cfg.ood.split, self.cfg.ood.source, "ood.split")
        for name, ds in evals.items():
            if ds.task != self.train.task:
                raise ParameterError(
                    f"the {name} split is a {ds.task} task but training is {self.train.task}."
                )
            if ds.label_names != self.train.label_names:
                raise ParameterError(
                    f"the {name} split's label names {ds.label_names} differ from training's."
                )
        return evals

    def representation(self, name: str) -> Representation:
        """The representation ``name``, ``<base>[:<view>]``: the base entry seen through the view (cached)."""
        if name not in self._reps:
            base, view = split_view(name)
            if view is not None:
                try:
                    self._reps[name] = apply_view(self.representation(base), view)
                except ParameterError as exc:
                    raise ParameterError(f"representation {name!r}: {exc}") from None
                return self._reps[name]
            if name not in self.index:
                hint = did_you_mean(name, self.index)
                raise ParameterError(
                    f"Unknown representation {name!r}.{hint} Available: {sorted(self.index)}."
                )
            rep = cast(Representation, self.stage.store.load(self.index[name]["key"]))  # the index lists it
            split, ds = ("validation", self.stage.val) if is_val(name) else ("training", self.train)
            if name.startswith(("dynamics", "hidden", "gradients")) and ds is not None:
                if not np.array_equal(np.asarray(rep.ids).astype(str), ds.ids.astype(str)):
                    raise ParameterError(f"representation {name} does not follow the {split} split's ids.")
            self._reps[name] = rep
        return self._reps[name]

    # --- cells --------------------------------------------------------------------------------------
    def cell_hash(self, cell: Cell) -> str:
        """Everything a cell's result depends on; a finished cell is reused only if this matches."""
        spec: Any = "full" if cell.spec is None else cell.spec.model_dump()
        if cell.spec is RANDOM:
            spec = RANDOM_HASH_SPEC
        elif cell.spec is not None and cell.spec.recipe is not None:  # a changed recipe reruns its cells
            spec = {**spec, "recipe_definition": RECIPES.get(cell.spec.recipe).describe()}
        elif cell.spec is not None and cell.spec.val_representation is None and _reads_val(cell.spec):
            if cell.spec.val_name != LEGACY_VAL:  # the default it had before: old cells keep their hash
                spec = {**spec, "val_representation": cell.spec.val_name}
        evals = {name: ds.fingerprint() for name, ds in self.evals.items()}
        return make_key(
            spec=spec,
            budget=cell.budget,
            seed=cell.seed,
            main=main_identity(self.cfg),
            run=self.run_id,
            train=self.train.fingerprint(),
            evals=evals,
            metrics=self.metrics,
        )

    def cell_path(self, cell: Cell) -> Path:
        return self.out / "cells" / f"{cell.id}.json"

    def read_cell(self, cell: Cell) -> dict[str, Any] | None:
        """The cell's record, every field checked (None when there is no file); see :func:`check_cell`."""
        path = self.cell_path(cell)
        return check_cell(path, cell) if path.exists() else None

    def done(self, cell: Cell) -> bool:
        """Whether the cell's file holds its result under the current configuration; such a record must
        also fit the data (k, splits) and hold every split and metric, or it is refused as damaged."""
        record = self.read_cell(cell)
        if record is None or record["hash"] != self.cell_hash(cell):
            return False  # absent, or of another configuration: recomputed
        splits, metrics = tuple(self.evals), tuple(self.metrics)
        check_cell(self.cell_path(cell), cell, n_train=len(self.train), splits=splits, metrics=metrics)
        return True

    def run_cell(self, cell: Cell) -> None:
        start = time.perf_counter()
        indices, weights = self._select(cell)
        select_seconds = time.perf_counter() - start
        subset = self.train.subset(indices, note=cell.id)
        model = self.main_model(subset, indices, cell.seed)
        start = time.perf_counter()
        from datadiet.training import fit

        fit(model, subset, self.main_config(cell.seed), weights=weights)
        train_seconds = time.perf_counter() - start
        base = self._row_base(cell, len(indices), select_seconds, train_seconds, indices)
        rows = [
            {**base, "split": split, "metric": metric, "value": value}
            for split, values in self._evaluate(model).items()
            for metric, value in values.items()
        ]
        record = {"id": cell.id, "hash": self.cell_hash(cell), "rows": rows}
        path = self.cell_path(cell)
        atomic_write_text(path, dumps_strict(record, what=f"cell file '{path}'"))

    def _select(self, cell: Cell) -> tuple[np.ndarray, np.ndarray | None]:
        if cell.spec is None:
            return np.arange(len(self.train)), None
        spec = cell.spec
        if spec is RANDOM:  # uniform over the split: its size is all it reads
            selection = datadiet.select("random", np.zeros(len(self.train), np.float32), cell.budget,
                                        seed=cell.seed)  # fmt: skip
        elif spec.recipe is not None:
            selection = select_recipe(spec.recipe, self.recipe_inputs(), cell.budget, seed=cell.seed)
        else:
            val = None
            if datadiet.SELECTORS.get(spec.algorithm).needs_val:
                val = self.representation(spec.val_name)
            selection = datadiet.select(
                spec.algorithm,
                self.representation(spec.representation),
                cell.budget,
                labels=self.train.labels,
                val=val,
                seed=cell.seed,
                balance=None if spec.balance == "none" else spec.balance,
                calibrate=spec.calibrate,
                weighting=spec.weighting,
                **spec.params,
            )
        path = self.out / cell.selection_file
        atomic_write_text(path, dumps_strict(selection.to_dict(), what=f"selection file '{path}'"))
        return selection.indices, selection.weights

    def recipe_inputs(self) -> RecipeInputs:
        """What a recipe selects from: the training split's representations, labels and exact duplicates."""
        return RecipeInputs(
            self.representation, len(self.train), self.train.labels, dataset_duplicates(self.train)
        )

    @property
    def main_model_config(self) -> ModelConfig:
        """The main model's ``model`` section: ``main.model``, else the reference's with the main head."""
        model = self.cfg.main.model or self.ref_cfg.model
        return model.model_copy(update={"head": self.cfg.main.head})  # resolved at load

    def main_model(self, subset: Dataset, indices: np.ndarray, seed: int) -> Any:
        """A fresh main model (``main.model``, else the reference's kind with the main head), seeded, with
        its own encoder's embeddings for the frozen path."""
        from datadiet.models.registry import ModelRequest, backend_for

        model_cfg = self.main_model_config
        request = ModelRequest(model_cfg, seed, self.train, self.stage.val, self.embeddings)
        model = backend_for(self.train.task, model_cfg.mode).build(request)
        if model_cfg.mode == "frozen":
            model.attach_embeddings(subset, self.embeddings(self.train)[indices])
            for ds in self.evals.values():
                model.attach_embeddings(ds, self.embeddings(ds))
        return model

    def embeddings(self, ds: Dataset) -> np.ndarray:
        """The main model's frozen encoder embeddings of ``ds`` (its encoder, its max_length), cached."""
        model = self.main_model_config
        key = make_key(encoder=model.path, max_length=model.max_length, dataset=ds.fingerprint())
        if key not in self._embeddings:
            self._embeddings[key] = embeddings(self.stage, ds, model)
        return self._embeddings[key]

    def main_config(self, seed: int) -> Any:
        """The main model's training settings: the study's ``main`` section with the cell's seed."""
        from datadiet.training import TrainConfig

        return TrainConfig.of(self.cfg.main, seed=seed)

    def _evaluate(self, model: Any) -> dict[str, dict[str, float]]:
        """Every metric on every evaluation split: labels for classification and multiple choice, ROUGE of
        greedy generations for generation."""
        from datadiet.training import predict

        out = {}
        for name, ds in self.evals.items():
            if ds.task == "generation":
                out[name] = generation_scores(_targets(ds), model.generate(ds), self.metrics)
            else:
                out[name] = score(_labels(ds), predict(model, ds), self.metrics, n_outputs(ds))
        return out

    def _row_base(self, cell: Cell, k: int, select_s: float, train_s: float, idx: np.ndarray) -> dict:
        spec = cell.spec
        flipped = self.stage.flipped
        return {
            "cell": cell.id,
            "selection": cell.label,
            "kind": cell.kind,
            "algorithm": "full" if spec is None else spec_algorithm(spec),
            "representation": "" if spec is None else spec_representation(spec),
            "balance": "none" if spec is None else spec_balance(spec, cell.budget),
            "calibrate": None if spec is None or spec.calibrate is None else float(spec.calibrate),
            "budget": cell.budget,
            "k": k,
            "seed": cell.seed,
            "select_seconds": select_s,
            "train_seconds": train_s,
            "n_flipped_kept": None if flipped is None else float(flipped[idx].sum()),
        }


def _reads_val(spec: SelectionSpec) -> bool:
    return bool(datadiet.SELECTORS.get(spec.algorithm).needs_val)


def spec_algorithm(spec: SelectionSpec) -> str:
    """The results' ``algorithm`` column: the selector, or ``recipe:<name>``."""
    return spec.algorithm if spec.recipe is None else f"recipe:{spec.recipe}"


def spec_representation(spec: SelectionSpec) -> str:
    """The results' ``representation`` column: the representation, or those the recipe reads (``labels``
    for a recipe that reads nothing else)."""
    if spec.recipe is None:
        return spec.representation
    return ",".join(RECIPES.get(spec.recipe).reads()) or "labels"


def spec_balance(spec: SelectionSpec, budget: float) -> str:
    """The results' ``balance`` column: the spec's, or that of the recipe's step at ``budget``."""
    return spec.balance if spec.recipe is None else RECIPES.get(spec.recipe).step_for(budget).balance


def main_identity(cfg: StudyConfig) -> dict[str, Any]:
    """The ``main`` settings as a cell's hash holds them: a setting at its mode default as ``None`` (as it
    was written before defaults were resolved at load), so the finished cells of existing studies stay
    valid; a parameter added to the section later enters the hash only once it differs from its default."""
    defaults = main_defaults(cfg.reference, cfg.main)
    main = cfg.main.model_dump()
    fields = type(cfg.main).model_fields
    out = {key: None if key in defaults and value == defaults[key] else value for key, value in main.items()}
    out = {key: value for key, value in out.items() if key in MAIN_KEYS or value != fields[key].default}
    if cfg.main.model is not None:  # unset, it is left out: the hash of every existing study
        out["model"] = model_identity(cfg.main.model)
    return out


def model_identity(model: ModelConfig) -> dict[str, Any]:
    """A ``model`` section as a cell's hash holds it: every field it has now, a field added later only once
    it differs from its default."""
    dump, defaults = model.model_dump(), type(model)().model_dump()
    return {key: value for key, value in dump.items() if key in MODEL_KEYS or value != defaults[key]}


def describe_model(model: ModelConfig, task: str) -> str:
    """A short description of a model section: its mode, the model's name and the frozen path's head.

    >>> from datadiet.config import ModelConfig
    >>> describe_model(ModelConfig(mode="frozen", head="mlp"), "classification")
    'frozen MiniLM-L6 + mlp'
    >>> describe_model(ModelConfig(mode="lora"), "generation")
    'lora SmolLM2-135M'
    >>> describe_model(ModelConfig(path="models/bert-base/", mode="full"), "classification")
    'full bert-base'
    """
    if model.path == "embedded":
        name = "SmolLM2-135M" if task == "generation" else "MiniLM-L6"
    else:
        name = Path(model.path).name or model.path
    return f"{model.mode} {name}" + (f" + {model.head}" if model.mode == "frozen" else "")


def _split(splits: dict[str, Dataset], name: str, source: str, key: str) -> Dataset:
    if name not in splits:
        hint = did_you_mean(name, splits)
        raise ConfigError(f"{key}: {source} has no split {name!r}.{hint} Available: {sorted(splits)}.")
    return splits[name]


@contextlib.contextmanager
def _restored_on_refusal(path: Path) -> Iterator[None]:
    """Put ``path`` back as it was if the block is refused (a ``ValueError``/``TypeError``), and remove its
    folder again if the block created it and left it empty."""
    before = path.read_bytes() if path.is_file() else None
    created = not path.parent.exists()
    try:
        yield
    except (ValueError, TypeError):
        if before is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write_bytes(path, before)
        if created and path.parent.is_dir() and not any(path.parent.iterdir()):
            path.parent.rmdir()
        raise


# --- cell files -----------------------------------------------------------------------------------------
def _missing_or(inner: Check) -> Check:
    """``null`` (or NaN, as earlier cell files wrote it) or a value passing ``inner``."""

    def check(value: Any) -> None:
        if value is not None and not (isinstance(value, float) and np.isnan(value)):
            inner(value)

    return check


CELL_FIELDS: dict[str, Check] = {"id": text(), "hash": text(), "rows": list_of(mapping(), min_len=1)}
ROW_FIELDS: dict[str, Check] = {
    "cell": text(),
    "selection": text(),
    "kind": text(("baseline", "selection")),
    "algorithm": text(),
    "representation": text(),
    "balance": text(("none", "stratified", "sqrt")),
    "calibrate": _missing_or(number(0, 1)),
    "budget": number(0, 1),
    "k": integer(1),
    "seed": integer(0),
    "select_seconds": number(0),
    "train_seconds": number(0),
    "n_flipped_kept": _missing_or(number(0)),
    "split": text(),
    "metric": text(METRICS),
    "value": number(0, 1),
}


def check_cell(
    path: Path, cell: Cell, *, n_train: int | None = None, splits: tuple[str, ...] | None = None,
    metrics: tuple[str, ...] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The record in ``path``, refused (naming the file, the field and the fix) unless every field has its
    type and range and the file is this cell's (its id, and each row's cell, selection, budget and seed).

    With ``n_train``, ``splits`` and ``metrics`` (for a record of the current configuration) each row's k
    must be at most ``n_train`` and its split one of ``splits``, and there must be a row for every split
    and metric.
    """
    record = read_record(path, name="cell", fields=CELL_FIELDS, fix=CELL_FIX)
    if record["id"] != cell.id:
        raise ParameterError(
            f"cell file '{path}': field 'id' is {record['id']!r}, not {cell.id!r}; {CELL_FIX}."
        )
    expected = {"cell": cell.id, "selection": cell.label, "budget": cell.budget, "seed": cell.seed}
    for i, row in enumerate(record["rows"]):
        where = f"cell file '{path}' rows[{i}]"
        check_fields(row, ROW_FIELDS, where=where, fix=CELL_FIX)
        wrong = [key for key, value in expected.items() if row[key] != value]
        wrong += ["k"] if n_train is not None and row["k"] > n_train else []
        wrong += ["split"] if splits is not None and row["split"] not in splits else []
        if wrong:
            raise ParameterError(
                f"{where}: field '{wrong[0]}' is {row[wrong[0]]!r}, which does not fit this cell ({cell.id}"
                + ("" if n_train is None else f", {n_train} training examples, splits {list(splits or [])}")
                + f"); {CELL_FIX}."
            )
    have = {(row["split"], row["metric"]) for row in record["rows"]}
    missing = sorted({(s, m) for s in splits or () for m in metrics or ()} - have)
    if missing:
        raise ParameterError(
            f"cell file '{path}' has no row for split {missing[0][0]!r} and metric {missing[0][1]!r}; "
            f"{CELL_FIX}."
        )
    return record


# --- results ------------------------------------------------------------------------------------------
def n_outputs(ds: Dataset) -> int:
    """Number of classes (classification) or options (multiple choice)."""
    choices = cast(list[list[str]], ds.choices)  # a multiple-choice split has choices
    return ds.n_classes if ds.task == "classification" else max(len(c) for c in choices)


def _targets(ds: Dataset) -> list[str]:
    return cast(list[str], ds.targets)  # a generation split has targets


def _labels(ds: Dataset) -> np.ndarray:
    return cast(np.ndarray, ds.labels)  # a classification or multiple-choice split has labels


def generation_scores(references: list[str], predictions: list[str], metrics: list[str]) -> dict[str, float]:
    from datadiet.metrics import rouge_scores

    values = rouge_scores(references, predictions)
    return {name: values[name] for name in metrics}


def lead_sentence(text: str) -> str:
    """The first sentence (or line) of ``text``: the LEAD-1 summary."""
    first = text.strip().split("\n", 1)[0]
    match = re.search(r"(.+?[.!?])(\s|$)", first)
    return match.group(1) if match else first


def dummy_for(train: Dataset, ds: Dataset, metrics: list[str]) -> dict[str, float]:
    """The dummy baseline: majority-or-random for labels, LEAD-1 (the first input sentence) for generation."""
    if ds.task == "generation":
        return generation_scores(_targets(ds), [lead_sentence(t) for t in ds.texts], metrics)
    return dummy_scores(_labels(train), _labels(ds), metrics, n_outputs(ds), seed=0)


def assemble(runner: StudyRunner, cells: list[Cell]) -> pd.DataFrame:
    """All finished cells plus the dummy baseline, as one long table; the last two columns describe the
    study's reference and main models (:func:`model_columns`), which the cell files do not hold."""
    rows = []
    for cell in cells:
        representation = "" if cell.spec is None else spec_representation(cell.spec)
        # a random-baseline cell from before it stopped reading dynamics/prob still names it
        rows += [{**row, "representation": representation} for row in _finished(runner, cell)["rows"]]
    for split, ds in runner.evals.items():
        values = dummy_for(runner.train, ds, runner.metrics)
        for metric, value in values.items():
            rows.append(
                {
                    "cell": "dummy",
                    "selection": "dummy",
                    "kind": "baseline",
                    "algorithm": "dummy",
                    "representation": "",
                    "balance": "none",
                    "calibrate": None,
                    "budget": np.nan,
                    "k": 0,
                    "seed": -1,
                    "select_seconds": 0.0,
                    "train_seconds": 0.0,
                    "n_flipped_kept": None,
                    "split": split,
                    "metric": metric,
                    "value": value,
                }
            )
    models = model_columns(runner)
    frame = pd.DataFrame([{**row, **models} for row in rows])
    return frame.astype({"calibrate": "float64", "n_flipped_kept": "float64", "budget": "float64"})


def model_columns(runner: StudyRunner) -> dict[str, str]:
    """``reference_model`` and ``main_model``: the two models' short descriptions (:func:`describe_model`),
    the same on every row of a study, so tables of several studies can be told apart."""
    task = runner.train.task
    return {
        "reference_model": describe_model(runner.ref_cfg.model, task),
        "main_model": describe_model(runner.main_model_config, task),
    }


def _model_record(model: ModelConfig, task: str) -> dict[str, Any]:
    """A model as ``study.json`` records it: its description and its whole ``model`` section."""
    return {"description": describe_model(model, task), "config": to_dict(model)}


def _finished(runner: StudyRunner, cell: Cell) -> dict[str, Any]:
    """A cell's record, refusing one missing or computed under another configuration."""
    path = runner.cell_path(cell)
    record = runner.read_cell(cell)
    if record is None:
        raise ParameterError(
            f"cell file '{path}' is missing after its cell ran; rerun the study: it is recomputed."
        )
    if record["hash"] != runner.cell_hash(cell):
        raise ParameterError(
            f"cell file '{path}' was computed under another configuration (does another study with a "
            "different config write to this output?). Give each study its own output, then rerun the "
            "study: that cell is recomputed."
        )
    return record


def write_results(runner: StudyRunner, results: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    results.to_parquet(buffer, index=False)
    atomic_write_bytes(runner.out / "results.parquet", buffer.getvalue())
    atomic_write_bytes(runner.out / "results.csv", results.to_csv(index=False).encode())


def write_study_json(runner: StudyRunner, results: pd.DataFrame) -> None:
    cfg, out = runner.cfg, runner.out
    full = results[(results.selection == "full")]
    flipped, mask = None, runner.stage.flipped
    if mask is not None:
        atomic_write_bytes(out / "flipped.npy", npy_bytes(mask))
        flipped = "flipped.npy"
    noise = runner.ref_cfg.dataset.label_noise
    confidence = runner.index.get("dynamics/prob", {}).get("path")
    meta = {
        "name": out.name,
        "task": runner.train.task,
        "label_names": list(runner.train.label_names),
        "n_train": len(runner.train),
        "budgets": cfg.budgets,
        "seeds": cfg.seeds,
        "metrics": runner.metrics,
        "primary_metric": runner.primary_metric,
        "costs": {
            **runner.costs,
            "full_train_seconds": float(full.groupby("seed").train_seconds.first().mean()),
        },
        "label_noise": None if mask is None else {"fraction": noise, "n_flipped": int(mask.sum())},
        "reference_model": _model_record(runner.ref_cfg.model, runner.train.task),
        "main_model": _model_record(runner.main_model_config, runner.train.task),
        "selections": [
            {
                "name": s.label,
                "algorithm": spec_algorithm(s),
                "representation": spec_representation(s),
                "balance": s.balance,
                "calibrate": s.calibrate,
                "params": s.params,
            }
            for s in [RANDOM, *cfg.selections]
        ],
        "paths": {
            "labels": "labels.train.npy" if (out / "labels.train.npy").is_file() else None,
            "flipped": flipped,
            "confidence": None if confidence is None else str(Path(confidence).resolve()),
        },
    }
    atomic_write_text(out / "study.json", dumps_strict(meta, what=str(out / "study.json")))


def run_study(cfg: StudyConfig, *, progress: bool = True, report: bool = True) -> Path:
    """Run (or resume) the study in ``cfg.output``; returns the study directory."""
    cells = plan_cells(cfg)  # the config was checked (names, plan, metrics) when it was built
    runner = StudyRunner(cfg, progress=progress)
    runner.prepare(cells)
    pending = [cell for cell in cells if not runner.done(cell)]
    bar = ProgressBar("study cells", total=len(cells), completed=len(cells) - len(pending), enabled=progress)
    try:
        for cell in pending:
            bar.note(cell.id)
            # a second study process on the same output waits for the cell, then reuses it
            lock = runner.out / "cells" / f".{cell.id}.lock"
            with FileLock(lock, timeout=None, what=f"study cell {cell.id}"):
                if not runner.done(cell):
                    runner.run_cell(cell)
            fault_point("study.cell")
            bar.advance()
    finally:
        bar.close()  # an error is printed below the bar, not onto it
    results = assemble(runner, cells)
    write_results(runner, results)
    write_study_json(runner, results)
    if report:
        from datadiet.report.html import build_report

        build_report(runner.out)
    return runner.out
