"""The study config: the selections to compare, budgets, seeds, the main model, evaluation and metrics.

Built (from YAML or Python), a :class:`StudyConfig` is checked whole and resolved: budgets and seeds listed
once, selection names free, every selection's algorithm, parameters and representations valid for this
config (:mod:`datadiet.config.plan`), and the defaults that depend on the model mode or the dataset's task
filled in (``main.epochs``, ``main.lr``, ``main.head``, ``metrics``, ``primary_metric``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from datadiet.config.fields import Float, Int, List, Params, Section, Str
from datadiet.config.naming import check_selection_names
from datadiet.config.schema import Head, ModelConfig, ReferenceConfig, TrainingBase, mode_defaults
from datadiet.errors import ConfigError

Metric = Literal["accuracy", "macro_f1", "rouge1", "rouge2", "rougeL"]
NINE_DECIMALS = " (equal to 9 decimals, the precision the report pairs budgets at)"


class SelectionSpec(Section):
    algorithm: Str = ""
    """A registered selector (``datadiet algorithms``); or set ``recipe`` instead."""
    representation: Str = ""
    """A name from representations.json: dynamics/prob, dynamics/loss, hidden/final, gradients/train, ...;
    a gradients name may end in a view (gradients/train:flatten, :checkpoint=E, :lrmean)."""
    name: Str | None = None
    """Display name; default algorithm@representation plus the balance/calibration suffix."""
    params: Params = Field(default_factory=dict)
    """The selector's own parameters."""
    balance: Literal["none", "stratified", "sqrt"] = "none"
    """Label balancing: per-class budgets proportional to class size (stratified) or to its square root,
    capped at the class size (sqrt)."""
    calibrate: Float | None = Field(default=None, ge=0, le=1)
    """Share of the budget taken by the scores (score-based selectors); the rest is uniform random."""
    weighting: Literal["none", "unbiased"] = "none"
    """With calibrate: importance weights on the random part, used as training weights."""
    val_representation: Str | None = None
    """Validation representation (less); default the representation's validation counterpart (gradients/train
    -> gradients/val, hidden/final -> hidden/final/val, a view kept)."""
    recipe: Str | None = Field(default=None, exclude_if=lambda recipe: recipe is None)
    """A registered recipe (``datadiet recipes``: auto, typical, ...) instead of algorithm and
    representation: it fixes its own representation, selector, balancing and calibration."""

    @model_validator(mode="after")
    def _algorithm_or_recipe(self) -> SelectionSpec:
        if self.recipe is None:
            if not self.algorithm:
                raise ConfigError(" needs an algorithm (with its representation) or a recipe.")
            return self
        fixed = ("algorithm", "representation", "params", "balance", "calibrate", "weighting",
                 "val_representation")  # fmt: skip
        defaults = {key: type(self).model_fields[key].get_default(call_default_factory=True) for key in fixed}
        given = [key for key in fixed if getattr(self, key) != defaults[key]]  # a resolved dump has defaults
        if given:
            raise ConfigError(
                f" sets recipe {self.recipe!r} and {given}; a recipe fixes those itself. Drop {given}, or "
                "drop recipe and give algorithm and representation."
            )
        return self

    def __init__(self, *args: Any, **values: Any) -> None:
        """``SelectionSpec("el2n", "dynamics/prob", name=...)``: algorithm and representation first."""
        values.update(zip(("algorithm", "representation"), args, strict=False))
        super().__init__(**values)

    setattr(__init__, "__pydantic_base_init__", True)  # noqa: B010  # nested data skips it

    @property
    def val_name(self) -> str:
        """The validation representation: ``val_representation``, else the representation's counterpart.

        Resolved here, not filled into the field, so the cell hash (``model_dump()``) stays that of old
        studies.

        >>> SelectionSpec("less", "hidden/final").val_name, SelectionSpec("less", "gradients/train").val_name
        ('hidden/final/val', 'gradients/val')
        """
        from datadiet.representations.extractors import val_counterpart

        return self.val_representation or val_counterpart(self.representation)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.recipe is not None:
            return f"recipe:{self.recipe}"
        balanced = {"stratified": "+balanced", "sqrt": "+sqrt"}.get(self.balance, "")
        suffix = balanced + (f"+cal{self.calibrate:g}" if self.calibrate is not None else "")
        return f"{self.algorithm}@{self.representation}{suffix}"


class MainConfig(TrainingBase):
    epochs: Int | None = Field(default=None, ge=1)
    """Epochs of main-model training on each subset; None: 20 for the frozen head, 3 for fine-tuning."""
    batch_size: Int = Field(default=32, ge=1)
    """Batch size."""
    head: Head | None = None
    """Frozen path: the main model's head (None: main.model's head when main.model is set, else the
    reference's)."""
    model: ModelConfig | None = Field(default=None, exclude_if=lambda model: model is None)
    """The main model, when it is not the reference's kind: the fields of reference.model (path, mode, head,
    lora, max_length, ...), e.g. a frozen MiniLM proxy selects and a LoRA encoder is trained on each subset.
    None: the reference's model with main.head. The epochs and lr defaults follow this model's mode."""


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
    """Main-model training on each subset (the reference's model kind unless main.model names another)."""
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
        self.main = self.main.model_copy(update=main_resolved(self.main, self.reference, task))
        dataset = self.reference.dataset.model_copy()
        dataset._where = "reference.dataset"
        self.reference = self.reference.model_copy(update={"output": self.output, "dataset": dataset})
        return self


def main_resolved(main: MainConfig, reference: ReferenceConfig, task: str | None = None) -> dict[str, Any]:
    """The main model's settings that default to its mode (epochs, lr) or head; with ``task`` (the dataset's),
    a ``main.model`` that no model backend serves for it is refused."""
    defaults = main_defaults(reference, main)
    resolved = {
        key: default if getattr(main, key) is None else getattr(main, key)
        for key, default in defaults.items()
    }
    if main.model is not None:
        if main.head is not None and "head" in main.model.model_fields_set and main.head != main.model.head:
            raise ConfigError(
                f"main.head {main.head!r} and main.model.head {main.model.head!r} disagree; set only one."
            )
        if task is not None:
            _check_main_model(main.model, task)
        resolved["model"] = main.model.model_copy(update={"head": resolved["head"]})
    return resolved


def main_defaults(reference: ReferenceConfig, main: MainConfig | None = None) -> dict[str, Any]:
    """What ``main.epochs``, ``main.lr`` and ``main.head`` are when unset: from ``main.model`` when it is set,
    else from the reference's model."""
    model = reference.model if main is None or main.model is None else main.model
    mode = mode_defaults(model.mode)
    return {"epochs": mode["main_epochs"], "lr": mode["lr"], "head": model.head}


def _check_main_model(model: ModelConfig, task: str) -> None:
    """Refuse a main model that no registered model backend serves for ``task``, or a missing model folder."""
    import datadiet  # the MODELS registry, plugins' backends included (config does not import models)

    backends = [datadiet.MODELS.get(name) for name in datadiet.MODELS.registered()]
    if not any(task in b.tasks and model.mode in b.modes for b in backends):
        modes = list(dict.fromkeys(m for b in backends if task in b.tasks for m in b.modes))
        raise ConfigError(
            f"main.model.mode: {model.mode!r} has no model backend for a {task} task; "
            f"set main.model.mode to {' or '.join(map(repr, modes)) or 'a mode a registered backend serves'}."
        )
    if model.path != "embedded" and not Path(model.path).is_dir():
        raise ConfigError(
            f"main.model.path: '{model.path}' is not a folder; set it to a local Hugging Face model folder "
            "or to 'embedded' (the packaged model)."
        )


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
