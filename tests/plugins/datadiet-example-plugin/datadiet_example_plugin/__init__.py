"""An example datadiet plugin: importing it registers one selector and one representation extractor.

- ``feature_norm`` (selector): keep the examples whose feature vector has the largest L2 norm.
- ``lengths`` (extractor kind): ``lengths/chars``, the number of characters of every training text.

Installed, its entry point (group ``datadiet.plugins``) makes both available to Python, the CLI
(``datadiet select --algorithm feature_norm``) and YAML configs (``reference.represent.kinds: [lengths]``).
"""

from __future__ import annotations

import numpy as np

from datadiet.representations.base import Representation
from datadiet.representations.extractors import EXTRACTORS, Extractor, Output
from datadiet.selection.base import ScoreSelector
from datadiet.selection.registry import SELECTORS


@SELECTORS.register("feature_norm")
class FeatureNorm(ScoreSelector):
    """Keep the ``k`` examples with the largest feature L2 norm (ties to the lower index); scale-free.

    >>> FeatureNorm().select(np.array([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0]]), 2).indices.tolist()
    [0, 2]
    """

    reads = "an (n_examples, d) array of features"
    input_ndim = (2,)

    def __init__(self) -> None:
        pass

    def _scores(self, values, *, labels, val, rng):
        peak = np.abs(values).max(axis=1).astype(np.float64)  # divided out first: no overflow, no underflow
        unit = values / np.where(peak > 0, peak, 1.0)[:, None]
        return peak * np.sqrt(np.einsum("ij,ij->i", unit, unit, dtype=np.float64))


@EXTRACTORS.register("lengths")
class Lengths(Extractor):
    """``lengths/chars``: characters per training text, an (n_examples, 1) features array."""

    outputs = (Output("lengths/chars"),)

    def extract(self, ctx):
        train = ctx.train
        provenance = {"stage": "lengths", "dataset": train.fingerprint()}

        def compute() -> Representation:
            values = np.array([[len(text)] for text in train.texts], dtype=np.float32)
            return Representation(values, "features", train.ids.astype(str))

        return ctx.cached("lengths/chars", provenance, compute)
