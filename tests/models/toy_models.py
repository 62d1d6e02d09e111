"""A tiny randomly initialised BERT saved as a local Hugging Face directory, and toy sentiment datasets."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from datadiet.data.dataset import Dataset

Model = TypeVar("Model")


def float64_copy(model: Model) -> Model:
    """A deep copy of a reference model whose module runs in float64 (the float32 weights, exactly).

    The float64 reference for float32 results of another code path (batched, padded, split otherwise).
    """
    twin = copy.deepcopy(model)
    twin.module.double()
    return twin


POSITIVE = ["good", "great", "fine", "lovely", "superb"]
NEGATIVE = ["bad", "awful", "poor", "boring", "dull"]
FILLER = ["the", "a", "movie", "film", "plot", "actor", "was", "really", "very", "quite", "and"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER]


def make_tiny_bert(path: Path) -> Path:
    """Save a 2-layer, 32-wide BERT (no classification head) and its WordPiece tokenizer under ``path``."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab=str(path / "vocab.txt")).save_pretrained(str(path))
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertModel(config).save_pretrained(str(path))
    return path


def toy_dataset(n: int, *, seed: int = 0, pairs: bool = False, split: str = "train") -> Dataset:
    """``n`` short reviews labeled by their sentiment word ("neg" / "pos"), varied lengths."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    texts, text_pairs = [], []
    for label in labels:
        word = rng.choice(POSITIVE if label else NEGATIVE)
        filler = rng.choice(FILLER, size=int(rng.integers(1, 8))).tolist()
        texts.append(" ".join([*filler[:2], str(word), *filler[2:]]))
        text_pairs.append(" ".join(rng.choice(FILLER, size=int(rng.integers(1, 4))).tolist()))
    return Dataset(
        ids=np.array([f"{split}-{i}" for i in range(n)], dtype=object),
        texts=texts,
        labels=labels,
        label_names=("neg", "pos"),
        text_pairs=text_pairs if pairs else None,
        name="toy",
        split=split,
    )


def separable_embeddings(n: int, dim: int = 16, *, seed: int = 0) -> tuple[Dataset, np.ndarray]:
    """A 3-class dataset whose (n, dim) float32 embeddings are well separated Gaussian blobs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    centers = rng.normal(size=(3, dim)) * 3
    embeddings = (centers[labels] + rng.normal(size=(n, dim))).astype(np.float32)
    ds = Dataset(
        ids=np.array([f"e{i}" for i in range(n)], dtype=object),
        texts=[f"example {i}" for i in range(n)],
        labels=labels,
        label_names=("a", "b", "c"),
        name="blobs",
    )
    return ds, embeddings
