"""The synthetic 2-D study of Du et al. (ACL 2025), Figures 1 and 2a: what each representation makes
each selection algorithm pick.

Set-up (``sampling_toy.ipynb`` of nlpsoc/data_pruning_disentangle, see docs/algorithms.md §10):

- Data: ``make_classification(n_samples=1000, n_features=2, n_informative=2, n_redundant=0,
  n_clusters_per_class=2, random_state=42)`` (sklearn defaults otherwise, so ``flip_y=0.01``), split
  with ``train_test_split(test_size=0.4, random_state=42)`` and again ``(test_size=0.5,
  random_state=42)`` into 600 train / 200 validation / 200 test points. Labels stay in {0, 1}.
- Reference model: logistic regression ``p = σ(wᵀx + b)`` from zero, trained for ``epochs`` epochs of
  minibatch SGD on the mean log loss (batch size 32, reshuffled each epoch by the seeded generator,
  learning rate ``lr / (1 + lr_decay · epoch)`` with ``lr=0.5``, ``lr_decay=0.05``). The paper used
  sklearn's ``SGDClassifier`` with one ``partial_fit`` per epoch; the trajectories are the same kind.
  After every epoch a pass records, for every train and validation point, ``p_y`` (probability of
  the correct class), the loss ``-log p_y`` and correctness. ``n_checkpoints`` evenly spaced
  checkpoints ``(w, b, lr)`` are kept (epochs 20, 40, ..., 100 by default).
- Representations: ``hidden`` = the point x (n, 2); ``dynamics`` = the loss trajectory (n, T);
  ``gradients`` = ``∇_(w, b) ℓ = (p - y) · [x, 1]`` at each checkpoint (n, C, 3), with the checkpoints'
  learning rates in ``meta["lr"]``; ``probability`` = the ``p_y`` trajectory (n, T), read by
  ``hard_to_learn``. The same are made for the validation split (``less`` matches against them).
- Selections at ``budget=0.3`` (180 of 600), all with the same seed: ``prototypicality`` (keep hard,
  Euclidean, 2 clusters, as the paper's figure), ``s2l`` (2 clusters) and ``less`` (against the
  matching validation representation, checkpoints weighted by their learning rates) on each of the
  three representations, plus ``hard_to_learn`` on the probability trajectory. A selector that reads
  2-D input gets the gradients flattened to (n, C·3).

Findings checked on the numbers (tests/analysis/test_synthetic.py): prototypicality on the points
picks points *far* from the reference decision boundary, loss-based selections pick points *near*
it, and the diversity-based S2L changes least when the representation changes.

- "Near"/"far" compare the selection's mean (and median) distance to the final reference
  boundary with that of all training points. Prototypicality on loss trajectories keeps *both*
  tails of the loss (Euclidean distance to the centroid is symmetric): mostly near-boundary and
  misclassified points, plus the most confident ones, so its mean sits only a little below that
  of all points while its median is far below.
- "Varies least" is measured on where the selected points lie, not which exact points are kept
  (:func:`representation_sensitivity`): the spread over the representations of the mean boundary
  distance, and the mean pairwise energy distance between the selected point clouds. S2L samples
  at random within clusters, so its pairwise overlap stays near the random ``k / n`` and does not
  single it out.
"""

from __future__ import annotations

import json
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from scipy.special import expit

from datadiet._core.checks import check_rng
from datadiet._core.files import atomic_write_bytes
from datadiet.analysis.discriminative import gradient_sensitivity_bound, loss_sensitivity
from datadiet.analysis.overlap import overlap_matrix, random_overlap_expectation
from datadiet.errors import ParameterError
from datadiet.experiments.synthetic.findings import (
    boundary_distance,
    energy_distance,
    representation_sensitivity,
    summarize_selections,
)
from datadiet.representations.base import Representation
from datadiet.selection.base import Selection

__all__ = [
    "METHODS",
    "REPRESENTATIONS",
    "ReferenceRun",
    "SyntheticData",
    "SyntheticResult",
    "boundary_distance",
    "energy_distance",
    "make_representations",
    "make_synthetic_data",
    "representation_sensitivity",
    "run_selections",
    "run_synthetic_study",
    "selection_plan",
    "summarize_selections",
    "train_reference",
]

REPRESENTATIONS: tuple[str, ...] = ("hidden", "dynamics", "gradients")
"""The three representations every method is run on."""

METHODS: dict[str, dict[str, Any]] = {
    "prototypicality": {"n_clusters": 2, "metric": "euclidean", "keep": "hard"},
    "s2l": {"n_clusters": 2},
    "less": {},
}
"""Methods run on each representation, with the parameters of the paper's figure."""

EXTRA_SELECTIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (("hard_to_learn", "probability", {}),)
"""(method, representation, params) run once, on the representation they read."""


@dataclass(frozen=True)
class SyntheticData:
    """The 2-D two-class mixture, split 600 / 200 / 200; labels in {0, 1}."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class ReferenceRun:
    """A trained reference logistic regression and what was recorded while training it.

    ``*_prob``, ``*_loss`` and ``*_correct`` have shape (n, epochs): the correct-class
    probability, the loss ``-log p_y`` and correctness after each epoch. ``checkpoints`` holds
    dicts ``{"epoch", "w", "b", "lr"}``.
    """

    w: np.ndarray
    b: float
    checkpoints: tuple[dict[str, Any], ...]
    train_prob: np.ndarray
    train_loss: np.ndarray
    train_correct: np.ndarray
    val_prob: np.ndarray
    val_loss: np.ndarray
    val_correct: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SyntheticResult:
    """Everything :func:`run_synthetic_study` computed and the files it wrote."""

    out_dir: Path
    data: SyntheticData
    reference: ReferenceRun
    selections: dict[str, Selection]
    summary: pd.DataFrame
    overlap: pd.DataFrame
    sensitivity: pd.DataFrame
    files: dict[str, Path]


# --- data and reference model ------------------------------------------------------------------
def make_synthetic_data(random_state: int = 42) -> SyntheticData:
    """The paper's data set and split (600 train, 200 validation, 200 test).

    >>> data = make_synthetic_data()
    >>> len(data.x_train), len(data.x_val), len(data.x_test)
    (600, 200, 200)
    """
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    x, y = make_classification(
        n_samples=1000,
        n_features=2,
        n_informative=2,
        n_redundant=0,
        n_clusters_per_class=2,
        random_state=random_state,
    )
    split = cast(list[np.ndarray], train_test_split(x, y, test_size=0.4, random_state=random_state))
    x_train, x_rest, y_train, y_rest = split
    split = cast(list[np.ndarray], train_test_split(x_rest, y_rest, test_size=0.5, random_state=random_state))
    x_val, x_test, y_val, y_test = split
    return SyntheticData(x_train, y_train, x_val, y_val, x_test, y_test)


def train_reference(
    x: np.ndarray,
    y: np.ndarray,
    *,
    x_val: np.ndarray,
    y_val: np.ndarray,
    epochs: int = 100,
    lr: float = 0.5,
    lr_decay: float = 0.05,
    batch_size: int = 32,
    n_checkpoints: int = 5,
    seed: int | np.random.Generator = 0,
) -> ReferenceRun:
    """Train a logistic regression by minibatch SGD, recording training dynamics every epoch.

    Parameters
    ----------
    x, y : ndarray of shape (n, d) and (n,)
        Training points and {0, 1} labels.
    x_val, y_val : ndarray of shape (m, d) and (m,)
        Validation points and labels, evaluated after every epoch.
    epochs : int
        Number of passes ``T``.
    lr, lr_decay : float
        Epoch ``e`` (0-based) uses learning rate ``lr / (1 + lr_decay · e)``.
    batch_size : int
        Minibatch size; the last batch of an epoch may be smaller.
    n_checkpoints : int
        Number of evenly spaced checkpoints kept (the last is the final model).
    seed : int or Generator
        Seeds the per-epoch shuffles.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ParameterError(
            f"The 'epochs' parameter must be an int in the range [1, inf). Got {epochs!r} instead."
        )
    if not 1 <= n_checkpoints <= epochs:
        raise ParameterError(f"n_checkpoints={n_checkpoints} should be in [1, epochs={epochs}].")
    rng = check_rng(seed)
    w, b = np.zeros(x.shape[1]), 0.0
    ckpt_epochs = set(
        np.round(np.linspace(epochs / n_checkpoints, epochs, n_checkpoints)).astype(int).tolist()
    )
    train_rec, val_rec, checkpoints = [], [], []
    for epoch in range(epochs):
        rate = lr / (1.0 + lr_decay * epoch)
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            err = expit(x[batch] @ w + b) - y[batch]
            w = w - rate * (x[batch].T @ err) / len(batch)
            b = b - rate * float(err.mean())
        train_rec.append(_evaluate(x, y, w, b))
        val_rec.append(_evaluate(x_val, y_val, w, b))
        if epoch + 1 in ckpt_epochs:
            checkpoints.append({"epoch": epoch + 1, "w": w.copy(), "b": b, "lr": rate})
    train = [np.column_stack(parts) for parts in zip(*train_rec, strict=True)]
    val = [np.column_stack(parts) for parts in zip(*val_rec, strict=True)]
    config = {"epochs": epochs, "lr": lr, "lr_decay": lr_decay, "batch_size": batch_size, "init": "zeros"}
    return ReferenceRun(w, float(b), tuple(checkpoints), *train, *val, config=config)


def _evaluate(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> tuple[np.ndarray, ...]:
    """Correct-class probability, loss ``-log p_y`` and correctness of every point."""
    signed = (2 * y - 1) * (x @ w + b)
    return expit(signed), np.logaddexp(0.0, -signed), (signed > 0).astype(np.float64)


def make_representations(
    run: ReferenceRun, x: np.ndarray, y: np.ndarray, *, split: str
) -> dict[str, Representation]:
    """The ``hidden``, ``dynamics``, ``gradients`` and ``probability`` representations of a split.

    ``split`` is ``"train"`` or ``"val"`` and picks the recorded trajectories.
    """
    if split not in ("train", "val"):
        raise ParameterError(f"split must be 'train' or 'val'. Got {split!r} instead.")
    loss, prob = getattr(run, f"{split}_loss"), getattr(run, f"{split}_prob")
    grads = np.stack([_checkpoint_gradient(x, y, c) for c in run.checkpoints], axis=1)
    base = {"source": "synthetic", "split": split}
    ckpt_meta = {
        "checkpoint_epochs": [c["epoch"] for c in run.checkpoints],
        "lr": [c["lr"] for c in run.checkpoints],
    }
    return {
        "hidden": Representation(x, "hidden", meta={**base, "what": "input point x"}),
        "dynamics": Representation(loss, "dynamics", meta={**base, "what": "loss -log p_y per epoch"}),
        "gradients": Representation(
            grads, "gradients", meta={**base, **ckpt_meta, "what": "grad of the loss w.r.t. (w1, w2, b)"}
        ),
        "probability": Representation(prob, "dynamics", meta={**base, "what": "p_y per epoch"}),
    }


def _checkpoint_gradient(x: np.ndarray, y: np.ndarray, checkpoint: dict[str, Any]) -> np.ndarray:
    err = expit(x @ checkpoint["w"] + checkpoint["b"]) - y
    return err[:, None] * np.column_stack([x, np.ones(len(x))])


# --- selections and their summaries ------------------------------------------------------------
def selection_plan() -> list[tuple[str, str, dict[str, Any]]]:
    """The (method, representation, params) of every selection in the study, in plot order."""
    grid = [(m, r, dict(p)) for m, p in METHODS.items() for r in REPRESENTATIONS]
    return grid + [(m, r, dict(p)) for m, r, p in EXTRA_SELECTIONS]


def run_selections(train_reps: dict, val_reps: dict, budget: float | int, *, seed: int = 0) -> dict:
    """Run every selection of :func:`selection_plan`; keys are ``"method/representation"``."""
    from datadiet.selection import cartography, less, prototypicality, s2l  # noqa: F401 - registers them
    from datadiet.selection.registry import SELECTORS

    out: dict[str, Selection] = {}
    for method, rep_name, params in selection_plan():
        rep, val = train_reps[rep_name], val_reps[rep_name]
        if method == "less" and rep.values.ndim == 3:
            params = {**params, "lr_weights": list(rep.meta["lr"])}
        selector = SELECTORS.create(method, **params)
        rep, val = _fit_shape(rep, selector), _fit_shape(val, selector)
        selection = selector.select(rep, budget, val=val if selector.needs_val else None, seed=seed)
        meta = {
            **selection.meta,
            "method": method,
            "representation": rep_name,
            "input_shape": rep.values.shape,
        }
        out[f"{method}/{rep_name}"] = Selection(selection.indices, selection.scores, selection.weights, meta)
    return out


def _fit_shape(rep: Representation, selector: Any) -> Representation:
    """Flatten (n, C, d) gradients to (n, C·d) for a selector that reads 2-D input."""
    if rep.values.ndim == 3 and 3 not in selector.input_ndim:
        flat = rep.values.reshape(len(rep.values), -1)
        return Representation(flat, rep.kind, rep.ids, {**rep.meta, "flattened": True})
    return rep


# --- the study ---------------------------------------------------------------------------------
def run_synthetic_study(
    out_dir: str | os.PathLike, *, seed: int = 0, epochs: int = 100, budget: float | int = 0.3
) -> SyntheticResult:
    """Run the whole synthetic study and write its figures and tables to ``out_dir``.

    Writes one ``selection_<method>_<representation>.png`` per selection, ``selections_grid.png``,
    ``overlap_heatmap.png``, ``discriminative_power.png``, ``overlap.csv``, ``summary.csv``,
    ``sensitivity.csv`` and ``selections.json`` (the resolved config plus, per selection, its indices,
    parameters, seed and summary numbers). Every file is written atomically.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = make_synthetic_data()
    run = train_reference(
        data.x_train,
        data.y_train,
        x_val=data.x_val,
        y_val=data.y_val,
        epochs=epochs,
        n_checkpoints=min(5, epochs),
        seed=seed,
    )
    train_reps = make_representations(run, data.x_train, data.y_train, split="train")
    val_reps = make_representations(run, data.x_val, data.y_val, split="val")
    selections = run_selections(train_reps, val_reps, budget, seed=seed)
    names = list(selections)
    overlap = pd.DataFrame(overlap_matrix(list(selections.values())), index=names, columns=names)
    summary = summarize_selections(selections, data, run)
    distances = boundary_distance(data.x_train, run.w, run.b)
    sensitivity = representation_sensitivity(selections, data.x_train, distances)
    config = {
        "seed": seed,
        "epochs": epochs,
        "budget": budget,
        "data_random_state": 42,
        "reference": run.config,
    }
    files = {
        "overlap.csv": atomic_write_bytes(out / "overlap.csv", overlap.to_csv().encode()),
        "summary.csv": atomic_write_bytes(out / "summary.csv", summary.to_csv().encode()),
        "sensitivity.csv": atomic_write_bytes(out / "sensitivity.csv", sensitivity.to_csv().encode()),
        "selections.json": atomic_write_bytes(
            out / "selections.json", _selections_json(selections, summary, config)
        ),
    }
    files.update(_write_figures(out, data, run, selections, overlap))
    return SyntheticResult(out, data, run, selections, summary, overlap, sensitivity, files)


def _selections_json(selections: dict[str, Selection], summary: pd.DataFrame, config: dict) -> bytes:
    entries = []
    for name, sel in selections.items():
        numbers = summary.loc[name].drop(["method", "representation"]).to_dict()
        entries.append(
            {
                "name": name,
                "method": sel.meta["method"],
                "representation": sel.meta["representation"],
                "indices": sel.indices.tolist(),
                "budget": sel.budget,
                "params": sel.meta.get("params", {}),
                "seed": sel.meta.get("seed"),
                "input_shape": list(sel.meta["input_shape"]),
                "summary": {key: _plain(value) for key, value in numbers.items()},
            }
        )
    return json.dumps({"config": config, "selections": entries}, indent=2).encode()


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _write_figures(out: Path, data: SyntheticData, run: ReferenceRun, selections: dict, overlap) -> dict:
    from datadiet.experiments.synthetic import plots as plots
    from datadiet.report.figures import figure_to_png

    files: dict[str, Path] = {}
    chosen = {name: sel.indices for name, sel in selections.items()}
    for name, idx in chosen.items():
        fig = plots.plot_selection(data.x_train, data.y_train, idx, run.w, run.b, title=name)
        fname = f"selection_{name.replace('/', '_')}.png"
        files[fname] = atomic_write_bytes(out / fname, figure_to_png(fig))
    grid = plots.plot_selection_grid(data.x_train, data.y_train, chosen, run.w, run.b)
    files["selections_grid.png"] = atomic_write_bytes(out / "selections_grid.png", figure_to_png(grid))
    k = len(next(iter(chosen.values())))
    expected = random_overlap_expectation(k, len(data.x_train))
    heat = plots.plot_overlap_heatmap(overlap.to_numpy(), list(overlap.index), expectation=expected)
    files["overlap_heatmap.png"] = atomic_write_bytes(out / "overlap_heatmap.png", figure_to_png(heat))
    files["discriminative_power.png"] = atomic_write_bytes(
        out / "discriminative_power.png", figure_to_png(_discriminative_figure(data, run, plots))
    )
    return files


def _discriminative_figure(data: SyntheticData, run: ReferenceRun, plots: Any) -> Any:
    """C_l and the C_g bound against the margin, for the reference model's ||w|| and several α."""
    z = np.linspace(-8, 8, 401)
    w_norm = float(np.linalg.norm(run.w))
    h_norms = np.quantile(np.linalg.norm(data.x_train, axis=1), [0.1, 0.5, 0.9])
    alphas = w_norm * h_norms
    bounds = {float(a): gradient_sensitivity_bound(z, a) for a in alphas}
    return plots.plot_discriminative_power(z, loss_sensitivity(z, w_norm), bounds, w_norm=w_norm)
