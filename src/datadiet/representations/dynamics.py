"""Training-dynamics representations read from a finished reference run: (N, T) trajectories.

``prob`` is the correct-class probability after each epoch (cartography's confidence, ``hard_to_learn``,
``ambiguous``), ``loss`` its negative log (S2L's trajectories), ``correct`` the 0/1 correctness
(``forgetting``). Rows follow the run's training ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from datadiet.representations.base import Representation

QUANTITIES: tuple[str, ...] = ("prob", "loss", "correct")


def read_dynamics(run_dir: str | Path, quantity: str, *, in_training: bool = False) -> Representation:
    """The (N, T) trajectory ``quantity`` of the run in ``run_dir``.

    Parameters
    ----------
    run_dir : path
        A reference run directory (see :mod:`datadiet.training`).
    quantity : {"prob", "loss", "correct"}
    in_training : bool, default=False
        Read the values recorded during the training pass instead of the per-epoch evaluation pass.
    """
    if quantity not in QUANTITIES:
        raise ValueError(f"Unknown dynamics quantity {quantity!r}. Available: {list(QUANTITIES)}.")
    run_dir = Path(run_dir)
    path = run_dir / "dynamics" / (f"{quantity}_train_pass.npy" if in_training else f"{quantity}.npy")
    if not path.is_file():
        hint = " (set training.record_in_training: true)" if in_training else ""
        raise FileNotFoundError(f"{path} does not exist; is {run_dir} a finished reference run?{hint}")
    values = np.load(path, allow_pickle=False)
    ids = np.asarray(json.loads((run_dir / "ids.json").read_text()), dtype=str)
    meta = {"quantity": quantity, "in_training": in_training, "run": str(run_dir), "epochs": values.shape[1]}
    return Representation(np.asarray(values, dtype=np.float32), "dynamics", ids, meta)
