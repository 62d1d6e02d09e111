"""The study config: the selections to compare, budgets, seeds, the main model, evaluation and metrics.

Built (from YAML or Python), a :class:`StudyConfig` is checked whole and resolved: budgets and seeds listed
once, selection names free, every selection's algorithm, parameters and representations valid for this
config (:mod:`datadiet.config.plan`), and the defaults that depend on the model mode or the dataset's task
filled in (``main.epochs``, ``main.lr``, ``main.head``, ``metrics``, ``primary_metric``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from datadiet.config.fields import Float, Int, List, Params, Section, Str
from datadiet.config.naming import check_selection_names
from datadiet.config.schema import Head, ReferenceConfig, TrainingBase, mode_defaults
from datadiet.errors import ConfigError

Metric = Literal["accuracy", "macro_f1", "rouge1", "rouge2", "rougeL"]
NINE_DECIMALS = " (equal to 9 decimals, the precision the report pairs budgets at)"


class SelectionSpec(Section):
    algorithm: Str
    """A registered selector (``datadiet algorithms``)."""
    representation: Str
    """A name from representations.json: dynamics/prob, dynamics/loss, hidden/final, gradients/train, ..."""
    name: Str | None = None
    """Display name; default algorithm@representation plus the balance/calibration suffix."""
    params: Params = Field(default_factory=dict)
    """The selector's own parameters."""
    balance: Literal["none", "stratified"] = "none"
    """Label balancing."""
    calibrate: Float | None = Field(default=None, ge=0, le=1)
    """Share of the budget taken by the scores (score-based selectors); the rest is uniform random."""
    weighting: Literal["none", "unbiased"] = "none"
    """With calibrate: importance weights on the random part, used as training weights."""
    val_representation: Str | None = None
    """Validation representation (less); default gradients/val."""

    def __init__(self, *args: Any, **values: Any) -> None:
        """``SelectionSpec("el2n", "dynamics/prob", name=...)``: algorithm and representation first."""
        values.update(zip(("algorithm", "representation"), args, strict=False))
        super().__init__(**values)

    setattr(__init__, "__pydantic_base_init__", True)  # noqa: B010  # nested data skips it

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        suffix = ("+balanced" if self.balance == "stratified" else "") + (
            f"+cal{self.calibrate:g}" if self.calibrate is not None else ""
        )
        return f"{self.algorithm}@{self.representation}{suffix}"


class MainConfig(TrainingBase):
    epochs: Int | None = Field(default=None, ge=1)
    """Epochs of main-model training on each subset; None: 20 for the frozen head, 3 for fine-tuning."""
    batch_size: Int = Field(default=32, ge=1)
    """Batch size."""
    head: Head | None = None
    """Frozen path: the main model's head (None: the reference's)."""


class OodConfig(Section):
    source: Str
    """Dataset name or path of the out-of-distribution evaluation set (same label names)."""
    split: Str = "test"
    """Its split."""


class StudyConfig(Section):
    output: Str = "runs/study"
    """Study directory: the reference run, store, cells, results and report."""
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    """Dataset, reference model, its training and the representations (its output is the study's)."""
    selections: List[SelectionSpec] = Field(default_factory=list)
    """The selections to compare; random, full data and dummy are always added."""
    budgets: List[Annotated[Float, Field(gt=0, le=1)]] = Field(
        default_factory=lambda: [0.05, 0.15, 0.3, 0.5, 0.7]
    )
    """Budget fractions."""
    seeds: List[Annotated[Int, Field(ge=0)]] = Field(default_factory=lambda: [0, 1, 2])
    """Seeds: each cell selects and trains with its seed."""
    main: MainConfig = Field(default_factory=MainConfig)
    """Main-model training on each subset (same model kind as the reference)."""
    test_split: Str = "test"
    """Split the main model is evaluated on."""
    test_slice: Int | None = Field(default=None, ge=1)
    """Evaluate on a seeded stratified slice of this many test examples (None: all)."""
    ood: OodConfig | None = None
    """Optional out-of-distribution evaluation set."""
    metrics: List[Metric] | None = None
    """Metrics of every evaluation; None: accuracy and macro_f1 (classification, multiple choice) or
    rouge1, rouge2 and rougeL (generation)."""
    primary_metric: Metric | None = None
    """Metric of the report's table and significance flags; None: macro_f1, accuracy (multiple choice) or
    rougeL (generation)."""

    @model_validator(mode="after")
    def _check_and_resolve(self) -> StudyConfig:
        from datadiet.config.plan import check_plan, check_task, task_metrics

        _check_listed_once(self)
        check_selection_names(self.selections)
        check_plan(self)
        task = self.reference.dataset.source_task()
        check_task(self, task)
        self.metrics, self.primary_metric = task_metrics(self.metrics, self.primary_metric, task)
        self.main = self.main.model_copy(update=main_resolved(self.main, self.reference))
        dataset = self.reference.dataset.model_copy()
        dataset._where = "reference.dataset"
        self.reference = self.reference.model_copy(update={"output": self.output, "dataset": dataset})
        return self


def main_resolved(main: MainConfig, reference: ReferenceConfig) -> dict[str, Any]:
    """The main model's settings that default to the reference's mode (epochs, lr) or head."""
    defaults = main_defaults(reference)
    return {
        key: default if getattr(main, key) is None else getattr(main, key)
        for key, default in defaults.items()
    }


def main_defaults(reference: ReferenceConfig) -> dict[str, Any]:
    """What ``main.epochs``, ``main.lr`` and ``main.head`` are when unset, for this reference config."""
    mode = mode_defaults(reference.model.mode)
    return {"epochs": mode["main_epochs"], "lr": mode["lr"], "head": reference.model.head}


def _check_listed_once(config: StudyConfig) -> None:
    """A study's budgets and seeds are each listed once (and at least one)."""
    for key, values, same in (
        ("budgets", config.budgets, lambda b: round(b, 9)),  # the report pairs budgets at 9 decimals
        ("seeds", config.seeds, lambda s: s),
    ):
        if not values:
            raise ConfigError(f"{key} is empty; list at least one.")
        first: dict[Any, int] = {}
        for i, value in enumerate(values):
            j = first.setdefault(same(value), i)
            if j != i:
                raise ConfigError(
                    f"{key}[{i}] = {value!r} repeats {key}[{j}] = {values[j]!r}"
                    + (NINE_DECIMALS if value != values[j] else "")
                    + f"; list each of the {key} once."
                )
