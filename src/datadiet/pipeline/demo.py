"""The demo study (``make demo`` / ``datadiet demo``): Reuters R8 with the embedded MiniLM on a CPU.

The reference model is the fast frozen-encoder path by default: MiniLM embeddings (computed once, cached)
and an MLP head trained for 5 epochs, which gives every representation kind (training dynamics, hidden states
before and after training, projected per-sample gradients of the head). The main model trains a linear head
on each subset. ``mode="lora"`` or ``"full"`` fine-tunes the encoder instead (much slower on a CPU).
"""

from __future__ import annotations

from typing import Any

from datadiet.config import StudyConfig, from_dict

DEMO_SELECTIONS: list[dict[str, Any]] = [
    {"algorithm": "hard_to_learn", "representation": "dynamics/prob"},
    {
        "algorithm": "hard_to_learn",
        "representation": "dynamics/prob",
        "calibrate": 0.5,
        "weighting": "unbiased",
    },
    {"algorithm": "prototypicality", "representation": "hidden/pretrained"},
    {"algorithm": "prototypicality", "representation": "hidden/final"},
    {"algorithm": "semdedup", "representation": "hidden/pretrained"},
    {"algorithm": "s2l", "representation": "dynamics/loss"},
    {"algorithm": "less", "representation": "gradients/train"},
    {"algorithm": "less", "representation": "gradients/train", "balance": "stratified"},
    {"algorithm": "self_influence", "representation": "gradients/train"},
]


def demo_config(out: str, *, mode: str = "frozen") -> StudyConfig:
    """The demo's study config (validated like a user's YAML)."""
    fine_tune = mode != "frozen"
    return from_dict(
        StudyConfig,
        {
            "output": out,
            "reference": {
                "dataset": {
                    "source": "reuters_r8",
                    **({"slice": 1000, "val_slice": 100} if fine_tune else {}),
                },
                "model": {"mode": mode, "head": "mlp", "max_length": 128},
                "training": {"epochs": 5 if not fine_tune else 3},
            },
            "selections": DEMO_SELECTIONS,
            "main": {"head": "linear"} if not fine_tune else {},
        },
    )
