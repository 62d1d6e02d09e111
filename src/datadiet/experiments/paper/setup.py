"""The runs behind docs/paper.md: which datasets, which selections, which budgets and seeds.

Each dataset gets one study (reference model, representations, main model retrained on each selection) and
one grid on that study's represent output (every representation x every selector). The reference is the fast
frozen-encoder path (the packaged MiniLM, an MLP head trained 5 epochs), as in the demo, so the whole
reproduction runs on a 2-core CPU. The study uses 5 seeds: the fewest at which our statistics call a
difference reliable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datadiet.config import StudyConfig, from_dict

GRID_BUDGETS: tuple[float, ...] = (0.05, 0.1, 0.3, 0.5)
GRID_SEEDS: tuple[int, ...] = (0, 1, 2)
STUDY_BUDGETS: list[float] = [0.05, 0.3]
STUDY_SEEDS: list[int] = [0, 1, 2, 3, 4]
OVERLAP_BUDGET = 0.3
"""The budget of the Figure 2b-style matrices and of the single-budget findings."""
CALIBRATION: dict[str, Any] = {"calibrate": 0.5, "weighting": "unbiased"}

PAPER_SELECTIONS: list[dict[str, Any]] = [
    {"algorithm": "hard_to_learn", "representation": "dynamics/prob"},
    {"algorithm": "hard_to_learn", "representation": "dynamics/prob", **CALIBRATION},
    {"algorithm": "el2n", "representation": "dynamics/class_probs"},
    {"algorithm": "el2n", "representation": "dynamics/class_probs", **CALIBRATION},
    {"algorithm": "less", "representation": "gradients/train"},
    {"algorithm": "less", "representation": "gradients/train", "balance": "stratified"},
    {"algorithm": "self_influence", "representation": "gradients/train"},
    {"algorithm": "semdedup", "representation": "hidden/pretrained"},
    {"algorithm": "prototypicality", "representation": "hidden/final"},
]
"""The study's selections: the score-based ones (plain and calibrated), LESS plain and balanced, and two
non-score ones."""


@dataclass(frozen=True)
class PaperDataset:
    """One dataset of the reproduction."""

    name: str
    title: str
    dataset: dict[str, Any]
    note: str
    study: dict[str, Any] = field(default_factory=dict)
    """Extra study keys (e.g. ``test_slice``)."""


PAPER_DATASETS: dict[str, PaperDataset] = {
    "reuters_r8": PaperDataset(
        "reuters_r8", "Reuters R8", {"source": "reuters_r8"},
        "8-class news topics, very imbalanced (the demo's dataset), all training examples.",
    ),
    "rotten_tomatoes": PaperDataset(
        "rotten_tomatoes", "Rotten Tomatoes (2,000-example slice)",
        {"source": "rotten_tomatoes", "slice": 2000, "val_slice": 300},
        "binary sentiment, like the paper's CAD; a seeded stratified slice of 2,000 training examples.",
        {"test_slice": 1000},
    ),
}  # fmt: skip


def paper_config(name: str, out: str, *, main_model: dict[str, Any] | None = None) -> StudyConfig:
    """The study config of dataset ``name`` (validated like a user's YAML)."""
    spec = PAPER_DATASETS[name]
    main: dict[str, Any] = {"head": "linear"}
    if main_model is not None:
        main = {"model": main_model}
    return from_dict(
        StudyConfig,
        {
            "output": out,
            "reference": {
                "dataset": spec.dataset,
                "model": {"mode": "frozen", "head": "mlp", "max_length": 128},
                "training": {"epochs": 5},
            },
            "selections": PAPER_SELECTIONS,
            "budgets": STUDY_BUDGETS,
            "seeds": STUDY_SEEDS,
            "main": main,
            **spec.study,
        },
    )
