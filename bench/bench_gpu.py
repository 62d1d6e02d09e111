"""GPU benchmarks of extraction, projection, k-means and selection, each against a peer in the same run.

``bench/gpu.sh`` runs this on a CUDA machine and writes one markdown page (the GPU section of
docs/benchmarks.md). Every figure is a ratio against a peer measured in the same process, plus absolute
times on the named GPU:

1. **Peaks**: a bf16 and an fp32 (no TF32) 8192^3 matrix product, and a device-to-device copy: the
   ceilings the other figures are read against.
2. **Gradient extraction** (``per_sample_gradients``, LoRA r=8 on every Linear layer, factorized
   projection to 1024-d) against a training step (forward, backward, AdamW) on the same batch, in fp32 and
   in bf16 autocast, for MiniLM-L6 (sequence classification), SmolLM2-135M and a 1.7B causal LM of the
   SmolLM2-1.7B shape. The models are built from their packaged configs with seeded random weights (for
   throughput only: the architecture, not the weights, sets the cost). Tokens/s and MFU by the usual
   ``6 N`` FLOPs per token (N = all parameters; LoRA skips the frozen weights' gradients, so about ``4 N``
   is really done), against the bf16 peak measured in (1). The bf16 rows also give the fidelity of bf16
   against fp32: the smallest per-example cosine and the projected Gram matrix's relative error.
3. **Projection**: ``Projector`` (dense, seeded, cached on the device) against ``torch.matmul`` with the
   same matrix already materialized: GB/s of gradients read, and the fraction of the fp32 GEMM peak.
4. **k-means**: the ``torch`` engine against faiss's GPU k-means with its defaults (faiss-CPU when no faiss
   GPU build imports), the same data, k and iterations, compared at their final inertia.
5. **Selection at scale**: LESS and self-influence on 10M x 1024 float32 features (40 GB, streamed to the
   GPU in chunks) against the CPU path on 1M of the same rows (scaled by 10, said so).

``--smoke`` runs every section at toy sizes on whatever device there is (the CPU in CI): it checks the
script, not the hardware. Usage: ``python bench/bench_gpu.py [--smoke] [--only NAME ...] [--out FILE.md]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datadiet._core.device import resolve_device

MODELS = Path(__file__).parent / "gpu_models"
SECTIONS = ("peaks", "gradients", "projection", "kmeans", "selection")


@dataclass(frozen=True)
class Sizes:
    gemm: int
    copy_mb: int
    models: tuple[tuple[str, int, int], ...]  # (model, batch, tokens)
    projection: tuple[int, int, int]  # rows, in_dim, out_dim
    kmeans: tuple[int, int, int, int]  # n, d, k, iterations
    selection: tuple[int, int, int]  # n, d, val rows
    cpu_rows: int  # the CPU peer's rows in (5)
    rounds: int


FULL = Sizes(
    8192,
    4096,
    (("minilm-l6", 64, 128), ("smollm2-135m", 16, 256), ("llama-1.7b", 8, 256)),
    (8192, 262_144, 1024),
    (1_000_000, 256, 4096, 25),
    (10_000_000, 1024, 1024),
    1_000_000,
    5,
)
SMOKE = Sizes(
    256,
    8,
    (("minilm-l6", 2, 16), ("llama-tiny", 2, 16)),
    (64, 4096, 64),
    (2000, 16, 20, 5),
    (20_000, 32, 16),
    5_000,
    1,
)


# --- timing ---------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], device: torch.device, rounds: int) -> float:
    """Median wall time of ``fn`` over ``rounds`` calls after one warm-up call (device synchronized)."""
    fn()
    sync(device)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# --- 1. peaks ------------------------------------------------------------------------------------------
def peaks(device: torch.device, sizes: Sizes) -> dict[str, float]:
    """bf16 and fp32 GEMM TFLOP/s and copy GB/s (bytes read + written)."""
    n, out = sizes.gemm, {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            seconds = median_seconds(lambda a=a, b=b: a @ b, device, max(3, sizes.rounds))
        finally:
            torch.backends.cuda.matmul.allow_tf32 = previous
        out[f"gemm_{name}_tflops"] = 2 * n**3 / seconds / 1e12
    x = torch.empty(sizes.copy_mb * 2**20 // 4, device=device)
    y = torch.empty_like(x)
    seconds = median_seconds(lambda: y.copy_(x), device, max(3, sizes.rounds))
    out["copy_gbs"] = 2 * x.numel() * 4 / seconds / 1e9
    return out


# --- 2. gradient extraction ---------------------------------------------------------------------------
def build_model(name: str, device: torch.device) -> tuple[torch.nn.Module, str]:
    """A seeded random-weight model of ``name``'s packaged config with LoRA r=8 (lora_B as after training)."""
    import transformers
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    with device:  # initialised where it runs: a 1.7B model's CPU init alone would take a minute
        if name == "minilm-l6":
            config = transformers.BertConfig(**_config("minilm-l6"), num_labels=4)
            model, task = transformers.BertForSequenceClassification(config), "SEQ_CLS"
        else:
            config = transformers.LlamaConfig(**_llama_config(name))
            model, task = transformers.LlamaForCausalLM(config), "CAUSAL_LM"
    targets = [n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    targets = sorted(set(targets) - {"lm_head", "classifier"})
    lora = LoraConfig(task_type=task, r=8, lora_alpha=16, target_modules=targets)
    model = get_peft_model(model, lora).to(device)
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "lora_B" in param_name:  # peft starts B at 0, which would zero every lora_A gradient
                param.normal_(0, 0.02)
    return model, "classification" if task == "SEQ_CLS" else "generation"


def _config(name: str) -> dict[str, Any]:
    return json.loads((MODELS / f"{name}.json").read_text())


LLAMA_SHAPES: dict[str, dict[str, int]] = {
    "smollm2-135m": {},
    "llama-1.7b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
                   "num_attention_heads": 32, "num_key_value_heads": 32, "head_dim": 64},  # SmolLM2-1.7B's
    "llama-tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                   "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32, "vocab_size": 512},
}  # fmt: skip
"""Each causal LM as changes to the packaged SmolLM2-135M config."""


def _llama_config(name: str) -> dict[str, Any]:
    base = {k: v for k, v in _config("smollm2-135m").items() if k not in ("architectures", "dtype")}
    return {**base, **LLAMA_SHAPES[name]}


def make_batch(model: torch.nn.Module, task: str, batch: int, tokens: int, device: torch.device) -> dict:
    """Random token ids (every position real) and labels: the cost depends on shapes, not on the text."""
    gen = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
    ids = torch.randint(5, vocab, (batch, tokens), generator=gen)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    out["labels"] = torch.randint(0, 4, (batch,), generator=gen) if task == "classification" else ids.clone()
    return {k: v.to(device) for k, v in out.items()}


def causal_lm_loss(module: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Mean next-token cross-entropy of each example, shape (B,)."""
    logits = module(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    target = batch["labels"][:, 1:]
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none"
    )
    return losses.view(target.shape).mean(dim=1)


def gradients(device: torch.device, sizes: Sizes, peak: dict[str, float]) -> list[dict[str, Any]]:
    from datadiet.representations.gradients import per_sample_gradients, sequence_classification_loss

    rows = []
    for name, batch_size, tokens in sizes.models:
        model, task = build_model(name, device)
        loss_fn = sequence_classification_loss if task == "classification" else causal_lm_loss
        batch = make_batch(model, task, batch_size, tokens, device)
        n_params = sum(p.numel() for p in model.parameters())
        flops = 6 * n_params * batch_size * tokens
        features: dict[str, np.ndarray] = {}
        for precision in ("fp32", "bf16"):
            step = _train_step(model, loss_fn, batch, device, precision)
            train_s = median_seconds(step, device, sizes.rounds)

            def extract(precision=precision, model=model, batch=batch, loss_fn=loss_fn) -> np.ndarray:
                return per_sample_gradients(
                    model, [batch], loss_fn, target="lora", dim=1024, precision=precision, progress=False
                )

            features[precision] = extract()
            extract_s = median_seconds(extract, device, sizes.rounds)
            peak_tflops = peak[f"gemm_{precision}_tflops"]
            rows.append(
                {
                    "model": name,
                    "params_m": n_params / 1e6,
                    "batch": f"{batch_size} x {tokens}",
                    "precision": precision,
                    "train_s": train_s,
                    "extract_s": extract_s,
                    "extract_tokens_s": batch_size * tokens / extract_s,
                    "train_tokens_s": batch_size * tokens / train_s,
                    "ratio": extract_s / train_s,
                    "mfu_extract": flops / extract_s / 1e12 / peak_tflops,
                    "mfu_train": flops / train_s / 1e12 / peak_tflops,
                }
            )
        rows[-1].update(_fidelity(features["bf16"], features["fp32"]))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def _train_step(model, loss_fn, batch, device: torch.device, precision: str) -> Callable[[], None]:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)

    def step() -> None:
        model.train()
        with torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
            loss = loss_fn(model, batch).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _fidelity(reduced: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """Smallest per-row cosine and the Gram matrix's relative Frobenius error, reduced against exact."""
    a, b = reduced.astype(np.float64), exact.astype(np.float64)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-300)
    gram_a, gram_b = a @ a.T, b @ b.T
    return {
        "min_cosine": float(cos.min()),
        "gram_error": float(np.linalg.norm(gram_a - gram_b) / np.linalg.norm(gram_b)),
    }


# --- 3. projection -------------------------------------------------------------------------------------
def projection(device: torch.device, sizes: Sizes, peak: dict[str, float]) -> dict[str, float]:
    from datadiet.representations.projection import Projector, set_cache_limit

    rows, in_dim, out_dim = sizes.projection
    set_cache_limit(max(2 << 30, in_dim * out_dim * 4 + (1 << 20)))
    x = torch.randn(rows, in_dim, device=device, generator=None)
    proj = Projector(in_dim, out_dim, seed=0, name="bench")
    setup_start = time.perf_counter()
    proj(x[:1])
    sync(device)
    setup = time.perf_counter() - setup_start
    matrix = proj.matrix(device)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        ours = median_seconds(lambda: proj(x), device, max(3, sizes.rounds))
        peer = median_seconds(lambda: x @ matrix, device, max(3, sizes.rounds))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    flops = 2 * rows * in_dim * out_dim
    return {
        "shape": f"{rows} x {in_dim:,} -> {out_dim}",
        "setup_s": setup,
        "ours_s": ours,
        "peer_s": peer,
        "ours_gbs": x.numel() * 4 / ours / 1e9,
        "ratio": ours / peer,
        "peak_fraction": flops / ours / 1e12 / peak["gemm_fp32_tflops"],
    }


# --- 4. k-means ----------------------------------------------------------------------------------------
def kmeans_section(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    from datadiet.selection.kmeans import kmeans

    n, d, k, iterations = sizes.kmeans
    x = _blobs(n, d, k)
    start = time.perf_counter()
    ours = kmeans(x, k, rng=0, engine="torch", max_iter=iterations, tol=0.0)
    ours_s = time.perf_counter() - start
    ours_inertia = float(np.sum(ours.distances.astype(np.float64) ** 2))
    rows = [
        {
            "shape": f"{n:,} x {d}, k={k:,}",
            "engine": "datadiet torch (k-means|| seeding)",
            "iterations": iterations,
            "seconds": ours_s,
            "inertia": ours_inertia,
            "inertia_ratio": 1.0,
        }
    ]
    for factor in (1, 4):  # faiss's defaults, then 4x its iterations: how far it is from equal inertia
        name, seconds, inertia = _faiss_kmeans(x, k, factor * iterations, gpu=device.type == "cuda")
        rows.append(
            {
                "shape": rows[0]["shape"],
                "engine": name,
                "iterations": factor * iterations,
                "seconds": seconds,
                "inertia": inertia,
                "inertia_ratio": inertia / ours_inertia,
                "time_ratio": seconds / ours_s,
            }
        )
    return rows


def _blobs(n: int, d: int, k: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((k, d), dtype=np.float32) * 4
    return centres[rng.integers(0, k, n)] + rng.standard_normal((n, d), dtype=np.float32)


def _faiss_kmeans(x: np.ndarray, k: int, iterations: int, *, gpu: bool) -> tuple[str, float, float]:
    """faiss.Kmeans with its defaults (random init, 256 points per centroid), on a GPU when it has one."""
    try:
        import faiss
    except ImportError:
        return "faiss not installed", math.nan, math.nan
    use_gpu = gpu and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    km = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=1, gpu=use_gpu, verbose=False)
    start = time.perf_counter()
    km.train(x)
    distances, _ = km.index.search(x, 1)
    seconds = time.perf_counter() - start
    name = (
        "faiss GPU" if use_gpu else f"faiss CPU ({faiss.omp_get_max_threads()} threads; no faiss GPU build)"
    )
    return name, seconds, float(distances.astype(np.float64).sum())


# --- 5. selection at scale -----------------------------------------------------------------------------
def selection(device: torch.device, sizes: Sizes) -> list[dict[str, Any]]:
    import datadiet

    n, d, n_val = sizes.selection
    train = np.empty((n, d), dtype=np.float32)
    step = 1 << 20
    for start in range(0, n, step):  # drawn on the device, chunk by chunk
        gen = torch.Generator(device=device).manual_seed(start)
        stop = min(n, start + step)
        train[start:stop] = torch.randn(stop - start, d, device=device, generator=gen).cpu().numpy()
    val = np.random.default_rng(1).standard_normal((n_val, d), dtype=np.float32)
    rows = []
    for algorithm, kwargs in (("less", {"val": val}), ("self_influence", {})):
        start = time.perf_counter()
        datadiet.select(algorithm, train, 0.1, seed=0, **kwargs)
        gpu_s = time.perf_counter() - start
        cpu_rows = min(n, sizes.cpu_rows)
        with _env("DATADIET_DEVICE", "cpu"):
            start = time.perf_counter()
            datadiet.select(algorithm, train[:cpu_rows], 0.1, seed=0, **kwargs)
            cpu_s = (time.perf_counter() - start) * n / cpu_rows
        rows.append(
            {
                "algorithm": algorithm,
                "shape": f"{n:,} x {d}",
                "device_s": gpu_s,
                "cpu_s": cpu_s,
                "cpu_rows": cpu_rows,
                "speedup": cpu_s / gpu_s,
            }
        )
    return rows


class _env:
    def __init__(self, key: str, value: str) -> None:
        self.key, self.value, self.old = key, value, os.environ.get(key)

    def __enter__(self) -> None:
        os.environ[self.key] = self.value

    def __exit__(self, *exc: object) -> None:
        if self.old is None:
            os.environ.pop(self.key, None)
        else:
            os.environ[self.key] = self.old


# --- the page ------------------------------------------------------------------------------------------
def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs)"
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores)"


def markdown(results: dict[str, Any], device: torch.device, smoke: bool, seconds: float) -> str:
    cuda = torch.version.cuda or "none"
    lines = [
        f"### GPU benchmarks on {device_name(device)}" + (" (smoke run: toy sizes)" if smoke else ""),
        "",
        f"`bench/gpu.sh` (`bench/bench_gpu.py`), torch {torch.__version__}, CUDA {cuda}; the whole run took "
        f"{seconds:.0f} s. Medians over rounds after a warm-up; each ratio is against the peer of the same "
        "run.",
        "",
    ]
    peak = results.get("peaks")
    if isinstance(peak, dict):
        lines += [
            f"- Peaks measured here: bf16 GEMM {peak['gemm_bf16_tflops']:.0f} TFLOP/s, fp32 GEMM (no "
            f"TF32) {peak['gemm_fp32_tflops']:.1f} TFLOP/s, device copy {peak['copy_gbs']:.0f} GB/s.",
            "",
        ]
    lines += _table(
        results,
        "gradients",
        "#### Gradient extraction against a training step (LoRA r=8, 1024-d; "
        "ratio = extraction / training-step time; MFU = 6 N tokens/s over the bf16 or fp32 peak)",
        [
            "model",
            "params_m",
            "batch",
            "precision",
            "train_s",
            "extract_s",
            "extract_tokens_s",
            "ratio",
            "mfu_train",
            "mfu_extract",
            "min_cosine",
            "gram_error",
        ],
    )
    lines += _table(
        results,
        "projection",
        "#### Projection (dense Projector) against matmul with the matrix",
        ["shape", "setup_s", "ours_s", "peer_s", "ratio", "ours_gbs", "peak_fraction"],
    )
    lines += _table(
        results,
        "kmeans",
        "#### k-means: the torch engine against faiss (defaults: random init)",
        ["shape", "engine", "iterations", "seconds", "time_ratio", "inertia", "inertia_ratio"],
    )
    lines += _table(
        results,
        "selection",
        "#### Selection at scale against the CPU path (scaled from its rows)",
        ["algorithm", "shape", "device_s", "cpu_s", "cpu_rows", "speedup"],
    )
    return "\n".join(lines) + "\n"


def _table(results: dict[str, Any], key: str, title: str, columns: list[str]) -> list[str]:
    value = results.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [title, "", f"Failed: `{value}`", ""]
    rows = value if isinstance(value, list) else [value]
    out = [title, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        out.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
    return [*out, ""]


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|")  # a bare pipe would end the table cell


def run(sizes: Sizes, only: tuple[str, ...], device: torch.device) -> dict[str, Any]:
    results: dict[str, Any] = {}
    peak = peaks(device, sizes)
    results["peaks"] = peak
    steps: dict[str, Callable[[], Any]] = {
        "gradients": lambda: gradients(device, sizes, peak),
        "projection": lambda: projection(device, sizes, peak),
        "kmeans": lambda: kmeans_section(device, sizes),
        "selection": lambda: selection(device, sizes),
    }
    for name, step in steps.items():
        if name not in only:
            continue
        started = time.perf_counter()
        print(f"{name} ...", flush=True)
        try:
            results[name] = step()
        except Exception as exc:  # one failing section must not lose the others' figures
            traceback.print_exc()
            results[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        print(f"{name}: {time.perf_counter() - started:.1f} s", flush=True)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes on any device (checks the script)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS[1:], default=list(SECTIONS[1:]))
    parser.add_argument("--models", nargs="+", default=None, help="only these models in (2)")
    parser.add_argument("--out", type=Path, default=None, help="the markdown page to write")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = resolve_device()
    if device.type != "cuda" and not args.smoke:
        parser.error("no CUDA device is visible: run on a GPU machine, or pass --smoke for a toy run")
    started = time.perf_counter()
    sizes = SMOKE if args.smoke else FULL
    if args.models:
        sizes = dataclasses.replace(sizes, models=tuple(m for m in sizes.models if m[0] in args.models))
    results = run(sizes, tuple(args.only), device)
    page = markdown(results, device, args.smoke, time.perf_counter() - started)
    print(page)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(page)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    return results


if __name__ == "__main__":
    main()
