from __future__ import annotations

from pathlib import Path

import pytest

from datadiet.config import (
    ConfigError,
    ReferenceConfig,
    StudyConfig,
    TrainingConfig,
    from_dict,
    load_config,
    to_dict,
)
from datadiet.config.docs import config_reference
from datadiet.training import TrainConfig

SEL = "{algorithm: el2n, representation: dynamics/prob}"


def test_defaults_round_trip_through_dict():
    cfg = ReferenceConfig()
    assert from_dict(ReferenceConfig, to_dict(cfg)) == cfg
    assert cfg.model.mode == "frozen" and cfg.represent.gradients.dim == 1024


def test_yaml_values_are_typed_and_nested(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "output: runs/x\n"
        "dataset: {source: reuters_r8, slice: 300}\n"
        "model: {mode: lora, lora: {r: 4}}\n"
        "training: {lr: 5e-5, checkpoint_epochs: [1, 2]}\n"
    )
    cfg = load_config(path, ReferenceConfig)
    assert cfg.dataset.slice == 300 and cfg.model.lora.r == 4 and cfg.model.lora.alpha == 16
    assert cfg.training.lr == 5e-5 and isinstance(cfg.training.lr, float)
    assert cfg.training.checkpoint_epochs == [1, 2]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"datset": {}}, r"Unknown key\(s\) \['datset'\] in the config. Valid: \['output', 'run_dir'"),
        ({"model": {"lora": {"rank": 4}}}, r"Unknown key\(s\) \['rank'\] in model.lora"),
        ({"model": {"lora": {"r": "eight"}}}, "model.lora.r must be an int. Got 'eight' instead."),
        ({"model": {"mode": "qlora"}}, r"model.mode must be one of \['frozen', 'lora', 'full'\]"),
        ({"training": {"epochs": True}}, "training.epochs must be an int. Got True instead."),
        ({"training": {"lr": "fast"}}, "training.lr must be a number"),
        ({"represent": {"kinds": ["dyn"]}}, r"represent.kinds\[0\] must be one of"),
        ({"dataset": "reuters"}, "dataset must be a mapping"),
    ],
)
def test_bad_configs_name_the_field(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(ReferenceConfig, data)


def test_load_config_refuses_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", ReferenceConfig)
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml", ReferenceConfig)


# ------------------------------------------------------------------------------- defaults resolved at load
@pytest.mark.parametrize(
    ("mode", "lr", "main_epochs"), [("frozen", 1e-2, 20), ("lora", 5e-5, 3), ("full", 5e-5, 3)]
)
def test_mode_dependent_defaults_are_resolved_once_at_load(mode, lr, main_epochs):
    cfg = from_dict(
        StudyConfig, {"reference": {"model": {"mode": mode, "head": "mlp"}, "training": {"epochs": 7}}}
    )
    ref = cfg.reference
    assert ref.training.lr == lr and ref.training.checkpoint_epochs == [1, 2, 3, 4, 5]
    assert ref.represent.gradients.batch_size == ref.training.batch_size == 16
    assert (cfg.main.epochs, cfg.main.lr, cfg.main.head) == (main_epochs, lr, "mlp")
    assert (cfg.metrics, cfg.primary_metric) == (["accuracy", "macro_f1"], "macro_f1")
    resolved = to_dict(cfg)
    assert None not in (resolved["main"]["lr"], resolved["reference"]["training"]["lr"])
    assert from_dict(StudyConfig, resolved) == cfg  # the resolved config replays to the same settings


def test_explicit_values_are_kept_and_metrics_follow_the_dataset_task():
    ref = from_dict(
        ReferenceConfig,
        {"training": {"lr": 3e-4, "epochs": 2}, "represent": {"gradients": {"batch_size": 4}}},
    )
    assert ref.training.lr == 3e-4 and ref.training.checkpoint_epochs == [1, 2]
    assert ref.represent.gradients.batch_size == 4
    xsum = from_dict(StudyConfig, {"reference": {"dataset": {"source": "xsum"}, "model": {"mode": "lora"}}})
    assert (xsum.metrics, xsum.primary_metric) == (["rouge1", "rouge2", "rougeL"], "rougeL")
    wino = from_dict(
        StudyConfig, {"reference": {"dataset": {"source": "winogrande"}, "model": {"mode": "lora"}}}
    )
    assert wino.primary_metric == "accuracy"
    with pytest.raises(ConfigError, match=r"metrics \['accuracy'\] do not fit a generation task"):
        from_dict(StudyConfig, {"reference": {"dataset": {"source": "xsum"}}, "metrics": ["accuracy"]})


def test_the_loop_settings_are_the_config_section_with_the_identity_runs_always_had():
    cfg = from_dict(ReferenceConfig, {"training": {"epochs": 3, "checkpoint_epochs": [3, 1]}})
    settings = TrainConfig.of(cfg.training)
    assert isinstance(settings, TrainingConfig) and settings.checkpoint_schedule == (1, 3)
    assert settings.to_dict() == {
        "epochs": 3, "batch_size": 16, "eval_batch_size": 64, "lr": 0.01, "weight_decay": 0.01,
        "warmup_ratio": 0.1, "seed": 0, "checkpoint_epochs": [1, 3], "record_in_training": False,
    }  # fmt: skip
    assert list(settings.to_dict()) == list(TrainConfig().to_dict())  # the key order of config.json
    default = TrainConfig.of(from_dict(ReferenceConfig, {}).training)  # the schedule resolved at load
    assert default.to_dict()["checkpoint_epochs"] is None  # recorded as runs always recorded the default


# ------------------------------------------------------------------------------ study specs checked at load
@pytest.mark.parametrize(("selection", "message"), [
    ("{algorithm: hard_to_lern, representation: dynamics/prob}",
     r"selections\[1\].algorithm: Unknown selector 'hard_to_lern'. Did you mean 'hard_to_learn'\?"),
    ("{algorithm: hard_to_learn, representation: dynamics/porb}",
     r"selections\[1\].representation: Unknown representation 'dynamics/porb'. "
     r"Did you mean 'dynamics/prob'\?"),
    ("{algorithm: prototypicality, representation: hidden/final, params: {n_cluster: 4}}",
     r"selections\[1\]: Unknown parameter\(s\) \['n_cluster'\].*Did you mean 'n_clusters'\?"),
])  # fmt: skip
def test_load_config_refuses_a_misspelled_study_spec_naming_the_yaml_path(tmp_path, selection, message):
    path = tmp_path / "study.yaml"
    path.write_text(f"selections:\n  - {SEL}\n  - {selection}\n")
    with pytest.raises(ConfigError, match=rf"study.yaml': {message}"):
        load_config(path, StudyConfig)


def test_the_config_reference_in_docs_is_generated_from_the_schema():
    committed = (Path(__file__).parents[1] / "docs" / "config.md").read_text(encoding="utf-8")
    assert committed == config_reference(), "regenerate it: python -m datadiet.config.docs > docs/config.md"
    assert "| `warmup_ratio` | number | `0.1` | [0, 1] |" in committed
