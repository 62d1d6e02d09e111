"""The `ReferenceModel` contract: what training, representation extraction and studies need from a model.

A backend wraps a ``torch.nn.Module`` (``module``) and knows how to turn dataset rows into a batch
(``collate``) and a batch into class logits (``forward_logits``). Everything else (inference logits,
per-example losses, the trainable state and its round trip) is shared here.

Batches are ``dict[str, torch.Tensor]`` holding the model inputs and ``"labels"`` (class indices; absent
only for an unlabeled split, which can still give logits and hidden states), built on the CPU;
:meth:`ReferenceModel.to_device` moves them to the module's device.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from datadiet.data.dataset import Dataset
from datadiet.errors import ParameterError
from datadiet.representations.base import GradientTarget


class ReferenceModel(ABC):
    """A classifier whose trained parameters, logits and hidden states datadiet can read.

    Subclasses set ``module`` and implement :meth:`collate`, :meth:`forward_logits`,
    :meth:`pooled_hidden`, :meth:`describe` and :meth:`gradient_target`.

    Attributes
    ----------
    module : torch.nn.Module
        The network; its parameters with ``requires_grad=True`` are the trained ones.
    """

    module: torch.nn.Module

    @abstractmethod
    def collate(self, ds: Dataset, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """The batch of rows ``indices`` of ``ds``: model inputs plus ``"labels"`` of shape (batch,).

        ``"labels"`` is left out when ``ds`` has no labels.
        """

    @abstractmethod
    def forward_logits(self, module: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Class logits of shape (batch, n_labels) computed with ``module`` (in its current mode)."""

    @abstractmethod
    def pooled_hidden(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """What the classification layer reads, shape (batch, hidden), in eval mode without gradients."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-serialisable provenance: backend, weights fingerprint, head, LoRA settings, n_labels."""

    @abstractmethod
    def gradient_target(self) -> GradientTarget:
        """Which Linear layers' gradients represent an example.

        ``"lora"`` (the LoRA factors), ``"classifier"`` (the last Linear layer, named ``classifier``) or
        ``"linear"`` (every trained Linear layer).
        """

    def input_fingerprint(self, ds: Dataset) -> str | None:
        """A fingerprint of model inputs that ``ds`` itself does not hold (e.g. precomputed embeddings).

        ``None`` (the default) when the inputs are fully determined by ``ds``.
        """
        return None

    @property
    def device(self) -> torch.device:
        """The device of the module's first parameter."""
        return next(self.module.parameters()).device

    def to_device(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``batch`` with every tensor moved to :attr:`device`."""
        device = self.device
        return {key: value.to(device) for key, value in batch.items()}

    def logits(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Class logits of shape (batch, n_labels), in eval mode without gradients."""
        with inference_mode(self.module):
            return self.forward_logits(self.module, self.to_device(batch))

    normalize_gradients: bool = False
    """L2-normalise each example's projected gradient (generation: gradient norms fall with length)."""

    def example_stats(
        self, module: torch.nn.Module, batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """What the dynamics recorder keeps per example, each of shape (batch,).

        ``loss`` (differentiable), ``prob`` (probability of the correct class or option; generation
        backends give the inverse perplexity) and ``correct`` (0/1). This default reads class logits.
        """
        if "labels" not in batch:
            raise ParameterError("The batch has no 'labels' (an unlabeled split); statistics need labels.")
        logits = self.forward_logits(module, batch).float()
        picked = torch.log_softmax(logits, dim=-1).gather(1, batch["labels"][:, None])[:, 0]
        correct = (logits.argmax(-1) == batch["labels"]).float()
        return {"loss": -picked, "prob": picked.exp(), "correct": correct}

    def per_example_loss(self, module: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of every example, shape (batch,), differentiable w.r.t. ``module``'s parameters.

        ``module`` is passed explicitly so gradient extraction can call this with the module it hooks; the
        caller chooses its mode (train/eval) and whether gradients are recorded.
        """
        if "labels" not in batch:
            raise ParameterError("The batch has no 'labels' (an unlabeled split); a loss needs labels.")
        logits = self.forward_logits(module, batch)
        return F.cross_entropy(logits.float(), batch["labels"], reduction="none")

    def trainable_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """``(name, parameter)`` for every parameter with ``requires_grad``, in module order."""
        return [(name, p) for name, p in self.module.named_parameters() if p.requires_grad]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Name -> detached CPU copy of every trained parameter (what a checkpoint stores)."""
        return {name: p.detach().cpu().clone().contiguous() for name, p in self.trainable_parameters()}

    def load_trainable_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy ``state`` into the trained parameters; names and shapes must match exactly."""
        params = dict(self.trainable_parameters())
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if missing or unexpected:
            raise ParameterError(
                f"The trainable state does not match this model: missing {missing[:3]} ({len(missing)} in "
                f"all), unexpected {unexpected[:3]} ({len(unexpected)} in all). Load a state saved from a "
                "model built with the same backend, LoRA settings and number of labels."
            )
        with torch.no_grad():
            for name, param in params.items():
                value = state[name]
                if tuple(value.shape) != tuple(param.shape):
                    raise ParameterError(
                        f"Parameter {name!r} has shape {tuple(param.shape)} but the state holds "
                        f"{tuple(value.shape)}; the state comes from a different architecture."
                    )
                param.copy_(value.to(device=param.device, dtype=param.dtype))


@contextmanager
def inference_mode(module: torch.nn.Module) -> Iterator[None]:
    """Run ``module`` in eval mode without gradients, restoring its previous mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def cuda_devices() -> list[int]:
    """Indices of the visible CUDA devices (empty on a CPU-only machine)."""
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


@contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """Seed torch's RNGs for the block only; the global RNG states are restored on exit."""
    with torch.random.fork_rng(devices=cuda_devices()):
        torch.manual_seed(seed)
        yield


def add_labels(batch: dict[str, torch.Tensor], ds: Dataset, idx: np.ndarray) -> dict[str, torch.Tensor]:
    """``batch`` with ``"labels"`` (int64, rows ``idx``) added when ``ds`` has labels."""
    if ds.labels is not None:
        batch["labels"] = torch.from_numpy(np.ascontiguousarray(ds.labels[idx], dtype=np.int64))
    return batch


def text_lengths(ds: Dataset) -> np.ndarray:
    """Characters per example (text plus pair), shape (n_examples,): a cheap proxy to batch by length."""
    pairs = ds.text_pairs or [""] * len(ds)
    return np.array(
        [len(text) + len(pair) for text, pair in zip(ds.texts, pairs, strict=True)], dtype=np.int64
    )


CHARS_PER_TOKEN_LIMIT = 32
"""Texts are cut to ``max_length * 32`` characters before tokenizing: no token of natural-language text is
longer, and a fast tokenizer otherwise reads a whole 10 MB field (about 20 s) to keep its first tokens."""


def clip_text(text: str, max_tokens: int, *, keep: Literal["start", "end"] = "start") -> str:
    """``text`` cut to at most ``max_tokens * CHARS_PER_TOKEN_LIMIT`` characters, from its start or its end.

    >>> clip_text("abcdef" * 100, 1), len(clip_text("x" * 100, 2, keep="end"))
    ('abcdefabcdefabcdefabcdefabcdefab', 64)
    """
    limit = max_tokens * CHARS_PER_TOKEN_LIMIT
    if len(text) <= limit:
        return text
    return text[:limit] if keep == "start" else text[-limit:]


def clip_texts(texts: list[str] | None, max_tokens: int) -> list[str] | None:
    """:func:`clip_text` of every text (``None`` stays ``None``)."""
    return None if texts is None else [clip_text(t, max_tokens) for t in texts]
