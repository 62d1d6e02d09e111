"""The reference-run folder's one writer, :class:`RunWriter`.

It writes every file of the layout described in :mod:`datadiet.training`, at the paths of
:class:`~datadiet.representations.dynamics.RunLayout` (which the readers use too), each atomically
(:func:`~datadiet._core.files.atomic_write_bytes`): the training loop
(:func:`~datadiet.training.train_reference`) and the ``transformers.Trainer`` callback
(:class:`~datadiet.training.hf_trainer.DatadietCallback`) both write through it, so both folders read back
the same way (:class:`~datadiet.training.ReferenceRun`). Callers choose the order; ``DONE`` is written last.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as save_safetensors

from datadiet._core.files import atomic_write_bytes, atomic_write_json, npy_bytes
from datadiet.representations.dynamics import ADAM_STATE, CHECKPOINT_META, TRAINABLE, RunLayout


def safetensors_bytes(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """The ``.safetensors`` encoding of ``tensors`` (detached, on the CPU, contiguous)."""
    return save_safetensors({name: t.detach().cpu().contiguous() for name, t in tensors.items()})


class RunWriter:
    """Writes the files of the reference-run folder ``run_dir``, each atomically.

    Parameters
    ----------
    run_dir : str or path-like
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.layout = RunLayout(Path(run_dir))

    def write_ids(self, ids: list[str]) -> None:
        """``ids.json``: one id string per example, in row order."""
        atomic_write_json(self.layout.ids, ids)

    def write_config(self, config: dict[str, Any]) -> None:
        """``config.json``."""
        atomic_write_json(self.layout.config, config)

    def write_checkpoint(
        self, epoch: int, trainable: Mapping[str, torch.Tensor], adam: Mapping[str, torch.Tensor],
        meta: dict[str, Any],
    ) -> None:  # fmt: skip
        """``checkpoints/epoch_XXX/``: the trained weights, the Adam moments, then ``checkpoint.json``."""
        folder = self.layout.checkpoint(epoch)
        atomic_write_bytes(folder / TRAINABLE, safetensors_bytes(trainable))
        atomic_write_bytes(folder / ADAM_STATE, safetensors_bytes(adam))
        atomic_write_json(folder / CHECKPOINT_META, meta)

    def write_dynamics(self, arrays: Mapping[str, np.ndarray]) -> None:
        """``dynamics/<name>.npy`` for every ``name`` (a quantity, or ``<quantity>_train_pass``)."""
        for name, array in arrays.items():
            atomic_write_bytes(self.layout.dynamics(name), npy_bytes(array))

    def write_val_dynamics(
        self, arrays: Mapping[str, np.ndarray], ids: list[str], info: dict[str, Any]
    ) -> None:
        """The validation split's dynamics: ``dynamics/val/<quantity>.npy``, ``dynamics/val/dataset.json``
        (``info``: which split) and, last, ``val_ids.json`` (its presence marks them recorded)."""
        for name, array in arrays.items():
            atomic_write_bytes(self.layout.val_dynamics(name), npy_bytes(array))
        atomic_write_json(self.layout.val_info, info)
        atomic_write_json(self.layout.val_ids, ids)

    def write_final(self, trainable: Mapping[str, torch.Tensor]) -> bytes:
        """``final/trainable.safetensors``; returns the bytes written."""
        payload = safetensors_bytes(trainable)
        atomic_write_bytes(self.layout.final, payload)
        return payload

    def write_state(self, state: dict[str, Any]) -> None:
        """``state/state.pt``: the resume state, as one ``torch.save`` file."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.layout.state, buffer.getvalue())

    def drop_state(self) -> None:
        """Remove ``state/state.pt`` (a finished run needs none)."""
        self.layout.state.unlink(missing_ok=True)

    def finish(self, epochs: int, global_step: int) -> None:
        """``DONE``, written last: the run is complete."""
        atomic_write_json(self.layout.done, {"epochs": epochs, "global_step": global_step})
