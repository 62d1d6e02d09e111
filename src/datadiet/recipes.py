"""Recipes: named, documented combinations of representation + selector + balancing + calibration.

A :class:`Recipe` is what a user picks instead of eleven selectors on eight representations: one or more
:class:`Step` s, each an algorithm on a representation (a view allowed) with its label balancing, calibration
and parameters, chosen by the budget (the first step whose ``up_to`` is at least the kept fraction), and
optionally exact de-duplication first. Recipes live in the registry :data:`RECIPES`
(:func:`register_recipe` in a plugin), and run wherever a
selection does: ``datadiet prune --recipe``, ``datadiet select --recipe``, a study's ``{recipe: NAME}``.

``auto`` is the default of ``datadiet prune``. Its definition and the evidence it was chosen on are in
docs/recipes.md (``datadiet recipes-study`` regenerates that page).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from datadiet._core.checks import seed_of
from datadiet._core.chunks import take_rows
from datadiet._core.registry import Registry
from datadiet.errors import ParameterError
from datadiet.representations.base import Representation, as_representation
from datadiet.selection.base import Budget, Seed, Selection, jsonable, resolve_budget

RECIPES: Registry[Recipe] = Registry("recipe", builtins=("datadiet.recipes",))
"""Every recipe by name: the built-ins below and those of installed plugins."""

HIGH_COMPRESSION = 0.3
"""Budgets up to this kept fraction are "high compression" (Ayed & Hayou): the ``auto`` recipe's switch."""

COSTS = {  # representation prefix -> (tier, what computing it takes)
    "labels": (0, "nothing beyond the labels"),
    "hidden/pretrained": (1, "one forward pass of the pretrained encoder over the data (no training)"),
    "dynamics": (2, "training the reference model on the full set"),
    "hidden": (2, "training the reference model, then a forward pass"),
    "gradients": (3, "training the reference model, then per-sample gradients at every kept checkpoint"),
}


@dataclass(frozen=True)
class Step:
    """One selection of a recipe: ``algorithm`` on ``representation``, for kept fractions up to ``up_to``."""

    algorithm: str
    representation: str = "hidden/pretrained"
    """A representation name (``datadiet represent`` lists them); a view allowed (gradients/train:flatten)."""
    balance: str = "none"
    """Label balancing (none, stratified, sqrt); skipped, and recorded as skipped, on unlabeled data."""
    calibrate: float | None = None
    weighting: str = "none"
    params: Mapping[str, Any] = field(default_factory=dict)
    val_representation: str | None = None
    up_to: float = 1.0

    def reads(self) -> list[str]:
        """The representations this step reads (its validation one too, for selectors that need it)."""
        from datadiet.representations.extractors import val_counterpart
        from datadiet.selection.registry import SELECTORS

        names = [] if self.algorithm == "random" else [self.representation]
        if SELECTORS.get(self.algorithm).needs_val:
            names.append(self.val_representation or val_counterpart(self.representation))
        return names

    def describe(self) -> dict[str, Any]:
        return jsonable({k: v for k, v in asdict(self).items() if v not in (None, {}, "none")})


@dataclass(frozen=True)
class Recipe:
    """A named way to prune: its steps by budget, exact de-duplication first or not, and what it is for."""

    summary: str
    steps: tuple[Step, ...]
    dedup: bool = True
    """Drop exact duplicates (same text, text pair and label; the first copy stays) before selecting."""
    name: str = ""

    def __post_init__(self) -> None:
        if not self.steps or self.steps[-1].up_to < 1.0:
            raise ParameterError("A recipe's last step must cover every budget (up_to=1.0).")

    def step_for(self, fraction: float) -> Step:
        """The step that handles a kept fraction ``fraction`` of the examples."""
        return next(step for step in self.steps if fraction <= step.up_to + 1e-12)

    def reads(self) -> list[str]:
        """Every representation some step reads, in order."""
        return list(dict.fromkeys(name for step in self.steps for name in step.reads()))

    @property
    def brief(self) -> str:
        """The summary's first sentence."""
        return self.summary.split(". ")[0].rstrip(".") + "."

    def cost(self) -> str:
        """What running this recipe costs, by its most expensive representation."""
        return cost_of(self.reads())[1]

    def describe(self) -> dict[str, Any]:
        """The recipe's definition (it enters a study cell's hash, so a changed recipe reruns its cells)."""
        return {"dedup": self.dedup, "steps": [step.describe() for step in self.steps]}

    def fingerprint(self) -> str:
        text = repr(sorted(self.describe().items())).encode()
        return hashlib.sha256(text).hexdigest()[:16]


def cost_of(names: list[str]) -> tuple[int, str]:
    """The cost tier and description of computing the representations ``names``."""
    tiers = [COSTS["labels"]]
    for name in names:
        base = name.partition(":")[0]
        tiers.append(COSTS.get(base) or COSTS.get(base.partition("/")[0]) or (2, "a reference run"))
    return max(tiers, key=lambda tier: tier[0])


def needs_reference(recipe: Recipe) -> bool:
    """Whether the recipe reads anything that a trained reference model makes."""
    return cost_of(recipe.reads())[0] >= 2


@dataclass
class RecipeInputs:
    """What a recipe selects from: its representations by name, the labels, the exact duplicates."""

    representation: Callable[[str], Representation]
    n_examples: int
    labels: np.ndarray | None = None
    duplicate_of: np.ndarray | None = None
    """Per row, the index of its first exact copy (itself for a first copy); None: no de-duplication."""


def duplicate_groups(keys: list[str]) -> np.ndarray:
    """Per row, the index of the first row with the same key.

    >>> duplicate_groups(["a", "b", "a", "c", "b"]).tolist()
    [0, 1, 0, 3, 1]
    """
    first: dict[str, int] = {}
    return np.asarray([first.setdefault(key, i) for i, key in enumerate(keys)], dtype=np.int64)


def dataset_duplicates(ds: Any) -> np.ndarray:
    """:func:`duplicate_groups` of a dataset's examples: same text, text pair, choices, target and label."""
    parts = [ds.texts, ds.text_pairs, getattr(ds, "choices", None), getattr(ds, "targets", None), ds.labels]
    columns = [list(map(repr, part)) for part in parts if part is not None]
    keys = ["\x1f".join(values) for values in zip(*columns, strict=True)] if columns else []
    return duplicate_groups(keys)


def select_recipe(recipe: Recipe | str, inputs: RecipeInputs, budget: Budget, *, seed: Seed = 0) -> Selection:
    """Select ``budget`` of ``inputs.n_examples`` examples with ``recipe`` (a name or a :class:`Recipe`).

    Exactly ``floor(budget * N)`` (or ``budget``) examples are kept. With ``dedup``, later exact copies are
    left out first; only when the budget exceeds the distinct examples are copies added back (earliest
    first). A balancing step on unlabeled data runs without balancing (recorded in the selection), and one
    whose budget is smaller than the number of classes is refused.
    """
    import datadiet

    recipe = RECIPES.get(recipe) if isinstance(recipe, str) else recipe
    check_recipe_inputs(recipe, inputs)
    n = inputs.n_examples
    k = resolve_budget(budget, n)
    step = recipe.step_for(k / n)
    pool = np.arange(n)
    if recipe.dedup and inputs.duplicate_of is not None:
        pool = np.flatnonzero(inputs.duplicate_of == np.arange(n))
    labels = None if inputs.labels is None else np.asarray(inputs.labels)
    balance = step.balance
    notes: dict[str, Any] = {}
    if balance != "none" and labels is None:
        balance, notes["balance_skipped"] = "none", "the data has no labels"
    check_budget(recipe, min(k, len(pool)), n, None if labels is None else labels[pool])
    k_pool = min(k, len(pool))
    rep = _read(inputs, step.representation) if step.algorithm != "random" else None
    if rep is None:
        rep = Representation(np.zeros((n, 1), np.float32), "features")
    val = None
    if datadiet.SELECTORS.get(step.algorithm).needs_val:
        val = _read(inputs, step.reads()[-1])
    sub = rep if len(pool) == n else _rows(rep, pool)
    selection = datadiet.select(
        step.algorithm,
        sub,
        k_pool,
        labels=None if labels is None else labels[pool],
        val=val,
        seed=seed,
        balance=None if balance == "none" else balance,
        calibrate=step.calibrate,
        weighting=step.weighting,
        **dict(step.params),
    )
    indices, weights = pool[selection.indices], selection.weights
    refill = np.setdiff1d(np.arange(n), pool)[: k - k_pool]
    if len(refill):
        indices = np.concatenate([indices, refill])
        weights = None if weights is None else np.concatenate([weights, np.ones(len(refill))])
    order = np.argsort(indices, kind="stable")
    meta = {
        **{
            key: value for key, value in selection.meta.items() if key not in ("budget", "n_examples", "seed")
        },
        "recipe": recipe.name,
        "recipe_step": step.describe(),
        "duplicates_dropped": int(n - len(pool)) - len(refill),
        **notes,
        "seed": seed_of(seed),
        "budget": k,
        "n_examples": n,
    }
    return Selection(indices[order], None, None if weights is None else weights[order], meta)


def check_recipe_inputs(recipe: Recipe, inputs: RecipeInputs) -> None:
    """Refuse data a recipe cannot run on, before anything is read: labels that do not fit, or duplicates."""
    n = inputs.n_examples
    for what, array in (("labels", inputs.labels), ("duplicate_of", inputs.duplicate_of)):
        if array is not None and len(array) != n:
            raise ParameterError(f"recipe {recipe.name!r}: {what} has {len(array)} rows, the data {n}.")


def check_budget(recipe: Recipe, k: int, n: int, labels: np.ndarray | None) -> None:
    """Refuse a budget of ``k`` of ``n`` that the recipe's balancing step cannot honour (fewer rows than
    classes); call it before computing anything."""
    step = recipe.step_for(k / n)
    if step.balance == "none" or labels is None:
        return
    n_classes = len(np.unique(labels))
    if k < n_classes:
        raise ParameterError(
            f"recipe {recipe.name!r}: budget {k} is smaller than the {n_classes} classes, so balancing "
            f"cannot keep an example of each; raise the budget to at least {n_classes}."
        )


def _read(inputs: RecipeInputs, name: str) -> Representation:
    rep = as_representation(inputs.representation(name), name=name)
    if len(rep.values) != inputs.n_examples and not name.endswith("/val") and "/val:" not in name:
        raise ParameterError(
            f"representation {name!r} has {len(rep.values)} rows but the data has {inputs.n_examples}."
        )
    return rep


def _rows(rep: Representation, rows: np.ndarray) -> Representation:
    ids = None if rep.ids is None else np.asarray(rep.ids)[rows]
    return Representation(take_rows(rep.values, rows), rep.kind, ids, dict(rep.meta))


# --- the built-in recipes ----------------------------------------------------------------------------
def register_recipe(name: str, recipe: Recipe) -> Recipe:
    """Register ``recipe`` under ``name`` (what a plugin calls); returns it with its ``name`` set."""
    named = dataclasses.replace(recipe, name=name)
    RECIPES.register(name, named)
    return named


register_recipe(
    "auto",
    Recipe(
        "Typical examples per class up to 30% kept, uniform random above. Up to 30%: the member nearest "
        "the centroid of each of k k-means clusters of the pretrained embeddings, per class with "
        "square-root class budgets (coverage of every class's modes; rare classes get more than their "
        "share); above: uniform random, near optimal there (Ayed & Hayou), and the only candidate "
        "reliably better on two tasks gained under 0.01 macro-F1 and trains a reference model. Exact "
        "duplicates dropped first. The default (docs/recipes.md).",
        (
            Step("typical", "hidden/pretrained", balance="sqrt", up_to=HIGH_COMPRESSION),
            Step("random"),
        ),
    ),
)
register_recipe(
    "typical",
    Recipe(
        "The typical member of each of k k-means clusters of the pretrained embeddings, per class with "
        "square-root class budgets, at every budget. Exact duplicates dropped first.",
        (Step("typical", "hidden/pretrained", balance="sqrt"),),
    ),
)
register_recipe(
    "class-balanced",
    Recipe(
        "Uniform random per class with square-root class budgets: rare classes get more than their share. "
        "Exact duplicates dropped first.",
        (Step("random", "hidden/pretrained", balance="sqrt"),),
    ),
)
register_recipe(
    "semdedup",
    Recipe(
        "SemDeDup on the pretrained embeddings (the least redundant examples), stratified by class.",
        (Step("semdedup", "hidden/pretrained", balance="stratified"),),
        dedup=False,
    ),
)
register_recipe(
    "less-balanced",
    Recipe(
        "LESS on the reference model's projected gradients (the examples most aligned with the validation "
        "split's gradients), stratified by class.",
        (Step("less", "gradients/train", balance="stratified"),),
        dedup=False,
    ),
)
register_recipe(
    "hard-calibrated",
    Recipe(
        "Hard-to-learn (lowest mean confidence over the reference's epochs), calibrated (Ayed & Hayou): half "
        "the budget by score, half uniform with unbiased importance weights.",
        (Step("hard_to_learn", "dynamics/prob", calibrate=0.5, weighting="unbiased"),),
        dedup=False,
    ),
)
