"""The reference stage: config -> datasets -> the reference model, trained (or resumed, or reused).

``prepare(cfg)`` loads and slices the data and opens the store; ``run_reference(cfg)`` trains the reference
model (resumes an interrupted run; returns a finished one at once) and writes ``config.resolved.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from datadiet._core.files import atomic_write_json
from datadiet.config import ModelConfig, ReferenceConfig, to_dict
from datadiet.data.dataset import Dataset
from datadiet.errors import ParameterError
from datadiet.representations.base import Representation
from datadiet.store import RepresentationStore, make_key
from datadiet.store import provenance as provenance_of


@dataclasses.dataclass
class Stage:
    """Everything the stages share: the resolved config, the data, the model factory and the store."""

    cfg: ReferenceConfig
    train: Dataset
    val: Dataset | None
    store: RepresentationStore
    flipped: np.ndarray | None = None
    """Mask of training examples whose label was flipped (label noise), or None."""
    splits: dict[str, Dataset] = dataclasses.field(default_factory=dict)
    """Every split of the dataset as loaded (before slicing): the study evaluates on one of them."""

    @property
    def output(self) -> Path:
        return Path(self.cfg.output)

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.run_dir) if self.cfg.run_dir else self.output / "reference"


def prepare(cfg: ReferenceConfig) -> Stage:
    """Load and slice the datasets, open the store."""
    from datadiet.data.slicing import stratified_slice

    d = cfg.dataset
    splits = d.load()
    train = _split(splits, d.train_split, d.source)
    train = stratified_slice(train, d.slice, seed=d.seed) if d.slice and d.slice < len(train) else train
    val = None
    if d.val_split is not None:
        val = _split(splits, d.val_split, d.source)
        val = (
            stratified_slice(val, d.val_slice, seed=d.seed) if d.val_slice and d.val_slice < len(val) else val
        )
    flipped = None
    if d.label_noise > 0:
        from datadiet.data.noise import flip_labels

        train, flipped = flip_labels(train, d.label_noise, seed=d.noise_seed)
    store = RepresentationStore(cfg.represent.store or Path(cfg.output) / "store")  # None: follows output
    return Stage(cfg, train, val, store, flipped, splits)


def _split(splits: dict[str, Dataset], name: str, source: str) -> Dataset:
    if name not in splits:
        raise ParameterError(f"{source} has no split {name!r}. Available: {sorted(splits)}.")
    return splits[name]


def encoder_path(cfg: ReferenceConfig) -> str:
    from datadiet.models.registry import encoder_path as resolve

    return resolve(cfg.model.path)


def embeddings(stage: Stage, ds: Dataset, model: ModelConfig | None = None) -> np.ndarray:
    """Frozen encoder embeddings of ``ds`` by the encoder of ``model`` (default: the reference's), cached in
    the store under the encoder's weights fingerprint and ``max_length``."""
    from datadiet.models.frozen import encode_texts
    from datadiet.models.registry import encoder_path as resolve

    model = stage.cfg.model if model is None else model
    path, max_length = resolve(model.path), model.max_length
    provenance = provenance_of(
        stage="frozen-embeddings",
        dataset=ds.fingerprint(),
        model=_weights_fingerprint(path),
        max_length=max_length,
    )
    key = make_key(**provenance)

    def compute() -> Representation:
        values = encode_texts(path, ds, max_length=max_length)
        return Representation(values, "hidden", ds.ids.astype(str), provenance)

    rep = stage.store.get_or_compute(key, compute, provenance=provenance, rebuild=rebuild_command(stage))
    return np.asarray(rep.values)


def _weights_fingerprint(path: str) -> str:
    from datadiet.models.encoder import weights_fingerprint

    return weights_fingerprint(path)


def build_model(stage: Stage) -> Any:
    """A fresh (untrained, seeded) reference model for the dataset's task and the configured mode."""
    cfg, task = stage.cfg, stage.train.task
    if task == "classification" and stage.train.n_classes < 2:
        raise ParameterError(
            f"The training split of {cfg.dataset.source} has {stage.train.n_classes} class "
            f"{list(stage.train.label_names)}; a classifier needs at least 2. Check the label column."
        )
    from datadiet.models.registry import ModelRequest, backend_for

    backend = backend_for(task, cfg.model.mode)
    request = ModelRequest(
        cfg.model, cfg.training.seed, stage.train, stage.val, lambda ds: embeddings(stage, ds)
    )
    return backend.build(request)


def lm_path(cfg: ReferenceConfig) -> str:
    """The causal LM: the packaged SmolLM2-135M-Instruct (converted once from GGUF) or a local folder."""
    from datadiet.models.registry import lm_path as resolve

    return resolve(cfg.model.path)


def train_config(cfg: ReferenceConfig) -> Any:
    """The loop's settings: the config's training section itself (its defaults resolved at load)."""
    from datadiet.training import TrainConfig

    return TrainConfig.of(cfg.training)


def run_reference(cfg: ReferenceConfig, stage: Stage | None = None) -> Any:
    """Train the reference model (resumes an interrupted run; returns a finished one at once).

    Every check that can refuse the run comes before the first write, so a refused run changes nothing:
    ``config.resolved.json`` (which every store entry's rebuild command names) keeps its old content.
    """
    from datadiet.training import check_run_dir, train_reference

    stage = stage or prepare(cfg)
    if cfg.run_dir:  # an existing run, e.g. recorded inside the user's own Trainer run
        run = _open_recorded_run(cfg.run_dir, stage)
        _write_resolved(cfg, stage)
        return run
    settings = train_config(cfg)
    check_run_dir(stage.run_dir, stage.train, settings)  # before the model (and its embeddings) is built
    model = build_model(stage)
    check_run_dir(stage.run_dir, stage.train, settings, model)
    _write_resolved(cfg, stage)
    return train_reference(model, stage.train, settings, stage.run_dir, val=scored_val(stage))


def scored_val(stage: Stage) -> Dataset | None:
    """The validation split whose dynamics the reference run records: ``stage.val`` when it can be scored
    (labeled, or a generation split, which scores its targets), else None."""
    val = stage.val
    return val if val is not None and (val.task == "generation" or val.labels is not None) else None


def _write_resolved(cfg: ReferenceConfig, stage: Stage) -> None:
    stage.output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stage.output / "config.resolved.json", to_dict(cfg))


def _open_recorded_run(run_dir: str, stage: Stage) -> Any:
    """The finished run in ``run_dir``, refused unless it trained on the configured split, in order.

    The run is a ``datadiet represent`` run's ``<output>/reference`` or one recorded in the user's own
    Trainer run; each refusal names the YAML key (``reference.run_dir`` / ``reference.dataset`` in a study).
    """
    from datadiet.training import ReferenceRun

    where = stage.cfg.dataset._where  # "dataset", or "reference.dataset" in a study
    key = where.removesuffix("dataset") + "run_dir"
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(
            f"{key}: '{run_dir}' is not a folder; set it to a finished reference run (the 'reference' "
            "folder in the output of datadiet represent), or drop it to train one."
        )
    try:
        run = ReferenceRun.open(run_dir)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{key}: {exc}") from None
    ours = stage.train.ids.astype(str)
    if not np.array_equal(np.asarray(run.ids).astype(str), ours):
        theirs = [str(i) for i in run.ids[:3]]
        resolved = Path(run_dir).parent / "config.resolved.json"  # a datadiet represent run's config
        fix = (
            f"Set {where} as in '{resolved}', the config that made that run (the same source, train_split, "
            "slice, seed and label_noise)."
            if resolved.is_file()
            else f"Set {where}.id to the id column your Trainer run used (its ids are in "
            f"'{Path(run_dir) / 'ids.json'}'), or point {where} at the data that run trained on, in the "
            "same order."
        )
        raise ParameterError(
            f"{key}: '{run_dir}' recorded {len(run.ids)} examples (first ids {theirs}) but {where} gives "
            f"{len(ours)} (first ids {[str(i) for i in ours[:3]]}). {fix}"
        )
    return run


def rebuild_command(stage: Stage) -> str:
    """The command that rebuilds a store entry of this stage (named in its manifest)."""
    return f"datadiet represent --config {stage.output / 'config.resolved.json'}"


def batches(model: Any, ds: Dataset, batch_size: int, rows: np.ndarray | None = None) -> Iterator[dict]:
    """Model inputs for ``ds`` (or its ``rows``) in order, ``batch_size`` at a time."""
    rows = np.arange(len(ds)) if rows is None else rows
    for start in range(0, len(rows), batch_size):
        yield model.collate(ds, rows[start : start + batch_size])
