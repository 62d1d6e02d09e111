"""Per-example representations (dynamics, hidden states, gradients, user features)."""

from datadiet.representations.base import KINDS, Representation, as_representation

__all__ = ["KINDS", "Representation", "as_representation"]
