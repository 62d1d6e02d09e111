"""The Python entry point: ``datadiet.select``."""

from __future__ import annotations

from typing import Any

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
    if balance == "stratified":
        selector = Stratified(selector)
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
        Needed by ``balance="stratified"`` and label-aware selectors.
    val : Representation or ndarray, optional
        Validation representation (``less``).
    seed : int or numpy Generator
        Same seed, same selection.
    balance : {None, "none", "stratified"}
        Keep per-class budgets proportional to class sizes.
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
