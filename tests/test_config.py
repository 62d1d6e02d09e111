from __future__ import annotations

import pytest

from datadiet.config import ConfigError, ReferenceConfig, from_dict, load_config, to_dict


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
