"""Recipes: the registry, ``select_recipe`` (step by budget, exact de-duplication, unlabeled data), plugin
recipes, definitions that enter a study cell's hash, and ``{recipe: NAME}`` in a study config."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import datadiet
from datadiet.config import ConfigError, SelectionSpec, StudyConfig, from_dict, to_dict
from datadiet.data.dataset import Dataset
from datadiet.errors import ParameterError
from datadiet.recipes import (
    COSTS,
    HIGH_COMPRESSION,
    RECIPES,
    Recipe,
    RecipeInputs,
    Step,
    cost_of,
    dataset_duplicates,
    duplicate_groups,
    needs_reference,
    register_recipe,
    select_recipe,
)
from datadiet.representations.base import Representation
from datadiet.selection.balancing import sqrt_budgets

BUILTINS = ("auto", "typical", "class-balanced", "semdedup", "less-balanced", "hard-calibrated")
N = 100


def make_inputs(
    n: int = N, *, labels: np.ndarray | None = None, duplicate_of: np.ndarray | None = None, seed: int = 0
) -> RecipeInputs:
    """Random representations under every name the built-in recipes read, and what was read."""
    rng = np.random.default_rng(seed)
    reps = {
        "hidden/pretrained": Representation(rng.normal(size=(n, 8)).astype(np.float32), "hidden"),
        "dynamics/prob": Representation(rng.random((n, 3)), "dynamics"),
        "gradients/train": Representation(rng.normal(size=(n, 16)).astype(np.float32), "gradients"),
        "gradients/val": Representation(rng.normal(size=(12, 16)).astype(np.float32), "gradients"),
    }
    return RecipeInputs(reps.__getitem__, n, labels, duplicate_of)


def three_classes(n: int = N) -> np.ndarray:
    labels = np.repeat([0, 1, 2], [n - n // 4 - n // 20, n // 4, n // 20])  # 70 / 25 / 5 of 100
    return np.random.default_rng(7).permutation(labels)


# --- the registry --------------------------------------------------------------------------------------
def test_every_builtin_recipe_is_listed_with_its_name_a_summary_and_a_cost():
    assert set(BUILTINS) <= set(RECIPES.names())
    descriptions = {text for _, text in COSTS.values()}
    for name in BUILTINS:
        recipe = RECIPES.get(name)
        assert recipe.name == name
        assert isinstance(recipe.summary, str) and len(recipe.summary) > 20
        assert recipe.cost() in descriptions
        assert recipe.steps[-1].up_to == 1.0


def test_recipe_costs_and_reference_needs_follow_what_they_read():
    assert RECIPES.get("auto").reads() == ["hidden/pretrained"]
    assert RECIPES.get("auto").cost() == COSTS["hidden/pretrained"][1]
    assert RECIPES.get("class-balanced").reads() == []  # random reads nothing but the labels
    assert RECIPES.get("class-balanced").cost() == COSTS["labels"][1]
    assert RECIPES.get("less-balanced").reads() == ["gradients/train", "gradients/val"]
    assert RECIPES.get("less-balanced").cost() == COSTS["gradients"][1]
    assert RECIPES.get("hard-calibrated").reads() == ["dynamics/prob"]
    assert {name for name in BUILTINS if needs_reference(RECIPES.get(name))} == {
        "less-balanced", "hard-calibrated"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("names", "tier"),
    [
        ([], 0),
        (["hidden/pretrained"], 1),
        (["hidden/final"], 2),
        (["dynamics/loss", "hidden/pretrained"], 2),
        (["gradients/train:flatten"], 3),
        (["someplugin/thing"], 2),  # unknown: a reference run
    ],
)
def test_cost_of_is_the_most_expensive_representation(names, tier):
    assert cost_of(names)[0] == tier


def test_unknown_recipe_suggests_the_nearest_name():
    with pytest.raises(ParameterError, match=r"Unknown recipe 'autoo'\. Did you mean 'auto'\? Available: \["):
        select_recipe("autoo", make_inputs(), 0.1)


# --- select_recipe --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("budget", "algorithm"),
    [(HIGH_COMPRESSION, "typical"), (0.31, "random"), (30, "typical"), (31, "random"), (0.05, "typical")],
)
def test_auto_switches_from_typical_to_random_above_30_percent_kept(budget, algorithm):
    sel = select_recipe("auto", make_inputs(labels=three_classes()), budget, seed=0)
    assert sel.meta["recipe"] == "auto"
    assert sel.meta["recipe_step"]["algorithm"] == algorithm
    assert sel.meta["recipe_step"].get("balance", "none") == ("sqrt" if algorithm == "typical" else "none")
    assert sel.meta["algorithm"] == algorithm


@pytest.mark.parametrize("budget", [0.31, 0.5, 0.9])
def test_auto_above_30_percent_is_the_random_baseline_of_the_same_seed(budget):
    """Above 30% kept, auto keeps exactly the rows ``random`` keeps (no duplicates to drop)."""
    inputs = make_inputs(labels=three_classes())
    for seed in (0, 7):
        sel = select_recipe("auto", inputs, budget, seed=seed)
        baseline = datadiet.select("random", np.zeros((N, 1)), budget, seed=seed)
        assert sel.indices.tolist() == sorted(baseline.indices.tolist())


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("budget", [0.07, 0.3, 0.55, 1.0])
def test_select_recipe_keeps_exactly_floor_budget_n_distinct_sorted_rows(name, budget):
    n = 90
    sel = select_recipe(name, make_inputs(n, labels=three_classes(n)), budget, seed=1)
    k = int(np.floor(budget * n))
    assert len(sel.indices) == k == len(np.unique(sel.indices)) == sel.meta["budget"]
    assert np.all(np.diff(sel.indices) > 0)
    assert sel.meta["n_examples"] == n
    assert sel.weights is None or len(sel.weights) == k


@pytest.mark.parametrize(("name", "budget"), [("auto", 0.1), ("typical", 0.6), ("class-balanced", 0.6)])
def test_a_sqrt_balanced_recipe_keeps_each_class_its_sqrt_budget(name, budget):
    labels = three_classes()
    sel = select_recipe(name, make_inputs(labels=labels), budget, seed=0)
    classes, k_c = sqrt_budgets(labels, int(budget * N))
    assert np.bincount(labels[sel.indices], minlength=3)[classes].tolist() == k_c.tolist()


def test_hard_calibrated_keeps_importance_weights_aligned_with_the_sorted_indices():
    sel = select_recipe("hard-calibrated", make_inputs(labels=three_classes()), 0.4, seed=0)
    assert sel.weights is not None and len(sel.weights) == 40
    assert np.all(sel.weights > 0) and not np.all(sel.weights == 1)


def copies_of_first_rows(n: int = N, n_copies: int = 20) -> np.ndarray:
    """``duplicate_of``: the last ``n_copies`` rows are copies of rows 0, 1, ... (in that order)."""
    duplicate_of = np.arange(n)
    duplicate_of[n - n_copies :] = np.arange(n_copies)
    return duplicate_of


@pytest.mark.parametrize("budget", [5, 30, 60, 80])
def test_dedup_never_keeps_a_later_copy_while_distinct_rows_remain(budget):
    duplicate_of = copies_of_first_rows()  # 80 distinct rows
    sel = select_recipe("auto", make_inputs(labels=three_classes(), duplicate_of=duplicate_of), budget)
    assert len(sel.indices) == budget == len(np.unique(sel.indices))
    assert np.all(sel.indices < 80)
    assert sel.meta["duplicates_dropped"] == 20


@pytest.mark.parametrize(
    ("budget", "added_back"), [(81, [80]), (87, list(range(80, 87))), (100, list(range(80, 100)))]
)
def test_dedup_adds_copies_back_earliest_first_when_the_budget_exceeds_the_distinct_rows(budget, added_back):
    duplicate_of = copies_of_first_rows()
    sel = select_recipe("auto", make_inputs(labels=three_classes(), duplicate_of=duplicate_of), budget)
    assert len(sel.indices) == budget == len(np.unique(sel.indices))
    assert sel.indices.tolist() == list(range(80)) + added_back  # every distinct row, then copies in order
    assert sel.meta["duplicates_dropped"] == 100 - budget


def test_dedup_adds_back_the_earliest_copies_even_when_they_are_scattered():
    duplicate_of = np.arange(10)
    duplicate_of[[2, 5, 9]] = [0, 1, 0]  # rows 2, 5 and 9 are later copies
    inputs = make_inputs(10, duplicate_of=duplicate_of)
    assert select_recipe("class-balanced", inputs, 7).indices.tolist() == [0, 1, 3, 4, 6, 7, 8]
    assert select_recipe("class-balanced", inputs, 9).indices.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8]


def test_a_recipe_without_dedup_ignores_duplicates():
    assert RECIPES.get("semdedup").dedup is False
    duplicate_of = copies_of_first_rows()
    sel = select_recipe("semdedup", make_inputs(labels=three_classes(), duplicate_of=duplicate_of), 100)
    assert sel.indices.tolist() == list(range(100)) and sel.meta["duplicates_dropped"] == 0


def test_unlabeled_inputs_run_balancing_recipes_without_balancing_and_say_so():
    for name, budget in (("auto", 0.2), ("class-balanced", 0.7)):
        sel = select_recipe(name, make_inputs(labels=None), budget, seed=0)
        assert len(sel.indices) == int(budget * N) == len(np.unique(sel.indices))
        assert sel.meta["balance_skipped"] == "the data has no labels"
        assert "balance" not in sel.meta or sel.meta["balance"] in (None, "none")
    labeled = select_recipe("auto", make_inputs(labels=three_classes()), 0.2, seed=0)
    assert "balance_skipped" not in labeled.meta


def test_a_budget_below_the_number_of_classes_is_refused_under_balancing():
    message = (
        r"^recipe 'auto': budget 2 is smaller than the 3 classes, so balancing cannot keep an example of "
        r"each; raise the budget to at least 3\.$"
    )
    with pytest.raises(ParameterError, match=message):
        select_recipe("auto", make_inputs(labels=three_classes()), 2)
    with pytest.raises(ParameterError, match=r"budget 2 is smaller than the 3 classes"):
        select_recipe("auto", make_inputs(labels=three_classes()), 0.025)  # floor(2.5) = 2
    assert len(select_recipe("auto", make_inputs(labels=three_classes()), 3).indices) == 3


def test_inputs_that_do_not_fit_the_data_are_refused_naming_them():
    with pytest.raises(ParameterError, match=r"recipe 'auto': labels has 5 rows, the data 100\."):
        select_recipe("auto", make_inputs(labels=np.zeros(5, int)), 10)
    with pytest.raises(ParameterError, match=r"recipe 'auto': duplicate_of has 99 rows, the data 100\."):
        select_recipe("auto", make_inputs(duplicate_of=np.arange(99)), 10)
    short = RecipeInputs(lambda name: Representation(np.zeros((7, 2), np.float32)), N, None, None)
    with pytest.raises(ParameterError, match=r"'hidden/pretrained' has 7 rows but the data has 100"):
        select_recipe("typical", short, 10)


def test_a_random_step_reads_no_representation():
    def refuse(name: str) -> Representation:
        raise AssertionError(f"read {name}")

    sel = select_recipe("class-balanced", RecipeInputs(refuse, N, three_classes(), None), 0.5)
    assert len(sel.indices) == 50


def test_same_seed_gives_the_same_selection_bit_for_bit():
    for budget in (0.1, 0.6):
        a = select_recipe("auto", make_inputs(labels=three_classes()), budget, seed=3)
        b = select_recipe("auto", make_inputs(labels=three_classes()), budget, seed=3)
        assert a.indices.tobytes() == b.indices.tobytes()
        assert a.indices.dtype == b.indices.dtype
        assert json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)
    c = select_recipe("auto", make_inputs(labels=three_classes()), 0.6, seed=4)
    assert not np.array_equal(c.indices, a.indices)  # the seed matters (60 of 100 at random)


# --- duplicates --------------------------------------------------------------------------------------
def test_duplicate_groups_points_every_row_at_its_first_copy():
    assert duplicate_groups([]).tolist() == []
    assert duplicate_groups(["x", "y", "y", "x", "z", "y"]).tolist() == [0, 1, 1, 0, 4, 1]


def test_dataset_duplicates_need_the_same_text_pair_and_label():
    ds = Dataset(
        ids=np.array([f"r{i}" for i in range(6)], dtype=object),
        texts=["a", "a", "a", "b", "a", "a"],
        labels=np.array([0, 0, 1, 0, 0, 0]),
        label_names=("neg", "pos"),
        text_pairs=["p", "p", "p", "p", "q", "p"],
    )
    # row 1 copies row 0; row 2 differs in label, row 4 in its text pair; row 5 copies row 0.
    assert dataset_duplicates(ds).tolist() == [0, 0, 2, 3, 4, 0]


# --- definitions and plugins ---------------------------------------------------------------------------
@pytest.fixture
def plugin_recipe():
    name = "test-plugin-typical-euclidean"
    recipe = register_recipe(
        name,
        Recipe(
            "A test plugin's recipe: typical rows by Euclidean k-means, stratified.",
            (Step("typical", "hidden/pretrained", balance="stratified", params={"metric": "euclidean"}),),
            dedup=False,
        ),
    )
    try:
        yield recipe
    finally:
        RECIPES.unregister(name)


def test_a_registered_plugin_recipe_runs_by_name_and_can_be_unregistered(plugin_recipe):
    name = plugin_recipe.name
    assert name == "test-plugin-typical-euclidean" and name in RECIPES.names()
    sel = select_recipe(name, make_inputs(labels=three_classes()), 0.2, seed=0)
    assert len(sel.indices) == 20
    assert sel.meta["recipe"] == name and sel.meta["algorithm"] == "typical"
    assert sel.meta["params"]["metric"] == "euclidean" and sel.meta["balance"] == "stratified"
    with pytest.raises(ParameterError, match=rf"A recipe named '{name}' is already registered"):
        register_recipe(name, plugin_recipe)


def test_an_unregistered_recipe_is_gone():
    name = "test-plugin-short-lived"
    register_recipe(name, Recipe("short-lived", (Step("random"),)))
    try:
        assert name in RECIPES.names()
    finally:
        RECIPES.unregister(name)
    assert name not in RECIPES.names()
    with pytest.raises(ParameterError, match=rf"Unknown recipe '{name}'"):
        select_recipe(name, make_inputs(), 10)


@pytest.mark.parametrize(
    "steps", [(), (Step("random", up_to=0.5),), (Step("typical", up_to=1.0), Step("random", up_to=0.99))]
)
def test_a_recipe_whose_last_step_does_not_cover_every_budget_is_refused(steps):
    with pytest.raises(ParameterError, match=r"last step must cover every budget \(up_to=1\.0\)"):
        Recipe("incomplete", steps)


def test_step_for_picks_the_first_step_that_covers_the_fraction():
    recipe = Recipe("three", (Step("typical", up_to=0.1), Step("semdedup", up_to=0.5), Step("random")))
    assert [recipe.step_for(f).algorithm for f in (0.01, 0.1, 0.11, 0.5, 0.51, 1.0)] == [
        "typical", "typical", "semdedup", "semdedup", "random", "random"
    ]  # fmt: skip


def test_describe_changes_with_every_part_of_a_step_and_with_dedup():
    base = Recipe("s", (Step("typical", balance="sqrt", up_to=0.3), Step("random", balance="sqrt")))
    same = Recipe("other words", (Step("typical", balance="sqrt", up_to=0.3), Step("random", balance="sqrt")))
    assert base.describe() == same.describe() and base.fingerprint() == same.fingerprint()  # summary: docs
    variants = [
        Recipe("s", (Step("typical", balance="sqrt", up_to=0.2), Step("random", balance="sqrt"))),
        Recipe("s", (Step("typical", balance="stratified", up_to=0.3), Step("random", balance="sqrt"))),
        Recipe(
            "s", (Step("typical", "hidden/final", balance="sqrt", up_to=0.3), Step("random", balance="sqrt"))
        ),
        Recipe(
            "s",
            (
                Step("typical", balance="sqrt", up_to=0.3, params={"metric": "euclidean"}),
                Step("random", balance="sqrt"),
            ),
        ),
        Recipe("s", (Step("typical", balance="sqrt", up_to=0.3), Step("random"))),
        Recipe(
            "s", (Step("typical", balance="sqrt", up_to=0.3), Step("random", balance="sqrt")), dedup=False
        ),
    ]
    described = [json.dumps(r.describe(), sort_keys=True) for r in [base, *variants]]
    assert len(set(described)) == len(described)
    assert len({r.fingerprint() for r in [base, *variants]}) == len(described)
    json.dumps(base.describe())  # a plain-JSON definition (it is hashed with a cell's spec)


def test_the_auto_recipe_definition_is_what_its_summary_says():
    auto = RECIPES.get("auto")
    assert auto.describe() == {
        "dedup": True,
        "steps": [
            {"algorithm": "typical", "representation": "hidden/pretrained", "balance": "sqrt", "up_to": 0.3},
            {"algorithm": "random", "representation": "hidden/pretrained", "up_to": 1.0},
        ],
    }


# --- study configs -------------------------------------------------------------------------------------
def study(selections: list[dict], **reference) -> StudyConfig:
    return from_dict(StudyConfig, {"selections": selections, "reference": reference})


def test_a_recipe_selection_loads_with_its_label():
    cfg = study([{"recipe": "auto"}, {"algorithm": "el2n", "representation": "dynamics/prob"}])
    assert cfg.selections[0].recipe == "auto"
    assert cfg.selections[0].label == "recipe:auto"
    assert cfg.selections[1].label == "el2n@dynamics/prob"


def test_an_algorithm_selection_dumps_no_recipe_key_so_old_cell_hashes_stay():
    cfg = study([{"algorithm": "el2n", "representation": "dynamics/prob"}])
    assert "recipe" not in cfg.selections[0].model_dump()
    assert "recipe" not in SelectionSpec("less", "gradients/train", balance="stratified").model_dump()
    assert cfg.selections[0].model_dump() == {
        "algorithm": "el2n",
        "representation": "dynamics/prob",
        "name": None,
        "params": {},
        "balance": "none",
        "calibrate": None,
        "weighting": "none",
        "val_representation": None,
    }


def test_a_recipe_selection_keeps_its_own_name():
    cfg = study([{"recipe": "auto", "name": "mine"}])
    assert cfg.selections[0].label == "mine"


def test_a_resolved_recipe_study_config_loads_to_itself():
    cfg = study([{"recipe": "auto"}])
    assert from_dict(StudyConfig, to_dict(cfg)) == cfg


def test_a_misspelled_recipe_is_refused_with_a_did_you_mean():
    with pytest.raises(
        ConfigError, match=r"selections\[0\]\.recipe: Unknown recipe 'autoo'\. Did you mean 'auto'\?"
    ):
        study([{"recipe": "autoo"}])


@pytest.mark.parametrize(
    "extra", [{"algorithm": "el2n"}, {"representation": "hidden/final"}, {"balance": "sqrt"}]
)
def test_a_recipe_with_its_own_algorithm_or_settings_is_refused(extra):
    key = next(iter(extra))
    with pytest.raises(
        ConfigError, match=rf"selections\[0\].*recipe 'auto' and \['{key}'\]; a recipe fixes those"
    ):
        study([{"recipe": "auto", **extra}])


def test_a_selection_with_neither_algorithm_nor_recipe_is_refused():
    with pytest.raises(ConfigError, match=r"selections\[0\].*needs an algorithm .* or a recipe"):
        study([{"representation": "hidden/final"}])


@pytest.mark.parametrize(
    ("recipe", "represent", "missing"),
    [
        ("less-balanced", {"kinds": ["hidden"]}, "gradients/train"),
        ("hard-calibrated", {"kinds": ["hidden", "gradients"]}, "dynamics/prob"),
        ("auto", {"kinds": ["dynamics"]}, "hidden/pretrained"),
        ("auto", {"hidden_stages": ["final"]}, "hidden/pretrained"),
    ],
)
def test_a_recipe_reading_a_representation_the_config_does_not_extract_is_refused(recipe, represent, missing):
    with pytest.raises(
        ConfigError, match=rf"selections\[0\]\.recipe \('{recipe}' reads {missing}\): '{missing}' is not"
    ):
        study([{"recipe": recipe}], represent=represent)


def test_a_recipe_that_reads_only_labels_loads_whatever_is_extracted():
    cfg = study([{"recipe": "class-balanced"}], represent={"kinds": ["dynamics"]})
    assert cfg.selections[0].label == "recipe:class-balanced"


# --- a study -----------------------------------------------------------------------------------------
def test_a_study_with_the_auto_recipe_runs_and_names_it_in_the_results(tmp_path: Path):
    """A tiny random BERT (frozen) on 40 toy reviews: one recipe cell, a few seconds."""
    from datadiet.pipeline.study import run_study
    from tests.models.toy_models import make_tiny_bert, toy_dataset

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data = tmp_path / "data"
    data.mkdir()
    for split, n, seed in (("train", 40, 0), ("validation", 8, 1), ("test", 12, 2)):
        ds = toy_dataset(n, seed=seed, split=split)
        assert ds.labels is not None
        rows = [{"id": f"{split}-{i}", "text": ds.texts[i], "label": int(ds.labels[i])} for i in range(n)]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = from_dict(
        StudyConfig,
        {
            "output": str(tmp_path / "out"),
            "reference": {
                "dataset": {"source": str(data), "id": "id"},
                "model": {"path": str(make_tiny_bert(tmp_path / "bert")), "mode": "frozen", "max_length": 32},
                "training": {"epochs": 1, "batch_size": 8},
                "represent": {"kinds": ["hidden"], "hidden_stages": ["pretrained"]},
            },
            "selections": [{"recipe": "auto"}],
            "budgets": [0.25],
            "seeds": [0],
            "main": {"epochs": 1, "batch_size": 8},
        },
    )
    run_study(cfg, progress=False, report=False)
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    rows = results[results.selection == "recipe:auto"]
    assert len(rows) > 0
    assert set(rows.algorithm) == {"recipe:auto"} and set(rows.representation) == {"hidden/pretrained"}
    assert set(rows.k) == {10}  # floor(0.25 * 40)
    saved = json.loads((tmp_path / "out" / "selections" / "recipe_auto" / "b0.25_s0.json").read_text())
    assert len(saved["indices"]) == 10 == len(set(saved["indices"]))
    assert saved["recipe"] == "auto" and saved["recipe_step"]["algorithm"] == "typical"
    assert saved["duplicates_dropped"] == 0  # so the sqrt budgets are over every training row
    labels = np.load(tmp_path / "out" / "labels.train.npy")
    assert np.bincount(labels[saved["indices"]], minlength=2).tolist() == sqrt_budgets(labels, 10)[1].tolist()
