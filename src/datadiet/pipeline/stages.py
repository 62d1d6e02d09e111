"""The reference and represent stages: config -> datasets -> reference run -> representations in the store.

``run_reference(cfg)`` trains (or resumes, or reuses) the reference model; ``run_represent(cfg)`` extracts the
configured representations, caching each in the `RepresentationStore` under a provenance key, and writes
``<output>/representations.json`` mapping names (``dynamics/prob``, ``hidden/final``, ``gradients/train``,
...) to store entries whose ``values.npy`` is what ``datadiet select --features`` reads.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from datadiet._core.faults import fault_point
from datadiet._core.files import atomic_write_bytes, atomic_write_json
from datadiet.config import ReferenceConfig, to_dict
from datadiet.data.dataset import Dataset
from datadiet.distributed.engine import current_engine
from datadiet.errors import ParameterError
from datadiet.representations.base import Representation
from datadiet.store import RepresentationStore, make_key

DYNAMICS = ("prob", "loss", "correct")


@dataclasses.dataclass
class Stage:
    """Everything the stages share: the resolved config, the data, the model factory and the store."""

    cfg: ReferenceConfig
    train: Dataset
    val: Dataset | None
    store: RepresentationStore
    flipped: np.ndarray | None = None
    """Mask of training examples whose label was flipped (label noise), or None."""

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
    store = RepresentationStore(cfg.represent.store or Path(cfg.output) / "store")
    return Stage(cfg, train, val, store, flipped)


def _split(splits: dict[str, Dataset], name: str, source: str) -> Dataset:
    if name not in splits:
        raise ParameterError(f"{source} has no split {name!r}. Available: {sorted(splits)}.")
    return splits[name]


def encoder_path(cfg: ReferenceConfig) -> str:
    from datadiet.models.encoder import embedded_encoder_path

    return str(embedded_encoder_path()) if cfg.model.path == "embedded" else cfg.model.path


def embeddings(stage: Stage, ds: Dataset) -> np.ndarray:
    """Frozen encoder embeddings of ``ds``, cached in the store."""
    from datadiet.models.frozen import encode_texts

    path = encoder_path(stage.cfg)
    provenance = {
        "stage": "frozen-embeddings",
        "dataset": ds.fingerprint(),
        "model": _weights_fingerprint(path),
        "max_length": stage.cfg.model.max_length,
    }
    key = make_key(**provenance)

    def compute() -> Representation:
        values = encode_texts(path, ds, max_length=stage.cfg.model.max_length)
        return Representation(values, "hidden", ds.ids.astype(str), provenance)

    rep = stage.store.get_or_compute(key, compute, provenance=provenance, rebuild=_rebuild(stage))
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
    if cfg.model.mode == "frozen":
        if task != "classification":
            raise ParameterError(
                f"model.mode 'frozen' serves classification only; a {task} task needs lora or full."
            )
        from datadiet.models.frozen import FrozenHead

        tables = {stage.train.fingerprint(): embeddings(stage, stage.train)}
        if stage.val is not None:
            tables[stage.val.fingerprint()] = embeddings(stage, stage.val)
        return FrozenHead(tables, stage.train.n_classes, head=cfg.model.head, seed=cfg.training.seed)
    from datadiet.models.encoder import LoraSettings

    m, seed = cfg.model, cfg.training.seed
    lora = LoraSettings(r=m.lora.r, alpha=m.lora.alpha, dropout=m.lora.dropout) if m.mode == "lora" else None
    if task == "generation":
        from datadiet.models.causal_lm import CausalLM

        return CausalLM(
            lm_path(cfg), lora=lora, max_length=m.max_length, max_new_tokens=m.max_new_tokens, seed=seed
        )
    if task == "multiple_choice":
        from datadiet.models.multiple_choice import EncoderMultipleChoice

        return EncoderMultipleChoice(encoder_path(cfg), lora=lora, max_length=m.max_length, seed=seed)
    from datadiet.models.encoder import EncoderClassifier

    return EncoderClassifier(
        encoder_path(cfg), stage.train.n_classes, lora=lora, max_length=m.max_length, seed=seed
    )


def lm_path(cfg: ReferenceConfig) -> str:
    """The causal LM: the packaged SmolLM2-135M-Instruct (converted once from GGUF) or a local folder."""
    from datadiet.models.causal_lm import embedded_lm_path

    return str(embedded_lm_path()) if cfg.model.path == "embedded" else cfg.model.path


def train_config(cfg: ReferenceConfig) -> Any:
    from datadiet.training import TrainConfig

    t = cfg.training
    lr = t.lr if t.lr is not None else (1e-2 if cfg.model.mode == "frozen" else 5e-5)
    return TrainConfig(
        epochs=t.epochs,
        batch_size=t.batch_size,
        eval_batch_size=t.eval_batch_size,
        lr=lr,
        weight_decay=t.weight_decay,
        warmup_ratio=t.warmup_ratio,
        seed=t.seed,
        checkpoint_epochs=t.checkpoint_epochs,
        record_in_training=t.record_in_training,
    )


def run_reference(cfg: ReferenceConfig, stage: Stage | None = None) -> Any:
    """Train the reference model (resumes an interrupted run; returns a finished one at once).

    Every check that can refuse the run comes before the first write, so a refused run changes nothing:
    ``config.resolved.json`` (which every store entry's rebuild command names) keeps its old content.
    """
    from datadiet.training import check_run_dir, train_reference

    stage = stage or prepare(cfg)
    if cfg.run_dir:  # an existing run, e.g. recorded inside the user's own Trainer run
        run = _open_recorded_run(cfg, stage)
        _write_resolved(cfg, stage)
        return run
    settings = train_config(cfg)
    check_run_dir(stage.run_dir, stage.train, settings)  # before the model (and its embeddings) is built
    model = build_model(stage)
    check_run_dir(stage.run_dir, stage.train, settings, model)
    _write_resolved(cfg, stage)
    return train_reference(model, stage.train, settings, stage.run_dir)


def _write_resolved(cfg: ReferenceConfig, stage: Stage) -> None:
    stage.output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stage.output / "config.resolved.json", to_dict(cfg))


def _open_recorded_run(cfg: ReferenceConfig, stage: Stage) -> Any:
    """The finished run in ``cfg.run_dir``, refused unless it trained on the configured split, in order."""
    from datadiet.training import ReferenceRun

    run = ReferenceRun.open(cfg.run_dir)  # type: ignore[arg-type]
    ours = stage.train.ids.astype(str)
    if not np.array_equal(np.asarray(run.ids).astype(str), ours):
        theirs = [str(i) for i in run.ids[:3]]
        raise ParameterError(
            f"'{cfg.run_dir}' recorded {len(run.ids)} examples (first ids {theirs}) but the configured "
            f"training split has {len(ours)} (first ids {[str(i) for i in ours[:3]]}). Set dataset.id to the "
            f"id column your Trainer run used (its ids are in '{Path(cfg.run_dir) / 'ids.json'}'), or point "
            "dataset at the data that run trained on, in the same order."
        )
    return run


def _rebuild(stage: Stage) -> str:
    return f"datadiet represent --config {stage.output / 'config.resolved.json'}"


def batches(model: Any, ds: Dataset, batch_size: int, rows: np.ndarray | None = None) -> Iterator[dict]:
    """Model inputs for ``ds`` (or its ``rows``) in order, ``batch_size`` at a time."""
    rows = np.arange(len(ds)) if rows is None else rows
    for start in range(0, len(rows), batch_size):
        yield model.collate(ds, rows[start : start + batch_size])


# --- represent ---------------------------------------------------------------------------------------
def run_represent(cfg: ReferenceConfig) -> dict[str, dict[str, Any]]:
    """Extract the configured representations (training the reference first if needed); returns the index."""
    from datadiet.training import ReferenceRun

    stage = prepare(cfg)
    run_reference(cfg, stage)
    run = ReferenceRun.open(stage.run_dir)
    run_id = run_fingerprint(stage.run_dir)
    index: dict[str, dict[str, Any]] = {}
    kinds = cfg.represent.kinds
    if "dynamics" in kinds:
        index.update(_represent_dynamics(stage, run_id))
        if stage.train.task != "generation":  # class (option) probabilities need class logits
            index.update(_represent_class_probs(stage, run, run_id))
    if "hidden" in kinds:
        index.update(_represent_hidden(stage, run, run_id))
    if "gradients" in kinds:
        index.update(_represent_gradients(stage, run, run_id))
    index.update(_write_labels(stage))
    atomic_write_json(stage.output / "representations.json", index)
    return index


def _write_labels(stage: Stage) -> dict[str, dict[str, Any]]:
    """Labels of the selected-from split (and validation), as .npy for ``datadiet select --labels``."""
    out: dict[str, dict[str, Any]] = {}
    for split, ds in (("train", stage.train), ("val", stage.val)):
        if ds is not None and ds.labels is not None:
            path = stage.output / f"labels.{split}.npy"
            buffer = io.BytesIO()
            np.save(buffer, ds.labels, allow_pickle=False)
            atomic_write_bytes(path, buffer.getvalue())
            out[f"labels/{split}"] = {"path": str(path), "kind": "labels", "shape": [len(ds)],
                                      "label_names": list(ds.label_names)}  # fmt: skip
    return out


def run_fingerprint(run_dir: Path) -> str:
    """A key for a finished reference run: the hash of its resolved config (model, data, training)."""
    return make_key(config=(run_dir / "config.json").read_text(encoding="utf-8"))


def _entry(stage: Stage, name: str, key: str, rep: Representation) -> dict[str, dict[str, Any]]:
    path = stage.store.root / key / "values.npy"
    return {name: {"key": key, "path": str(path), "kind": rep.kind, "shape": list(rep.values.shape)}}


def _cached(stage: Stage, name: str, provenance: dict[str, Any], compute) -> dict[str, dict[str, Any]]:
    key = make_key(**provenance)
    rep = stage.store.get_or_compute(key, compute, provenance=provenance, rebuild=_rebuild(stage))
    return _entry(stage, name, key, rep)


def _represent_dynamics(stage: Stage, run_id: str) -> dict[str, dict[str, Any]]:
    from datadiet.representations.dynamics import read_dynamics

    index: dict[str, dict[str, Any]] = {}
    for quantity in DYNAMICS:
        provenance = {"stage": "dynamics", "run": run_id, "quantity": quantity}
        compute = lambda q=quantity: read_dynamics(stage.run_dir, q)  # noqa: E731
        index.update(_cached(stage, f"dynamics/{quantity}", provenance, compute))
    return index


def _represent_class_probs(stage: Stage, run: Any, run_id: str) -> dict[str, dict[str, Any]]:
    """The final reference model's class probabilities (N, K): what EL2N reads."""
    provenance = {"stage": "class-probabilities", "run": run_id, "which": "final"}

    def compute() -> Representation:
        import torch

        model = build_model(stage)
        run.load_final(model)
        parts = [
            torch.softmax(model.logits(b), dim=-1).float().numpy() for b in batches(model, stage.train, 64)
        ]
        return Representation(np.concatenate(parts), "dynamics", stage.train.ids.astype(str))

    return _cached(stage, "dynamics/class_probs", provenance, compute)


def _represent_hidden(stage: Stage, run: Any, run_id: str) -> dict[str, dict[str, Any]]:

    index: dict[str, dict[str, Any]] = {}
    early = min(c.epoch for c in run.checkpoints)
    for which in stage.cfg.represent.hidden_stages:
        provenance = {"stage": "hidden", "run": run_id, "which": which, "early_epoch": early}

        if which == "pretrained" and stage.cfg.model.mode == "frozen":  # the encoder's own embedding

            def compute() -> Representation:
                return Representation(embeddings(stage, stage.train), "hidden", stage.train.ids.astype(str))

            index.update(_cached(stage, f"hidden/{which}", provenance, compute))
            continue
        key = make_key(**provenance)
        rep = stage.store.load(key)
        if rep is None:
            job = _ModelJob(stage, run, which, early, stage.train)
            rep = _extract_chunks(
                stage, job, key, provenance, "hidden", _hidden_chunk, f"hidden states ({which})",
                dim=_hidden_size(job), batch_size=stage.cfg.training.eval_batch_size,
                fault_site="represent.hidden",
            )  # fmt: skip
        index.update(_entry(stage, f"hidden/{which}", key, rep))
    return index


def _hidden_size(job: _ModelJob) -> int:
    """Width of the pooled hidden state, from one example (the store entry is sized before extraction)."""
    return int(_hidden_chunk(_model_worker(job), (0, 1)).shape[1])


def _hidden_chunk(state: tuple[_ModelJob, Any, Any], piece: tuple[int, int]) -> np.ndarray:
    """Pooled hidden states of rows ``start:stop``."""
    from datadiet.representations.hidden import hidden_states

    job, model, _ = state
    batch_size = job.stage.cfg.training.eval_batch_size
    return hidden_states(model, job.ds, batch_size=batch_size, progress=False, rows=np.arange(*piece))


def _represent_gradients(stage: Stage, run: Any, run_id: str) -> dict[str, dict[str, Any]]:
    g = stage.cfg.represent.gradients
    splits = [("train", stage.train)] + ([("val", stage.val)] if stage.val is not None else [])
    index: dict[str, dict[str, Any]] = {}
    for split, ds in splits:
        adam = g.adam and split == "train"
        per_checkpoint = [_checkpoint_gradients(stage, run, run_id, ds, c, adam) for c in run.checkpoints]
        provenance = {
            "stage": "gradients",
            "run": run_id,
            "split": split,
            "dataset": ds.fingerprint(),
            "adam": adam,
            "lr": [float(c.lr) for c in run.checkpoints],
            "epochs": [int(c.epoch) for c in run.checkpoints],
            **_gradient_params(stage),
        }
        key = make_key(**provenance)
        rep = stage.store.load(key)
        if rep is None:
            rep = _stack_checkpoints(stage, key, provenance, per_checkpoint, ds)
        index.update(_entry(stage, f"gradients/{split}", key, rep))
    return index


def _stack_checkpoints(
    stage: Stage, key: str, provenance: dict[str, Any], parts: list[np.ndarray], ds: Dataset
) -> Representation:
    """The (N, checkpoints, dim) entry, written chunk by chunk from the per-checkpoint (N, dim) entries.

    Neither the parts nor the result are ever whole in memory, so N is bounded by disk, not RAM.
    """
    from datadiet._core.chunks import release_pages

    shape = (len(ds), len(parts), parts[0].shape[1])
    with stage.store.writer(key, shape, np.float32, ds.ids.astype(str), provenance=provenance,
                            kind="gradients", rebuild=_rebuild(stage)) as writer:  # fmt: skip
        for start, stop in list(writer.pending()):
            views = [part[start:stop] for part in parts]
            writer.write(start, np.stack([np.asarray(view, dtype=np.float32) for view in views], axis=1))
            for view in views:
                release_pages(view)
        return writer.finalize()


def _gradient_params(stage: Stage) -> dict[str, Any]:
    g = stage.cfg.represent.gradients
    return {"dim": g.dim, "projection_seed": g.seed, "target": g.target}


def _checkpoint_gradients(
    stage: Stage, run: Any, run_id: str, ds: Dataset, ckpt: Any, adam: bool
) -> np.ndarray:
    """Projected per-sample gradients of ``ds`` at one checkpoint, cached in the store (resumable)."""
    provenance = {
        "stage": "gradients-checkpoint",
        "run": run_id,
        "dataset": ds.fingerprint(),
        "epoch": int(ckpt.epoch),
        "lr": float(ckpt.lr),
        "adam": adam,
        **_gradient_params(stage),
    }
    key = make_key(**provenance)
    rep = stage.store.load(key)
    if rep is None:
        rep = _extract_resumably(stage, run, ds, ckpt, adam, key, provenance)
    return rep.values  # a memmap: the stacking below reads it in chunks


def _extract_resumably(
    stage: Stage, run: Any, ds: Dataset, ckpt: Any, adam: bool, key: str, provenance: dict[str, Any]
) -> Representation:
    """One checkpoint's projected gradients of ``ds``, chunk by chunk (see :func:`_extract_chunks`)."""
    g = stage.cfg.represent.gradients
    job = _ModelJob(stage, run, "checkpoint", int(ckpt.epoch), ds, adam)
    desc = f"gradients epoch {ckpt.epoch} ({ds.split})"
    return _extract_chunks(
        stage, job, key, provenance, "gradients", _gradient_chunk, desc,
        dim=g.dim, batch_size=g.batch_size or stage.cfg.training.batch_size, fault_site="represent.chunk",
    )  # fmt: skip


def _extract_chunks(
    stage: Stage, job: _ModelJob, key: str, provenance: dict[str, Any], kind: str,
    chunk_fn: Callable[[Any, tuple[int, int]], np.ndarray], desc: str, *, dim: int, batch_size: int,
    fault_site: str,
) -> Representation:  # fmt: skip
    """Fill a (N, dim) store entry chunk by chunk; a killed run redoes only the unfinished chunks.

    The chunks (8 batches each, so a resumed entry is bit-identical to a one-pass one) are a stateful map on
    the current engine: each worker loads the model once (Ray Data actors with ``--engine ray``), and the
    driver writes every chunk as it arrives.
    """
    ids = job.ds.ids.astype(str)
    with stage.store.writer(key, (len(job.ds), dim), np.float32, ids, provenance=provenance, kind=kind,
                            rebuild=_rebuild(stage), chunk_rows=batch_size * 8) as writer:  # fmt: skip
        pending = list(writer.pending())
        chunks = current_engine().map_stateful(_model_worker, chunk_fn, pending, job)
        for (start, _), values in tqdm(zip(pending, chunks, strict=True), total=len(pending), desc=desc):
            writer.write(start, values)
            fault_point(fault_site)
        return writer.finalize()


@dataclasses.dataclass(frozen=True)
class _ModelJob:
    """A model state and the split it runs on: what a worker needs (picklable, for Ray actors).

    ``which``: "pretrained", "early" / "checkpoint" (the weights of checkpoint ``epoch``) or "final".
    """

    stage: Stage
    run: Any
    which: str
    epoch: int
    ds: Dataset
    adam: bool = False


def _model_worker(job: _ModelJob) -> tuple[_ModelJob, Any, Any]:
    """Once per worker: the model with the job's weights, and that checkpoint's Adam state (if any)."""
    model = build_model(job.stage)
    adam_state = None
    if job.which in ("early", "checkpoint"):
        adam_state = job.run.load_checkpoint(model, job.epoch)  # loads that epoch's weights too
    elif job.which == "final":
        job.run.load_final(model)
    return job, model, adam_state


def _gradient_chunk(state: tuple[_ModelJob, Any, Any], piece: tuple[int, int]) -> np.ndarray:
    """Projected gradients of rows ``start:stop`` (one chunk of the store entry)."""
    from datadiet.representations.gradients import per_sample_gradients

    job, model, adam_state = state
    g = job.stage.cfg.represent.gradients
    target = model.gradient_target() if g.target == "auto" else g.target
    return per_sample_gradients(
        model.module,
        batches(model, job.ds, g.batch_size or job.stage.cfg.training.batch_size, np.arange(*piece)),
        model.per_example_loss,
        target=target,
        dim=g.dim,
        seed=g.seed,
        adam_state=adam_state if job.adam else None,
        normalize=model.normalize_gradients,
        progress=False,
    )
