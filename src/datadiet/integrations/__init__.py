"""Integrations that record a datadiet reference run from other training loops.

:class:`DatadietCallback` plugs into ``transformers.Trainer`` and writes the run directory that
:class:`datadiet.training.ReferenceRun` and :func:`datadiet.representations.dynamics.read_dynamics` read.
"""

from datadiet.integrations.hf_trainer import DatadietCallback, load_trainer_run

__all__ = ["DatadietCallback", "load_trainer_run"]
