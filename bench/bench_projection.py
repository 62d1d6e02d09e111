"""Time seeded random projections against TRAK's CPU projector (``BasicProjector``) on the same input.

For each shape (rows x input dim -> output dim) the same float32 input goes through TRAK's
``BasicProjector`` (rademacher and normal, its default ``block_size=100``) and through
:class:`datadiet.representations.projection.Projector` (rademacher, normal, Achlioptas sparse and very
sparse), calls interleaved round by round so that load on the shared machine hits both alike. The
realistic case is many batches through one projector: our first call (which generates and caches the
matrix) is reported apart as "setup", then the median of the later calls; TRAK regenerates its blocks at
every call, so its first and later calls cost the same.

The TRAK peer of ``sparse`` and ``very_sparse`` is TRAK's rademacher (it has no sparse kind); a TRAK
row's own speed-up is against itself in its first pair. Distortion is measured against the unprojected
input, with TRAK's output divided by ``sqrt(k)`` (it does not scale): the spread (std) of
``||P^T x||^2 / ||x||^2`` and the largest error of a pairwise cosine (inner products of unit rows). Usage:
``python bench/bench_projection.py [--rounds 3] [--shapes 16x100000x1024 64x300000x1024] [--out FILE.md]``
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from trak.projectors import BasicProjector, ProjectionType

from datadiet.representations.projection import KINDS, Projector, clear_cache


def make_input(rows: int, dim: int, seed: int = 0) -> torch.Tensor:
    """Rows sharing a common direction (cosines near 0.5) plus heavy-ish per-row noise."""
    gen = torch.Generator().manual_seed(seed)
    common = torch.randn(1, dim, generator=gen)
    return common + torch.randn(rows, dim, generator=gen) * torch.rand(rows, 1, generator=gen).add(0.5)


def distortion(x: torch.Tensor, px: torch.Tensor) -> tuple[float, float]:
    """(std of squared-norm ratios, largest pairwise-cosine error) of ``px`` against ``x``."""
    x, px = x.double(), px.double()
    ratios = px.pow(2).sum(1) / x.pow(2).sum(1)
    ux, upx = x / x.norm(dim=1, keepdim=True), px / x.norm(dim=1, keepdim=True)
    return float(ratios.std()), float((upx @ upx.T - ux @ ux.T).abs().max())


def projectors(dim: int, k: int) -> dict[str, tuple[callable, float]]:
    """name -> (function of the input, scale that makes its output unit-variance)."""
    found = {}
    for proj_type in ("rademacher", "normal"):
        trak = BasicProjector(dim, k, 0, ProjectionType(proj_type), torch.device("cpu"), dtype=torch.float32)
        found[f"TRAK BasicProjector, {proj_type}"] = (lambda x, p=trak: p.project(x, model_id=0), k**-0.5)
    for kind in KINDS:
        ours = Projector(dim, k, seed=0, name="bench", kind=kind)
        found[f"datadiet Projector, {kind}"] = (ours, 1.0)
    return found


def run_shape(rows: int, dim: int, k: int, rounds: int) -> list[dict]:
    """Rows of results for one shape: each of ours timed alternately with its TRAK peer, pair by pair."""
    x = make_input(rows, dim)
    found = projectors(dim, k)
    trak = [name for name in found if name.startswith("TRAK")]
    ours = [name for name in found if not name.startswith("TRAK")]
    pairs = [(trak[0], ours[0]), (trak[1], ours[1]), (trak[0], ours[2]), (trak[0], ours[3])]
    results = []
    for peer, name in pairs:
        clear_cache()  # one cached matrix at a time keeps memory at one matrix
        times: dict[str, list[float]] = {peer: [], name: []}
        outputs = {}
        for _ in range(rounds + 1):
            for key in (peer, name):
                start = time.perf_counter()
                outputs[key] = found[key][0](x)
                times[key].append(time.perf_counter() - start)
            print(f"  {rows}x{dim}->{k} {peer}: {times[peer][-1]:.3f} s, {name}: {times[name][-1]:.4f} s")
        for key in (peer, name) if peer not in {r["name"] for r in results} else (name,):
            norm_std, cos_err = distortion(x, outputs[key] * found[key][1])
            results.append(
                {
                    "name": key,
                    "setup": times[key][0],
                    "seconds": float(np.median(times[key][1:])),
                    "peer": float(np.median(times[peer][1:])),
                    "norm": norm_std,
                    "cos": cos_err,
                }
            )
    clear_cache()
    return results


def markdown(shape: tuple[int, int, int], results: list[dict]) -> list[str]:
    rows, dim, k = shape
    gflop = 2 * rows * dim * k / 1e9
    lines = [
        f"#### {rows} x {dim:,} -> {k} ({gflop:.1f} GFLOP a call as a dense GEMM)",
        "",
        "| projector | first call s | s / call (median) | GFLOP/s | TRAK peer s / call (same rounds) "
        "| speed-up vs TRAK | norm² ratio std | max cosine error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['name']} | {r['setup']:.3f} | {r['seconds']:.4f} | {gflop / r['seconds']:.0f} "
            f"| {r['peer']:.3f} | {r['peer'] / r['seconds']:.1f}x | {r['norm']:.4f} | {r['cos']:.4f} |"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shapes", nargs="+", default=["16x100000x1024", "64x300000x1024"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lines = [
        f"### Projection vs TRAK BasicProjector ({platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {args.rounds} timed calls after the first)",
        "",
    ]
    for text in args.shapes:
        shape = tuple(int(v) for v in text.split("x"))
        lines += markdown(shape, run_shape(*shape, rounds=args.rounds))
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
