"""The fast CPU path: a frozen encoder's embeddings, computed once, and a small trainable head on top.

:func:`encode_texts` turns a dataset into an (n_examples, hidden) float32 array. :class:`FrozenHead` is a
:class:`~datadiet.models.base.ReferenceModel` whose inputs are rows of such arrays: it keeps one array per
dataset (keyed by the dataset fingerprint), so the same head can score the training split and, once their
embeddings are attached, validation or test splits.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from collections.abc import Mapping
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn

from datadiet._core.checks import check_indices, check_number
from datadiet._core.progress import track
from datadiet.data.dataset import Dataset
from datadiet.errors import NotFoundError, ParameterError, ParameterTypeError
from datadiet.models.base import (
    GradientTarget,
    ReferenceModel,
    add_labels,
    clip_texts,
    inference_mode,
    seeded_torch,
    text_lengths,
)

HEADS: tuple[str, ...] = ("linear", "mlp")


def encode_texts(
    model_path: str | os.PathLike[str],
    ds: Dataset,
    *,
    batch_size: int = 64,
    max_length: int = 128,
    normalize: bool = False,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Frozen sentence embeddings: the mean of the encoder's last hidden states over non-padding tokens.

    Mean pooling is the sentence-transformers convention for all-MiniLM-L6-v2 (its ``1_Pooling`` config);
    that pipeline then L2-normalises, which ``normalize=True`` reproduces. Text pairs are encoded as one
    pair input. Examples are batched by length (less padding) and returned in dataset order.

    Parameters
    ----------
    model_path : str or path-like
        A local Hugging Face encoder directory (e.g. ``embedded_encoder_path()``).
    ds : Dataset
        The examples (``texts`` and optional ``text_pairs``).
    batch_size, max_length : int
        Examples per forward pass; token budget per example.
    normalize : bool
        L2-normalise every embedding.
    progress : bool
        Show a progress bar.
    device : str or torch.device, optional
        Where the encoder runs; default :func:`~datadiet._core.device.resolve_device` (a GPU when
        visible). The result is a float32 array on the CPU either way.

    Returns
    -------
    embeddings : ndarray of shape (n_examples, hidden), float32
    """
    check_number("encode_texts", "batch_size", batch_size, integer=True, low=1)
    check_number("encode_texts", "max_length", max_length, integer=True, low=1)
    from transformers import AutoModel, AutoTokenizer

    from datadiet._core.device import resolve_device

    where = device if isinstance(device, torch.device) else resolve_device(device)
    tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
    with seeded_torch(0):  # weights missing from the checkpoint (if any) are initialised reproducibly
        encoder = AutoModel.from_pretrained(str(model_path), local_files_only=True).eval().to(where)
    order = np.argsort(-text_lengths(ds), kind="stable")
    out = np.empty((len(ds), encoder.config.hidden_size), dtype=np.float32)
    starts = range(0, len(ds), batch_size)
    for start in track(starts, "encode", enabled=progress, transient=True):
        idx = order[start : start + batch_size]
        pairs = None if ds.text_pairs is None else [ds.text_pairs[i] for i in idx]
        batch = tokenizer(
            clip_texts([ds.texts[i] for i in idx], max_length), clip_texts(pairs, max_length),
            truncation=True, max_length=max_length, padding=True,
            return_tensors="pt",
        )  # fmt: skip
        batch = {key: value.to(where) for key, value in batch.items()}
        with torch.inference_mode():
            hidden = encoder(**batch).last_hidden_state
        out[idx] = _mean_pool(hidden, batch["attention_mask"], normalize).cpu().numpy()
    return out


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor, normalize: bool) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return nn.functional.normalize(pooled, dim=-1) if normalize else pooled


class HeadNetwork(nn.Module):
    """A linear classifier or a one-hidden-layer ReLU MLP; the last Linear layer is ``classifier``."""

    def __init__(self, input_dim: int, num_labels: int, head: str, hidden: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(input_dim, hidden) if head == "mlp" else None
        self.classifier = nn.Linear(hidden if head == "mlp" else input_dim, num_labels)

    def features(self, embeddings: torch.Tensor) -> torch.Tensor:
        """What ``classifier`` reads, shape (batch, input_dim) or (batch, hidden)."""
        return embeddings if self.hidden is None else torch.relu(self.hidden(embeddings))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(embeddings))


class FrozenHead(ReferenceModel):
    """A trainable head over precomputed embeddings, as a :class:`ReferenceModel`.

    Parameters
    ----------
    embeddings : mapping of str to ndarray of shape (n_examples, input_dim)
        Embedding tables keyed by ``Dataset.fingerprint()``; row ``i`` belongs to example ``i`` of that
        dataset. Use :meth:`for_dataset` to build from one dataset and :meth:`attach_embeddings` to add more.
    num_labels : int
        Number of classes, at least 2.
    head : {"linear", "mlp"}
        A linear classifier, or a ReLU hidden layer of width ``hidden`` followed by one.
    hidden : int
        Width of the MLP's hidden layer (ignored by the linear head).
    seed : int
        Seeds the weight initialisation; global RNG states are left unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> from datadiet.data.dataset import Dataset
    >>> ds = Dataset.from_records([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}])
    >>> model = FrozenHead.for_dataset(ds, np.eye(2, dtype=np.float32), num_labels=2)
    >>> model.logits(model.collate(ds, np.array([0, 1]))).shape
    torch.Size([2, 2])
    """

    def __init__(
        self,
        embeddings: Mapping[str, np.ndarray],
        num_labels: int,
        *,
        head: Literal["linear", "mlp"] = "linear",
        hidden: int = 256,
        seed: int = 0,
    ) -> None:
        check_number("FrozenHead", "num_labels", num_labels, integer=True, low=2)
        check_number("FrozenHead", "hidden", hidden, integer=True, low=1)
        check_number("FrozenHead", "seed", seed, integer=True, low=0)
        if head not in HEADS:
            raise ParameterError(f"Unknown head {head!r}. Available: {list(HEADS)}.")
        if not isinstance(embeddings, Mapping) or not embeddings:
            raise ParameterTypeError(
                "embeddings must be a non-empty mapping {dataset fingerprint: (n, d) array}; "
                "use FrozenHead.for_dataset(ds, array, num_labels) for a single dataset."
            )
        self.num_labels, self.head, self.hidden, self.seed = int(num_labels), head, int(hidden), int(seed)
        self._tables: dict[str, np.ndarray] = {}
        self._table_sha: dict[str, str] = {}
        self._fingerprints: dict[int, tuple[weakref.ref, str]] = {}
        self.input_dim = _as_table(next(iter(embeddings.values())), None).shape[1]
        for fingerprint, table in embeddings.items():
            self._add_table(str(fingerprint), table, None)
        with seeded_torch(self.seed):
            self.module = HeadNetwork(self.input_dim, self.num_labels, head, self.hidden)

    @classmethod
    def for_dataset(cls, ds: Dataset, embeddings: np.ndarray, num_labels: int, **kwargs: Any) -> FrozenHead:
        """A head whose inputs for ``ds`` are the rows of ``embeddings`` (n_examples, input_dim)."""
        return cls({ds.fingerprint(): _as_table(embeddings, len(ds))}, num_labels, **kwargs)

    def attach_embeddings(self, ds: Dataset, embeddings: np.ndarray) -> None:
        """Register the (len(ds), input_dim) embeddings of another dataset (a split to score)."""
        self._add_table(self._fingerprint(ds), embeddings, len(ds))

    def has_embeddings(self, ds: Dataset) -> bool:
        """Whether embeddings for ``ds`` are attached."""
        return self._fingerprint(ds) in self._tables

    def collate(self, ds: Dataset, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """Rows ``indices`` of ``ds``'s embedding table as ``"embeddings"``, plus ``"labels"`` (if any)."""
        table = self._table(ds)
        idx = check_indices(indices, len(ds))
        rows = np.ascontiguousarray(table[idx], dtype=np.float32)
        return add_labels({"embeddings": torch.from_numpy(rows)}, ds, idx)

    def forward_logits(self, module: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits of shape (batch, num_labels)."""
        return module(batch["embeddings"])

    def pooled_hidden(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The embedding (linear head) or the hidden ReLU activation (MLP head), shape (batch, h)."""
        with inference_mode(self.module):
            head = cast(HeadNetwork, self.module)  # set in __init__
            return head.features(self.to_device(batch)["embeddings"])

    def gradient_target(self) -> GradientTarget:
        """``"classifier"``: the last Linear layer, ``module.classifier``."""
        return "classifier"

    def input_fingerprint(self, ds: Dataset) -> str:
        """sha256 (16 hex digits) of the embedding table attached for ``ds``."""
        self._table(ds)  # raises when none is attached
        return self._table_sha[self._fingerprint(ds)]

    def describe(self) -> dict[str, Any]:
        """Backend, head type and sizes, n_labels and init seed (embeddings: see input_fingerprint)."""
        return {
            "backend": "frozen_head",
            "head": self.head,
            "hidden": self.hidden if self.head == "mlp" else None,
            "input_dim": self.input_dim,
            "n_labels": self.num_labels,
            "init_seed": self.seed,
        }

    def _add_table(self, fingerprint: str, embeddings: np.ndarray, n: int | None) -> None:
        table = _as_table(embeddings, n)
        if table.shape[1] != self.input_dim:
            raise ParameterError(
                f"embeddings have dimension {table.shape[1]} but this head reads input_dim={self.input_dim}; "
                "encode every split with the same encoder."
            )
        self._tables[fingerprint] = table
        self._table_sha[fingerprint] = _array_sha(table)

    def _table(self, ds: Dataset) -> np.ndarray:
        fingerprint = self._fingerprint(ds)
        if fingerprint not in self._tables:
            raise NotFoundError(
                f"No embeddings attached for {ds.name}/{ds.split} (fingerprint {fingerprint}); call "
                "model.attach_embeddings(ds, encode_texts(model_path, ds)) first."
            )
        table = self._tables[fingerprint]
        if table.shape[0] != len(ds):
            raise ParameterError(
                f"the embeddings attached for {ds.name}/{ds.split} have {table.shape[0]} rows but the "
                f"dataset has n_examples={len(ds)}; attach one row per example."
            )
        return table

    def _fingerprint(self, ds: Dataset) -> str:
        """``ds.fingerprint()``, cached per dataset object (it hashes every text)."""
        cached = self._fingerprints.get(id(ds))
        if cached is not None and cached[0]() is ds:
            return cached[1]
        fingerprint = ds.fingerprint()
        self._fingerprints[id(ds)] = (weakref.ref(ds), fingerprint)
        return fingerprint


def _as_table(embeddings: Any, n: int | None) -> np.ndarray:
    table = np.asarray(embeddings)
    if table.ndim != 2 or not np.issubdtype(table.dtype, np.floating):
        raise ParameterError(
            f"embeddings must be a 2-D float array (n_examples, d). Got dtype {table.dtype}, shape "
            f"{table.shape} instead."
        )
    if n is not None and table.shape[0] != n:
        raise ParameterError(f"embeddings have {table.shape[0]} rows but the dataset has n_examples={n}.")
    if not np.isfinite(table).all():
        raise ParameterError("embeddings contain NaN/inf; re-encode the dataset.")
    return table


def _array_sha(table: np.ndarray) -> str:
    digest = hashlib.sha256(str(table.shape).encode())
    for start in range(0, table.shape[0], 4096):
        digest.update(np.ascontiguousarray(table[start : start + 4096], dtype="<f4").tobytes())
    return digest.hexdigest()[:16]
