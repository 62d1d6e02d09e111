"""Typed configs read from YAML: dataclasses with a docstring per field, validated on load.

``load_config(path, ReferenceConfig)`` reads YAML with ``yaml.safe_load`` and builds the dataclass,
refusing unknown keys (listing the valid ones) and wrong types with the path of the offending field,
e.g. "model.lora.r must be an int. Got 'eight' instead."
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or dict is malformed."""


@dataclass
class DatasetConfig:
    source: str = "reuters_r8"
    """Embedded dataset name (reuters_r8, newsgroups20, rotten_tomatoes) or a jsonl/csv/parquet/HF path."""
    train_split: str = "train"
    """Split used to train the reference model and to select from."""
    val_split: str | None = "validation"
    """Split whose gradients LESS matches against (None: no validation representations)."""
    slice: int | None = None
    """Keep a stratified, seeded slice of this many training examples (None: all)."""
    val_slice: int | None = None
    """Likewise for the validation split."""
    seed: int = 0
    """Seed of the slicing."""
    text: str = "text"
    """Text column (file sources)."""
    text_pair: str | None = None
    """Second text column for pair tasks (file sources)."""
    label: str = "label"
    """Label column (file sources)."""
    id: str | None = None
    """Id column (file sources); None numbers the rows."""


@dataclass
class LoraConfig:
    r: int = 8
    """LoRA rank."""
    alpha: int = 16
    """LoRA scaling alpha."""
    dropout: float = 0.0
    """LoRA dropout."""


@dataclass
class ModelConfig:
    path: str = "embedded"
    """A local Hugging Face model directory, or "embedded" for the packaged MiniLM."""
    mode: Literal["frozen", "lora", "full"] = "frozen"
    """frozen: cached encoder embeddings + trained head (fast CPU path); lora/full: fine-tune the encoder."""
    head: Literal["linear", "mlp"] = "linear"
    """Head of the frozen path."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA settings (mode: lora)."""
    max_length: int = 128
    """Tokens per example."""


@dataclass
class TrainingConfig:
    epochs: int = 5
    """Epochs of reference training (= trajectory length T)."""
    batch_size: int = 16
    """Training batch size."""
    eval_batch_size: int = 64
    """Batch size of the per-epoch evaluation pass and of extraction."""
    lr: float | None = None
    """Peak learning rate; None: 1e-3 for the frozen head, 5e-5 for fine-tuning."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_ratio: float = 0.1
    """Share of steps with linear warm-up."""
    seed: int = 0
    """Seed of initialisation, shuffling and dropout."""
    checkpoint_epochs: list[int] | None = None
    """Epochs whose weights and Adam state are kept (None: the first min(5, epochs))."""
    record_in_training: bool = False
    """Also record the training-pass probabilities (cartography's logit source)."""


@dataclass
class GradientConfig:
    dim: int = 1024
    """Projection dimension."""
    seed: int = 0
    """Projection seed (the same projection for every checkpoint)."""
    adam: bool = True
    """Adam-precondition training gradients with each checkpoint's optimizer state (LESS)."""
    target: Literal["auto", "lora", "classifier", "linear"] = "auto"
    """Which Linear layers' gradients represent an example; auto: what the model trains."""


@dataclass
class RepresentConfig:
    kinds: list[Literal["dynamics", "hidden", "gradients"]] = field(
        default_factory=lambda: ["dynamics", "hidden", "gradients"]
    )
    """Representation kinds to extract."""
    hidden_stages: list[Literal["pretrained", "early", "final"]] = field(
        default_factory=lambda: ["pretrained", "early", "final"]
    )
    """Hidden states from the pretrained model, the first kept checkpoint and the final model."""
    gradients: GradientConfig = field(default_factory=GradientConfig)
    """Per-sample gradient settings."""
    store: str | None = None
    """Representation store directory (None: <output>/store)."""


@dataclass
class ReferenceConfig:
    output: str = "runs/reference"
    """Run directory: reference run, store and exported representations."""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """What to train on."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Reference model."""
    training: TrainingConfig = field(default_factory=TrainingConfig)
    """Reference training."""
    represent: RepresentConfig = field(default_factory=RepresentConfig)
    """Representations to extract (datadiet represent)."""


def load_config(path: str | Path, cls: type[T]) -> T:
    """Read a YAML file into the dataclass ``cls`` (see :func:`from_dict`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file '{path}' does not exist.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{path}' is not valid YAML ({exc}).") from exc
    return from_dict(cls, data)


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the config'} must be a mapping. Got {type(data).__name__} instead.")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"Unknown key(s) {unknown} in {where or 'the config'}. Valid: {names}.")
    values = {
        key: _coerce(hints[key], value, f"{where}.{key}" if where else key) for key, value in data.items()
    }
    return cls(**values)


def to_dict(config: Any) -> dict[str, Any]:
    """The resolved config as plain data (to write next to outputs, so a run can be replayed)."""
    return dataclasses.asdict(config)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _coerce(options[0], value, where) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {list(args)}. Got {value!r} instead.")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list. Got {value!r} instead.")
        return [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    return _scalar(hint, value, where)


def _scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads 5e-5 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, str, bool, float) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where} must be {_article(hint)}. Got {value!r} instead.")
    return value


def _article(hint: type) -> str:
    return {int: "an int", str: "a string", bool: "true or false", float: "a number"}[hint]
