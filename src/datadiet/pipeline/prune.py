"""``datadiet prune``: a dataset in, the kept rows out, in the input's own format.

``run_prune(request)`` loads the training split (what ``dataset.source`` accepts), computes only what the
recipe reads (the pretrained embeddings alone for ``auto``: no reference model is trained; a recipe that
reads training dynamics or gradients trains the reference and extracts those), selects with the recipe, and
writes to ``out``:

- the kept rows in the input's format (:mod:`datadiet.data.export`: same columns, the user's ids, the file's
  row order; an HF dataset for an HF input; a JSON Lines file for an embedded dataset), with a ``weight``
  column when the recipe calibrates with importance weights;
- ``selection.json`` (positions in the training split, their ids, the recipe and its step);
- ``summary.json`` (rows kept, label distribution before and after, exact duplicates dropped, the recipe
  and its parameters, time spent and the training it saves).

Everything computed is cached in ``<out>/.datadiet`` (embeddings and representations in a store keyed by
provenance, the reference run in a folder named by the data's fingerprint and the settings), so a rerun
with the same inputs computes nothing again and an interrupted one resumes. An input that changed since the
last prune in this folder is detected by its fingerprint, said, and recomputed.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datadiet._core.files import atomic_write_json, read_json
from datadiet.config import ReferenceConfig, from_dict, to_dict
from datadiet.data.dataset import Dataset
from datadiet.errors import ParameterError
from datadiet.recipes import (
    RECIPES,
    Recipe,
    RecipeInputs,
    check_budget,
    dataset_duplicates,
    needs_reference,
    select_recipe,
)
from datadiet.representations.base import Representation
from datadiet.selection.base import Budget, Selection, resolve_budget
from datadiet.store import make_key

CACHE = ".datadiet"
"""The cache folder inside the output folder (datadiet's own: embeddings, representations, reference run)."""
SELECTION_FILE = "selection.json"
SUMMARY_FILE = "summary.json"
STATE = "prune.json"
"""What the last prune in an output folder pruned (the cache's record of the input's fingerprint)."""
DEFAULT_MODEL: dict[str, Any] = {"mode": "frozen", "head": "mlp", "max_length": 128}
"""The reference when the config sets none: the fast frozen path (what docs/recipes.md measured)."""


class EmptyClassWarning(UserWarning):
    """A class of the data keeps no row in the pruned set."""


@dataclass
class PruneResult:
    """What :func:`run_prune` wrote and measured."""

    out: Path
    files: list[Path]
    selection: Selection
    summary: dict[str, Any]
    notes: list[str]
    """Things said along the way (a changed input, a class left empty)."""


def prune_config(
    data: str | None,
    out: str | Path,
    config: dict[str, Any] | ReferenceConfig | None = None,
    *,
    recipe: Recipe,
    columns: dict[str, str] | None = None,
) -> ReferenceConfig:
    """The reference config of a prune: ``config`` (a reference config's fields) with ``data`` as its source,
    the cache in ``<out>/.datadiet`` and only the representations ``recipe`` reads."""
    # only what the user set: unset fields take prune's defaults (no validation split, the MLP reference)
    if isinstance(config, ReferenceConfig):
        base = config.model_dump(mode="json", exclude_unset=True)
    else:
        base = dict(config or {})
    dataset = dict(base.get("dataset") or {})
    if data is not None:
        dataset["source"] = str(data)
    dataset.update(columns or {})
    reads = recipe.reads()
    if "val_split" not in dataset and not any(name.endswith("/val") for name in reads):
        dataset["val_split"] = None  # the recipe reads no validation representation: do not ask for one
    kinds = [kind for kind in ("dynamics", "hidden", "gradients") if any(n.startswith(kind) for n in reads)]
    stages = [s for s in ("pretrained", "early", "final") if any(n.startswith(f"hidden/{s}") for n in reads)]
    represent = {**dict(base.get("represent") or {}), "kinds": kinds or ["dynamics"]}
    represent.update({"hidden_stages": stages} if stages else {})
    represent["store"] = str(Path(out) / CACHE / "store")
    cfg = {
        **base,
        "output": str(Path(out) / CACHE / "run"),
        "dataset": dataset,
        "model": {**DEFAULT_MODEL, **dict(base.get("model") or {})},
        "represent": represent,
    }
    return from_dict(ReferenceConfig, cfg)


def run_prune(
    cfg: ReferenceConfig,
    budget: Budget,
    out: str | Path,
    *,
    recipe: Recipe,
    seed: int = 0,
) -> PruneResult:
    """Prune the training split of ``cfg.dataset`` to ``budget`` with ``recipe`` and write it to ``out``."""
    from datadiet.data.export import check_targets, export_name, write_owned_json

    start = time.perf_counter()
    out = Path(out)
    stage = _prepared(cfg, recipe)  # loads the data; writes nothing
    train = stage.train
    k = resolve_budget(budget, len(train))
    check_budget(recipe, k, len(train), train.labels)  # before anything is computed or written
    step = recipe.step_for(k / len(train))
    outputs = [export_name(cfg.dataset.source, cfg.dataset.train_split), SELECTION_FILE, SUMMARY_FILE]
    check_targets(out, outputs)  # before anything is written: never replace a file datadiet did not write
    notes = _input_notes(out, train, cfg)
    identity = make_key(train=train.fingerprint(), config=to_dict(cfg.model_copy(update={"output": ""})))
    cfg = cfg.model_copy(update={"output": str(out / CACHE / f"run-{identity[:16]}")})
    stage = dataclasses.replace(stage, cfg=cfg)
    reps, seconds = _representations(stage, recipe, step.reads())  # only what this budget's step reads
    started = time.perf_counter()
    inputs = RecipeInputs(reps.__getitem__, len(train), train.labels, dataset_duplicates(train))
    selection = select_recipe(recipe, inputs, k, seed=seed)
    seconds["select"] = time.perf_counter() - started
    notes += _empty_classes(train, selection)
    files = _export(cfg, train, selection, out)
    seconds["total"] = time.perf_counter() - start
    summary = _summary(cfg, train, selection, recipe, seconds, notes, files)
    record = {**selection.to_dict(), "ids": [str(i) for i in train.ids[selection.indices]]}
    record.update(source=str(cfg.dataset.source), split=cfg.dataset.train_split)
    write_owned_json(out, SELECTION_FILE, record)
    write_owned_json(out, SUMMARY_FILE, summary)
    atomic_write_json(out / CACHE / STATE, {"fingerprint": train.fingerprint(), "n_examples": len(train),
                                            "source": str(cfg.dataset.source)})  # fmt: skip
    return PruneResult(out, files, selection, summary, notes)


def _input_notes(out: Path, train: Dataset, cfg: ReferenceConfig) -> list[str]:
    """Say when the input changed since the last prune in ``out`` (its fingerprint differs)."""
    state = out / CACHE / STATE
    if not state.is_file():
        return []
    try:
        last = read_json(state, name="prune state")
    except (OSError, ValueError):
        return [f"'{state}' was unreadable; it is rewritten."]
    if last.get("fingerprint") == train.fingerprint():
        return []
    return [
        f"the input changed since the last prune in '{out}' ({last.get('n_examples')} -> {len(train)} "
        f"examples, fingerprint {last.get('fingerprint')} -> {train.fingerprint()}): its representations "
        "are computed again."
    ]


def _prepared(cfg: ReferenceConfig, recipe: Recipe) -> Any:
    """The loaded data of ``cfg``; a missing validation split that the recipe reads is said as such."""
    from datadiet.data.dataset import DatasetError
    from datadiet.pipeline.reference import prepare

    try:
        return prepare(cfg)
    except (DatasetError, ParameterError) as exc:
        reads_val = [name for name in recipe.reads() if name.endswith("/val")]
        split = cfg.dataset.val_split
        if not reads_val or split is None or f"'{split}'" not in str(exc):
            raise
        raise type(exc)(
            f"recipe {recipe.name!r} reads {reads_val[0]}, which needs a validation split, but {exc} Add "
            "one, set dataset.val_split in --config to the split to use, or choose another recipe."
        ) from None


def _representations(
    stage: Any, recipe: Recipe, names: list[str]
) -> tuple[dict[str, Representation], dict[str, float]]:
    """The representations ``names`` that ``recipe`` reads, computing only those (no reference model for
    the pretrained encoder's embeddings); and the seconds spent."""
    from datadiet.pipeline.reference import embeddings

    cfg: ReferenceConfig = stage.cfg
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    if not names:
        return {}, seconds
    if not needs_reference(recipe) and stage.train.task == "classification":
        reps = {}
        for name in names:  # hidden/pretrained on the frozen path is the encoder's embedding
            ds = stage.val if name.endswith("/val") else stage.train
            reps[name] = Representation(embeddings(stage, ds), "hidden", ds.ids.astype(str), {"stage": name})
        seconds["embeddings"] = time.perf_counter() - started
        return reps, seconds
    from datadiet.pipeline.reference import run_reference
    from datadiet.pipeline.represent import run_represent

    run_reference(cfg, stage)
    seconds["reference" if cfg.run_dir is None else "open reference run"] = time.perf_counter() - started
    started = time.perf_counter()
    index = run_represent(cfg, stage)
    seconds["represent"] = time.perf_counter() - started
    reps = {}
    for name in names:
        base = name.partition(":")[0]
        if base not in index:
            raise ParameterError(
                f"recipe {recipe.name!r} reads {base!r}, which this config does not extract."
            )
        rep = stage.store.load(index[base]["key"])
        if ":" in name:
            from datadiet.representations.views import apply_view

            rep = apply_view(rep, name.partition(":")[2])
        reps[name] = rep
    return reps, seconds


def _empty_classes(train: Dataset, selection: Selection) -> list[str]:
    """A warning for every class that keeps no row."""
    if train.labels is None or not train.label_names:
        return []
    kept = np.bincount(train.labels[selection.indices], minlength=len(train.label_names))
    empty = [name for name, count in zip(train.label_names, kept, strict=True) if count == 0]
    if not empty:
        return []
    note = (
        f"{len(empty)} class(es) keep no row: {empty[:5]}; a model trained on the pruned set never sees "
        "them. "
        "Raise the budget, or use a recipe that balances labels (auto does)."
    )
    warnings.warn(note, EmptyClassWarning, stacklevel=3)
    return [note]


def _export(cfg: ReferenceConfig, train: Dataset, selection: Selection, out: Path) -> list[Path]:
    """The kept rows, written in the input's format (a JSON Lines file for an embedded dataset)."""
    from datadiet.data.export import export_name, source_rows, write_examples, write_subset
    from datadiet.data.loaders import is_embedded_name

    d = cfg.dataset
    extra = None if selection.weights is None else {"weight": selection.weights.tolist()}
    if is_embedded_name(d.source):
        name = export_name(d.source, d.train_split)
        return [write_examples(train, selection.indices, out, name, extra_columns=extra)]
    rows = source_rows(d.source, d.train_split, train.ids[selection.indices], id_column=d.id)
    return [write_subset(d.source, d.train_split, rows, out, extra_columns=extra)]


def _summary(
    cfg: ReferenceConfig,
    train: Dataset,
    selection: Selection,
    recipe: Recipe | None,
    seconds: dict[str, float],
    notes: list[str],
    files: list[Path],
) -> dict[str, Any]:
    """What the user reads: rows kept, labels before and after, duplicates, the recipe, time and savings."""
    n, k = len(train), selection.budget
    labels: dict[str, Any] = {}
    if train.labels is not None and train.label_names:
        before = np.bincount(train.labels, minlength=len(train.label_names))
        after = np.bincount(train.labels[selection.indices], minlength=len(train.label_names))
        labels = {
            name: {"before": int(b), "after": int(a)}
            for name, b, a in zip(train.label_names, before, after, strict=True)
        }
    reference = seconds.get("reference")
    return {
        "source": str(cfg.dataset.source),
        "split": cfg.dataset.train_split,
        "files": [path.name for path in files],
        "n_examples": n,
        "kept": k,
        "fraction": k / n,
        "labels": labels,
        "duplicates_dropped": int(selection.meta.get("duplicates_dropped", 0)),
        "recipe": {"name": recipe.name, "summary": recipe.summary, "step": selection.meta.get("recipe_step")}
        if recipe is not None
        else {
            "name": None,
            "algorithm": selection.meta.get("algorithm"),
            "params": selection.meta.get("params"),
        },
        "seed": selection.meta.get("seed"),
        "weights": selection.weights is not None,
        "seconds": seconds,
        "training_saved": {
            "fraction_of_steps": 1 - k / n,
            "reference_training_seconds": reference,
            "note": (
                f"training on the pruned set takes {k / n:.0%} of the steps of training on all of it"
                + (f"; the full-set reference training here took {reference:.0f} s" if reference else "")
                + "."
            ),
        },
        "notes": notes,
    }


# --- a represent output or a hand-made selection -------------------------------------------------------
def run_config(run: str | Path) -> ReferenceConfig:
    """The resolved reference config of a ``datadiet represent`` output folder (``config.resolved.json``)."""
    path = Path(run) / "config.resolved.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"'{run}' holds no config.resolved.json: pass the output folder of `datadiet represent` (or of a "
            "study), the one that holds representations.json."
        )
    return from_dict(ReferenceConfig, read_json(path, name="resolved reference config"), where=str(path))


def run_recipe_inputs(run: str | Path) -> tuple[Any, RecipeInputs]:
    """The stage (data loaded) of a represent output folder and what a recipe selects from there: its
    representations (by ``representations.json``, views allowed), labels and exact duplicates."""
    from datadiet.pipeline.reference import prepare
    from datadiet.pipeline.represent import read_index
    from datadiet.representations.views import apply_view, split_view

    cfg = run_config(run)
    stage = prepare(cfg)
    index = read_index(run)

    def representation(name: str) -> Representation:
        base, view = split_view(name)
        if base not in index or "key" not in index[base]:
            raise ParameterError(
                f"'{run}' has no representation {base!r} (it has {sorted(index)}); extract it with "
                "`datadiet represent` (reference.represent.kinds)."
            )
        rep = stage.store.load(index[base]["key"])
        if rep is None:
            raise FileNotFoundError(f"the store entry of {base!r} listed in '{run}' is missing.")
        return rep if view is None else apply_view(rep, view)

    train = stage.train
    return stage, RecipeInputs(representation, len(train), train.labels, dataset_duplicates(train))


def check_export(cfg: ReferenceConfig, out: str | Path) -> None:
    """Refuse, before anything is written, an export folder holding a file datadiet did not write under one
    of the names an export writes."""
    from datadiet.data.export import check_targets, export_name

    names = [export_name(cfg.dataset.source, cfg.dataset.train_split), SELECTION_FILE, SUMMARY_FILE]
    check_targets(out, names)


def export_selection(
    cfg: ReferenceConfig, train: Dataset, selection: Selection, out: str | Path
) -> PruneResult:
    """Write the rows of a selection made by hand (``datadiet select --export``) as ``prune`` writes them."""
    from datadiet.data.export import check_targets, export_name, write_owned_json

    out = Path(out)
    n = selection.meta.get("n_examples")
    if (n is not None and n != len(train)) or (
        len(selection.indices) and selection.indices.max() >= len(train)
    ):
        raise ParameterError(
            f"the selection picks from {n} examples but the training split of {cfg.dataset.source!r} has "
            f"{len(train)}; export with the data (and slice) the representation was computed on."
        )
    check_targets(
        out, [export_name(cfg.dataset.source, cfg.dataset.train_split), SELECTION_FILE, SUMMARY_FILE]
    )
    notes = _empty_classes(train, selection)
    files = _export(cfg, train, selection, out)
    recipe = RECIPES.get(selection.meta["recipe"]) if selection.meta.get("recipe") in RECIPES else None
    summary = _summary(cfg, train, selection, recipe, {"total": 0.0}, notes, files)
    record = {**selection.to_dict(), "ids": [str(i) for i in train.ids[selection.indices]]}
    write_owned_json(out, SELECTION_FILE, record)
    write_owned_json(out, SUMMARY_FILE, summary)
    return PruneResult(out, files, selection, summary, notes)
