"""Reduced-precision gradient extraction: bf16/fp16 autocast with float32 products, and the Gram check.

Invariants checked here: ``precision="fp32"`` is the code of before (bit for bit, no extra pass); bf16 and
fp16 give float32 features close to fp32 ones, row by row; the first batch is run once more in fp32 and a
:class:`ReducedPrecisionWarning` is raised exactly when the Gram matrices differ by more than the tolerance;
the setting reaches the extraction from ``represent.gradients.precision`` and a wrong value is refused
naming that key. bf16 and fp16 autocast run on the CPU (slower there, but the same numerics contract).
"""

from __future__ import annotations

import typing
import warnings

import numpy as np
import pytest
import torch

import datadiet.representations.gradients as gradients
from datadiet.config import GradientConfig, ReferenceConfig, load_config
from datadiet.errors import ConfigError, ParameterError
from datadiet.representations.gradients import (
    GRAM_TOLERANCE,
    PRECISIONS,
    ReducedPrecisionWarning,
    gram_error,
    per_sample_gradients,
    sequence_classification_loss,
)
from tests.representations.test_gradients import padded, tiny_bert, with_lora

pytest.importorskip("peft")

LENGTHS = [5, 9, 3, 12, 7, 12, 4, 6]
MIN_ROW_COSINE = 0.99
"""bf16 keeps 8 significant bits: each row's direction moves by far less than this allows."""


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return with_lora(tiny_bert())


@pytest.fixture(scope="module")
def batches() -> list[dict]:
    gen = torch.Generator().manual_seed(1)
    examples = [
        {
            "input_ids": torch.randint(1, 100, (1, length), generator=gen),
            "attention_mask": torch.ones(1, length, dtype=torch.long),
            "labels": torch.tensor([i % 2]),
        }
        for i, length in enumerate(LENGTHS)
    ]
    return padded(examples, sizes=(4, 4))


def counted_loss() -> tuple[list[int], typing.Callable]:
    calls: list[int] = []

    def loss(module, batch):
        calls.append(len(batch["labels"]))
        return sequence_classification_loss(module, batch)

    return calls, loss


def extract(model, batches, **kwargs) -> np.ndarray:
    return per_sample_gradients(
        model, batches, sequence_classification_loss, target="lora", dim=256, progress=False, **kwargs
    )


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_config_and_extraction_accept_the_same_precisions():
    assert typing.get_args(GradientConfig.model_fields["precision"].annotation) == PRECISIONS
    assert GradientConfig().precision == "fp32"


def test_fp32_is_bit_identical_to_the_call_without_precision_and_runs_no_extra_pass(model, batches):
    calls, loss = counted_loss()
    before = per_sample_gradients(model, batches, loss, target="lora", dim=256, progress=False)
    assert calls == [4, 4]
    fp32 = per_sample_gradients(
        model, batches, loss, target="lora", dim=256, progress=False, precision="fp32"
    )
    assert calls == [4, 4] * 2  # fp32 runs no Gram check
    np.testing.assert_array_equal(before, fp32)
    np.testing.assert_array_equal(before, extract(model, batches, precision="fp32", check_gram=False))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("dim", [256, None])
def test_reduced_precision_gives_float32_rows_close_to_fp32(model, batches, precision, dim):
    kwargs = {"target": "lora", "dim": dim, "progress": False}
    loss = sequence_classification_loss
    fp32 = per_sample_gradients(model, batches, loss, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReducedPrecisionWarning)  # well-conditioned: no warning at 1e-2
        reduced = per_sample_gradients(model, batches, loss, precision=precision, **kwargs)
    assert reduced.dtype == np.float32 and reduced.shape == fp32.shape
    assert not np.array_equal(reduced, fp32)  # autocast did run in reduced precision
    assert row_cosines(reduced, fp32).min() > MIN_ROW_COSINE
    error = gram_error(torch.from_numpy(reduced), torch.from_numpy(fp32))
    assert 0 < error < GRAM_TOLERANCE


def test_reduced_precision_leaves_the_model_as_it_was(model, batches):
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    modes = [m.training for m in model.modules()]
    extract(model, batches, precision="bf16")
    assert all(
        torch.equal(before[name], p) and p.dtype == torch.float32 for name, p in model.named_parameters()
    )
    assert [m.training for m in model.modules()] == modes and not torch.is_autocast_enabled("cpu")


def test_gram_check_warns_in_one_line_when_the_error_exceeds_the_tolerance(model, batches, monkeypatch):
    monkeypatch.setattr(gradients, "GRAM_TOLERANCE", 1e-12)
    calls, loss = counted_loss()
    with pytest.warns(ReducedPrecisionWarning) as record:
        per_sample_gradients(model, batches, loss, target="lora", dim=256, progress=False, precision="bf16")
    assert len(record) == 1 and record[0].filename == __file__  # stacklevel: the caller's line
    message = str(record[0].message)
    assert "\n" not in message and message.startswith("precision=bf16 moved the Gram matrix")
    error = float(message.split("relative error of ")[1].split()[0])
    assert 1e-12 < error < GRAM_TOLERANCE and "tolerance 1e-12" in message
    assert message.endswith("use represent.gradients.precision: fp32.")
    assert calls == [4, 4, 4]  # the first batch once more, in fp32


def test_gram_check_can_be_turned_off(model, batches, monkeypatch):
    monkeypatch.setattr(gradients, "GRAM_TOLERANCE", 1e-12)
    calls, loss = counted_loss()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReducedPrecisionWarning)
        per_sample_gradients(
            model, batches, loss, target="lora", dim=256, progress=False, precision="bf16", check_gram=False
        )
    assert calls == [4, 4]


def test_gram_error_of_nonfinite_or_zero_features():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert gram_error(p, p) == 0.0 and gram_error(torch.zeros(2, 2), torch.zeros(2, 2)) == 0.0
    assert gram_error(p, torch.zeros(2, 2)) == float("inf")
    assert np.isnan(gram_error(torch.full((2, 2), float("nan")), p))
    assert gram_error(3 * p, p, normalize=True) == 0.0  # row scale does not count once rows are normalised


def test_nonfinite_gram_error_always_warns(monkeypatch):
    with pytest.warns(ReducedPrecisionWarning, match="relative error of nan"):
        gradients._check_gram(torch.full((2, 2), float("nan")), torch.eye(2), "fp16", False)


def test_an_unknown_precision_is_refused(model, batches):
    with pytest.raises(
        ParameterError, match=r"'precision' parameter must be one of \['fp32', 'bf16', 'fp16'\]"
    ):
        extract(model, batches, precision="fp8")


def test_an_invalid_precision_in_a_yaml_config_names_the_key(tmp_path):
    path = tmp_path / "ref.yaml"
    path.write_text("represent:\n  gradients:\n    precision: bfloat16\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, ReferenceConfig)
    message = str(info.value)
    assert str(path) in message and "represent.gradients.precision" in message
    assert "['fp32', 'bf16', 'fp16']" in message and "'bfloat16'" in message


def test_represent_extracts_with_the_configured_precision(monkeypatch):
    """The pipeline's chunk function passes ``precision`` on, checking the Gram matrix in the first chunk."""
    from datadiet.models.frozen import FrozenHead
    from datadiet.pipeline.represent import _gradient_chunk
    from tests.models.toy_models import separable_embeddings

    ds, table = separable_embeddings(24, dim=8)
    head = FrozenHead.for_dataset(ds, table, 3, head="mlp", hidden=8)
    job = typing.cast(typing.Any, type("Job", (), {}))()
    job.ds, job.batch_size, job.adam = ds, 4, False
    out = {}
    for precision in PRECISIONS:
        job.gradients = GradientConfig(dim=16, precision=precision)
        out[precision] = _gradient_chunk((job, head, None), (0, 24))
    assert all(values.dtype == np.float32 and values.shape == (24, 16) for values in out.values())
    assert row_cosines(out["bf16"], out["fp32"]).min() > MIN_ROW_COSINE
    seen = []
    monkeypatch.setattr(
        gradients, "per_sample_gradients", lambda *a, **k: seen.append(k) or np.zeros((4, 16))
    )
    for start in (0, 4):
        _gradient_chunk((job, head, None), (start, start + 4))
    assert [(k["precision"], k["check_gram"]) for k in seen] == [("fp16", True), ("fp16", False)]


def test_an_fp16_overflow_is_refused_not_stored(model, batches, monkeypatch):
    monkeypatch.setattr(gradients, "FP16_LOSS_SCALE", 2.0**40)  # every output gradient overflows fp16
    with pytest.raises(
        ParameterError,
        match=r"precision=fp16 gave non-finite gradients .*use represent.gradients.precision: fp32",
    ):
        extract(model, batches, precision="fp16")
