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
FROZEN_REFERENCE: dict[str, Any] = {"mode": "frozen", "head": "mlp", "max_length": 128}
"""The fast CPU reference: cached MiniLM embeddings and an MLP head."""
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
    model: dict[str, Any] = field(
        default_factory=lambda: {"mode": "frozen", "head": "mlp", "max_length": 128}
    )
    """The reference model (default: the fast frozen path)."""
    epochs: int = 5
    """Reference training epochs."""
    grid_only: bool = False
    """Only the grid (representations and selections), no main-model study: for a reference too slow to
    retrain a main model of its kind on every cell on a CPU."""


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
    "winogrande": PaperDataset(
        "winogrande", "WinoGrande (2,000-example slice, grid only)",
        {"source": "winogrande", "slice": 2000, "val_slice": 300},
        "two-option pronoun resolution (BIG-bench); the reference fine-tunes MiniLM with LoRA (multiple "
        "choice has no frozen path), so only the grid runs: a LoRA main model per study cell is too slow on "
        "a CPU.",
        model={"mode": "lora", "max_length": 64}, epochs=3, grid_only=True,
    ),
}  # fmt: skip
DEFAULT_DATASETS: tuple[str, ...] = ("reuters_r8", "rotten_tomatoes", "winogrande")


MAIN_MODEL_DATASET = "rotten_tomatoes"
"""The dataset of the proxy -> main-model comparison."""
MAIN_MODEL: dict[str, Any] = {"mode": "lora", "max_length": 64}
"""The expensive main model: LoRA fine-tuning of the packaged MiniLM (the reference: the frozen proxy)."""
MAIN_MODEL_SELECTIONS = [
    s for s in PAPER_SELECTIONS
    if (s["algorithm"], s.get("balance"), "calibrate" in s) in {
        ("less", "stratified", False), ("semdedup", None, False), ("hard_to_learn", None, True),
        ("el2n", None, False),
    }
]  # fmt: skip
"""A few selections of every kind (balanced relevance, diversity, calibrated and plain scores)."""
MAIN_MODEL_BUDGETS: list[float] = STUDY_BUDGETS
MAIN_MODEL_SEEDS: list[int] = [0, 1, 2]


def paper_config(name: str, out: str) -> StudyConfig:
    """The study config of dataset ``name`` (validated like a user's YAML)."""
    spec = PAPER_DATASETS[name]
    return from_dict(
        StudyConfig,
        {
            "output": out,
            "reference": _reference(spec),
            "selections": PAPER_SELECTIONS,
            "budgets": STUDY_BUDGETS,
            "seeds": STUDY_SEEDS,
            "main": {"head": "linear"},
            **spec.study,
        },
    )


def main_model_config(reference_study: str, out: str) -> StudyConfig:
    """The proxy -> main-model study: the frozen reference of ``reference_study`` (reused: its run and store,
    nothing is trained or extracted again) selects, :data:`MAIN_MODEL` trains on each selection."""
    spec = PAPER_DATASETS[MAIN_MODEL_DATASET]
    reference = _reference(spec)
    reference["run_dir"] = f"{reference_study}/reference"
    reference["represent"] = {"store": f"{reference_study}/store"}
    return from_dict(
        StudyConfig,
        {
            "output": out,
            "reference": reference,
            "selections": MAIN_MODEL_SELECTIONS,
            "budgets": MAIN_MODEL_BUDGETS,
            "seeds": MAIN_MODEL_SEEDS,
            "main": {"model": MAIN_MODEL},
            **spec.study,
        },
    )


def _reference(spec: PaperDataset) -> dict[str, Any]:
    return {"dataset": dict(spec.dataset), "model": dict(spec.model), "training": {"epochs": spec.epochs}}
