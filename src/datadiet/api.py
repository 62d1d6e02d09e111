"""The Python entry points: ``datadiet.select`` and ``datadiet.prune``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from datadiet._core.checks import param_error
from datadiet.errors import ParameterError
from datadiet.representations.base import Representation, as_representation
from datadiet.representations.views import apply_view
from datadiet.selection.balancing import BALANCE_MODES, Stratified
from datadiet.selection.base import (
    BaseSelector,
    Budget,
    ScoreSelector,
    Seed,
    Selection,
    jsonable,
)
from datadiet.selection.calibration import Calibrated
from datadiet.selection.registry import SELECTORS

if TYPE_CHECKING:
    from datadiet.pipeline.prune import PruneResult


def score_based_selectors() -> list[str]:
    """Names of the registered selectors that rank by a score (and so can be calibrated)."""
    return [name for name in SELECTORS.names() if issubclass(SELECTORS.get(name), ScoreSelector)]


def build_selector(
    algorithm: str,
    /,
    *,
    balance: str | None = None,
    calibrate: float | None = None,
    weighting: str = "none",
    **params: Any,
) -> BaseSelector:
    """The registered selector ``algorithm``, optionally calibrated and label-balanced."""
    selector: BaseSelector = SELECTORS.create(algorithm, **params)
    if calibrate is not None:
        if not isinstance(selector, ScoreSelector):
            raise ParameterError(
                f"Calibration needs a score-based selector; {algorithm!r} is not. "
                f"Score-based: {score_based_selectors()}."
            )
        selector = Calibrated(selector, alpha=calibrate, weighting=weighting)
    elif weighting != "none":
        raise ParameterError("weighting applies only with calibrate=ALPHA; pass calibrate too.")
    if balance not in (None, *BALANCE_MODES):
        raise param_error("select", "balance", f"one of {list(BALANCE_MODES)}", balance)
    if balance not in (None, "none"):
        selector = Stratified(selector, balance)
    return selector


def select(
    algorithm: str,
    rep: Representation | np.ndarray,
    budget: Budget,
    *,
    labels: np.ndarray | None = None,
    val: Representation | np.ndarray | None = None,
    seed: Seed = 0,
    balance: str | None = None,
    calibrate: float | None = None,
    weighting: str = "none",
    view: str | None = None,
    **params: Any,
) -> Selection:
    """Select ``budget`` examples of ``rep`` with the registered ``algorithm``.

    Parameters
    ----------
    algorithm : str
        A registered selector name (``datadiet.SELECTORS.names()``).
    rep : Representation or ndarray of shape (n_examples, ...)
        The representation; a bare array is taken as ``features``.
    budget : int or float
        An int count, or a fraction in (0, 1] giving ``floor(f * n_examples)``.
    labels : ndarray of shape (n_examples,), optional
        Needed by ``balance`` and label-aware selectors.
    val : Representation or ndarray, optional
        Validation representation (``less``).
    seed : int or numpy Generator
        Same seed, same selection.
    balance : {None, "none", "stratified", "sqrt"}
        Per-class budgets proportional to class sizes (``stratified``) or to their square roots, capped at
        each class's size (``sqrt``: rare classes get more than their share).
    calibrate : float in [0, 1], optional
        Share of the budget taken by the scores; the rest is uniform random (score-based only).
    weighting : {"none", "unbiased"}
        With ``calibrate``: importance weights on the random part.
    view : {None, "flatten", "checkpoint=<epoch>", "lrmean"}
        Read an (N, C, d) gradient stack ``rep`` (and ``val``) through this view
        (:func:`datadiet.apply_view`); the selection's representation provenance records it.
    **params
        The selector's own parameters.

    Examples
    --------
    >>> import numpy as np, datadiet
    >>> p = np.array([[0.9, 0.95], [0.2, 0.4], [0.6, 0.5], [0.1, 0.3]])
    >>> datadiet.select("hard_to_learn", p, 2).indices.tolist()
    [1, 3]
    """
    if view is not None:
        rep = apply_view(as_representation(rep), view)
        val = None if val is None else apply_view(as_representation(val, name="val"), view)
    lrs = rep.meta.get("lr") if isinstance(rep, Representation) else None
    if isinstance(lrs, list) and "lr_weights" in SELECTORS.parameters(algorithm):
        params.setdefault("lr_weights", lrs)  # the checkpoints' learning rates, from the provenance
    selector = build_selector(algorithm, balance=balance, calibrate=calibrate, weighting=weighting, **params)
    selection = selector.select(rep, budget, labels=labels, val=val, seed=seed)
    if isinstance(rep, Representation):
        selection.meta["representation"] = jsonable({"kind": rep.kind, **rep.meta})
    return selection


def prune(
    dataset: str | os.PathLike[str] | None,
    budget: Budget,
    recipe: str = "auto",
    *,
    out: str | os.PathLike[str],
    config: str | os.PathLike[str] | dict[str, Any] | None = None,
    seed: int = 0,
    columns: dict[str, str] | None = None,
) -> PruneResult:
    """Prune ``dataset``'s training split to ``budget`` with ``recipe``; write the kept rows to ``out``.

    Parameters
    ----------
    dataset : str or path-like, optional
        What ``dataset.source`` accepts: a jsonl/csv/parquet file or folder, a Hugging Face dataset saved
        to disk, an embedded name. None: ``config``'s ``dataset.source``.
    budget : int or float
        Rows to keep: a count, or a fraction in (0, 1] giving ``floor(f * N)``.
    recipe : str
        A registered recipe (``datadiet.RECIPES.names()``); ``auto`` by default (docs/recipes.md).
    out : path-like
        Output folder: the kept rows in the input's format, ``selection.json``, ``summary.json`` and the
        cache ``.datadiet``. A file there that datadiet did not write is never replaced.
    config : path-like or dict, optional
        A reference config (YAML file or its fields: ``dataset`` columns and splits, ``model``, ``training``).
    columns : dict, optional
        Dataset column settings (``{"text": ..., "label": ..., "id": ...}``), over ``config``'s.

    Examples
    --------
    >>> result = datadiet.prune("reviews.jsonl", 0.3, out="pruned/")  # doctest: +SKIP
    >>> result.summary["kept"], result.files  # doctest: +SKIP
    """
    from datadiet.config import ReferenceConfig, load_config
    from datadiet.pipeline.prune import prune_config, run_prune
    from datadiet.recipes import RECIPES

    chosen = RECIPES.get(recipe)
    base: dict[str, Any] | ReferenceConfig | None = (
        load_config(Path(config), ReferenceConfig) if isinstance(config, (str, os.PathLike)) else config
    )
    if dataset is None and not _names_source(base):  # never fall back to the default dataset silently
        raise ParameterError("prune needs a dataset: pass dataset= (or a config that sets dataset.source).")
    folder, source = Path(out), None if dataset is None else str(dataset)
    cfg = prune_config(source, folder, base, recipe=chosen, columns=columns)
    return run_prune(cfg, budget, folder, recipe=chosen, seed=seed)


def _names_source(config: Any) -> bool:
    """Whether a reference config (or its fields) sets ``dataset.source`` itself."""
    if isinstance(config, dict):
        return isinstance(config.get("dataset"), dict) and "source" in config["dataset"]
    return config is not None and "source" in config.dataset.model_fields_set
