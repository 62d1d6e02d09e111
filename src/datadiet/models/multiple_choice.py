"""A Hugging Face encoder that scores every (context, option) pair: multiple choice (e.g. WinoGrande).

The model is ``AutoModelForMultipleChoice`` loaded from a local directory, with its tokenizer. For BERT
(the embedded MiniLM) that is ``BertForMultipleChoice``: each (context, option) pair is encoded as a text
pair, a 1-unit linear classifier scores its pooled output, and the scores of an example's options are its
logits, shape (batch, n_options). The softmax over options is the model's distribution over answers, so the
shared :meth:`~datadiet.models.base.ReferenceModel.example_stats` (correct-option probability, loss,
correctness) and :meth:`~datadiet.models.base.ReferenceModel.per_example_loss` apply unchanged.

Examples with different numbers of options can share a batch: :meth:`EncoderMultipleChoice.collate` pads
each example's options to the batch's largest count with an empty dummy option and records a boolean
``"choice_mask"`` of shape (batch, n_options); :meth:`EncoderMultipleChoice.forward_logits` sets the dummy
options' logits to ``-inf``, so they get probability 0, are never predicted and contribute no gradient.

With LoRA, only the adapters and the classifier train (the classifier through peft's ``modules_to_save``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from datadiet._core.checks import check_indices, check_number
from datadiet.config import LoraConfig
from datadiet.data.dataset import Dataset
from datadiet.errors import ParameterError
from datadiet.models.base import GradientTarget, ReferenceModel, add_labels, clip_texts
from datadiet.models.hf import (
    check_lora,
    check_model_dir,
    final_linear,
    load_module,
    lora_description,
    weights_fingerprint,
)

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
CHOICE_MASK = "choice_mask"
"""Batch key of the (batch, n_options) boolean mask of real (not padded) options."""
DUMMY_OPTION = ""
"""Text of the padding option (its logit is masked to ``-inf``)."""


class EncoderMultipleChoice(ReferenceModel):
    """An ``AutoModelForMultipleChoice`` with its tokenizer, as a :class:`ReferenceModel`.

    Parameters
    ----------
    model_path : str or path-like
        A local Hugging Face model directory (``config.json``, weights, tokenizer files), e.g.
        :func:`datadiet.models.encoder.embedded_encoder_path`. The 1-unit scorer is newly initialised.
    lora : LoraConfig, optional
        Train LoRA adapters and the scorer only; ``None`` fine-tunes every parameter.
    max_length : int
        Token budget per (context, option) pair (truncated longest-first).
    seed : int
        Seeds the scorer (and adapter) initialisation; global RNG states are left unchanged.

    Notes
    -----
    Batches hold ``input_ids``, ``attention_mask`` (and ``token_type_ids``) of shape
    (batch, n_options, tokens), ``"choice_mask"`` of shape (batch, n_options) and, for a labeled split,
    ``"labels"`` (the correct option's index) of shape (batch,).

    :meth:`pooled_hidden` is the mean over an example's real options of what the scorer reads (for BERT
    the pooler output of each pair). It does not use the label, so labeled and unlabeled splits get the
    same kind of representation and it stays deterministic; the correct option's vector alone would need
    a label that test splits do not have.

    Examples
    --------
    >>> model = EncoderMultipleChoice(embedded_encoder_path(), lora=LoraConfig())  # doctest: +SKIP
    >>> model.logits(model.collate(winogrande, np.arange(8))).shape  # doctest: +SKIP
    torch.Size([8, 2])
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        lora: LoraConfig | None = None,
        max_length: int = 128,
        seed: int = 0,
    ) -> None:
        check_number("EncoderMultipleChoice", "max_length", max_length, integer=True, low=1)
        check_number("EncoderMultipleChoice", "seed", seed, integer=True, low=0)
        self.lora = check_lora(lora)
        self.model_path = check_model_dir(model_path)
        self.max_length = int(max_length)
        self.seed = int(seed)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_path), local_files_only=True)
        self.module = load_module(
            "AutoModelForMultipleChoice",
            self.model_path,
            self.lora,
            self.seed,
            task_type=None,
            save_head=True,
        )
        self.head_name, self._head = final_linear(self.module)

    def collate(self, ds: Dataset, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """Tokenize every (context, option) pair of rows ``indices``, padded to (batch, n_options, tokens).

        Options are padded to the largest count in the batch with a dummy option, masked out by
        ``"choice_mask"`` (batch, n_options); ``"labels"`` (batch,) is added when ``ds`` has labels.
        """
        idx = check_indices(indices, len(ds))
        options = _batch_options(ds, idx)
        n_options = max(len(row) for row in options)
        contexts = [ds.texts[i] for i in idx for _ in range(n_options)]
        pairs = [text for row in options for text in _padded(row, n_options)]
        encoded = self.tokenizer(
            clip_texts(contexts, self.max_length), clip_texts(pairs, self.max_length),
            truncation=True, max_length=self.max_length, padding=True, return_tensors="pt",
        )  # fmt: skip
        batch = {
            key: encoded[key].reshape(len(idx), n_options, -1) for key in _MODEL_INPUTS if key in encoded
        }
        mask = [[j < len(row) for j in range(n_options)] for row in options]
        batch[CHOICE_MASK] = torch.tensor(mask, dtype=torch.bool).reshape(len(idx), n_options)
        return add_labels(batch, ds, idx)

    def forward_logits(self, module: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Option logits of shape (batch, n_options) from ``module``; padded options get ``-inf``."""
        logits = module(**{key: batch[key] for key in _MODEL_INPUTS if key in batch}).logits
        if CHOICE_MASK in batch:
            logits = logits.masked_fill(~batch[CHOICE_MASK].to(logits.device), float("-inf"))
        return logits

    def pooled_hidden(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Mean over real options of the scorer's input, shape (batch, hidden), in eval mode.

        The label is not used (see the class notes).
        """
        captured: list[torch.Tensor] = []
        hook = self._head.register_forward_pre_hook(lambda _mod, args: captured.append(args[0]))
        try:
            logits = self.logits(batch)
        finally:
            hook.remove()
        per_option = captured[-1].reshape(*logits.shape, -1)  # (batch, n_options, hidden)
        mask = batch.get(CHOICE_MASK)
        if mask is None:
            return per_option.mean(1)
        weights = mask.to(per_option).unsqueeze(-1)
        return (per_option * weights).sum(1) / weights.sum(1)

    def gradient_target(self) -> GradientTarget:
        """``"lora"`` with adapters, else ``"linear"`` (every Linear layer trains)."""
        return "lora" if self.lora is not None else "linear"

    def describe(self) -> dict[str, Any]:
        """Backend, model path, weights fingerprint, LoRA settings, head layer, max_length.

        ``n_labels`` is ``None``: the number of options comes from the data, not the model.
        """
        config = getattr(self.module, "config", None)
        return {
            "backend": "hf_multiple_choice",
            "model_path": str(self.model_path),
            "model_type": getattr(config, "model_type", None),
            "weights_sha256": weights_fingerprint(self.model_path),
            "lora": lora_description(self.lora),
            "head": self.head_name,
            "max_length": self.max_length,
            "n_labels": None,
            "init_seed": self.seed,
        }


def _batch_options(ds: Dataset, idx: np.ndarray) -> list[list[str]]:
    """The options of rows ``idx``, checking that ``ds`` is a multiple-choice split with options."""
    if ds.task != "multiple_choice":
        raise ParameterError(
            f"EncoderMultipleChoice needs a multiple_choice dataset; {ds.name}/{ds.split} is {ds.task!r}. "
            "Use EncoderClassifier for classification."
        )
    if ds.choices is None:
        raise ParameterError(
            f"{ds.name}/{ds.split} has no choices; a multiple_choice dataset needs its options per example."
        )
    options = [list(ds.choices[i]) for i in idx]
    empty = [str(ds.ids[i]) for i, row in zip(idx, options, strict=True) if not row]
    if empty:
        raise ParameterError(
            f"{ds.name}/{ds.split}: {len(empty)} examples have no options (first ids: {empty[:3]}); "
            "give each example at least one option or drop it."
        )
    return options


def _padded(options: list[str], n_options: int) -> list[str]:
    return options + [DUMMY_OPTION] * (n_options - len(options))
