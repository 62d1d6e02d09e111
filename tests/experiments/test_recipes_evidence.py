"""The recipe evidence study: auto's target verdict per task and budget, and the page it writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datadiet.analysis.stats import paired_difference
from datadiet.experiments.recipes.run import TaskResult, Verdict, setup_values, target_met, target_verdicts
from datadiet.experiments.recipes.setup import BUDGETS, CANDIDATES, SEEDS, TASKS, recipes_config
from datadiet.report.recipes import write_recipes


def verdict(task: str, budget: float, mean: float, low: float, high: float) -> Verdict:
    return Verdict(task, budget, mean, low, high, 6)


def test_not_worse_needs_the_mean_above_the_floor_and_the_interval_reaching_zero():
    assert verdict("a", 0.5, -0.004, -0.010, 0.002).not_worse
    assert not verdict("a", 0.5, -0.006, -0.012, 0.001).not_worse  # mean below -0.005
    assert not verdict("a", 0.5, -0.004, -0.006, -0.001).not_worse  # interval below 0
    assert verdict("a", 0.05, 0.02, 0.001, 0.04).better and not verdict("a", 0.05, 0.02, 0.0, 0.04).better


def test_the_target_needs_better_at_small_budgets_on_two_tasks_and_never_worse():
    good = [verdict("a", 0.05, 0.1, 0.05, 0.15), verdict("b", 0.15, 0.02, 0.01, 0.03),
            verdict("a", 0.7, 0.0, -0.01, 0.01)]  # fmt: skip
    assert target_met(good) == (True, True, ["a", "b"])
    late = [verdict("a", 0.05, 0.1, 0.05, 0.15), verdict("b", 0.3, 0.02, 0.01, 0.03)]  # b better only at 30%
    assert target_met(late) == (True, False, ["a"])
    worse = [*good, verdict("c", 0.5, -0.02, -0.03, -0.01)]
    assert target_met(worse)[0] is False
    assert target_met([]) == (False, False, [])


def test_every_task_config_compares_every_candidate_at_every_budget_and_seed(tmp_path: Path):
    assert len(SEEDS) >= 5 and {0.05, 0.1, 0.15, 0.3, 0.5, 0.7} <= set(BUDGETS)
    for name in TASKS:
        cfg = recipes_config(name, str(tmp_path / name))
        assert [s.recipe for s in cfg.selections] == list(CANDIDATES)
        assert cfg.budgets == BUDGETS and cfg.seeds == SEEDS


def _fake_results(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for seed in SEEDS:
        rows.append({"selection": "full", "kind": "baseline", "budget": 1.0, "seed": seed, "value": 0.9,
                     "select_seconds": 0.0, "train_seconds": 2.0})  # fmt: skip
        for budget in BUDGETS:
            base = 0.5 + budget / 2 + rng.normal(0, 0.01)
            for name, shift, kind in (("random", 0.0, "baseline"), ("recipe:auto", 0.05, "selection")):
                rows.append({"selection": name, "kind": kind, "budget": budget, "seed": seed,
                             "value": base + shift + rng.normal(0, 0.002), "select_seconds": 0.1,
                             "train_seconds": budget})  # fmt: skip
    frame = pd.DataFrame(rows)
    return frame.assign(split="test", metric="macro_f1")


def test_the_page_states_the_verdict_and_every_recipe(tmp_path: Path):
    results = _fake_results(np.random.default_rng(0))
    paired = paired_difference(results, metric="macro_f1")
    task = TaskResult("toy", "Toy task", "A toy.", tmp_path, recipes_config("reuters_r8", str(tmp_path)),
                      results, paired, {"reference_seconds": 3.0, "represent_seconds": 1.0})  # fmt: skip
    verdicts = target_verdicts([task])
    assert len(verdicts) == len(BUDGETS) and all(v.better for v in verdicts)
    doc = write_recipes([task], tmp_path / "recipes.md", verdicts=verdicts, met=target_met(verdicts),
                        setup=setup_values())  # fmt: skip
    text = doc.read_text(encoding="utf-8")
    assert "- Never reliably worse than random: **met**" in text
    assert "on at least two tasks: **missed** (toy)" in text  # one task cannot meet the two-task target
    row = next(line for line in text.splitlines() if line.startswith("| toy | +0.0"))
    assert row.count("better") == len(BUDGETS) and "worse" not in row
    for name in CANDIDATES:
        assert f"`{name}`" in text
    assert (tmp_path / "figures" / "recipes" / "paired_differences.png").stat().st_size > 1000


@pytest.mark.parametrize("recipe", ["auto"])
def test_verdicts_read_only_the_recipes_rows(recipe: str, tmp_path: Path):
    results = _fake_results(np.random.default_rng(1))
    paired = paired_difference(results, metric="macro_f1")
    task = TaskResult("t", "T", "", tmp_path, recipes_config("reuters_r8", str(tmp_path)), results, paired)
    assert {v.task for v in target_verdicts([task], recipe)} == {"t"}
    assert target_verdicts([task], "typical") == []


def test_the_verdict_study_reads_the_comparisons_run_with_more_seeds(tmp_path: Path):
    from datadiet.experiments.recipes.setup import VERDICT_SEEDS, verdict_config

    cfg = verdict_config("rotten_tomatoes", str(tmp_path / "rt-auto"), str(tmp_path / "rt"))
    assert cfg.reference.run_dir == f"{tmp_path / 'rt'}/reference"
    assert cfg.reference.represent.store == f"{tmp_path / 'rt'}/store"
    assert [s.label for s in cfg.selections] == ["recipe:auto"] and cfg.seeds == VERDICT_SEEDS
    assert set(SEEDS) < set(VERDICT_SEEDS) and cfg.budgets == BUDGETS


def test_reused_cells_are_only_the_named_selections_and_never_overwrite(tmp_path: Path):
    from datadiet.experiments.recipes.run import _reuse_cells

    (tmp_path / "a" / "cells").mkdir(parents=True)
    for name in (
        "recipe_auto__b0.05__s0",
        "random__b0.05__s0",
        "recipe_typical__b0.05__s0",
        "full__b1.00__s0",
    ):
        (tmp_path / "a" / "cells" / f"{name}.json").write_text(name)
    (tmp_path / "b" / "cells").mkdir(parents=True)
    (tmp_path / "b" / "cells" / "random__b0.05__s0.json").write_text("mine")
    _reuse_cells(tmp_path / "a", tmp_path / "b", ("full", "random", "recipe:auto"))
    copied = {p.name: p.read_text() for p in (tmp_path / "b" / "cells").iterdir()}
    assert copied == {
        "recipe_auto__b0.05__s0.json": "recipe_auto__b0.05__s0",
        "random__b0.05__s0.json": "mine",
        "full__b1.00__s0.json": "full__b1.00__s0",
    }


def test_the_page_says_when_auto_kept_exactly_randoms_rows(tmp_path: Path):
    results = _fake_results(np.random.default_rng(1))
    auto = (results.selection == "recipe:auto") & (results.budget == 0.7)
    random = results[(results.selection == "random") & (results.budget == 0.7)].set_index("seed").value
    results.loc[auto, "value"] = results.loc[auto, "seed"].map(random).to_numpy()  # the same subsets
    task = TaskResult("toy", "Toy task", "A toy.", tmp_path, recipes_config("reuters_r8", str(tmp_path)),
                      results, paired_difference(results, metric="macro_f1"), {})  # fmt: skip
    verdicts = target_verdicts([task])
    doc = write_recipes([task], tmp_path / "recipes.md", verdicts=verdicts, met=target_met(verdicts),
                        setup=setup_values())  # fmt: skip
    text = doc.read_text(encoding="utf-8")
    assert "At toy at 70%, `auto` scored exactly what random scored with every seed" in text
    assert "+0.000 [+0.000, +0.000] not worse" in text
