"""Hand-computed cases for random, cartography, forgetting, EL2N and self-influence."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import datadiet.selection.self_influence as self_influence_module
from datadiet.representations.base import Representation
from datadiet.selection.cartography import Ambiguous, HardToLearn, confidence, variability
from datadiet.selection.el2n import EL2N, el2n_scores
from datadiet.selection.forgetting import Forgetting, forgetting_events
from datadiet.selection.registry import SELECTORS
from datadiet.selection.self_influence import SelfInfluence, self_influence_scores
from datadiet.selection.uniform import Random

# --- random ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(10,), (10, 3), (10, 2, 4)])
def test_random_reads_any_ndim_and_matches_rng_choice(shape):
    values = np.zeros(shape)
    selection = SELECTORS.create("random").select(values, 4, seed=7)
    expected = np.sort(np.random.default_rng(7).choice(10, 4, replace=False))
    np.testing.assert_array_equal(selection.indices, expected)
    assert selection.scores is None
    assert selection.meta["algorithm"] == "random"


def test_random_same_seed_same_subset_different_seeds_differ():
    values = np.zeros((50, 2))
    first = Random().select(values, 10, seed=1).indices
    np.testing.assert_array_equal(first, Random().select(values, 10, seed=1).indices)
    assert not np.array_equal(first, Random().select(values, 10, seed=2).indices)


# --- cartography -------------------------------------------------------------------------------

# means 0.75, 0.25, 0.5, 0.25, 0.5 (exact in binary), so hard_to_learn scores 0.25, 0.75, 0.5, 0.75, 0.5
TRAJECTORY = np.array(
    [
        [1.0, 0.75, 0.5],
        [0.0, 0.25, 0.5],
        [0.5, 0.5, 0.5],
        [0.5, 0.0, 0.25],
        [0.25, 0.75, 0.5],
    ]
)


def test_confidence_is_the_mean_over_epochs():
    np.testing.assert_array_equal(confidence(TRAJECTORY), [0.75, 0.25, 0.5, 0.25, 0.5])


def test_hard_to_learn_scores_one_minus_mean_and_keeps_lowest_confidence():
    selector = SELECTORS.create("hard_to_learn")
    np.testing.assert_array_equal(selector.score(TRAJECTORY), [0.25, 0.75, 0.5, 0.75, 0.5])
    # rows 1 and 3 (mean 0.25) first; rows 2 and 4 tie at 0.5 and the lower index wins
    assert selector.select(TRAJECTORY, 3).indices.tolist() == [1, 2, 3]
    assert selector.select(TRAJECTORY, 1).indices.tolist() == [1]


def test_variability_is_population_std():
    p = np.array([[0.0, 1.0], [0.5, 0.5], [0.25, 0.75], [1.0, 0.0]])
    np.testing.assert_array_equal(variability(p), [0.5, 0.0, 0.25, 0.5])  # ddof=1 would give 0.7071


def test_ambiguous_keeps_highest_std_ties_to_lower_index():
    p = np.array([[0.0, 1.0], [0.5, 0.5], [0.25, 0.75], [1.0, 0.0]])
    selector = Ambiguous()
    np.testing.assert_array_equal(selector.score(p), [0.5, 0.0, 0.25, 0.5])
    assert selector.select(p, 1).indices.tolist() == [0]
    assert selector.select(p, 3).indices.tolist() == [0, 2, 3]


@pytest.mark.parametrize("selector", [HardToLearn(), Ambiguous()])
def test_cartography_refuses_values_outside_unit_interval(selector):
    with pytest.raises(ValueError, match=rf"'{selector.name}' reads probabilities in \[0, 1\]"):
        selector.select(np.array([[0.5, 1.5], [0.1, 0.2]]), 1)


# --- forgetting --------------------------------------------------------------------------------

CORRECT = np.array(
    [
        [1, 0, 1, 0],  # 2 events
        [0, 1, 1, 1],  # learned, never forgotten: 0
        [0, 0, 0, 0],  # never learned: T = 4
        [1, 1, 0, 0],  # 1
        [1, 1, 1, 1],  # 0
        [0, 1, 0, 1],  # 1
    ]
)


def test_forgetting_events_counts_one_to_zero_transitions_and_t_for_never_learned():
    assert forgetting_events(CORRECT).tolist() == [2, 0, 4, 1, 0, 1]
    assert forgetting_events(np.array([[0, 0, 0], [1, 0, 1]])).tolist() == [3, 1]


def test_forgetting_accepts_bool_and_keeps_most_forgotten():
    selection = Forgetting().select(CORRECT.astype(bool), 2, seed=0)
    assert selection.indices.tolist() == [0, 2]
    assert selection.scores.tolist() == [2.0, 0.0, 4.0, 1.0, 0.0, 1.0]
    assert Forgetting().select(CORRECT, 4, seed=0).indices.tolist() == [0, 2, 3, 5]


def test_forgetting_ties_are_seeded_random():
    # k=3: rows 0 and 2 are certain, rows 3 and 5 tie at count 1
    picks = {seed: Forgetting().select(CORRECT, 3, seed=seed).indices.tolist() for seed in range(20)}
    assert {tuple(p) for p in picks.values()} == {(0, 2, 3), (0, 2, 5)}
    assert Forgetting().select(CORRECT, 3, seed=4).indices.tolist() == picks[4]


@pytest.mark.parametrize("bad", [[[0, 2], [1, 0]], [[0.5, 1.0], [1.0, 0.0]]])
def test_forgetting_refuses_values_other_than_zero_and_one(bad):
    with pytest.raises(ValueError, match="'forgetting' reads 0/1 correctness"):
        Forgetting().select(np.array(bad), 1)
    with pytest.raises(ValueError, match="0/1 correctness"):
        forgetting_events(np.array(bad))


# two runs of T = 3 presentations each
RUNS = np.array(
    [
        [[1, 0, 1], [1, 1, 0]],  # 1 + 1 events = 2
        [[0, 0, 0], [0, 1, 1]],  # never correct in run 0: T = 3, then 0 events: 3
        [[1, 1, 1], [0, 0, 1]],  # 0 + 0 = 0 (run 0 ends correct, run 1 starts wrong: no event)
        [[0, 0, 0], [0, 0, 0]],  # never correct in either run: 3 + 3 = 6
    ]
)


def test_forgetting_over_runs_sums_per_run_counts_by_hand():
    assert forgetting_events(RUNS).tolist() == [2, 3, 0, 6]
    selection = Forgetting().select(RUNS, 2, seed=0)
    assert selection.scores.tolist() == [2.0, 3.0, 0.0, 6.0]
    assert selection.indices.tolist() == [1, 3]


def test_forgetting_runs_axis_invents_no_event_at_run_boundaries():
    concatenated = RUNS.reshape(len(RUNS), -1)  # runs one after the other along T
    # concatenating invents a 1 -> 0 event at row 2's boundary (and reads row 1 as learned once)
    assert forgetting_events(concatenated).tolist() == [2, 0, 1, 6]
    assert forgetting_events(RUNS)[2] == 0


def test_forgetting_one_run_three_dimensional_equals_two_dimensional():
    np.testing.assert_array_equal(forgetting_events(CORRECT[:, None, :]), forgetting_events(CORRECT))
    runs = np.stack([CORRECT, CORRECT[::-1]], axis=1)
    np.testing.assert_array_equal(
        forgetting_events(runs), forgetting_events(CORRECT) + forgetting_events(CORRECT[::-1])
    )


def test_forgetting_runs_memmap_in_small_chunks_equals_in_memory(tmp_path, monkeypatch):
    from datadiet._core import chunks as _chunks

    correct = np.random.default_rng(3).integers(0, 2, size=(41, 3, 5)).astype(np.int8)
    np.save(tmp_path / "correct.npy", correct)
    monkeypatch.setattr(_chunks, "CHUNK_BYTES", 8 * 15 * 4)  # 4 rows per chunk
    stored = np.load(tmp_path / "correct.npy", mmap_mode="r")
    np.testing.assert_array_equal(forgetting_events(stored), forgetting_events(correct))
    expected = sum(forgetting_events(correct[:, r]) for r in range(3))
    np.testing.assert_array_equal(forgetting_events(correct), expected)


# --- EL2N --------------------------------------------------------------------------------------

PROBS = np.array([[0.6, 0.4, 0.0], [0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3]])
LABELS = np.array([0, 2, 1])


def test_el2n_scores_by_hand():
    # ||[-0.4, 0.4, 0]|| = sqrt(0.32); ||[0.2, 0.2, -0.4]|| = sqrt(0.24); ||[1/3, -2/3, 1/3]|| = sqrt(6)/3
    expected = [math.sqrt(0.32), math.sqrt(0.24), math.sqrt(6) / 3]
    np.testing.assert_allclose(el2n_scores(PROBS, LABELS), expected, rtol=1e-12)
    selector = SELECTORS.create("el2n")
    assert selector.select(PROBS, 1, labels=LABELS).indices.tolist() == [2]
    assert selector.select(PROBS, 2, labels=LABELS).indices.tolist() == [0, 2]


def test_el2n_averages_per_run_norms_not_probabilities():
    runs = np.array(
        [
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],  # label 0: norms 0, sqrt2, sqrt2
            [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]],  # label 2: norms 0, 0, 0
        ]
    )
    scores = EL2N().score(runs, labels=np.array([0, 2]))
    # the norm of the mean probabilities would give sqrt(6)/3 = 0.816 for row 0
    np.testing.assert_allclose(scores, [2 * math.sqrt(2) / 3, 0.0], rtol=1e-12)


def test_el2n_needs_labels():
    with pytest.raises(ValueError, match="'el2n' needs labels"):
        EL2N().select(PROBS, 1)


def test_el2n_labels_must_be_ints_in_range():
    with pytest.raises(TypeError, match=r"integer class labels in \[0, K=3\)"):
        EL2N().select(PROBS, 1, labels=np.array([0.0, 2.0, 1.0]))
    with pytest.raises(TypeError, match="integer class labels"):
        EL2N().select(PROBS, 1, labels=np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match=r"labels in \[0, K=3\).*Got \[3\] at rows \[1\]"):
        EL2N().select(PROBS, 1, labels=np.array([0, 3, 1]))
    with pytest.raises(ValueError, match=r"Got \[-1\]"):
        el2n_scores(PROBS, np.array([-1, 0, 1]))


def test_el2n_refuses_logits():
    with pytest.raises(ValueError, match="not logits"):
        EL2N().select(np.array([[2.0, -1.0], [0.5, 0.5]]), 1, labels=np.array([0, 1]))


# --- self-influence ----------------------------------------------------------------------------

# squared norms per checkpoint: [5, 1], [9, 2], [0, 8]
GRADS = np.array(
    [
        [[1.0, 2.0], [0.0, 1.0]],
        [[3.0, 0.0], [1.0, 1.0]],
        [[0.0, 0.0], [2.0, 2.0]],
    ]
)


@pytest.mark.parametrize(
    ("lr_weights", "expected", "top"),
    [
        (None, [6.0, 11.0, 8.0], [1]),
        ([2.0, 1.0], [11.0, 20.0, 8.0], [1]),
        ([0.5, 2.0], [4.5, 8.5, 16.0], [2]),
    ],
)
def test_self_influence_weights_squared_norms_by_lr(lr_weights, expected, top):
    selector = SELECTORS.create("self_influence", lr_weights=lr_weights)
    np.testing.assert_allclose(selector.score(GRADS), expected, rtol=1e-12)
    assert selector.select(GRADS, 1).indices.tolist() == top
    np.testing.assert_allclose(self_influence_scores(GRADS, lr_weights), expected, rtol=1e-12)


def test_self_influence_reads_unnormalised_2d_as_one_checkpoint():
    grads = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_array_equal(SelfInfluence().score(grads), [25.0, 1.0, 4.0])
    np.testing.assert_array_equal(SelfInfluence(lr_weights=[0.5]).score(grads), [12.5, 0.5, 2.0])


def test_self_influence_chunked_equals_one_pass(tmp_path, monkeypatch):
    grads = np.random.default_rng(0).normal(size=(23, 3, 5)).astype(np.float32)
    one_pass = self_influence_scores(grads, [1.0, 2.0, 0.5], chunk_size=23)
    np.testing.assert_allclose(
        self_influence_scores(grads, [1.0, 2.0, 0.5], chunk_size=4), one_pass, rtol=1e-12
    )
    stored = np.lib.format.open_memmap(tmp_path / "g.npy", mode="w+", dtype=np.float32, shape=grads.shape)
    stored[:] = grads
    monkeypatch.setattr(self_influence_module, "CHUNK_BYTES", 8 * 15 * 2)  # 2 rows per chunk
    scores = SelfInfluence(lr_weights=[1.0, 2.0, 0.5]).score(np.load(tmp_path / "g.npy", mmap_mode="r"))
    np.testing.assert_allclose(scores, one_pass, rtol=1e-12)


@pytest.mark.parametrize("bad", [[1.0, -1.0], [0.0, 0.0], [1.0, float("nan")], [[1.0, 1.0]], "1,2", []])
def test_self_influence_rejects_bad_lr_weights(bad):
    with pytest.raises(ValueError, match="The 'lr_weights' parameter of SelfInfluence must be"):
        SelfInfluence(lr_weights=bad).select(GRADS, 1)


def test_self_influence_lr_weights_need_one_per_checkpoint():
    with pytest.raises(
        ValueError,
        match=r"'lr_weights' parameter of SelfInfluence must be one weight per "
        r"checkpoint \(the gradients have n_checkpoints=2\)",
    ):
        SelfInfluence(lr_weights=[1.0, 1.0, 1.0]).select(GRADS, 1)


# --- shared input checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "values", "reads"),
    [
        ("hard_to_learn", np.full(5, 0.5), "trajectory of correct-class probabilities"),
        ("ambiguous", np.full((5, 2, 2), 0.5), "trajectory of correct-class probabilities"),
        ("forgetting", np.ones(5), "0/1 correctness"),
        ("el2n", np.full(5, 0.5), "class probabilities"),
        ("self_influence", np.ones(5), "per-checkpoint gradients"),
    ],
)
def test_wrong_ndim_names_the_selector(name, values, reads):
    with pytest.raises(ValueError, match=rf"'{name}' reads .*{reads}.*shape {re.escape(str(values.shape))}"):
        SELECTORS.create(name).select(Representation(values), 1, labels=np.zeros(5, dtype=int))


@pytest.mark.parametrize("name", ["hard_to_learn", "ambiguous", "forgetting", "el2n", "random"])
def test_parameterless_selectors_refuse_parameters(name):
    with pytest.raises(ValueError, match=f"Unknown parameter.*{name}"):
        SELECTORS.create(name, lr_weights=[1.0])
