"""Small inputs of the right shape for every registered selector."""

from __future__ import annotations

import numpy as np

N = 60


def inputs_for(name: str, n: int = N, seed: int = 0) -> tuple[np.ndarray, dict]:
    """A representation of the shape ``name`` reads, plus the extra keyword arguments it needs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    if name == "forgetting":
        return (rng.random((n, 8)) < 0.6).astype(np.float32), {}
    if name == "el2n":
        logits = rng.normal(size=(n, 3))
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        return probs, {"labels": labels}
    if name == "less":
        return rng.normal(size=(n, 2, 5)), {"val": rng.normal(size=(7, 2, 5))}
    if name == "self_influence":
        return rng.normal(size=(n, 2, 5)), {}
    if name == "ccs":
        return rng.random(n), {}
    return rng.random((n, 6)), {}
