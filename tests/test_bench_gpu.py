"""bench/bench_gpu.py (what bench/gpu.sh runs on a GPU) in its smoke mode on the CPU: every section runs and
the page and its JSON hold real figures; without a GPU and without --smoke it refuses."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench" / "bench_gpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_smoke_run_writes_every_section_with_real_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("DATADIET_DEVICE", "cpu")
    bench = load_bench()
    out = tmp_path / "gpu.md"
    results = bench.main(["--smoke", "--models", "llama-tiny", "--out", str(out)])
    page = out.read_text()
    for title in ("Gradient extraction", "Projection", "k-means", "Selection at scale"):
        assert f"#### {title}" in page
    assert "Failed" not in page
    assert json.loads(out.with_suffix(".json").read_text())["peaks"]["gemm_fp32_tflops"] > 0
    grads = results["gradients"]
    assert [row["precision"] for row in grads] == ["fp32", "bf16"]
    assert all(row["extract_s"] > 0 and row["train_s"] > 0 for row in grads)
    assert grads[1]["min_cosine"] > 0.99 and 0 <= grads[1]["gram_error"] < 0.05  # bf16 against fp32
    kmeans = results["kmeans"]
    assert kmeans[0]["inertia"] > 0 and kmeans[0]["inertia_ratio"] == 1.0
    assert {row["algorithm"] for row in results["selection"]} == {"less", "self_influence"}
    assert results["projection"]["ratio"] > 0 and not math.isnan(results["projection"]["ours_gbs"])


def test_a_full_run_without_a_gpu_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("DATADIET_DEVICE", "cpu")
    with pytest.raises(SystemExit) as exc:
        load_bench().main([])
    assert exc.value.code == 2
    assert "no CUDA device is visible" in capsys.readouterr().err
