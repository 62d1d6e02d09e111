"""Hidden-state representations: what the classification layer reads, for every example, in batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from datadiet.data.dataset import Dataset


def hidden_states(model: Any, ds: Dataset, *, batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """``model.pooled_hidden`` of every example of ``ds``, in order.

    Parameters
    ----------
    model : ReferenceModel
        Any :class:`datadiet.models.base.ReferenceModel` (its ``collate`` and ``pooled_hidden``).
    ds : Dataset
    batch_size : int

    Returns
    -------
    ndarray of shape (n_examples, hidden_size), float32
    """
    was_training = model.module.training
    model.module.eval()
    out = []
    try:
        with torch.no_grad():
            for start in tqdm(range(0, len(ds), batch_size), desc="hidden states", disable=not progress):
                batch = model.collate(ds, np.arange(start, min(start + batch_size, len(ds))))
                out.append(model.pooled_hidden(batch).float().cpu().numpy())
    finally:
        model.module.train(was_training)
    return np.concatenate(out).astype(np.float32)
