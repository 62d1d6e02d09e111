"""Tokens per second of reference training and of per-sample gradients for the embedded SmolLM2-135M.

One batch of ``--batch`` generation examples, each exactly ``--tokens`` tokens long (a long news prompt
truncated from its start, plus a ~12-token target; ``CausalLM`` with LoRA r=8 on every Linear layer but
``lm_head``, float32), measured side by side on this machine:

- (a) a reference training step: forward, backward and AdamW step on the LoRA factors (train mode);
- (b) the per-epoch evaluation pass that records the dynamics (``example_stats`` without gradients);
- (c) ``per_sample_gradients(target="lora", normalize=True)``, factorized projection to ``--dim``;
- (d) the one-example-at-a-time loop with a dense ``--dim`` projection (the reference codes' way).

Times are medians per batch after one warm-up batch (for (c) the warm-up also generates the projection
matrices, reported apart as "setup"). Tokens counted are all non-padding tokens, prompt included (the
whole sequence runs through the network; the loss reads the target tokens only). Usage:
``python bench/bench_lm.py [--batch 8] [--tokens 64] [--dim 1024] [--rounds 3] [--no-loop] [--out FILE.md]``
((d) takes about 6 minutes on 2 cores, most of it generating the dense matrices.)
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from datadiet.data.dataset import Dataset
from datadiet.models.causal_lm import IGNORE_INDEX, CausalLM, embedded_lm_path
from datadiet.representations.gradients import per_sample_gradients, per_sample_gradients_loop

ARTICLE = (
    "The central bank cut interest rates by a quarter point on Tuesday, citing slowing growth and weak "
    "demand from abroad. Oil prices fell sharply after producers agreed to raise output for the coming "
    "quarter, and wheat exports rose to a record high as demand from Asian importers stayed strong. "
    "Shares of the chip maker doubled in a week after it raised its annual forecast, while regulators "
    "opened an inquiry into a merger that would create the country's largest lender. "
)
SUMMARIES = [
    "The central bank cut rates as growth slowed.",
    "Oil prices fell after producers raised output.",
    "Wheat exports hit a record on Asian demand.",
    "Chip maker shares doubled after a forecast raise.",
    "Regulators opened an inquiry into a bank merger.",
    "Rates were cut and oil prices fell this week.",
    "Exports and chip shares rose; a merger is probed.",
    "Markets moved on rates, oil, wheat and chips.",
]


def make_model_and_batch(batch_size: int, tokens: int) -> tuple[CausalLM, dict[str, torch.Tensor]]:
    """The LoRA model (lora_B drawn as after some training) and a batch of exactly ``tokens`` tokens."""
    started = time.perf_counter()
    model = CausalLM(embedded_lm_path(), max_length=tokens)
    print(f"model loaded in {time.perf_counter() - started:.2f} s", flush=True)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.trainable_parameters():
            if "lora_B" in name:  # peft starts B at 0, which would zero every lora_A gradient
                param.normal_(0, 0.02, generator=generator)
    n = batch_size
    ds = Dataset(
        ids=np.array([f"x{i}" for i in range(n)], dtype=object),
        texts=[f"Summarise in one sentence. {ARTICLE * 3} (Report {i}.)" for i in range(n)],
        targets=[SUMMARIES[i % len(SUMMARIES)] for i in range(n)],
        task="generation",
    )
    return model, model.collate(ds, np.arange(n))


def median_seconds(step: Callable[[], object], rounds: int) -> float:
    """Median wall time of ``step`` over ``rounds`` calls after one warm-up call."""
    times = []
    for _ in range(rounds + 1):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def train_step(model: CausalLM, batch: dict[str, torch.Tensor]) -> Callable[[], None]:
    """Forward, backward and AdamW step on the trainable parameters (train mode)."""
    optimizer = torch.optim.AdamW([p for _, p in model.trainable_parameters()], lr=1e-5)

    def step() -> None:
        model.module.train()
        model.per_example_loss(model.module, batch).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.module.eval()

    return step


def eval_pass(model: CausalLM, batch: dict[str, torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad():
            model.example_stats(model.module, batch)

    return step


def timed_batches(batch: dict, rounds: int, stamps: list[float]) -> Iterator[dict]:
    """Yield ``batch`` ``rounds + 1`` times, stamping the clock before each and after the last."""
    for _ in range(rounds + 1):
        stamps.append(time.perf_counter())
        yield batch
    stamps.append(time.perf_counter())


def extraction_seconds(extract: Callable[[Iterator[dict]], np.ndarray], batch: dict, rounds: int):
    """(setup: first batch incl. matrix generation, median seconds per later batch)."""
    stamps: list[float] = []
    features = extract(timed_batches(batch, rounds, stamps))
    if not np.isfinite(features).all():
        raise RuntimeError("per-sample gradients are not finite")
    gaps = np.diff(stamps)
    return float(gaps[0]), float(np.median(gaps[1:]))


def run(args: argparse.Namespace) -> tuple[list[tuple[str, float, float]], dict[str, int]]:
    """Rows (name, setup seconds, seconds per batch) and the batch's token counts."""
    model, batch = make_model_and_batch(args.batch, args.tokens)
    counts = {
        "tokens": int(batch["attention_mask"].sum()),
        "target_tokens": int((batch["labels"] != IGNORE_INDEX).sum()),
    }
    loss, target = model.per_example_loss, model.gradient_target()
    train, evaluate = train_step(model, batch), eval_pass(model, batch)
    rows = [
        ("(a) reference training step (LoRA, AdamW)", 0.0, median_seconds(train, args.rounds)),
        ("(b) dynamics evaluation pass (no gradients)", 0.0, median_seconds(evaluate, args.rounds)),
    ]  # fmt: skip
    print(*(f"{name}: {s:.2f} s/batch" for name, _, s in rows), sep="\n", flush=True)
    batched = lambda bs: per_sample_gradients(  # noqa: E731
        model.module, bs, loss, target=target, dim=args.dim, normalize=True, progress=False
    )
    loop = lambda bs: per_sample_gradients_loop(  # noqa: E731
        model.module, bs, loss, target=target, dim=args.dim, normalize=True, progress=False
    )
    extractors = [(f"(c) per-sample gradients, batched, factorized {args.dim}-d", batched, args.rounds)]
    if args.loop:
        extractors.append((f"(d) per-sample gradients, loop of 1, dense {args.dim}-d", loop, 1))
    for name, extract, rounds in extractors:
        setup, seconds = extraction_seconds(extract, batch, rounds)
        rows.append((name, setup, seconds))
        print(f"{name}: {seconds:.2f} s/batch (setup {setup:.2f} s)", flush=True)
    return rows, counts


def write_markdown(path: Path, rows: list, counts: dict[str, int], args: argparse.Namespace) -> None:
    ratio = rows[2][2] / rows[0][2]
    table = [
        f"### SmolLM2-135M (LoRA r=8, float32): training vs per-sample gradients, batch {args.batch} x "
        f"{args.tokens} tokens ({platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__})",
        "",
        "| what | setup s | s / batch | tokens / s | examples / s |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {setup:.2f} | {s:.2f} | {counts['tokens'] / s:.0f} | {args.batch / s:.2f} |"
            for name, setup, s in rows
        ),
        "",
        f"- {counts['tokens']} tokens per batch, {counts['target_tokens']} of them target tokens (the loss).",
        f"- Batched gradient extraction takes {ratio:.2f}x the time of a training step"
        + (f"; the loop of one takes {rows[3][2] / rows[2][2]:.1f}x that." if len(rows) > 3 else "."),
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(table))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loop", action=argparse.BooleanOptionalAction, default=True, help="time (d)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows, counts = run(args)
    for name, setup, seconds in rows:
        rate = counts["tokens"] / seconds
        print(f"{name:55s} {seconds:6.2f} s/batch {rate:7.0f} tokens/s (setup {setup:.2f} s)")
    if args.out:
        write_markdown(args.out, rows, counts, args)


if __name__ == "__main__":
    main()
