"""The reference config: dataset, model, training and representations, with every default resolved at load.

A mode-dependent default is resolved once, when the config is built (:class:`ReferenceConfig`'s
validator): ``training.lr`` (1e-2 for the frozen head, 5e-5 for fine-tuning, see :func:`mode_defaults`),
``training.checkpoint_epochs`` (the first ``min(5, epochs)``) and ``represent.gradients.batch_size``
(``training.batch_size``). ``represent.store`` stays ``None`` when unset, meaning ``<output>/store``,
so a moved output folder (``--output``) keeps its store.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from datadiet.config.fields import Bool, Float, Int, List, Section, Str
from datadiet.errors import ConfigError
from datadiet.representations.base import GradientTargetSetting

if TYPE_CHECKING:
    from datadiet.data.dataset import Dataset

Mode = Literal["frozen", "lora", "full"]
Head = Literal["linear", "mlp"]
Task = Literal["classification", "multiple_choice", "generation"]


def mode_defaults(mode: str) -> dict[str, Any]:
    """The training defaults that depend on ``model.mode``: the reference's lr and the main model's.

    >>> mode_defaults("frozen")
    {'lr': 0.01, 'main_epochs': 20}
    """
    frozen = mode == "frozen"
    return {"lr": 1e-2 if frozen else 5e-5, "main_epochs": 20 if frozen else 3}


class DatasetConfig(Section):
    source: Str = "reuters_r8"
    """Embedded dataset name (reuters_r8, newsgroups20, rotten_tomatoes, winogrande, xsum) or a
    jsonl/csv/parquet/HF path."""
    task: Task = "classification"
    """Task of a file source (embedded datasets carry their own): generation reads ``text`` -> ``target``,
    multiple choice reads ``text``, ``choices`` and the correct option's index in ``label``."""
    train_split: Str = "train"
    """Split used to train the reference model and to select from."""
    val_split: Str | None = "validation"
    """Split whose gradients LESS matches against (None: no validation representations)."""
    slice: Int | None = Field(default=None, ge=1)
    """Keep a stratified, seeded slice of this many training examples (None: all)."""
    val_slice: Int | None = Field(default=None, ge=1)
    """Likewise for the validation split."""
    seed: Int = Field(default=0, ge=0)
    """Seed of the slicing."""
    text: Str = "text"
    """Text column (file sources)."""
    text_pair: Str | None = None
    """Second text column for pair tasks (file sources)."""
    label: Str = "label"
    """Label column (file sources)."""
    id: Str | None = None
    """Id column (file sources); None numbers the rows."""
    choices: Str = "choices"
    """Options column (file sources, multiple choice)."""
    target: Str = "target"
    """Target text column (file sources, generation)."""
    label_noise: Float = Field(default=0.0, ge=0, lt=1)
    """Flip this fraction of the training labels (seeded, recorded) to study robustness."""
    noise_seed: Int = Field(default=0, ge=0)
    """Seed of the label flips."""
    _where: str = PrivateAttr("dataset")  # its YAML key, for messages (reference.dataset in a study)

    def source_task(self) -> str:
        """The task of the data, known without reading it: an embedded dataset's own, else :attr:`task`."""
        from datadiet.data.sources import dataset_task

        task = None if Path(self.source).exists() else dataset_task(self.source)  # as load_dataset decides
        return task or self.task

    def load(self, **overrides: Any) -> dict[str, Dataset]:
        """Every split of ``source`` with these column settings (``overrides`` go to ``load_dataset``).

        An error about the data names the config key to set (``dataset.label``, ``dataset.id``, ...), not
        the ``load_dataset`` argument: the key as the YAML spells it, e.g. ``reference.dataset.label`` in
        a study config.
        """
        from datadiet.data.dataset import DatasetError
        from datadiet.data.loaders import load_dataset

        columns = {"choices": self.choices} if self.task == "multiple_choice" else {}
        if self.task == "generation":
            columns = {"target": self.target}
        try:
            return load_dataset(
                self.source, text=self.text, text_pair=self.text_pair, label=self.label, id=self.id,
                task=self.task, **columns, **overrides,
            )  # fmt: skip
        except DatasetError as exc:
            raise DatasetError(_as_config_hint(str(exc), self._where)) from None
        except FileNotFoundError as exc:
            where = self._where
            raise FileNotFoundError(
                f"{where}.source: {exc} Set {where}.source to an existing file or folder, or to one of "
                "those names."
            ) from None


_LOADER_HINTS = (  # what load_dataset says -> what a config's user does instead ({w}: the dataset key)
    (r"Pass (\w+)=<one of them> to load_dataset\.", r"Set {w}.\1 to one of them."),
    (r"Pass label_names=\[\.\.\.\] to load_dataset listing every class\.",
     "Every class must occur in the train split ({w}.train_split): add examples of those classes there, "
     "or drop those rows."),
    (r"leave id=None\.", "set {w}.id: null (rows are then numbered)."),
    (r" or pass file_format=\.", " (set {w}.source to such a file)."),
    (r"ids must be unique\.$", "ids must be unique: set {w}.id to a column of unique values, or unset it so "
     "rows are numbered."),
)  # fmt: skip


def _as_config_hint(message: str, where: str) -> str:
    """A ``load_dataset`` error with its argument hints turned into the config keys to set."""
    for pattern, replacement in _LOADER_HINTS:
        message = re.sub(pattern, replacement.replace("{w}", where), message)
    return message


class LoraConfig(Section):
    r: Int = Field(default=8, ge=1)
    """LoRA rank."""
    alpha: Int = Field(default=16, ge=1)
    """LoRA scaling alpha."""
    dropout: Float = Field(default=0.0, ge=0, lt=1)
    """LoRA dropout."""


class ModelConfig(Section):
    path: Str = "embedded"
    """A local Hugging Face model directory, or "embedded" for the packaged MiniLM."""
    mode: Mode = "frozen"
    """frozen: cached encoder embeddings + trained head (fast CPU path); lora/full: fine-tune the encoder."""
    head: Head = "linear"
    """Head of the frozen path."""
    lora: LoraConfig = Field(default_factory=LoraConfig)
    """LoRA settings (mode: lora)."""
    max_length: Int = Field(default=128, ge=2)
    """Tokens per example (generation: prompt + target; the prompt is truncated first)."""
    max_new_tokens: Int = Field(default=48, ge=1)
    """Generation: tokens generated per example at evaluation (greedy decoding)."""


class TrainingBase(Section):
    """The training parameters the reference model and the study's main model share.

    A parameter added here is read by both (``reference.training`` and ``main``) and by the training loop
    (:class:`datadiet.training.TrainConfig` derives from :class:`TrainingConfig`): one field, one consumer.
    """

    epochs: Int = Field(default=5, ge=1)
    """Epochs of reference training (= trajectory length T)."""
    batch_size: Int = Field(default=16, ge=1)
    """Training batch size."""
    lr: Float | None = Field(default=None, gt=0)
    """Peak learning rate; None: 1e-2 for the frozen head, 5e-5 for fine-tuning."""
    weight_decay: Float = Field(default=0.01, ge=0)
    """AdamW weight decay."""
    warmup_ratio: Float = Field(default=0.1, ge=0, le=1)
    """Share of steps with linear warm-up."""


class TrainingConfig(TrainingBase):
    eval_batch_size: Int = Field(default=64, ge=1)
    """Batch size of the per-epoch evaluation pass and of hidden-state extraction."""
    seed: Int = Field(default=0, ge=0)
    """Seed of initialisation, shuffling and dropout."""
    checkpoint_epochs: List[Annotated[Int, Field(ge=1)]] | None = None
    """Epochs whose weights and Adam state are kept (None: the first min(5, epochs))."""
    record_in_training: Bool = False
    """Also record the training-pass probabilities (cartography's logit source)."""

    @model_validator(mode="after")
    def _check_epochs(self) -> TrainingConfig:
        late = [e for e in self.checkpoint_epochs or [] if e > self.epochs]
        if late:
            raise ConfigError(
                f"checkpoint_epochs must hold epochs in [1, epochs={self.epochs}]. Got {late} instead; "
                "lower them or raise epochs."
            )
        return self


class GradientConfig(Section):
    dim: Int = Field(default=1024, ge=1)
    """Projection dimension."""
    seed: Int = Field(default=0, ge=0)
    """Projection seed (the same projection for every checkpoint)."""
    adam: Bool = True
    """Adam-precondition training gradients with each checkpoint's optimizer state (LESS)."""
    target: GradientTargetSetting = "auto"
    """Which Linear layers' gradients represent an example; auto: what the model trains."""
    batch_size: Int | None = Field(default=None, ge=1)
    """Examples per extraction pass. It runs a backward pass, so its memory is about a training step's
    (SmolLM2 at 192 tokens: ~0.7 GB per example); None: training.batch_size."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Precision of the extraction's forward and backward passes: fp32, or bf16/fp16 autocast (faster on a
    GPU only; on a CPU they are slower). The per-example gradient products, the projection and the sums
    over layers and checkpoints stay float32, and the first batch is also run in fp32: a warning names
    the error when the reduced precision moves the projected gradients' Gram matrix by more than 1%."""

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The fields, ``precision`` left out at its default fp32: the dumps that key caches (a prune's
        identity) stay those of configs written before the field existed."""
        data = handler(self)
        if data.get("precision") == "fp32":
            del data["precision"]
        return data


def _extractor(kind: str) -> str:
    """A registered representation extractor (built-in or from a plugin), else a "did you mean" error."""
    from datadiet._core.checks import did_you_mean
    from datadiet.representations.extractors import EXTRACTORS

    names = EXTRACTORS.registered()
    if kind not in names:
        raise ConfigError(f" must be one of {names}. Got {kind!r} instead.{did_you_mean(kind, names)}")
    return kind


class RepresentConfig(Section):
    kinds: List[Annotated[Str, AfterValidator(_extractor)]] = Field(
        default_factory=lambda: ["dynamics", "hidden", "gradients"]
    )
    """Representation kinds to extract: registered extractors (dynamics, hidden, gradients, plugins')."""
    hidden_stages: List[Literal["pretrained", "early", "final"]] = Field(
        default_factory=lambda: ["pretrained", "early", "final"]
    )
    """Hidden states from the pretrained model, the first kept checkpoint and the final model."""
    gradients: GradientConfig = Field(default_factory=GradientConfig)
    """Per-sample gradient settings."""
    store: Str | None = None
    """Representation store directory (None: <output>/store, wherever the output is). Another run's store
    (e.g. runs/ref/store of an earlier datadiet represent, with reference.run_dir its runs/ref/reference)
    is read, not recomputed: an entry whose provenance matches is reused, only missing ones are added."""


class ReferenceConfig(Section):
    output: Str = "runs/reference"
    """Run directory: reference run, store and exported representations."""
    run_dir: Str | None = None
    """An existing finished reference run to read instead of training one: the ``reference`` folder in the
    output of an earlier ``datadiet represent`` (with represent.store set to its ``store`` folder, nothing is
    trained or extracted again), or a run recorded in your own transformers.Trainer run by
    datadiet.training.hf_trainer.DatadietCallback. The dataset settings must give the training split that
    run trained on, in the same order (refused otherwise)."""
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    """What to train on."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    """Reference model."""
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    """Reference training."""
    represent: RepresentConfig = Field(default_factory=RepresentConfig)
    """Representations to extract (datadiet represent)."""

    @model_validator(mode="after")
    def _resolve(self) -> ReferenceConfig:
        """Resolve the defaults that depend on other sections (once: a resolved value stays)."""
        t, g = self.training, self.represent.gradients
        lr = mode_defaults(self.model.mode)["lr"] if t.lr is None else t.lr
        epochs = list(range(1, min(5, t.epochs) + 1)) if t.checkpoint_epochs is None else t.checkpoint_epochs
        if (t.lr, t.checkpoint_epochs) != (lr, epochs):
            self.training = t.model_copy(update={"lr": lr, "checkpoint_epochs": epochs})
        if g.batch_size is None:
            gradients = g.model_copy(update={"batch_size": t.batch_size})
            self.represent = self.represent.model_copy(update={"gradients": gradients})
        return self
