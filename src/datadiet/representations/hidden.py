"""Hidden-state representations: what the classification layer reads, for every example, in batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from datadiet._core.progress import track
from datadiet.data.dataset import Dataset


def hidden_states(
    model: Any, ds: Dataset, *, batch_size: int = 64, progress: bool = True, rows: np.ndarray | None = None
) -> np.ndarray:
    """``model.pooled_hidden`` of every example of ``ds`` (or of its ``rows``), in order.

    Parameters
    ----------
    model : ReferenceModel
        Any :class:`datadiet.models.base.ReferenceModel` (its ``collate`` and ``pooled_hidden``).
    ds : Dataset
    batch_size : int
    progress : bool
    rows : ndarray of int, optional
        Only these rows, batched in their order (default: all rows).

    Returns
    -------
    ndarray of shape (n_rows, hidden_size), float32
    """
    rows = np.arange(len(ds)) if rows is None else np.asarray(rows)
    was_training = model.module.training
    model.module.eval()
    out = []
    try:
        with torch.no_grad():
            for start in track(range(0, len(rows), batch_size), "hidden states", enabled=progress):
                batch = model.collate(ds, rows[start : start + batch_size])
                out.append(model.pooled_hidden(batch).float().cpu().numpy())
    finally:
        model.module.train(was_training)
    return np.concatenate(out).astype(np.float32)
