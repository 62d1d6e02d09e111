"""Views in a study: ``representation: gradients/train:flatten`` checked at load, the default validation
representation, file names of labels with ':', and a tiny multiple-choice study that selects on views."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datadiet.config import (
    ConfigError,
    SelectionSpec,
    StudyConfig,
    cell_id,
    from_dict,
    load_config,
    selection_file,
)
from datadiet.pipeline.study import StudyRunner, run_study
from tests.models.test_multiple_choice import toy_choices
from tests.models.toy_models import make_tiny_bert
from tests.test_study_tasks import study_config, write_splits


def _study(selections: list[dict], **reference) -> StudyConfig:
    return from_dict(
        StudyConfig, {"budgets": [0.3], "seeds": [0], "selections": selections, "reference": reference}
    )


@pytest.mark.parametrize(
    "name", ["gradients/train:flatten", "gradients/train:lrmean", "gradients/train:checkpoint=2"]
)
def test_a_view_of_the_training_gradients_is_accepted_at_load(name):
    cfg = _study([{"algorithm": "semdedup", "representation": name}], training={"epochs": 3})
    assert cfg.selections[0].representation == name
    assert cfg.selections[0].label == f"semdedup@{name}"


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (
            {"algorithm": "semdedup", "representation": "gradients/train:flaten"},
            r"^selections\[0\].representation: Unknown view 'flaten'. Did you mean 'flatten'\? Available: ",
        ),
        (
            {"algorithm": "semdedup", "representation": "dynamics/prob:flatten"},
            r"^selections\[0\].representation: the view 'flatten' does not fit 'dynamics/prob': .*/\* only",
        ),
        (
            {"algorithm": "semdedup", "representation": "hidden/final:lrmean"},
            r"^selections\[0\].representation: the view 'lrmean' does not fit 'hidden/final'",
        ),
        (
            {"algorithm": "semdedup", "representation": "gradients/train:checkpoint=x"},
            r"^selections\[0\].representation: The view 'checkpoint=x' needs an integer epoch",
        ),
        (
            {"algorithm": "semdedup", "representation": "gradients/train:checkpoint=9"},
            r"^selections\[0\].representation: the view 'checkpoint=9' names epoch 9, .* epochs \[1, 2, 3\] "
            r"\(reference.training.checkpoint_epochs\)",
        ),
        (
            {"algorithm": "semdedup", "representation": "gradients/trian:flatten"},
            r"^selections\[0\].representation: Unknown representation 'gradients/trian'. Did you mean",
        ),
        (
            {
                "algorithm": "less",
                "representation": "gradients/train",
                "val_representation": "gradients/val:x",
            },
            r"^selections\[0\].val_representation: Unknown view 'x'",
        ),
    ],
)
def test_a_bad_view_is_refused_at_load_naming_the_yaml_key(selection, message):
    with pytest.raises(ConfigError, match=message) as info:
        _study([selection], training={"epochs": 3})
    assert "\n" not in str(info.value)


def test_the_checkpoint_of_an_existing_run_is_checked_when_the_view_is_applied():
    selection = {"algorithm": "semdedup", "representation": "gradients/train:checkpoint=9"}
    cfg = _study([selection], run_dir="runs/elsewhere/reference", training={"epochs": 3})
    assert cfg.selections[0].representation == "gradients/train:checkpoint=9"  # its epochs: not known yet


def test_a_bad_view_in_a_yaml_file_is_refused_at_load(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("selections: [{algorithm: semdedup, representation: gradients/train:flaten}]\n")
    with pytest.raises(ConfigError, match=r"selections\[0\].representation: .*Did you mean 'flatten'\?"):
        load_config(path, StudyConfig)


def test_the_default_val_representation_is_the_counterpart_and_is_not_hashed():
    assert SelectionSpec("less", "gradients/train").val_name == "gradients/val"
    assert SelectionSpec("less", "hidden/final").val_name == "hidden/final/val"
    assert SelectionSpec("less", "dynamics/loss").val_name == "dynamics/loss/val"
    assert SelectionSpec("less", "gradients/train:flatten").val_name == "gradients/val:flatten"
    given = SelectionSpec("less", "gradients/train", val_representation="gradients/val:lrmean")
    assert given.val_name == "gradients/val:lrmean"
    dumped = SelectionSpec("less", "gradients/train").model_dump()  # the cell hash's spec: unchanged
    assert dumped["val_representation"] is None and "val_name" not in dumped


def test_the_default_val_of_a_view_is_checked_at_load():
    with pytest.raises(
        ConfigError, match=r"selections\[0\].val_representation: 'gradients/val' is not extracted"
    ):
        _study(
            [{"algorithm": "less", "representation": "gradients/train:flatten"}], dataset={"val_split": None}
        )


def test_labels_with_a_view_give_valid_file_names():
    label = "less@gradients/train:checkpoint=2"
    assert cell_id(label, 0.5, 0) == "less@gradients_train_checkpoint_2__b0.50__s0"
    assert selection_file(label, 0.5, 0) == "selections/less@gradients_train_checkpoint_2/b0.50_s0.json"


# --- a tiny study on views --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def view_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("view_study")
    data = write_splits(
        root / "data",
        {
            "train": toy_choices(24, seed=0, options=(2, 3)),
            "validation": toy_choices(6, seed=1, split="validation"),
            "test": toy_choices(10, seed=2, options=(3,), split="test"),
        },
    )
    cfg = study_config(root / "out", data, make_tiny_bert(root / "bert"), "multiple_choice", 1)
    selections = [
        {"algorithm": "prototypicality", "representation": "gradients/train:flatten"},
        {"algorithm": "less", "representation": "gradients/train:checkpoint=2"},
    ]
    cfg = from_dict(StudyConfig, {**cfg.model_dump(mode="json"), "selections": selections})
    loaded: list[str] = []
    original = StudyRunner.representation

    def spy(self: StudyRunner, name: str):
        loaded.append(name)
        return original(self, name)

    StudyRunner.representation = spy  # type: ignore[method-assign]
    try:
        run_study(cfg, progress=False, report=False)
    finally:
        StudyRunner.representation = original  # type: ignore[method-assign]
    return root / "out", loaded


def test_a_study_selects_on_views_and_records_them(view_study):
    out, loaded = view_study
    results = pd.read_csv(out / "results.csv")
    assert {"prototypicality@gradients/train:flatten", "less@gradients/train:checkpoint=2"} <= set(
        results.selection
    )
    assert "gradients/train:flatten" in set(results.representation)
    index = json.loads((out / "representations.json").read_text())
    shape = index["gradients/train"]["shape"]  # [24, 2, 32]: 2 checkpoints (epochs 1 and 2) of dim 32
    flat = json.loads((out / selection_file("prototypicality@gradients/train:flatten", 0.5, 0)).read_text())
    assert len(flat["indices"]) == 12 and flat["representation"]["view"] == "flatten"
    assert flat["representation"]["source_epochs"] == [1, 2] and "lr" not in flat["representation"]
    less = json.loads((out / selection_file("less@gradients/train:checkpoint=2", 0.5, 0)).read_text())
    rep = less["representation"]
    assert rep["view"] == "checkpoint=2" and rep["epochs"] == [2] and rep["split"] == "train"
    assert less["params"]["lr_weights"] == rep["lr"] == [rep["source_lr"][1]]
    # the validation side went through the same view (the default counterpart), its base entry loaded once
    assert "gradients/val:checkpoint=2" in loaded and "gradients/val" in loaded
    assert shape[1] == 2
    assert (out / "cells" / f"{cell_id('less@gradients/train:checkpoint=2', 0.5, 0)}.json").is_file()
    assert not any(":" in path.name for path in (out / "cells").iterdir())


def test_viewed_selections_match_the_api_on_the_stored_entries(view_study):
    import datadiet
    from datadiet.store import RepresentationStore

    out, _ = view_study
    index = json.loads((out / "representations.json").read_text())
    store = RepresentationStore(out / "store")
    grads = store.load(index["gradients/train"]["key"])
    flat = json.loads((out / selection_file("prototypicality@gradients/train:flatten", 0.5, 0)).read_text())
    by_hand = datadiet.select("prototypicality", np.asarray(grads.values).reshape(24, -1), 0.5, seed=0)
    assert flat["indices"] == by_hand.indices.tolist()


def test_a_default_validation_representation_other_than_gradients_val_enters_the_cell_hash():
    """LESS on hidden/final now reads hidden/final/val by default (before: gradients/val): its cells must
    not be reused from an old study, while LESS on gradients/train (still gradients/val) keeps its hash."""
    from types import SimpleNamespace

    from datadiet.config import StudyConfig, from_dict
    from datadiet.pipeline.study import Cell, main_identity
    from datadiet.store import make_key

    selections = [
        {"algorithm": "less", "representation": "hidden/final"},
        {"algorithm": "less", "representation": "hidden/final", "val_representation": "hidden/final/val",
         "name": "explicit"},
        {"algorithm": "less", "representation": "gradients/train"},
    ]  # fmt: skip
    cfg = from_dict(StudyConfig, {"selections": selections})
    runner = StudyRunner.__new__(StudyRunner)
    runner.cfg, runner.evals, runner.run_id, runner.metrics = cfg, {}, "run", ["macro_f1"]
    runner.train = SimpleNamespace(fingerprint=lambda: "train")
    default_hidden, explicit, default_gradients = (
        Cell(s.label, s, 0.3, 0, "selection") for s in cfg.selections
    )

    def old_hash(spec: dict) -> str:  # the hash as it was computed before the default changed
        return make_key(spec=spec, budget=0.3, seed=0, main=main_identity(cfg), run="run", train="train",
                        evals={}, metrics=["macro_f1"])  # fmt: skip

    assert runner.cell_hash(default_gradients) == old_hash(default_gradients.spec.model_dump())
    assert runner.cell_hash(default_hidden) != old_hash(default_hidden.spec.model_dump())
    explicit_spec = {**explicit.spec.model_dump(), "name": None}
    assert runner.cell_hash(default_hidden) == old_hash(explicit_spec)  # the same as naming it explicitly
