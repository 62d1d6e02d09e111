"""The one Hugging Face / peft loader the backends share, and what they share about model folders.

:func:`load_module` loads ``transformers.<Auto class>`` from a local folder, seeded, and wraps it with LoRA
adapters (peft) when a :class:`~datadiet.config.LoraConfig` is given; the backends differ only in the Auto
class, the peft task type and whether the head must be named to keep training (multiple choice).
:func:`weights_fingerprint` identifies a folder's weights; :func:`lora_description` is the ``"lora"`` field
of a backend's ``describe()`` (part of a reference run's identity, so its bytes must never change).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from datadiet._core.checks import check_number
from datadiet._core.files import cached_sha256_file
from datadiet.config import LoraConfig
from datadiet.errors import ParameterError, ParameterTypeError
from datadiet.models.base import seeded_torch

LORA_TARGETS = "all-linear"
"""Layers that get adapters: every Linear layer (peft leaves out a causal LM's output layer)."""


def check_lora(lora: Any) -> LoraConfig | None:
    """``lora`` if it is None or a valid :class:`~datadiet.config.LoraConfig`, else the standard error."""
    if lora is None:
        return None
    if not isinstance(lora, LoraConfig):
        raise ParameterTypeError(f"lora must be a LoraConfig or None. Got {type(lora).__name__} instead.")
    check_number("LoraConfig", "r", lora.r, integer=True, low=1)
    check_number("LoraConfig", "alpha", lora.alpha, integer=False, low=0, low_open=True)
    check_number("LoraConfig", "dropout", lora.dropout, integer=False, low=0, high=1)
    return lora


def lora_description(lora: LoraConfig | None) -> dict[str, Any] | None:
    """The LoRA settings as recorded in ``describe()``: r, alpha, dropout (as given) and the target layers."""
    if lora is None:
        return None
    return {"r": lora.r, "alpha": lora.alpha, "dropout": lora.dropout, "target_modules": LORA_TARGETS}


def load_module(
    auto_class: str,
    path: str | os.PathLike[str],
    lora: LoraConfig | None,
    seed: int,
    *,
    task_type: str | None,
    save_head: bool = False,
    **options: Any,
) -> nn.Module:
    """``transformers.<auto_class>.from_pretrained(path, **options)``, seeded, in eval mode, with LoRA.

    Parameters
    ----------
    auto_class : str
        E.g. ``"AutoModelForSequenceClassification"``.
    lora : LoraConfig, optional
        Wrap the model with adapters on every Linear layer; ``None`` keeps every parameter trainable.
    seed : int
        Seeds the new weights (head, adapters); global RNG states are left unchanged.
    task_type : str, optional
        The peft ``TaskType`` name (``"SEQ_CLS"``, ``"CAUSAL_LM"``), or None when peft has none.
    save_head : bool
        Exclude the last Linear layer from the adapters and train it whole (peft's ``modules_to_save``).
    """
    import transformers

    with seeded_torch(seed):
        model = getattr(transformers, auto_class).from_pretrained(str(path), local_files_only=True, **options)
        if lora is not None:
            model = _with_lora(model, lora, task_type, save_head)
    model.eval()
    return model


def _with_lora(model: nn.Module, lora: LoraConfig, task_type: str | None, save_head: bool) -> nn.Module:
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType, get_peft_model

    exclude: list[str] | None = None  # peft's defaults
    keep: list[str] | None = None
    if save_head:  # peft has no task type that keeps training the head: name it
        head_name, _ = final_linear(model)
        exclude, keep = [head_name], [head_name]
    config = PeftLoraConfig(
        task_type=None if task_type is None else TaskType[task_type],
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=LORA_TARGETS,
        exclude_modules=exclude,
        modules_to_save=keep,
    )
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        return get_peft_model(model, config)


def final_linear(module: nn.Module) -> tuple[str, nn.Module]:
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


def check_model_dir(model_path: str | os.PathLike[str]) -> Path:
    """``model_path`` resolved, refused unless it is a local model folder (with ``config.json``)."""
    path = Path(model_path).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model_path '{path}' is not a local model directory (no config.json); pass a directory saved "
            "with save_pretrained, e.g. datadiet.models.encoder.embedded_encoder_path()."
        )
    return path.resolve()


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
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of one file, cached by (path, mtime, size)."""
    return cached_sha256_file(path)
