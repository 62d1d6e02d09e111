"""Train a reference model, recording training dynamics and saving checkpoints with their Adam state.

:func:`train_reference` runs AdamW with a linear warmup/decay schedule and, after every epoch, an evaluation
pass over the whole training set that records each example's correct-class probability, loss and
correctness (cartography, forgetting, EL2N-style trajectories). Optionally it also records the same values
from the training pass itself, taken before each batch's optimizer step (the allenai/cartography convention).

Run directory (fixed layout, read back by :class:`ReferenceRun`)::

    run_dir/config.json                      TrainConfig, model.describe(), dataset identity, step counts
    run_dir/ids.json                         example ids, in row order of every array
    run_dir/dynamics/{prob,loss,correct}.npy            (n_examples, epochs) float32, evaluation pass
    run_dir/dynamics/{prob,loss,correct}_train_pass.npy (only with record_in_training)
    run_dir/checkpoints/epoch_{e:03d}/trainable.safetensors   trained parameters after epoch e
    run_dir/checkpoints/epoch_{e:03d}/adam_state.safetensors  "{param}.exp_avg", "{param}.exp_avg_sq"
    run_dir/checkpoints/epoch_{e:03d}/checkpoint.json         epoch, mean lr of the epoch, global step
    run_dir/final/trainable.safetensors
    run_dir/state/state.pt                   resume state after the last finished epoch (removed at the end)
    run_dir/DONE                             written last

Every file is written atomically by the folder's one writer, :class:`~datadiet.training.writer.RunWriter`
(also used by :class:`~datadiet.training.hf_trainer.DatadietCallback`); the writer and the readers take the
paths from one :class:`~datadiet.representations.dynamics.RunLayout`. A rerun with the same config, model
and dataset resumes after the last finished epoch, identical to an uninterrupted run; anything different is
refused, naming the field (:func:`check_run_dir` makes the same check without writing anything). Every file
read back is checked and a damaged one is refused in one line naming it and the fix; a damaged ``state.pt``
restarts the training with a :class:`ResumeStateWarning`.
"""

from datadiet.representations.dynamics import QUANTITIES, RunLayout
from datadiet.training.loop import ResumeStateWarning, _Loop, check_run_dir, fit, predict, train_reference
from datadiet.training.run import (
    Checkpoint,
    ReferenceRun,
    adam_moments,
    load_tensors,
    load_weights,
    read_run_config,
)
from datadiet.training.settings import TrainConfig
from datadiet.training.writer import RunWriter

__all__ = [  # _Loop is re-exported for the tests that patch it
    "QUANTITIES",
    "Checkpoint",
    "ReferenceRun",
    "ResumeStateWarning",
    "RunLayout",
    "RunWriter",
    "TrainConfig",
    "_Loop",
    "adam_moments",
    "check_run_dir",
    "fit",
    "load_tensors",
    "load_weights",
    "predict",
    "read_run_config",
    "train_reference",
]
