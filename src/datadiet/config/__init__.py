"""Typed configs read from YAML: pydantic models with a docstring per field, checked and resolved on load.

``load_config(path, ReferenceConfig)`` reads YAML with the safe loader and builds the config, refusing
unknown keys (listing the valid ones, with a "did you mean"), wrong types, NaN/inf and numbers out of range
with the path of the offending field, e.g. "model.lora.r must be an int. Got 'eight' instead." or
"training.batch_size must be an int in the range [1, inf). Got 0 instead." A study's selections are checked
against the registries there too. Every default that depends on another setting is resolved once, at
load, so ``config.resolved.json`` and ``study.resolved.json`` hold the values used. The reference of every
field is ``docs/config.md``, generated from these models (``python -m datadiet.config.docs``).

Modules: :mod:`~datadiet.config.fields` (field types and bounds), :mod:`~datadiet.config.schema` (the
reference config), :mod:`~datadiet.config.study` (the study config), :mod:`~datadiet.config.plan` (study
specs against the registries), :mod:`~datadiet.config.naming` (cell and file names),
:mod:`~datadiet.config.yaml_io` (reading and writing), :mod:`~datadiet.config.messages` (error wording).
"""

from datadiet.config.fields import (
    INT_LIMIT,
    MAX_CONFIG_BYTES,
    MAX_DEPTH,
    MAX_EXPANDED,
    MAX_PARAM_DEPTH,
    MAX_PARAM_ITEMS,
    MAX_TEXT,
)
from datadiet.config.naming import BASELINES, budget_text, cell_id, check_selection_names, selection_file
from datadiet.config.schema import (
    DatasetConfig,
    GradientConfig,
    LoraConfig,
    ModelConfig,
    ReferenceConfig,
    RepresentConfig,
    TrainingBase,
    TrainingConfig,
    mode_defaults,
)
from datadiet.config.study import MainConfig, OodConfig, SelectionSpec, StudyConfig, main_defaults
from datadiet.config.yaml_io import dumps_strict, from_dict, load_config, read_yaml, to_dict
from datadiet.errors import ConfigError

__all__ = [
    "BASELINES",
    "INT_LIMIT",
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "MAX_EXPANDED",
    "MAX_PARAM_DEPTH",
    "MAX_PARAM_ITEMS",
    "MAX_TEXT",
    "ConfigError",
    "DatasetConfig",
    "GradientConfig",
    "LoraConfig",
    "MainConfig",
    "ModelConfig",
    "OodConfig",
    "ReferenceConfig",
    "RepresentConfig",
    "SelectionSpec",
    "StudyConfig",
    "TrainingBase",
    "TrainingConfig",
    "budget_text",
    "cell_id",
    "check_selection_names",
    "dumps_strict",
    "from_dict",
    "load_config",
    "main_defaults",
    "mode_defaults",
    "read_yaml",
    "selection_file",
    "to_dict",
]
