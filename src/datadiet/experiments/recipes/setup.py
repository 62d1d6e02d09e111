"""The recipe evidence study: which datasets, which candidate recipes, which budgets and seeds.

Every candidate recipe (:data:`CANDIDATES`, the built-ins of :mod:`datadiet.recipes`) is a selection of one
study per embedded classification task, against the study's random baseline, at the budgets of
:data:`BUDGETS` with the seeds of :data:`SEEDS`. The reference is the fast frozen-encoder path (the packaged
MiniLM and an MLP head, 5 epochs: what the recipes that read training dynamics or gradients need), and the
main model a linear head on the frozen embeddings, as in the demo and in ``datadiet prune``'s default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datadiet.config import StudyConfig, from_dict

BUDGETS: list[float] = [0.05, 0.1, 0.15, 0.3, 0.5, 0.7]
SEEDS: list[int] = list(range(6))
VERDICT_SEEDS: list[int] = list(range(12))
"""``auto`` and random get these seeds (the first six shared with the comparison): its verdict against the
target reads this study, where a 0.005 mean difference is about one standard error of noise, not two."""
CANDIDATES: tuple[str, ...] = (
    "auto", "typical", "class-balanced", "semdedup", "less-balanced", "hard-calibrated",
)  # fmt: skip
"""The recipes compared with random: ``auto`` and every built-in candidate it was chosen among."""
TARGET_MEAN = -0.005
"""``auto``'s mean paired difference to random must be at least this at every budget (macro-F1)."""
SMALL_BUDGET = 0.15
"""``auto`` must be reliably better than random at some budget up to this on at least two tasks."""


@dataclass(frozen=True)
class RecipeTask:
    """One task of the evidence study."""

    name: str
    title: str
    dataset: dict[str, Any]
    note: str


TASKS: dict[str, RecipeTask] = {
    "reuters_r8": RecipeTask(
        "reuters_r8", "Reuters R8", {"source": "reuters_r8"},
        "8 news topics, very imbalanced (2,556 'earn' against 37 'grain' of 4,937 training examples).",
    ),
    "newsgroups20": RecipeTask(
        "newsgroups20", "20 Newsgroups", {"source": "newsgroups20"},
        "20 newsgroup topics, near-balanced, 10,164 training examples.",
    ),
    "rotten_tomatoes": RecipeTask(
        "rotten_tomatoes", "Rotten Tomatoes", {"source": "rotten_tomatoes"},
        "binary sentiment of movie-review sentences, balanced, 10,202 training examples.",
    ),
}  # fmt: skip


def recipes_config(name: str, out: str, candidates: tuple[str, ...] = CANDIDATES) -> StudyConfig:
    """The study config of task ``name`` (validated like a user's YAML)."""
    task = TASKS[name]
    return from_dict(
        StudyConfig,
        {
            "output": out,
            "reference": {
                "dataset": task.dataset,
                "model": {"mode": "frozen", "head": "mlp", "max_length": 128},
                "training": {"epochs": 5},
            },
            "selections": [{"recipe": recipe} for recipe in candidates],
            "budgets": BUDGETS,
            "seeds": SEEDS,
            "main": {"head": "linear"},
        },
    )


def verdict_config(name: str, out: str, comparison: str) -> StudyConfig:
    """``auto`` against random with :data:`VERDICT_SEEDS`, on the reference run and store of the comparison
    study in ``comparison`` (nothing is trained or extracted again)."""
    cfg = recipes_config(name, out, candidates=("auto",))
    reference = cfg.reference.model_dump(mode="json", exclude_unset=True)
    reference.pop("output", None)
    reference["run_dir"] = f"{comparison}/reference"
    reference["represent"] = {**reference.get("represent", {}), "store": f"{comparison}/store"}
    return from_dict(
        StudyConfig,
        {"output": out, "reference": reference, "selections": [{"recipe": "auto"}], "budgets": BUDGETS,
         "seeds": VERDICT_SEEDS, "main": {"head": "linear"}},
    )  # fmt: skip
