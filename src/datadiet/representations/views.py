"""Views of a representation: an (N, C, d) stack of per-checkpoint gradients read as an N x d matrix.

Selectors that read N x d rows (``prototypicality``, ``semdedup``, ``s2l``, ...) refuse the (N, C, d)
gradient stack. A *view* turns it into one, and records what it did in the result's provenance, so a
selection made on it says which view it read and which learning rates still apply:

- ``flatten``: (N, C * d), the checkpoints' blocks side by side (row-major). A memmap stays a memmap (no
  copy). ``lr``/``epochs`` become ``source_lr``/``source_epochs``: the C learning rates no longer weigh
  checkpoints of the result.
- ``checkpoint=E``: the (N, d) slice of the checkpoint of epoch ``E``, as the provenance's ``epochs`` list
  records it; ``lr`` becomes ``[lr_E]`` and ``epochs`` ``[E]``. A representation without ``epochs`` in its
  provenance (a user's bare array) reads ``E`` as the 0-based checkpoint index.
- ``lrmean``: (N, d), ``sum_c lr_c g_c / sum_c lr_c`` with the provenance's ``lr``, computed in row chunks.

A study names a view after the representation, ``gradients/train:flatten``; :func:`split_view` splits it.
Views apply to 3-D representations of kind ``gradients`` (or a user's 3-D ``features``) only: dynamics are
already (N, T) and hidden states (N, d), which N x d selectors accept as they are.

>>> import numpy as np
>>> from datadiet.representations.base import Representation
>>> meta = {"lr": [1.0, 3.0], "epochs": [1, 2]}
>>> g = Representation(np.arange(8.0).reshape(2, 2, 2), "gradients", meta=meta)
>>> apply_view(g, "flatten").values.tolist()
[[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]
>>> apply_view(g, "checkpoint=2").meta["lr"], apply_view(g, "lrmean").values.tolist()
([3.0], [[1.5, 2.5], [5.5, 6.5]])
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from datadiet._core.checks import did_you_mean
from datadiet._core.chunks import chunk_rows_for, iter_row_chunks
from datadiet.errors import ParameterError
from datadiet.representations.base import Representation

VIEWS: tuple[str, ...] = ("flatten", "checkpoint=<epoch>", "lrmean")
"""The views of an (N, C, d) gradient stack (``checkpoint=<epoch>`` takes an integer epoch)."""
VIEW_SEP = ":"
"""What separates a representation name from its view: ``gradients/train:flatten``."""
VIEW_KINDS: tuple[str, ...] = ("gradients", "features")
"""The kinds a view applies to (when 3-D); a study's views apply to ``gradients/*`` names only."""
_CHECKPOINT = re.compile(r"checkpoint=(-?\d+)")


def split_view(name: str) -> tuple[str, str | None]:
    """``(base name, view)`` of a representation name; the view is None when there is none.

    >>> split_view("gradients/train:flatten"), split_view("hidden/final")
    (('gradients/train', 'flatten'), ('hidden/final', None))
    """
    base, sep, view = name.partition(VIEW_SEP)
    return base, (view if sep else None)


def check_view(view: str) -> None:
    """Refuse a view that is not one of :data:`VIEWS` (``checkpoint=`` needs an integer epoch)."""
    if view in ("flatten", "lrmean") or (isinstance(view, str) and _CHECKPOINT.fullmatch(view)):
        return
    if isinstance(view, str) and view.startswith("checkpoint="):
        raise ParameterError(
            f"The view {view!r} needs an integer epoch: checkpoint=<epoch> (e.g. checkpoint=2). "
            f"Available: {list(VIEWS)}."
        )
    tail = view.partition("=")[2] if isinstance(view, str) else ""
    options = ["flatten", "lrmean", f"checkpoint={tail}" if tail else "checkpoint=<epoch>"]
    raise ParameterError(f"Unknown view {view!r}.{did_you_mean(view, options)} Available: {list(VIEWS)}.")


def apply_view(rep: Representation, view: str | None) -> Representation:
    """``rep`` seen through ``view`` (None: ``rep`` itself); the view is recorded in ``meta["view"]``.

    Parameters
    ----------
    rep : Representation of shape (n_examples, n_checkpoints, d)
        Per-checkpoint gradients (kind ``gradients``, or a user's 3-D ``features``).
    view : {"flatten", "checkpoint=<epoch>", "lrmean"} or None
        See the module docstring.

    Returns
    -------
    Representation of shape (n_examples, n_checkpoints * d) or (n_examples, d)
        Same kind and ids; ``meta`` is ``rep.meta`` plus ``view``, with ``lr``/``epochs`` following it.
    """
    if view is None:
        return rep
    check_view(view)
    shape = tuple(rep.values.shape)
    if len(shape) != 3 or rep.kind not in VIEW_KINDS:
        raise ParameterError(
            f"The view {view!r} does not fit this {rep.kind} representation of shape {shape}; views that "
            "fit it: none (views apply to an (N, C, d) stack of per-checkpoint gradients); pass no view."
        )
    if view == "flatten":
        values = rep.values.reshape(shape[0], shape[1] * shape[2])  # a view (and a memmap) when contiguous
        return _viewed(rep, values, view, {})
    if view == "lrmean":
        return _viewed(rep, _lr_mean(rep.values, _lrs(rep, view)), view, {})
    return _checkpoint(rep, int(view.partition("=")[2]), view)


def _checkpoint(rep: Representation, epoch: int, view: str) -> Representation:
    """The (N, d) slice of the checkpoint of ``epoch`` (a 0-based index without ``epochs`` provenance)."""
    epochs, n_checkpoints = _epochs(rep), rep.values.shape[1]
    if epochs is None:
        if not 0 <= epoch < n_checkpoints:
            raise ParameterError(
                f"The view {view!r} does not fit: this representation records no 'epochs', so checkpoint= "
                f"is a 0-based checkpoint index in [0, {n_checkpoints - 1}]."
            )
        return _viewed(rep, rep.values[:, epoch, :], view, {})
    if epoch not in epochs:
        raise ParameterError(
            f"The view {view!r} does not fit: no checkpoint of epoch {epoch}; this representation's "
            f"checkpoints are of epochs {epochs} (use checkpoint=<one of them>)."
        )
    index = epochs.index(epoch)
    follows: dict[str, Any] = {"epochs": [epoch]}
    if "lr" in rep.meta:
        follows["lr"] = [_lrs(rep, view)[index]]
    return _viewed(rep, rep.values[:, index, :], view, follows)


def _viewed(rep: Representation, values: np.ndarray, view: str, follows: dict[str, Any]) -> Representation:
    """The result: ``rep``'s provenance with ``lr``/``epochs`` moved to ``source_*``, then ``follows``."""
    meta = {key: value for key, value in rep.meta.items() if key not in ("lr", "epochs")}
    meta.update({f"source_{key}": rep.meta[key] for key in ("lr", "epochs") if key in rep.meta})
    meta.update(follows)
    meta["view"] = view
    return Representation(values, rep.kind, rep.ids, meta)


def _epochs(rep: Representation) -> list[int] | None:
    """The provenance's checkpoint epochs (None when absent); refused when they do not fit the stack."""
    epochs = rep.meta.get("epochs")
    if epochs is None:
        return None
    if not isinstance(epochs, list | tuple) or len(epochs) != rep.values.shape[1]:
        raise ParameterError(
            f"The representation's provenance 'epochs' is {epochs!r}, but it has "
            f"n_checkpoints={rep.values.shape[1]}: it needs one epoch per checkpoint."
        )
    return [int(e) for e in epochs]


def _lrs(rep: Representation, view: str) -> list[float]:
    """The provenance's learning rates, one per checkpoint, all >= 0 with a positive sum."""
    lrs = rep.meta.get("lr")
    if lrs is None:
        raise ParameterError(
            f"The view {view!r} needs the checkpoints' learning rates in the representation's provenance "
            f"(meta['lr']), which it lacks; use 'flatten' or 'checkpoint=<epoch>'."
        )
    weights = np.asarray(lrs, dtype=np.float64).ravel()
    n_checkpoints = rep.values.shape[1]
    if len(weights) != n_checkpoints or not np.isfinite(weights).all() or (weights < 0).any():
        raise ParameterError(
            f"The representation's provenance 'lr' is {lrs!r}; the view {view!r} needs one finite learning "
            f"rate >= 0 per checkpoint (n_checkpoints={n_checkpoints})."
        )
    if weights.sum() <= 0:
        raise ParameterError(f"The view {view!r} needs learning rates with a positive sum; got {lrs!r}.")
    return weights.tolist()


def _lr_mean(values: np.ndarray, lrs: list[float]) -> np.ndarray:
    """``sum_c lr_c g_c / sum_c lr_c`` of (N, C, d) ``values``, in float64 row chunks."""
    weights = np.asarray(lrs, dtype=np.float64)
    weights = weights / weights.sum()
    dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.float64
    out = np.empty((values.shape[0], values.shape[2]), dtype=dtype)
    for start, chunk in iter_row_chunks(values, chunk_rows_for(values, itemsize=8), dtype=np.float64):
        out[start : start + len(chunk)] = np.einsum("ncd,c->nd", chunk, weights)
    return out
