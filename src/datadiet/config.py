"""Typed configs read from YAML: dataclasses with a docstring per field, validated on load.

``load_config(path, ReferenceConfig)`` reads YAML with ``yaml.safe_load`` and builds the dataclass,
refusing unknown keys (listing the valid ones), wrong types and numbers out of range with the path of the
offending field, e.g. "model.lora.r must be an int. Got 'eight' instead." or "training.batch_size must be
an int in the range [1, inf). Got 0 instead." A field's range is its ``metadata=_range(...)``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import yaml

if TYPE_CHECKING:
    from datadiet.data.dataset import Dataset

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or dict is malformed."""


def _range(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = True) -> dict:
    """Field metadata: the value (each item, for a list; ``None`` passes) must lie in this range."""
    return {"range": (low, high, low_open, high_open)}


@dataclass
class DatasetConfig:
    source: str = "reuters_r8"
    """Embedded dataset name (reuters_r8, newsgroups20, rotten_tomatoes, winogrande, xsum) or a
    jsonl/csv/parquet/HF path."""
    task: Literal["classification", "multiple_choice", "generation"] = "classification"
    """Task of a file source (embedded datasets carry their own): generation reads ``text`` -> ``target``,
    multiple choice reads ``text``, ``choices`` and the correct option's index in ``label``."""
    train_split: str = "train"
    """Split used to train the reference model and to select from."""
    val_split: str | None = "validation"
    """Split whose gradients LESS matches against (None: no validation representations)."""
    slice: int | None = field(default=None, metadata=_range(1))
    """Keep a stratified, seeded slice of this many training examples (None: all)."""
    val_slice: int | None = field(default=None, metadata=_range(1))
    """Likewise for the validation split."""
    seed: int = field(default=0, metadata=_range(0))
    """Seed of the slicing."""
    text: str = "text"
    """Text column (file sources)."""
    text_pair: str | None = None
    """Second text column for pair tasks (file sources)."""
    label: str = "label"
    """Label column (file sources)."""
    id: str | None = None
    """Id column (file sources); None numbers the rows."""
    choices: str = "choices"
    """Options column (file sources, multiple choice)."""
    target: str = "target"
    """Target text column (file sources, generation)."""
    label_noise: float = field(default=0.0, metadata=_range(0, 1))
    """Flip this fraction of the training labels (seeded, recorded) to study robustness."""
    noise_seed: int = field(default=0, metadata=_range(0))
    """Seed of the label flips."""

    def load(self, **overrides: Any) -> dict[str, Dataset]:
        """Every split of ``source`` with these column settings (``overrides`` go to ``load_dataset``)."""
        from datadiet.data.loaders import load_dataset

        columns = {"choices": self.choices} if self.task == "multiple_choice" else {}
        if self.task == "generation":
            columns = {"target": self.target}
        return load_dataset(
            self.source, text=self.text, text_pair=self.text_pair, label=self.label, id=self.id,
            task=self.task, **columns, **overrides,
        )  # fmt: skip


@dataclass
class LoraConfig:
    r: int = field(default=8, metadata=_range(1))
    """LoRA rank."""
    alpha: int = field(default=16, metadata=_range(1))
    """LoRA scaling alpha."""
    dropout: float = field(default=0.0, metadata=_range(0, 1))
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
    max_length: int = field(default=128, metadata=_range(2))
    """Tokens per example (generation: prompt + target; the prompt is truncated first)."""
    max_new_tokens: int = field(default=48, metadata=_range(1))
    """Generation: tokens generated per example at evaluation (greedy decoding)."""


@dataclass
class TrainingConfig:
    epochs: int = field(default=5, metadata=_range(1))
    """Epochs of reference training (= trajectory length T)."""
    batch_size: int = field(default=16, metadata=_range(1))
    """Training batch size."""
    eval_batch_size: int = field(default=64, metadata=_range(1))
    """Batch size of the per-epoch evaluation pass and of hidden-state extraction."""
    lr: float | None = field(default=None, metadata=_range(0, low_open=True))
    """Peak learning rate; None: 1e-2 for the frozen head, 5e-5 for fine-tuning."""
    weight_decay: float = field(default=0.01, metadata=_range(0))
    """AdamW weight decay."""
    warmup_ratio: float = field(default=0.1, metadata=_range(0, 1, high_open=False))
    """Share of steps with linear warm-up."""
    seed: int = field(default=0, metadata=_range(0))
    """Seed of initialisation, shuffling and dropout."""
    checkpoint_epochs: list[int] | None = field(default=None, metadata=_range(1))
    """Epochs whose weights and Adam state are kept (None: the first min(5, epochs))."""
    record_in_training: bool = False
    """Also record the training-pass probabilities (cartography's logit source)."""


@dataclass
class GradientConfig:
    dim: int = field(default=1024, metadata=_range(1))
    """Projection dimension."""
    seed: int = field(default=0, metadata=_range(0))
    """Projection seed (the same projection for every checkpoint)."""
    adam: bool = True
    """Adam-precondition training gradients with each checkpoint's optimizer state (LESS)."""
    target: Literal["auto", "lora", "classifier", "linear"] = "auto"
    """Which Linear layers' gradients represent an example; auto: what the model trains."""
    batch_size: int | None = field(default=None, metadata=_range(1))
    """Examples per extraction pass. It runs a backward pass, so its memory is about a training step's
    (SmolLM2 at 192 tokens: ~0.7 GB per example); None: training.batch_size."""


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
    run_dir: str | None = None
    """An existing finished reference run to read instead of training one (e.g. recorded in your own
    transformers.Trainer run by datadiet.integrations.DatadietCallback)."""
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    """What to train on."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Reference model."""
    training: TrainingConfig = field(default_factory=TrainingConfig)
    """Reference training."""
    represent: RepresentConfig = field(default_factory=RepresentConfig)
    """Representations to extract (datadiet represent)."""


@dataclass
class SelectionSpec:
    algorithm: str
    """A registered selector (``datadiet algorithms``)."""
    representation: str
    """A name from representations.json: dynamics/prob, dynamics/loss, hidden/final, gradients/train, ..."""
    name: str | None = None
    """Display name; default algorithm@representation plus the balance/calibration suffix."""
    params: dict[str, Any] = field(default_factory=dict)
    """The selector's own parameters."""
    balance: Literal["none", "stratified"] = "none"
    """Label balancing."""
    calibrate: float | None = field(default=None, metadata=_range(0, 1, high_open=False))
    """Share of the budget taken by the scores (score-based selectors); the rest is uniform random."""
    weighting: Literal["none", "unbiased"] = "none"
    """With calibrate: importance weights on the random part, used as training weights."""
    val_representation: str | None = None
    """Validation representation (less); default gradients/val."""

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        suffix = ("+balanced" if self.balance == "stratified" else "") + (
            f"+cal{self.calibrate:g}" if self.calibrate is not None else ""
        )
        return f"{self.algorithm}@{self.representation}{suffix}"


@dataclass
class MainConfig:
    epochs: int | None = field(default=None, metadata=_range(1))
    """Epochs of main-model training on each subset; None: 20 for the frozen head, 3 for fine-tuning."""
    head: Literal["linear", "mlp"] | None = None
    """Frozen path: the main model's head (None: the reference's)."""
    batch_size: int = field(default=32, metadata=_range(1))
    """Batch size."""
    lr: float | None = field(default=None, metadata=_range(0, low_open=True))
    """Peak learning rate; None: 1e-2 for the frozen head, 5e-5 for fine-tuning."""
    weight_decay: float = field(default=0.01, metadata=_range(0))
    """AdamW weight decay."""
    warmup_ratio: float = field(default=0.1, metadata=_range(0, 1, high_open=False))
    """Share of steps with linear warm-up."""


@dataclass
class OodConfig:
    source: str
    """Dataset name or path of the out-of-distribution evaluation set (same label names)."""
    split: str = "test"
    """Its split."""


@dataclass
class StudyConfig:
    output: str = "runs/study"
    """Study directory: the reference run, store, cells, results and report."""
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    """Dataset, reference model, its training and the representations (its output is ignored)."""
    selections: list[SelectionSpec] = field(default_factory=list)
    """The selections to compare; random, full data and dummy are always added."""
    budgets: list[float] = field(
        default_factory=lambda: [0.05, 0.15, 0.3, 0.5, 0.7],
        metadata=_range(0, 1, low_open=True, high_open=False),
    )
    """Budget fractions."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata=_range(0))
    """Seeds: each cell selects and trains with its seed."""
    main: MainConfig = field(default_factory=MainConfig)
    """Main-model training on each subset (same model kind as the reference)."""
    test_split: str = "test"
    """Split the main model is evaluated on."""
    test_slice: int | None = field(default=None, metadata=_range(1))
    """Evaluate on a seeded stratified slice of this many test examples (None: all)."""
    ood: OodConfig | None = None
    """Optional out-of-distribution evaluation set."""
    metrics: list[Literal["accuracy", "macro_f1", "rouge1", "rouge2", "rougeL"]] | None = None
    """Metrics of every evaluation; None: accuracy and macro_f1 (classification, multiple choice) or
    rouge1, rouge2 and rougeL (generation)."""
    primary_metric: Literal["accuracy", "macro_f1", "rouge1", "rouge2", "rougeL"] | None = None
    """Metric of the report's table and significance flags; None: macro_f1, accuracy (multiple choice) or
    rougeL (generation)."""


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
    values = {}
    for item in dataclasses.fields(cls):
        if item.name in data:
            path = f"{where}.{item.name}" if where else item.name
            values[item.name] = _coerce(hints[item.name], data[item.name], path)
            _check_range(item, values[item.name], path)
    config = cls(**values)
    _check_fields_together(config, where)
    return config


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
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{where} must be a mapping with string keys. Got {value!r} instead.")
        return dict(value)
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


def _check_range(item: dataclasses.Field, value: Any, where: str) -> None:
    """Refuse a number outside the field's range (metadata set by :func:`_range`)."""
    if "range" not in item.metadata or value is None:
        return
    low, high, low_open, high_open = item.metadata["range"]
    for i, number in enumerate(value if isinstance(value, list) else [value]):
        too_low = number <= low if low_open else number < low
        too_high = number >= high if high_open else number > high
        if too_low or too_high:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            at = f"{where}[{i}]" if isinstance(value, list) else where
            kind = "an int" if isinstance(number, int) else "a number"
            raise ConfigError(f"{at} must be {kind} in the range {interval}. Got {number!r} instead.")


def _check_fields_together(config: Any, where: str) -> None:
    """Checks that involve two fields of one section."""
    if isinstance(config, TrainingConfig) and config.checkpoint_epochs is not None:
        late = [e for e in config.checkpoint_epochs if e > config.epochs]
        if late:
            at = f"{where}.checkpoint_epochs" if where else "checkpoint_epochs"
            raise ConfigError(
                f"{at} must hold epochs in [1, epochs={config.epochs}]. Got {late} instead; "
                "lower them or raise epochs."
            )


def _article(hint: type) -> str:
    return {int: "an int", str: "a string", bool: "true or false", float: "a number"}[hint]
