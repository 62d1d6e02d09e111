"""The study: which selection, on which representation, at which budget, trains the better main model.

``run_study(cfg)`` runs the reference model and the representations once (cached, via
:mod:`datadiet.pipeline`), then every cell — (selection, budget, seed), plus the baselines full data (per
seed), random (same budgets and seeds) and dummy — selects a subset, trains the main model on it and
evaluates it on the test split (and an optional out-of-distribution split). Each finished cell is written
atomically to ``cells/<id>.json``; a rerun skips every cell whose file matches the current configuration,
and a cell runs under the lock ``cells/.<id>.lock``, so two studies sharing an output never both run it.
Results go to ``results.parquet`` / ``results.csv`` (long format, one row per cell x split x metric), the
selections to ``selections/<name>/b<budget>_s<seed>.json``, and ``report.html`` is built at the end.
"""

from __future__ import annotations

import dataclasses
import io
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

import datadiet
from datadiet._faults import fault_point
from datadiet._store_io import FileLock
from datadiet.config import SelectionSpec, StudyConfig, to_dict
from datadiet.data.dataset import Dataset
from datadiet.io import atomic_write_bytes, atomic_write_json, read_json, safe_name
from datadiet.metrics import dummy_scores, score
from datadiet.pipeline import (
    Stage,
    build_model,
    embeddings,
    prepare,
    run_fingerprint,
    run_reference,
    run_represent,
)
from datadiet.representations.base import Representation
from datadiet.store import make_key

RANDOM = SelectionSpec("random", "dynamics/prob", name="random")


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
        return safe_name(f"{self.label}__b{self.budget:.2f}__s{self.seed}")


def plan_cells(cfg: StudyConfig) -> list[Cell]:
    """Every cell of the study, baselines first."""
    cells = [Cell("full", None, 1.0, seed, "baseline") for seed in cfg.seeds]
    specs = [(RANDOM, "baseline")] + [(spec, "selection") for spec in cfg.selections]
    labels = [spec.label for spec, _ in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"Selection names must be unique; got {labels}. Give the duplicates a 'name'.")
    files = [safe_name(label) for label in labels]  # cells and selections are stored under these names
    if len(set(files)) != len(files):
        clash = sorted({label for label, file in zip(labels, files, strict=True) if files.count(file) > 1})
        raise ValueError(
            f"Selection names {clash} are unique but map to the same file name; give them names that differ "
            "in letters, digits or '_.@+-' (other characters become '_')."
        )
    for spec, kind in specs:
        cells += [Cell(spec.label, spec, b, s, kind) for b in cfg.budgets for s in cfg.seeds]
    return cells


class StudyRunner:
    """Holds what every cell shares: data, representations, embeddings, paths."""

    def __init__(self, cfg: StudyConfig, *, progress: bool = True) -> None:
        self.cfg = cfg
        self.progress = progress
        self.out = Path(cfg.output)
        self.ref_cfg = dataclasses.replace(cfg.reference, output=cfg.output)
        self._reps: dict[str, Representation] = {}
        self._embeddings: dict[str, np.ndarray] = {}

    # --- set-up -------------------------------------------------------------------------------------
    def prepare(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.out / "study.resolved.json", to_dict(self.cfg))
        start = time.perf_counter()
        self.stage: Stage = prepare(self.ref_cfg)
        run_reference(self.ref_cfg, self.stage)
        reference_seconds = time.perf_counter() - start
        start = time.perf_counter()
        self.index = run_represent(self.ref_cfg)
        self.costs = self._costs(reference_seconds, time.perf_counter() - start)
        self.run_id = run_fingerprint(self.stage.run_dir)
        self.train = self.stage.train
        self.evals = self._eval_sets()
        self.metrics, self.primary_metric = task_metrics(self.cfg, self.train.task)

    def _costs(self, reference_seconds: float, represent_seconds: float) -> dict[str, float]:
        """Seconds spent on the reference run and representations (the first, uncached run's, if larger)."""
        path = self.out / "costs.json"
        costs = {"reference_seconds": reference_seconds, "represent_seconds": represent_seconds}
        if path.is_file():
            stored = read_json(path, name="costs")
            costs = {key: max(value, float(stored.get(key, 0.0))) for key, value in costs.items()}
        atomic_write_json(path, costs)
        return costs

    def _eval_sets(self) -> dict[str, Dataset]:
        from datadiet.data.loaders import load_dataset

        d = self.ref_cfg.dataset
        splits = d.load()
        if self.cfg.test_split not in splits:
            raise ValueError(f"{d.source} has no split {self.cfg.test_split!r}. Available: {sorted(splits)}.")
        evals = {"test": splits[self.cfg.test_split]}
        if self.cfg.test_slice is not None and self.cfg.test_slice < len(evals["test"]):
            from datadiet.data.slicing import stratified_slice

            evals["test"] = stratified_slice(evals["test"], self.cfg.test_slice, seed=d.seed)
        if self.cfg.ood is not None:
            ood = load_dataset(self.cfg.ood.source, label_names=list(self.train.label_names))
            evals["ood"] = ood[self.cfg.ood.split]
        for name, ds in evals.items():
            if ds.task != self.train.task:
                raise ValueError(f"the {name} split is a {ds.task} task but training is {self.train.task}.")
            if ds.label_names != self.train.label_names:
                raise ValueError(f"the {name} split's label names {ds.label_names} differ from training's.")
        return evals

    def representation(self, name: str) -> Representation:
        if name not in self._reps:
            if name not in self.index:
                raise ValueError(f"Unknown representation {name!r}. Available: {sorted(self.index)}.")
            rep = self.stage.store.load(self.index[name]["key"])
            if name.startswith(("dynamics", "hidden")) or name == "gradients/train":
                if not np.array_equal(np.asarray(rep.ids).astype(str), self.train.ids.astype(str)):
                    raise ValueError(f"representation {name} does not follow the training split's ids.")
            self._reps[name] = rep
        return self._reps[name]

    # --- cells --------------------------------------------------------------------------------------
    def cell_hash(self, cell: Cell) -> str:
        """Everything a cell's result depends on; a finished cell is reused only if this matches."""
        spec = "full" if cell.spec is None else dataclasses.asdict(cell.spec)
        evals = {name: ds.fingerprint() for name, ds in self.evals.items()}
        return make_key(
            spec=spec,
            budget=cell.budget,
            seed=cell.seed,
            main=dataclasses.asdict(self.cfg.main),
            run=self.run_id,
            train=self.train.fingerprint(),
            evals=evals,
            metrics=self.metrics,
        )

    def done(self, cell: Cell) -> bool:
        path = self.out / "cells" / f"{cell.id}.json"
        return path.is_file() and read_json(path, name="cell").get("hash") == self.cell_hash(cell)

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
        atomic_write_json(self.out / "cells" / f"{cell.id}.json", record)

    def _select(self, cell: Cell) -> tuple[np.ndarray, np.ndarray | None]:
        if cell.spec is None:
            return np.arange(len(self.train)), None
        spec = cell.spec
        val = None
        if datadiet.SELECTORS.get(spec.algorithm).needs_val:
            val = self.representation(spec.val_representation or "gradients/val")
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
        path = self.out / "selections" / safe_name(cell.label) / f"b{cell.budget:.2f}_s{cell.seed}.json"
        atomic_write_json(path, selection.to_dict())
        return selection.indices, selection.weights

    def main_model(self, subset: Dataset, indices: np.ndarray, seed: int) -> Any:
        """A fresh main model (same kind as the reference), seeded, with embeddings for the frozen path."""
        stage = dataclasses.replace(self.stage, cfg=_main_reference(self.ref_cfg, seed, self.cfg.main.head))
        model = build_model(stage)
        if self.ref_cfg.model.mode == "frozen":
            model.attach_embeddings(subset, self.embeddings(self.train)[indices])
            for ds in self.evals.values():
                model.attach_embeddings(ds, self.embeddings(ds))
        return model

    def embeddings(self, ds: Dataset) -> np.ndarray:
        key = ds.fingerprint()
        if key not in self._embeddings:
            self._embeddings[key] = embeddings(self.stage, ds)
        return self._embeddings[key]

    def main_config(self, seed: int) -> Any:
        from datadiet.training import TrainConfig

        m = self.cfg.main
        frozen = self.ref_cfg.model.mode == "frozen"
        lr = m.lr if m.lr is not None else (1e-2 if frozen else 5e-5)
        epochs = m.epochs if m.epochs is not None else (20 if frozen else 3)
        return TrainConfig(
            epochs=epochs,
            batch_size=m.batch_size,
            lr=lr,
            weight_decay=m.weight_decay,
            warmup_ratio=m.warmup_ratio,
            seed=seed,
        )

    def _evaluate(self, model: Any) -> dict[str, dict[str, float]]:
        """Every metric on every evaluation split: labels for classification and multiple choice, ROUGE of
        greedy generations for generation."""
        from datadiet.training import predict

        out = {}
        for name, ds in self.evals.items():
            if ds.task == "generation":
                out[name] = generation_scores(ds.targets, model.generate(ds), self.metrics)
            else:
                out[name] = score(ds.labels, predict(model, ds), self.metrics, n_outputs(ds))
        return out

    def _row_base(self, cell: Cell, k: int, select_s: float, train_s: float, idx: np.ndarray) -> dict:
        spec = cell.spec
        flipped = self.stage.flipped
        return {
            "cell": cell.id,
            "selection": cell.label,
            "kind": cell.kind,
            "algorithm": "full" if spec is None else spec.algorithm,
            "representation": "" if spec is None else spec.representation,
            "balance": "none" if spec is None else spec.balance,
            "calibrate": np.nan if spec is None or spec.calibrate is None else float(spec.calibrate),
            "budget": cell.budget,
            "k": k,
            "seed": cell.seed,
            "select_seconds": select_s,
            "train_seconds": train_s,
            "n_flipped_kept": np.nan if flipped is None else float(flipped[idx].sum()),
        }


def _main_reference(cfg: Any, seed: int, head: str | None) -> Any:
    """The reference config with the main model's seed (and head, for the frozen path)."""
    model = cfg.model if head is None else dataclasses.replace(cfg.model, head=head)
    return dataclasses.replace(cfg, model=model, training=dataclasses.replace(cfg.training, seed=seed))


# --- results ------------------------------------------------------------------------------------------
def task_metrics(cfg: StudyConfig, task: str) -> tuple[list[str], str]:
    """The study's metrics and primary metric, defaulting by task."""
    generation = task == "generation"
    metrics = cfg.metrics or (["rouge1", "rouge2", "rougeL"] if generation else ["accuracy", "macro_f1"])
    primary = cfg.primary_metric or {"generation": "rougeL", "multiple_choice": "accuracy"}.get(
        task, "macro_f1"
    )
    rouge = {"rouge1", "rouge2", "rougeL"}
    if generation != bool(set(metrics) & rouge) or (generation and not set(metrics) <= rouge):
        raise ValueError(
            f"metrics {metrics} do not fit a {task} task; use rouge* for generation, else accuracy/macro_f1."
        )
    if primary not in metrics:
        raise ValueError(f"primary_metric {primary!r} is not among the metrics {metrics}.")
    return metrics, primary


def n_outputs(ds: Dataset) -> int:
    """Number of classes (classification) or options (multiple choice)."""
    return ds.n_classes if ds.task == "classification" else max(len(c) for c in ds.choices)


def generation_scores(references: list[str], predictions: list[str], metrics: list[str]) -> dict[str, float]:
    from datadiet.metrics_rouge import rouge_scores

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
        return generation_scores(ds.targets, [lead_sentence(t) for t in ds.texts], metrics)
    return dummy_scores(train.labels, ds.labels, metrics, n_outputs(ds), seed=0)


def assemble(runner: StudyRunner, cells: list[Cell]) -> pd.DataFrame:
    """All finished cells plus the dummy baseline, as one long table."""
    rows = [row for cell in cells for row in _finished(runner, cell)["rows"]]
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
                    "calibrate": np.nan,
                    "budget": np.nan,
                    "k": 0,
                    "seed": -1,
                    "select_seconds": 0.0,
                    "train_seconds": 0.0,
                    "n_flipped_kept": np.nan,
                    "split": split,
                    "metric": metric,
                    "value": value,
                }
            )
    return pd.DataFrame(rows)


def _finished(runner: StudyRunner, cell: Cell) -> dict[str, Any]:
    """A cell's record, refusing one missing or computed under another configuration."""
    record = read_json(runner.out / "cells" / f"{cell.id}.json", name="cell")
    if record.get("hash") != runner.cell_hash(cell):
        raise RuntimeError(f"cell {cell.id} was computed under another configuration; rerun the study.")
    return record


def write_results(runner: StudyRunner, results: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    results.to_parquet(buffer, index=False)
    atomic_write_bytes(runner.out / "results.parquet", buffer.getvalue())
    atomic_write_bytes(runner.out / "results.csv", results.to_csv(index=False).encode())


def write_study_json(runner: StudyRunner, results: pd.DataFrame) -> None:
    cfg, out = runner.cfg, runner.out
    full = results[(results.selection == "full")]
    flipped = None
    if runner.stage.flipped is not None:
        buffer = io.BytesIO()
        np.save(buffer, runner.stage.flipped, allow_pickle=False)
        atomic_write_bytes(out / "flipped.npy", buffer.getvalue())
        flipped = "flipped.npy"
    noise = runner.ref_cfg.dataset.label_noise
    confidence = runner.index.get("dynamics/prob", {}).get("path")
    atomic_write_json(
        out / "study.json",
        {
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
            "label_noise": None
            if flipped is None
            else {"fraction": noise, "n_flipped": int(runner.stage.flipped.sum())},
            "selections": [
                {
                    "name": s.label,
                    "algorithm": s.algorithm,
                    "representation": s.representation,
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
        },
    )


def run_study(cfg: StudyConfig, *, progress: bool = True, report: bool = True) -> Path:
    """Run (or resume) the study in ``cfg.output``; returns the study directory."""
    runner = StudyRunner(cfg, progress=progress)
    runner.prepare()
    cells = plan_cells(cfg)
    pending = [cell for cell in cells if not runner.done(cell)]
    bar = tqdm(total=len(cells), initial=len(cells) - len(pending), desc="study cells", disable=not progress)
    for cell in pending:
        bar.set_postfix_str(cell.id, refresh=False)
        # a second study process on the same output waits for the cell, then reuses it
        with FileLock(runner.out / "cells" / f".{cell.id}.lock", timeout=None, what=f"study cell {cell.id}"):
            if not runner.done(cell):
                runner.run_cell(cell)
        fault_point("study.cell")
        bar.update()
    bar.close()
    results = assemble(runner, cells)
    write_results(runner, results)
    write_study_json(runner, results)
    if report:
        from datadiet.report.html import build_report

        build_report(runner.out)
    return runner.out
