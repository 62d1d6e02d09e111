"""Seeded label noise: flip a fraction of the training labels to study robustness."""

from __future__ import annotations

import math

import numpy as np

from datadiet.data.dataset import Dataset
from datadiet.errors import ParameterError


def flip_labels(ds: Dataset, fraction: float, *, seed: int = 0) -> tuple[Dataset, np.ndarray]:
    """Flip ``floor(fraction * n)`` uniformly chosen labels, each to a uniformly chosen *other* class.

    Returns the noisy dataset (its ``meta["label_noise"]`` records the fraction, seed and count) and the
    boolean mask of flipped examples.

    >>> ds = Dataset.from_records([{"text": str(i), "label": i % 2} for i in range(10)])
    >>> noisy, flipped = flip_labels(ds, 0.3, seed=0)
    >>> int(flipped.sum()), bool(np.all(noisy.labels[flipped] != ds.labels[flipped]))
    (3, True)
    """
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction < 1:
        raise ParameterError(
            f"The 'label_noise' parameter must be a float in [0, 1). Got {fraction!r} instead."
        )
    if ds.labels is None or ds.task != "classification":
        raise ParameterError("label noise needs a labelled classification dataset.")
    if ds.n_classes < 2:
        raise ParameterError("label noise needs at least 2 classes to flip between.")
    rng = np.random.default_rng(seed)
    n_flip = math.floor(round(fraction * len(ds), 9))
    chosen = rng.choice(len(ds), n_flip, replace=False)
    labels = ds.labels.copy()
    shift = rng.integers(1, ds.n_classes, n_flip)  # never 0, so the new class always differs
    labels[chosen] = (labels[chosen] + shift) % ds.n_classes
    flipped = np.zeros(len(ds), dtype=bool)
    flipped[chosen] = True
    meta = {**ds.meta, "label_noise": {"fraction": fraction, "seed": seed, "n_flipped": n_flip}}
    noisy = Dataset(ds.ids, ds.texts, labels, ds.label_names, ds.task, ds.text_pairs, ds.choices, ds.targets,
                    ds.name, ds.split, meta)  # fmt: skip
    return noisy, flipped
