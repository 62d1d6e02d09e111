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
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import yaml

if TYPE_CHECKING:
    from datadiet.data.dataset import Dataset

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or dict is malformed."""


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
    choices: str = "choices"
    """Options column (file sources, multiple choice)."""
    target: str = "target"
    """Target text column (file sources, generation)."""
    label_noise: float = 0.0
    """Flip this fraction of the training labels (seeded, recorded) to study robustness."""
    noise_seed: int = 0
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
    """Tokens per example (generation: prompt + target; the prompt is truncated first)."""
    max_new_tokens: int = 48
    """Generation: tokens generated per example at evaluation (greedy decoding)."""


@dataclass
class TrainingConfig:
    epochs: int = 5
    """Epochs of reference training (= trajectory length T)."""
    batch_size: int = 16
    """Training batch size."""
    eval_batch_size: int = 64
    """Batch size of the per-epoch evaluation pass and of hidden-state extraction."""
    lr: float | None = None
    """Peak learning rate; None: 1e-2 for the frozen head, 5e-5 for fine-tuning."""
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
    batch_size: int | None = None
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
    calibrate: float | None = None
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
    epochs: int | None = None
    """Epochs of main-model training on each subset; None: 20 for the frozen head, 3 for fine-tuning."""
    head: Literal["linear", "mlp"] | None = None
    """Frozen path: the main model's head (None: the reference's)."""
    batch_size: int = 32
    """Batch size."""
    lr: float | None = None
    """Peak learning rate; None: 1e-2 for the frozen head, 5e-5 for fine-tuning."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_ratio: float = 0.1
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
    budgets: list[float] = field(default_factory=lambda: [0.05, 0.15, 0.3, 0.5, 0.7])
    """Budget fractions."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds: each cell selects and trains with its seed."""
    main: MainConfig = field(default_factory=MainConfig)
    """Main-model training on each subset (same model kind as the reference)."""
    test_split: str = "test"
    """Split the main model is evaluated on."""
    test_slice: int | None = None
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


def _article(hint: type) -> str:
    return {int: "an int", str: "a string", bool: "true or false", float: "a number"}[hint]
