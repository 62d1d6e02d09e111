"""What ``datadiet prune`` costs on 5,000 examples (the fast frozen path, ``auto``) against what it saves.

The input is a JSON Lines file of ``--n`` training texts, half from the embedded Reuters R8 and half from
20 Newsgroups (a seeded draw from each; labels ``r8/<topic>`` and ``20ng/<group>``, 28 classes), written to
a temporary folder. Measured in the same run, on this machine:

- (a) ``datadiet prune --data <file> --budget 0.2 --out <fresh folder>``, a subprocess timed end to end
  (start-up, imports and model loading included): the cold cache, i.e. the first prune of this data;
- (b) the same command again in the same folder: the warm cache (the embeddings are read back, the
  selection is recomputed and must come out identical);
- the peer: training the main model on all ``--n`` examples vs on the pruned set, in two kinds:

  - the study's default main model (``datadiet.pipeline.study``, ``main_model``): a linear head on the
    frozen MiniLM embeddings, 20 epochs, batch 32, lr 1e-2, trained with ``datadiet.training.fit``. Its
    cost is the encoder pass over its rows (for the full set: the cold prune's own ``embeddings`` seconds,
    the same pass; for the pruned set: measured here on the kept rows) plus the head's training (measured);
  - full fine-tuning of MiniLM (``main.model: {mode: full}``: 3 epochs, batch 32, 128 tokens, lr 5e-5), the
    same ``EncoderClassifier`` and ``fit``. Training it on 5,000 examples takes longer than this benchmark
    should, so ``--steps`` optimizer steps on real batches are timed (after one warm-up step) and the
    seconds per step are multiplied by each set's step count (ceil(rows / 32) x 3 epochs).

Reported: the seconds of each, the time saved by training on the pruned set, and the ratio
prune (cold) / time saved: below 1, pruning pays for itself in one training run. Target: the cold prune of
5,000 examples finishes in under 3 minutes on 2 cores.

Usage: ``python bench/bench_prune.py [--n 5000] [--budget 0.2] [--steps 4] [--quick] [--out FILE.md]``
(``--quick``: 300 examples and 2 steps, a smoke run of a minute or two).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import datadiet
from datadiet.config.schema import mode_defaults
from datadiet.data.dataset import Dataset

TARGET_SECONDS = 180.0
"""The cold prune of 5,000 examples should finish within this on 2 cores."""
BATCH = 32
"""The study's main-model batch size (``main.batch_size``)."""
MAX_LENGTH = 128
"""Tokens per example, as the prune's default frozen model."""
FINE_TUNE_EPOCHS = mode_defaults("full")["main_epochs"]


def write_input(path: Path, n: int, seed: int = 0) -> int:
    """A JSON Lines file of ``n`` texts, half from R8's and half from 20 Newsgroups' training split."""
    rng = np.random.default_rng(seed)
    lines = []
    for name, prefix, count in (("reuters_r8", "r8", n // 2), ("newsgroups20", "20ng", n - n // 2)):
        ds = datadiet.load_dataset(name, split="train")["train"]
        if ds.labels is None or count > len(ds):
            raise ValueError(f"--n={n} needs {count} labelled rows of {name}, which has {len(ds)}.")
        for i in np.sort(rng.choice(len(ds), count, replace=False)):
            label = f"{prefix}/{ds.label_names[ds.labels[i]]}"
            lines.append(json.dumps({"text": ds.texts[i], "label": label}, ensure_ascii=False))
    order = rng.permutation(len(lines))  # the two sources interleaved, as a real file would be
    path.write_text("".join(lines[i] + "\n" for i in order), encoding="utf-8")
    return len(lines)


def run_prune(data: Path, out: Path, budget: float) -> tuple[float, dict[str, Any], list[int]]:
    """Wall seconds of ``datadiet prune`` in a subprocess, its summary.json and the kept positions."""
    command = [sys.executable, "-m", "datadiet.cli", "prune", "--data", str(data), "--budget", str(budget),
               "--out", str(out)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    indices = json.loads((out / "selection.json").read_text())["indices"]
    return seconds, summary, indices


def frozen_main_seconds(train: Dataset, indices: np.ndarray, embeddings: np.ndarray) -> float:
    """Seconds of ``fit`` for the study's default main model (linear head) on the rows ``indices``."""
    from datadiet.models.frozen import FrozenHead
    from datadiet.training import TrainConfig, fit

    subset = train.subset(indices, note="bench")
    model = FrozenHead({train.fingerprint(): embeddings}, train.n_classes, head="linear", seed=0)
    model.attach_embeddings(subset, embeddings[indices])
    defaults = mode_defaults("frozen")
    config = TrainConfig(epochs=defaults["main_epochs"], batch_size=BATCH, lr=defaults["lr"], seed=0)
    start = time.perf_counter()
    fit(model, subset, config)
    return time.perf_counter() - start


def encode_seconds(train: Dataset, indices: np.ndarray) -> float:
    """Seconds of the frozen encoder pass (model loading included) over the rows ``indices``."""
    from datadiet.models.encoder import embedded_encoder_path
    from datadiet.models.frozen import encode_texts

    start = time.perf_counter()
    encode_texts(embedded_encoder_path(), train.subset(indices), max_length=MAX_LENGTH, progress=False)
    return time.perf_counter() - start


def fine_tune_step_seconds(train: Dataset, steps: int) -> float:
    """Seconds per optimizer step of full MiniLM fine-tuning on real batches of ``BATCH`` rows."""
    from datadiet.models.encoder import EncoderClassifier, embedded_encoder_path
    from datadiet.training import TrainConfig, fit

    rng = np.random.default_rng(1)
    rows = rng.choice(len(train), BATCH * (steps + 1), replace=False)
    model = EncoderClassifier(embedded_encoder_path(), train.n_classes, max_length=MAX_LENGTH, seed=0)
    config = TrainConfig(epochs=1, batch_size=BATCH, lr=mode_defaults("full")["lr"], seed=0)
    fit(model, train.subset(rows[:BATCH]), config)  # warm-up: first-call allocations, thread pools
    start = time.perf_counter()
    fit(model, train.subset(rows[BATCH:]), config)
    return (time.perf_counter() - start) / steps


def fine_tune_seconds(rows: int, per_step: float) -> float:
    return math.ceil(rows / BATCH) * FINE_TUNE_EPOCHS * per_step


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data = work / "train.jsonl"
    n = write_input(data, args.n)
    cold, summary, kept = run_prune(data, work / "pruned", args.budget)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"cold prune {cold:.1f} s (peak RSS {peak_mib:.0f} MiB): {summary['seconds']}", flush=True)
    warm, warm_summary, warm_kept = run_prune(data, work / "pruned", args.budget)
    if warm_kept != kept:
        raise RuntimeError("the warm-cache prune kept other rows than the cold one")
    print(f"warm prune {warm:.1f} s: {warm_summary['seconds']}", flush=True)
    train = datadiet.load_dataset(data)["train"]
    indices, everything = np.asarray(kept), np.arange(n)
    embeddings = _cached_embeddings(work / "pruned", n)
    frozen_main_seconds(train, indices[:BATCH], embeddings)  # warm-up: torch's first-call costs
    frozen = {
        "encode_full": summary["seconds"]["embeddings"],
        "encode_kept": encode_seconds(train, indices),
        "fit_full": frozen_main_seconds(train, everything, embeddings),
        "fit_kept": frozen_main_seconds(train, indices, embeddings),
    }
    print(f"frozen main model: {frozen}", flush=True)
    per_step = fine_tune_step_seconds(train, args.steps)
    print(f"full fine-tuning: {per_step:.2f} s per step of {BATCH}", flush=True)
    return {"n": n, "k": len(kept), "cold": cold, "warm": warm, "summary": summary, "peak_mib": peak_mib,
            "warm_summary": warm_summary, "frozen": frozen, "per_step": per_step}  # fmt: skip


def _cached_embeddings(out: Path, n: int) -> np.ndarray:
    """The prune's cached MiniLM embeddings of the training split (the one (n, 384) store entry)."""
    for values in sorted((out / ".datadiet" / "store").glob("*/values.npy")):
        array = np.load(values)
        if array.ndim == 2 and len(array) == n:
            return array
    raise FileNotFoundError(f"no ({n}, d) embedding entry in {out}/.datadiet/store")


def table(m: dict[str, Any], args: argparse.Namespace) -> str:
    """The results as markdown: the rows, then the ratios and the target."""
    n, k, f = m["n"], m["k"], m["frozen"]
    seconds = m["summary"]["seconds"]
    frozen_full, frozen_kept = f["encode_full"] + f["fit_full"], f["encode_kept"] + f["fit_kept"]
    tune_full, tune_kept = fine_tune_seconds(n, m["per_step"]), fine_tune_seconds(k, m["per_step"])
    steps = FINE_TUNE_EPOCHS
    rows = [
        ("(a) `datadiet prune`, cold cache (end to end)", f"{n:,} -> {k:,}", m["cold"],
         f"encoder pass {seconds['embeddings']:.1f} s, select {seconds['select']:.1f} s; peak RSS "
         f"{m['peak_mib']:.0f} MiB"),
        ("(b) `datadiet prune`, warm cache (rerun)", f"{n:,} -> {k:,}", m["warm"],
         f"{m['warm'] / m['cold']:.2f}x (a); same rows kept"),
        ("frozen MiniLM + linear head (study default), full set", f"{n:,}", frozen_full,
         f"encoder pass {f['encode_full']:.1f} s + 20 epochs {f['fit_full']:.1f} s"),
        ("frozen MiniLM + linear head, pruned set", f"{k:,}", frozen_kept,
         f"encoder pass {f['encode_kept']:.1f} s + 20 epochs {f['fit_kept']:.1f} s"),
        ("full fine-tuning MiniLM, full set (extrapolated)", f"{n:,}", tune_full,
         f"{math.ceil(n / BATCH) * steps} steps x {m['per_step']:.2f} s (measured over {args.steps})"),
        ("full fine-tuning MiniLM, pruned set (extrapolated)", f"{k:,}", tune_kept,
         f"{math.ceil(k / BATCH) * steps} steps x {m['per_step']:.2f} s"),
    ]  # fmt: skip
    saved_frozen, saved_tune = frozen_full - frozen_kept, tune_full - tune_kept
    met = "met" if m["cold"] < TARGET_SECONDS else "missed"
    frozen_ratio = (
        f"{m['cold']:.1f} / {saved_frozen:.1f} s = **{m['cold'] / saved_frozen:.2f}**"
        if saved_frozen > 0
        else "nothing saved"
    )
    lines = [
        "| what | examples | seconds | notes |",
        "|---|---:|---:|---|",
        *(f"| {what} | {size} | {s:.1f} | {note} |" for what, size, s, note in rows),
        "",
        f"- prune (cold) / time saved, frozen main model: {frozen_ratio}",
        f"- prune (cold) / time saved, full fine-tuning: {m['cold']:.1f} / {saved_tune:.1f} s = "
        f"**{m['cold'] / saved_tune:.2f}**",
        f"- warm / cold prune: {m['warm'] / m['cold']:.2f}",
        f"- target: cold prune of {n:,} examples under {TARGET_SECONDS:.0f} s on {os.cpu_count()} cores: "
        f"**{met}** ({m['cold']:.1f} s)",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="examples in the input file")
    parser.add_argument("--budget", type=float, default=0.2, help="kept fraction")
    parser.add_argument("--steps", type=int, default=4, help="timed fine-tuning steps")
    parser.add_argument("--quick", action="store_true", help="300 examples, 2 steps: a smoke run")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()
    if args.quick:
        args.n, args.steps = 300, 2
    print(f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-prune-") as work:
        result = measure(args, Path(work))
    text = table(result, args)
    print(f"load after: {os.getloadavg()[0]:.1f}\n\n{text}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
