"""The represent stage: a finished reference run -> representations in the store.

``run_represent(cfg)`` extracts the configured representations, caching each in the `RepresentationStore`
under a provenance key, and writes ``<output>/representations.json`` mapping names (``dynamics/prob``,
``hidden/final``, ``gradients/train``, ...) to store entries whose ``values.npy`` is what
``datadiet select --features`` reads. With a validation split, every kind also has its validation
counterpart (``dynamics/prob/val``, ``hidden/final/val``, ``gradients/val``; see
:func:`~datadiet.representations.extractors.val_counterpart`). The index's paths are relative to its folder
(so the output folder can move); read it with :func:`read_index`. The built-in extractors (``dynamics``,
``hidden``, ``gradients``) register here in :data:`~datadiet.representations.extractors.EXTRACTORS`.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np

from datadiet._core.faults import fault_point
from datadiet._core.files import atomic_write_bytes, atomic_write_json, npy_bytes
from datadiet._core.progress import track
from datadiet._core.records import read_json_file
from datadiet.config import GradientConfig, ReferenceConfig
from datadiet.data.dataset import Dataset
from datadiet.distributed.engine import current_engine
from datadiet.errors import ParameterError
from datadiet.pipeline.reference import (
    Stage,
    batches,
    build_model,
    embeddings,
    prepare,
    rebuild_command,
    run_reference,
    scored_val,
)
from datadiet.representations.base import Representation
from datadiet.representations.dynamics import QUANTITIES as DYNAMICS
from datadiet.representations.dynamics import VAL_FIX, MissingValDynamicsWarning
from datadiet.representations.extractors import (
    EXTRACTORS,
    Extractor,
    Output,
    extracted,
    representation_names,
    val_counterpart,
)
from datadiet.store import make_key, provenance_fields
from datadiet.store import provenance as provenance_of

HIDDEN_STAGES = ("pretrained", "early", "final")
INDEX_FILE = "representations.json"
"""The index ``run_represent`` writes in the output folder: name -> store entry (paths relative to it)."""
__all__ = [
    "EXTRACTORS",
    "INDEX_FILE",
    "Extraction",
    "extracted",
    "read_index",
    "representation_names",
    "run_fingerprint",
    "run_represent",
]


# --- represent ---------------------------------------------------------------------------------------
def run_represent(cfg: ReferenceConfig, stage: Stage | None = None) -> dict[str, dict[str, Any]]:
    """Extract the configured representations (training the reference first if needed); returns the index.

    Each kind in ``cfg.represent.kinds`` is a registered extractor (:data:`EXTRACTORS`); they run in
    registration order (built-ins first: dynamics, hidden, gradients), so the index keeps its order. A caller
    that passes its ``stage`` has loaded the data and run :func:`run_reference` already (the study does, to
    time the two stages apart), so neither is done again.

    The returned index holds absolute paths; ``<output>/representations.json`` holds them relative to
    ``<output>`` (absolute for a store outside it), read back by :func:`read_index`.
    """
    from datadiet.training import ReferenceRun

    extractors = {kind: EXTRACTORS.get(kind) for kind in cfg.represent.kinds}  # unknown kinds fail first
    if stage is None:
        stage = prepare(cfg)
        run_reference(cfg, stage)
    ctx = Extraction(stage, ReferenceRun.open(stage.run_dir), run_fingerprint(stage.run_dir))
    index: dict[str, dict[str, Any]] = {}
    for kind in EXTRACTORS.registered():
        if kind in extractors:
            index.update(extractors[kind]().extract(ctx))
    index.update(_write_labels(stage))
    atomic_write_json(stage.output / INDEX_FILE, _relative_index(index, stage.output))
    return index


def read_index(folder: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The ``representations.json`` of the output folder ``folder``, each ``"path"`` made absolute.

    Paths are resolved against ``folder`` (as written since they are relative); absolute paths (an older
    index, or a store outside the folder) are kept, and an older index's paths relative to the working
    directory are still found there. A missing or damaged file raises one line naming it and the fix.

    Returns
    -------
    dict of str to dict
        Representation name -> its record (``path``, ``kind``, ``shape``, and ``key`` for a store entry).
    """
    folder = Path(folder)
    path = folder / INDEX_FILE
    fix = f"rerun: datadiet represent --config {folder / 'config.resolved.json'}"
    if not path.is_file():
        raise FileNotFoundError(f"representations index '{path}' does not exist; {fix}.")
    data = read_json_file(path, name="representations index", fix=fix)
    if not isinstance(data, dict):
        raise ParameterError(f"representations index file '{path}' must hold a JSON object; {fix}.")
    index: dict[str, dict[str, Any]] = {}
    for name, record in data.items():
        problem = _record_problem(record)
        if problem:
            raise ParameterError(f"representations index file '{path}': entry {name!r} {problem}; {fix}.")
        index[name] = {**record, "path": _resolve(record["path"], folder)}
    return index


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict) or not isinstance(record.get("path"), str) or not record["path"]:
        return "must be an object with a non-empty 'path' string"
    if "key" in record and not isinstance(record["key"], str):
        return "has a 'key' that is not a string"
    shape = record.get("shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in shape):
        return "must have a 'shape' list of ints"
    return None


def _resolve(path: str, folder: Path) -> str:
    if os.path.isabs(path):
        return path
    here = os.path.abspath(folder / path)
    old = os.path.abspath(path)  # an index written before paths were relative: relative to its cwd
    return old if not os.path.exists(here) and os.path.exists(old) else here


def _relative_index(index: dict[str, dict[str, Any]], folder: Path) -> dict[str, dict[str, Any]]:
    """``index`` with every path relative to ``folder`` (absolute when it lies outside ``folder``)."""
    root = os.path.abspath(folder)
    out = {}
    for name, record in index.items():
        absolute = os.path.abspath(record["path"])
        inside = os.path.commonpath([root, absolute]) == root
        relative = Path(os.path.relpath(absolute, root)).as_posix()
        out[name] = {**record, "path": relative if inside else absolute}
    return out


@dataclasses.dataclass(frozen=True)
class Extraction:
    """What an extractor gets (:class:`~datadiet.representations.extractors.ExtractionContext`)."""

    stage: Stage
    run: Any
    run_id: str
    """The fingerprint of the finished reference run (part of every provenance)."""

    @property
    def train(self) -> Dataset:
        return self.stage.train

    def cached(
        self, name: str, provenance: dict[str, Any], compute: Callable[[], Representation]
    ) -> dict[str, dict[str, Any]]:
        """The store entry of ``provenance`` (computed once by ``compute``) as ``{name: index record}``."""
        return _cached(self.stage, name, provenance, compute)


@EXTRACTORS.register("dynamics")
class Dynamics(Extractor):
    """Training dynamics (per epoch) and, for labeled tasks, the final model's class probabilities."""

    outputs = tuple(Output(f"dynamics/{q}") for q in (*DYNAMICS, "class_probs")) + tuple(
        Output(val_counterpart(f"dynamics/{q}"), "a reference.dataset.val_split",
               when=lambda ref: ref.dataset.val_split is not None)
        for q in DYNAMICS
    )  # fmt: skip

    def extract(self, ctx: Extraction) -> dict[str, dict[str, Any]]:
        index = _represent_dynamics(ctx.stage, ctx.run_id)
        index.update(_represent_val_dynamics(ctx.stage, ctx.run, ctx.run_id))
        if ctx.stage.train.task != "generation":  # class (option) probabilities need class logits
            index.update(_represent_class_probs(ctx.stage, ctx.run, ctx.run_id))
        return index


@EXTRACTORS.register("hidden")
class Hidden(Extractor):
    """Pooled hidden states of the pretrained, early-checkpoint and final models."""

    outputs = tuple(
        Output(f"hidden/{s}", f"'{s}' in reference.represent.hidden_stages",
               when=lambda ref, s=s: s in ref.represent.hidden_stages)
        for s in HIDDEN_STAGES
    ) + tuple(
        Output(val_counterpart(f"hidden/{s}"),
               f"'{s}' in reference.represent.hidden_stages and a reference.dataset.val_split",
               when=lambda ref, s=s: s in ref.represent.hidden_stages and ref.dataset.val_split is not None)
        for s in HIDDEN_STAGES
    )  # fmt: skip

    def extract(self, ctx: Extraction) -> dict[str, dict[str, Any]]:
        return _represent_hidden(ctx.stage, ctx.run, ctx.run_id)


@EXTRACTORS.register("gradients")
class Gradients(Extractor):
    """Projected per-sample gradients at every checkpoint, of the training and validation splits."""

    outputs = (
        Output("gradients/train"),
        Output(
            "gradients/val",
            "a reference.dataset.val_split",
            when=lambda ref: ref.dataset.val_split is not None,
        ),
    )

    def extract(self, ctx: Extraction) -> dict[str, dict[str, Any]]:
        return _represent_gradients(ctx.stage, ctx.run, ctx.run_id)


def _write_labels(stage: Stage) -> dict[str, dict[str, Any]]:
    """Labels of the selected-from split (and validation), as .npy for ``datadiet select --labels``."""
    out: dict[str, dict[str, Any]] = {}
    for split, ds in (("train", stage.train), ("val", stage.val)):
        if ds is not None and ds.labels is not None:
            path = stage.output / f"labels.{split}.npy"
            atomic_write_bytes(path, npy_bytes(ds.labels))
            out[f"labels/{split}"] = {"path": os.path.abspath(path), "kind": "labels", "shape": [len(ds)],
                                      "label_names": list(ds.label_names)}  # fmt: skip
    return out


def run_fingerprint(run_dir: Path) -> str:
    """A key for a finished reference run: the hash of its resolved config (model, data, training)."""
    return make_key(config=(run_dir / "config.json").read_text(encoding="utf-8"))


def _entry(stage: Stage, name: str, key: str, rep: Representation) -> dict[str, dict[str, Any]]:
    path = os.path.abspath(stage.store.root / key / "values.npy")
    return {name: {"key": key, "path": path, "kind": rep.kind, "shape": list(rep.values.shape)}}


def _cached(stage: Stage, name: str, provenance: dict[str, Any], compute) -> dict[str, dict[str, Any]]:
    key = make_key(**provenance)
    rep = stage.store.get_or_compute(key, compute, provenance=provenance, rebuild=rebuild_command(stage))
    return _entry(stage, name, key, rep)


def _represent_dynamics(stage: Stage, run_id: str) -> dict[str, dict[str, Any]]:
    from datadiet.representations.dynamics import read_dynamics

    index: dict[str, dict[str, Any]] = {}
    for quantity in DYNAMICS:
        provenance = provenance_of(stage="dynamics", run=run_id, quantity=quantity)
        compute = lambda q=quantity: read_dynamics(stage.run_dir, q)  # noqa: E731
        index.update(_cached(stage, f"dynamics/{quantity}", provenance, compute))
    return index


def _represent_val_dynamics(stage: Stage, run: Any, run_id: str) -> dict[str, dict[str, Any]]:
    """``dynamics/<q>/val``: the run's evaluation pass over the validation split (none recorded: warns)."""
    from datadiet.representations.dynamics import read_dynamics

    val = scored_val(stage)
    if val is None:
        return {}
    problem = _val_dynamics_problem(run, val)
    if problem:
        warnings.warn(
            f"The reference run '{run.run_dir}' {problem}, so dynamics/{{{','.join(DYNAMICS)}}}/val are not "
            f"extracted; {VAL_FIX}.",
            MissingValDynamicsWarning,
            stacklevel=3,
        )
        return {}
    index: dict[str, dict[str, Any]] = {}
    for quantity in DYNAMICS:
        provenance = provenance_of(
            stage="dynamics", run=run_id, quantity=quantity, split="val", dataset=val.fingerprint()
        )
        compute = lambda q=quantity: read_dynamics(run.run_dir, q, split="val")  # noqa: E731
        index.update(_cached(stage, val_counterpart(f"dynamics/{quantity}"), provenance, compute))
    return index


def _val_dynamics_problem(run: Any, val: Dataset) -> str | None:
    """Why the run's validation dynamics are not those of ``val`` (None: they are)."""
    if not run.has_val_dynamics:
        return (
            "recorded no validation dynamics (trained before they were recorded, or by DatadietCallback, "
            "which records none)"
        )
    recorded = run.val_info["fingerprint"]
    if recorded != val.fingerprint():
        return (
            f"recorded the validation dynamics of another validation split (fingerprint {recorded}, the "
            f"configured one is {val.fingerprint()})"
        )
    return None


def _represent_class_probs(stage: Stage, run: Any, run_id: str) -> dict[str, dict[str, Any]]:
    """The final reference model's class probabilities (N, K): what EL2N reads."""
    provenance = provenance_of(stage="class-probabilities", run=run_id, which="final")

    def compute() -> Representation:
        import torch

        model = build_model(stage)
        run.load_final(model)
        parts = [
            torch.softmax(model.logits(b), dim=-1).float().cpu().numpy()
            for b in batches(model, stage.train, 64)
        ]
        return Representation(np.concatenate(parts), "dynamics", stage.train.ids.astype(str))

    return _cached(stage, "dynamics/class_probs", provenance, compute)


def _represent_hidden(stage: Stage, run: Any, run_id: str) -> dict[str, dict[str, Any]]:
    """``hidden/<which>`` for the training split and ``hidden/<which>/val`` for the validation split."""
    splits = [("train", stage.train)] + ([("val", stage.val)] if stage.val is not None else [])
    early = min(c.epoch for c in run.checkpoints)
    index: dict[str, dict[str, Any]] = {}
    for which in stage.cfg.represent.hidden_stages:
        for split, ds in splits:
            index.update(_hidden_entry(stage, run, run_id, which, early, split, ds))
    return index


def _hidden_entry(
    stage: Stage, run: Any, run_id: str, which: str, early: int, split: str, ds: Dataset
) -> dict[str, dict[str, Any]]:
    """One hidden-state entry; a training entry's provenance has no split (the keys of older stores)."""
    val = {"split": split, "dataset": ds.fingerprint()} if split == "val" else {}
    provenance = provenance_of(stage="hidden", run=run_id, which=which, early_epoch=early, **val)
    name = f"hidden/{which}" if split == "train" else val_counterpart(f"hidden/{which}")
    if which == "pretrained" and stage.cfg.model.mode == "frozen":  # the encoder's own embedding

        def compute() -> Representation:
            return Representation(embeddings(stage, ds), "hidden", ds.ids.astype(str))

        return _cached(stage, name, provenance, compute)
    key = make_key(**provenance)
    rep = stage.store.load(key)
    if rep is None:
        batch_size = stage.cfg.training.eval_batch_size
        job = _ModelJob(stage, run, which, early, ds, batch_size)
        desc = f"hidden states ({which}{', val' if split == 'val' else ''})"
        rep = _extract_chunks(
            stage, job, key, provenance, "hidden", _hidden_chunk, desc, dim=_hidden_size(job),
            batch_size=batch_size, fault_site="represent.hidden",
        )  # fmt: skip
    return _entry(stage, name, key, rep)


def _hidden_size(job: _ModelJob) -> int:
    """Width of the pooled hidden state, from one example (the store entry is sized before extraction)."""
    return int(_hidden_chunk(_model_worker(job), (0, 1)).shape[1])


def _hidden_chunk(state: tuple[_ModelJob, Any, Any], piece: tuple[int, int]) -> np.ndarray:
    """Pooled hidden states of rows ``start:stop``."""
    from datadiet.representations.hidden import hidden_states

    job, model, _ = state
    return hidden_states(model, job.ds, batch_size=job.batch_size, progress=False, rows=np.arange(*piece))


def _represent_gradients(stage: Stage, run: Any, run_id: str) -> dict[str, dict[str, Any]]:
    g = stage.cfg.represent.gradients
    splits = [("train", stage.train)] + ([("val", stage.val)] if stage.val is not None else [])
    index: dict[str, dict[str, Any]] = {}
    for split, ds in splits:
        adam = g.adam and split == "train"
        per_checkpoint = [_checkpoint_gradients(stage, run, run_id, ds, c, adam) for c in run.checkpoints]
        provenance = provenance_of(
            stage="gradients",
            run=run_id,
            split=split,
            dataset=ds.fingerprint(),
            adam=adam,
            lr=[float(c.lr) for c in run.checkpoints],
            epochs=[int(c.epoch) for c in run.checkpoints],
            **_gradient_params(stage),
        )
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
                            kind="gradients", rebuild=rebuild_command(stage)) as writer:  # fmt: skip
        for start, stop in list(writer.pending()):
            views = [part[start:stop] for part in parts]
            writer.write(start, np.stack([np.asarray(view, dtype=np.float32) for view in views], axis=1))
            for view in views:
                release_pages(view)
        return writer.finalize()


def _gradient_params(stage: Stage) -> dict[str, Any]:
    """The gradient settings in a gradient entry's provenance. ``precision`` changes the values, so it is
    recorded (in ``params``), but only away from its default fp32: the entries of stores written before it
    existed keep their keys."""
    g = stage.cfg.represent.gradients
    params = provenance_fields({"precision": g.precision}, {"precision": "fp32"})
    return {
        "dim": g.dim,
        "projection_seed": g.seed,
        "target": g.target,
        **({"params": params} if params else {}),
    }


def _checkpoint_gradients(
    stage: Stage, run: Any, run_id: str, ds: Dataset, ckpt: Any, adam: bool
) -> np.ndarray:
    """Projected per-sample gradients of ``ds`` at one checkpoint, cached in the store (resumable)."""
    provenance = provenance_of(
        stage="gradients-checkpoint",
        run=run_id,
        dataset=ds.fingerprint(),
        epoch=int(ckpt.epoch),
        lr=float(ckpt.lr),
        adam=adam,
        **_gradient_params(stage),
    )
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
    batch_size = cast(int, g.batch_size)  # resolved at load
    job = _ModelJob(stage, run, "checkpoint", int(ckpt.epoch), ds, batch_size, adam, g)
    desc = f"gradients epoch {ckpt.epoch} ({ds.split})"
    return _extract_chunks(
        stage, job, key, provenance, "gradients", _gradient_chunk, desc,
        dim=g.dim, batch_size=batch_size, fault_site="represent.chunk",
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
                            rebuild=rebuild_command(stage), chunk_rows=batch_size * 8) as writer:  # fmt: skip
        pending = list(writer.pending())
        chunks = current_engine().map_stateful(_model_worker, chunk_fn, pending, job)
        for (start, _), values in track(zip(pending, chunks, strict=True), desc, total=len(pending)):
            writer.write(start, values)
            fault_point(fault_site)
        return writer.finalize()


@dataclasses.dataclass(frozen=True)
class _ModelJob:
    """A model state and the split it runs on: what a worker needs (picklable, for Ray actors).

    ``which``: "pretrained", "early" / "checkpoint" (the weights of checkpoint ``epoch``) or "final";
    ``batch_size``: examples per forward (and backward) pass; ``gradients``: the gradient settings, for a
    gradient job. ``stage`` builds the model.
    """

    stage: Stage
    run: Any
    which: str
    epoch: int
    ds: Dataset
    batch_size: int
    adam: bool = False
    gradients: GradientConfig | None = None


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
    """Projected gradients of rows ``start:stop`` (one chunk of the store entry), on the model's device.

    With bf16/fp16, the entry's first chunk also runs its first batch in fp32 (the Gram check).
    """
    from datadiet.representations.gradients import per_sample_gradients

    job, model, adam_state = state
    g = cast(GradientConfig, job.gradients)  # set on every gradient job
    target = model.gradient_target() if g.target == "auto" else g.target
    return per_sample_gradients(
        model.module,
        (model.to_device(b) for b in batches(model, job.ds, job.batch_size, np.arange(*piece))),
        model.per_example_loss,
        target=target,
        dim=g.dim,
        seed=g.seed,
        adam_state=adam_state if job.adam else None,
        normalize=model.normalize_gradients,
        precision=g.precision,
        check_gram=piece[0] == 0,
        progress=False,
    )
