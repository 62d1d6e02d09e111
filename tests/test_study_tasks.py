"""Studies on the other two task types, end to end on tiny random models and user jsonl files.

Generation: a tiny Llama (LoRA) on prompt -> target pairs, scored with ROUGE and a LEAD-1 dummy.
Multiple choice: a tiny BERT (LoRA) with a multiple-choice head, scored by accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datadiet.config import StudyConfig, from_dict
from datadiet.data.dataset import Dataset
from datadiet.pipeline.study import run_study
from datadiet.report.html import build_report
from tests.models.test_causal_lm import make_tiny_llama, pairs_dataset
from tests.models.test_multiple_choice import toy_choices
from tests.models.toy_models import make_tiny_bert


def write_splits(folder: Path, splits: dict[str, Dataset]) -> Path:
    """Write each split as ``<split>.jsonl`` with the columns a user file would have."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, ds in splits.items():
        rows = []
        for i in range(len(ds)):
            row = {"id": f"{split}-{i}", "text": ds.texts[i]}
            if ds.task == "generation":
                row["target"] = ds.targets[i]
            else:
                row["choices"] = list(ds.choices[i])
                row["label"] = int(ds.labels[i])
            rows.append(json.dumps(row))
        (folder / f"{split}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def study_config(out: Path, data: Path, model: Path, task: str, epochs: int, **model_extra) -> StudyConfig:
    return from_dict(
        StudyConfig,
        {
            "output": str(out),
            "reference": {
                "dataset": {"source": str(data), "task": task, "id": "id"},
                "model": {"path": str(model), "mode": "lora", "max_length": 32, **model_extra},
                "training": {"epochs": 2, "batch_size": 8, "lr": 5e-3},
                "represent": {"hidden_stages": ["pretrained", "final"], "gradients": {"dim": 32}},
            },
            "selections": [
                {"algorithm": "hard_to_learn", "representation": "dynamics/prob"},
                {"algorithm": "less", "representation": "gradients/train"},
            ],
            "budgets": [0.5],
            "seeds": [0],
            "main": {"epochs": epochs, "lr": 5e-3, "batch_size": 8},
        },
    )


@pytest.fixture(scope="module")
def generation_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gen_study")
    data = write_splits(
        root / "data",
        {
            "train": pairs_dataset(24, seed=0),
            "validation": pairs_dataset(6, seed=1),
            "test": pairs_dataset(8, seed=2),
        },
    )
    cfg = study_config(root / "out", data, make_tiny_llama(root / "llama"), "generation", 8, max_new_tokens=4)
    run_study(cfg, progress=False, report=False)
    return root / "out"


@pytest.fixture(scope="module")
def choice_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mc_study")
    data = write_splits(
        root / "data",
        {
            "train": toy_choices(24, seed=0, options=(2, 3)),
            "validation": toy_choices(6, seed=1, split="validation"),
            "test": toy_choices(10, seed=2, options=(3,), split="test"),
        },
    )
    cfg = study_config(root / "out", data, make_tiny_bert(root / "bert"), "multiple_choice", 1)
    run_study(cfg, progress=False, report=False)
    return root / "out"


def test_generation_study_scores_every_cell_with_rouge_and_a_lead_dummy(generation_study):
    results = pd.read_csv(generation_study / "results.csv")
    assert set(results.metric) == {"rouge1", "rouge2", "rougeL"}
    assert sorted(results.selection.unique()) == [
        "dummy", "full", "hard_to_learn@dynamics/prob", "less@gradients/train", "random"
    ]  # fmt: skip
    # 1 full + 3 selections at one budget and seed = 4 trained cells, x 3 metrics, + 3 dummy rows.
    assert len(results) == 4 * 3 + 3
    assert sorted(results[results.selection == "random"].k.unique()) == [12]  # floor(0.5 * 24)
    assert results.value.between(0, 1).all()
    # ROUGE-2 never exceeds ROUGE-1 for the same predictions.
    wide = results.pivot_table(index=["selection", "budget", "seed"], columns="metric", values="value")
    assert (wide.rouge2 <= wide.rouge1 + 1e-12).all()
    # Each main model learnt from its own subset: the trained cells do not all generate the same text.
    assert "dummy" not in wide.index.get_level_values("selection")  # no budget, so not in the pivot
    assert len(wide.drop_duplicates()) > 1


def test_generation_dummy_is_the_lead_sentence_scored_against_the_targets(generation_study):
    from rouge_score import rouge_scorer

    results = pd.read_csv(generation_study / "results.csv")
    dummy = results[results.selection == "dummy"].set_index("metric").value
    test = pairs_dataset(8, seed=2)
    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)
    # The toy prompts are single sentences, so LEAD-1 is the whole prompt.
    pairs = zip(test.targets, test.texts, strict=True)
    expected = np.mean([scorer.score(target, prompt)["rouge1"].fmeasure for target, prompt in pairs])
    assert dummy["rouge1"] == pytest.approx(expected)


def test_generation_study_keeps_its_representations_and_writes_a_report(generation_study):
    index = json.loads((generation_study / "representations.json").read_text())
    assert {"dynamics/prob", "dynamics/loss", "gradients/train", "gradients/val"} <= set(index)
    assert not any(name.startswith("labels/") for name in index)  # generation has no labels
    page = build_report(generation_study)
    html = page.read_text(encoding="utf-8")
    assert "rouge" in html.lower() and "label distribution" not in html.lower()


def test_multiple_choice_study_scores_accuracy_for_every_cell(choice_study):
    results = pd.read_csv(choice_study / "results.csv")
    assert "accuracy" in set(results.metric)
    cells = results[results.metric == "accuracy"]
    assert sorted(cells.selection.unique()) == [
        "dummy", "full", "hard_to_learn@dynamics/prob", "less@gradients/train", "random"
    ]  # fmt: skip
    assert sorted(cells[cells.selection == "random"].k.unique()) == [12]
    assert cells.value.between(0, 1).all()
    # Every test item has 3 options, so accuracy is a multiple of 1/10 and chance is 1/3.
    assert np.allclose(cells.value * 10, np.round(cells.value * 10))


def test_multiple_choice_study_report_builds(choice_study):
    page = build_report(choice_study)
    assert "accuracy" in page.read_text(encoding="utf-8").lower()
