"""Frozen-encoder embeddings and the FrozenHead reference model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from datadiet.models.frozen import FrozenHead, encode_texts
from datadiet.training import TrainConfig, train_reference
from tests.helpers import assert_float32_path_close, gamma
from tests.models.toy_models import make_tiny_bert, separable_embeddings, toy_dataset


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def test_encode_texts_is_the_mean_over_non_padding_tokens(bert_dir):
    ds = toy_dataset(9, pairs=True)
    embeddings = encode_texts(bert_dir, ds, batch_size=4, progress=False)
    assert embeddings.shape == (9, 32) and embeddings.dtype == np.float32
    tokenizer = AutoTokenizer.from_pretrained(str(bert_dir))
    encoder = AutoModel.from_pretrained(str(bert_dir)).eval()
    encoder64 = copy.deepcopy(encoder).double()
    for i in (0, 4, 8):  # one example at a time: no padding at all (batches of 4 round otherwise)
        inputs = tokenizer(ds.texts[i], ds.text_pairs[i], return_tensors="pt")
        with torch.no_grad():
            expected, expected64 = (e(**inputs).last_hidden_state[0].mean(0) for e in (encoder, encoder64))
        assert_float32_path_close(embeddings[i], expected, expected64)


def test_encode_texts_normalize_gives_unit_rows(bert_dir):
    ds = toy_dataset(5)
    plain = encode_texts(bert_dir, ds, progress=False)
    unit = encode_texts(bert_dir, ds, normalize=True, progress=False)
    # the same forward passes; normalising and measuring in float32 (norms of 32 terms): gamma_67 at most
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=gamma(2 * 32 + 3))
    np.testing.assert_allclose(
        unit, plain / np.linalg.norm(plain, axis=1, keepdims=True), atol=gamma(2 * 32 + 3)
    )


def test_collate_gathers_rows_of_the_dataset_table():
    ds, embeddings = separable_embeddings(20)
    model = FrozenHead.for_dataset(ds, embeddings, 3)
    batch = model.collate(ds, np.array([4, 1, 7]))
    np.testing.assert_array_equal(batch["embeddings"].numpy(), embeddings[[4, 1, 7]])
    assert batch["labels"].tolist() == ds.labels[[4, 1, 7]].tolist()


def test_other_splits_need_attached_embeddings():
    ds, embeddings = separable_embeddings(20)
    other, other_embeddings = separable_embeddings(8, seed=1)
    other = other.subset(np.arange(8), note="val")  # same content: same fingerprint
    model = FrozenHead.for_dataset(ds, embeddings, 3)
    val = toy_dataset(8, split="val")
    with pytest.raises(KeyError, match="attach_embeddings"):
        model.collate(val, np.arange(2))
    model.attach_embeddings(other, other_embeddings)
    assert model.has_embeddings(other) and not model.has_embeddings(val)
    np.testing.assert_array_equal(
        model.collate(other, np.arange(3))["embeddings"].numpy(), other_embeddings[:3]
    )
    with pytest.raises(ValueError, match="input_dim=16"):
        model.attach_embeddings(val, np.zeros((8, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="n_examples=8"):
        model.attach_embeddings(val, np.zeros((7, 16), dtype=np.float32))


def test_pooled_hidden_is_what_the_classifier_reads():
    ds, embeddings = separable_embeddings(10)
    linear = FrozenHead.for_dataset(ds, embeddings, 3)
    batch = linear.collate(ds, np.arange(10))
    torch.testing.assert_close(linear.pooled_hidden(batch), batch["embeddings"])
    mlp = FrozenHead.for_dataset(ds, embeddings, 3, head="mlp", hidden=8)
    hidden = mlp.pooled_hidden(batch)
    assert hidden.shape == (10, 8) and (hidden >= 0).all()
    torch.testing.assert_close(mlp.module.classifier(hidden), mlp.logits(batch))
    last_linear = [name for name, m in mlp.module.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    assert last_linear == "classifier" and mlp.gradient_target() == "classifier"


def test_init_is_seeded_without_touching_global_rng():
    ds, embeddings = separable_embeddings(10)
    before = torch.get_rng_state()
    weights = [FrozenHead.for_dataset(ds, embeddings, 3, seed=s).trainable_state() for s in (0, 0, 1)]
    assert torch.equal(before, torch.get_rng_state())
    assert torch.equal(weights[0]["classifier.weight"], weights[1]["classifier.weight"])
    assert not torch.equal(weights[0]["classifier.weight"], weights[2]["classifier.weight"])


def test_input_fingerprint_follows_the_embeddings():
    ds, embeddings = separable_embeddings(10)
    a = FrozenHead.for_dataset(ds, embeddings, 3).input_fingerprint(ds)
    b = FrozenHead.for_dataset(ds, embeddings + 1, 3).input_fingerprint(ds)
    assert a != b and len(a) == 16


def test_invalid_arguments_are_named():
    ds, embeddings = separable_embeddings(10)
    with pytest.raises(ValueError, match="Unknown head 'deep'"):
        FrozenHead.for_dataset(ds, embeddings, 3, head="deep")
    with pytest.raises(TypeError, match="for_dataset"):
        FrozenHead(embeddings, 3)
    with pytest.raises(ValueError, match="NaN"):
        FrozenHead.for_dataset(ds, np.full((10, 4), np.nan, dtype=np.float32), 3)


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_frozen_head_learns_separable_embeddings(tmp_path, head):
    ds, embeddings = separable_embeddings(300)
    model = FrozenHead.for_dataset(ds, embeddings, 3, head=head, hidden=32)
    config = TrainConfig(epochs=4, batch_size=32, lr=1e-2, warmup_ratio=0.0)
    run = train_reference(model, ds, config, tmp_path / head, progress=False)
    assert run.correct[:, -1].mean() >= 0.95
    assert run.prob[:, -1].mean() > run.prob[:, 0].mean()
