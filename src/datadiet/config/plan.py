"""A study's plan checked at load, against the registries: selectors, their parameters, representations.

Each check names the YAML key (``selections[2].representation``) and runs while the config is built, so a
misspelled algorithm, representation or parameter is refused before any data is read or file written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from datadiet._core.checks import did_you_mean
from datadiet.errors import ConfigError

if TYPE_CHECKING:
    from datadiet.config.schema import ReferenceConfig
    from datadiet.config.study import SelectionSpec, StudyConfig

ROUGE = ("rouge1", "rouge2", "rougeL")


def check_plan(cfg: StudyConfig) -> None:
    """Refuse unknown selectors, bad selector parameters and representations the config never extracts."""
    import datadiet

    for i, spec in enumerate(cfg.selections):
        at = f"selections[{i}]"
        if spec.recipe is not None:
            check_recipe(spec.recipe, cfg.reference, f"{at}.recipe")
            continue
        try:
            datadiet.SELECTORS.get(spec.algorithm)
        except ValueError as exc:
            raise ConfigError(f"{at}.algorithm: {exc}") from None
        selector = build(spec, at)
        check_representation(spec.representation, cfg.reference, f"{at}.representation")
        if selector.needs_val:
            check_representation(spec.val_name, cfg.reference, f"{at}.val_representation")


def check_recipe(name: str, ref: ReferenceConfig, at: str) -> Any:
    """The registered recipe ``name``, refused unless ``ref`` extracts every representation it reads."""
    from datadiet.recipes import RECIPES

    try:
        recipe = RECIPES.get(name)
    except ValueError as exc:
        raise ConfigError(f"{at}: {exc}") from None
    for rep in recipe.reads():
        check_representation(rep, ref, f"{at} ({name!r} reads {rep})")
    return recipe


def build(spec: SelectionSpec, at: str) -> Any:
    """The selector ``spec`` names, built with its parameters (balance and calibration included)."""
    import datadiet

    balance = None if spec.balance == "none" else spec.balance
    try:
        return datadiet.build_selector(
            spec.algorithm, balance=balance, calibrate=spec.calibrate, weighting=spec.weighting, **spec.params
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{at}: {exc}") from None


def check_representation(name: str, ref: ReferenceConfig, at: str) -> None:
    """Refuse a representation name that does not exist or that ``ref`` does not extract.

    A name may end in a view (``gradients/train:flatten``): the base name is checked as any other, the view's
    syntax here, and a view is refused on a base that is not ``gradients/*`` (views read (N, C, d) stacks).
    """
    from datadiet.representations.extractors import extracted, representation_names  # lazy: no import cycle
    from datadiet.representations.views import split_view

    name, view = split_view(name)
    names = representation_names(ref)
    available = [n for n in names if extracted(n, ref)]
    if name not in names:
        raise ConfigError(
            f"{at}: Unknown representation {name!r}.{did_you_mean(name, names)} This config extracts "
            f"{available}."
        )
    if not extracted(name, ref):
        raise ConfigError(f"{at}: {name!r} is not extracted by this config; it needs {names[name]}.")
    if view is not None:
        check_view_of(name, view, at, ref)


def check_view_of(base: str, view: str, at: str, ref: ReferenceConfig) -> None:
    """Refuse an unknown view, a view of a representation that is not a gradient stack, or the view of a
    checkpoint that ``ref`` does not keep (when it trains the run: an existing ``run_dir`` is checked when
    the view is applied)."""
    from datadiet.representations.views import VIEW_SEP, VIEWS, check_view

    try:
        check_view(view)
    except ValueError as exc:
        raise ConfigError(f"{at}: {exc}") from None
    if not base.startswith("gradients/"):
        raise ConfigError(
            f"{at}: the view {view!r} does not fit {base!r}: views ({', '.join(VIEWS)}) read an (N, C, d) "
            f"stack of per-checkpoint gradients, so they apply to gradients/* only; write {base!r} without "
            f"'{VIEW_SEP}{view}'."
        )
    epochs = ref.training.checkpoint_epochs  # resolved at load; a run_dir's own are known only once read
    epoch = view.partition("=")[2]
    if view.startswith("checkpoint=") and ref.run_dir is None and epochs and int(epoch) not in epochs:
        raise ConfigError(
            f"{at}: the view {view!r} names epoch {epoch}, but the gradients are taken at the checkpoints of "
            f"epochs {list(epochs)} (reference.training.checkpoint_epochs); use one of them."
        )


def check_task(cfg: StudyConfig, task: str) -> None:
    """What only the dataset's task decides: a generation task has no classes and no labels."""
    if task != "generation":
        return
    for i, spec in enumerate(cfg.selections):
        at = f"selections[{i}]"
        if spec.recipe is not None:  # balancing is skipped without labels; the steps' selectors refuse
            continue
        if "dynamics/class_probs" in (spec.representation, spec.val_representation):
            raise ConfigError(f"{at}: a generation task has no class probabilities (dynamics/class_probs).")
        if build(spec, at).needs_labels:
            what = f"balance: {spec.balance}" if spec.balance != "none" else f"algorithm {spec.algorithm!r}"
            raise ConfigError(f"{at}: {what} needs class labels, which a generation task has none of.")


def task_metrics(metrics: Sequence[str] | None, primary: str | None, task: str) -> tuple[list[Any], Any]:
    """The study's metrics and primary metric, defaulting by task; refused unless they fit the task."""
    generation = task == "generation"
    metrics = list(metrics or (ROUGE if generation else ("accuracy", "macro_f1")))
    primary = primary or {"generation": "rougeL", "multiple_choice": "accuracy"}.get(task, "macro_f1")
    rouge = set(ROUGE)
    if generation != bool(set(metrics) & rouge) or (generation and not set(metrics) <= rouge):
        raise ConfigError(
            f"metrics {metrics} do not fit a {task} task; use rouge* for generation, else accuracy/macro_f1."
        )
    if primary not in metrics:
        raise ConfigError(f"primary_metric {primary!r} is not among the metrics {metrics}.")
    return metrics, primary
