"""LESS scores against hand-computed values and a direct N x V einsum; adam_precondition by hand.

Invariant checked here: chunked scoring equals one-pass scoring, and the chunking never builds the
N x V matrix (the group-mean shortcut gives the same numbers as the explicit matrix).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import datadiet.selection.self_influence as self_influence_module
from datadiet.selection.less import Less, adam_precondition, less_scores
from datadiet.selection.registry import SELECTORS
from tests.helpers import gamma

COSINE_ATOL = 4 * gamma(64, np.float64)
"""Cosine scores lie in [-1, 1]; two float64 paths summing <= 64 terms each differ by at most ~gamma_64."""


def direct_less(train, val, lr_weights, val_groups):
    """The reference formula: the full S matrix, then mean within groups, then max."""
    phi = train / np.linalg.norm(train, axis=-1, keepdims=True)
    psi = val / np.linalg.norm(val, axis=-1, keepdims=True)
    w = np.asarray(lr_weights, dtype=float) / np.sum(lr_weights)
    s = np.einsum("ncd,vcd,c->nv", phi, psi, w)
    groups = np.asarray(val_groups)
    return np.max([s[:, groups == g].mean(axis=1) for g in np.unique(groups)], axis=0)


@pytest.fixture
def gradients():
    rng = np.random.default_rng(0)
    return rng.normal(size=(13, 2, 6)), rng.normal(size=(6, 2, 6))


def test_less_tiny_case_by_hand():
    # phi = [1, 0] and [1, 1]/sqrt2; psi = [1, 0] (group a) and [0, 1] (group b)
    train = np.array([[2.0, 0.0], [1.0, 1.0]])
    val = np.array([[1.0, 0.0], [0.0, 3.0]])
    np.testing.assert_allclose(less_scores(train, val, val_groups=["a", "b"]), [1.0, 1 / math.sqrt(2)])
    np.testing.assert_allclose(less_scores(train, val), [0.5, 1 / math.sqrt(2)])  # one group: the mean
    assert Less(val_groups=["a", "b"]).select(train, 1, val=val).indices.tolist() == [0]
    assert Less().select(train, 1, val=val).indices.tolist() == [1]


def test_less_two_checkpoints_unequal_weights_by_hand():
    # w = [3, 1] / 4; S[0, 0] = 0.75 * 1 + 0.25 * 0 = 0.75; S[0, 1] = 0.75 * 0 + 0.25 * 1 = 0.25
    train = np.array([[[1.0, 0.0], [0.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]])
    val = np.array([[[3.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 5.0]]])
    selector = SELECTORS.create("less", lr_weights=[3.0, 1.0], val_groups=[7, 8])
    np.testing.assert_allclose(selector.score(train, val=val), [0.75, 0.0])
    np.testing.assert_allclose(less_scores(train, val, lr_weights=[3.0, 1.0]), [0.5, 0.0])
    np.testing.assert_allclose(less_scores(train, val, lr_weights=[1.0, 3.0], val_groups=[7, 8]), [0.75, 0.0])


def test_less_matches_direct_einsum_with_uneven_noncontiguous_groups(gradients):
    train, val = gradients
    groups = ["x", "y", "x", "z", "x", "y"]  # sizes 3, 2, 1, interleaved
    scores = Less(lr_weights=[3.0, 1.0], val_groups=groups).score(train, val=val)
    np.testing.assert_allclose(
        scores, direct_less(train, val, [3.0, 1.0], groups), rtol=1e-12, atol=COSINE_ATOL
    )
    # the weights and the groups both matter ...
    assert not np.allclose(scores, direct_less(train, val, [1.0, 1.0], groups))
    assert not np.allclose(scores, direct_less(train, val, [3.0, 1.0], ["x"] * 6))
    # ... but only through their ratios and membership
    scaled = Less(lr_weights=[30.0, 10.0], val_groups=np.array([5, 6, 5, 9, 5, 6])).score(train, val=val)
    np.testing.assert_allclose(scaled, scores, rtol=1e-12, atol=COSINE_ATOL)


def test_less_zero_norm_rows_score_zero():
    train = np.array([[0.0, 0.0], [1.0, 0.0]])
    val = np.array([[1.0, 0.0], [0.0, 0.0]])  # a zero validation row still counts in its group's mean
    np.testing.assert_array_equal(less_scores(train, val), [0.0, 0.5])


def test_less_chunked_equals_one_pass(gradients, tmp_path, monkeypatch):
    train, val = gradients
    groups = [0, 1, 0, 2, 0, 1]
    one_pass = less_scores(train, val, lr_weights=[2.0, 1.0], val_groups=groups, chunk_size=13)
    for rows in (1, 4):
        chunked = less_scores(train, val, lr_weights=[2.0, 1.0], val_groups=groups, chunk_size=rows)
        np.testing.assert_allclose(chunked, one_pass, rtol=1e-12, atol=COSINE_ATOL)
    np.save(tmp_path / "train.npy", train)
    monkeypatch.setattr(self_influence_module, "CHUNK_BYTES", 8 * 12 * 3)  # 3 rows per chunk
    stored = np.load(tmp_path / "train.npy", mmap_mode="r")
    scores = Less(lr_weights=[2.0, 1.0], val_groups=groups).score(stored, val=val)
    np.testing.assert_allclose(scores, one_pass, rtol=1e-12, atol=COSINE_ATOL)


def test_less_two_dimensional_features_are_one_checkpoint(gradients):
    train, val = gradients
    np.testing.assert_allclose(
        Less().score(train[:, 0], val=val[:, 0]), direct_less(train[:, :1], val[:, :1], [1.0], [0] * 6)
    )


def test_less_needs_val():
    with pytest.raises(ValueError, match="'less' needs a validation representation"):
        Less().select(np.ones((3, 2)), 1)


def test_less_val_groups_need_one_id_per_validation_row(gradients):
    train, val = gradients
    with pytest.raises(ValueError, match="val_groups has 3 group ids but val has n_val=6 rows"):
        Less(val_groups=[0, 1, 2]).select(train, 1, val=val)


@pytest.mark.parametrize("bad", ["abcdef", [[0], [1], [0], [1], [0], [1]], 3])
def test_less_rejects_bad_val_groups(gradients, bad):
    train, val = gradients
    with pytest.raises(ValueError, match="The 'val_groups' parameter of Less must be"):
        Less(val_groups=bad).select(train, 1, val=val)


def test_less_rejects_bad_lr_weights(gradients):
    train, val = gradients
    with pytest.raises(ValueError, match="The 'lr_weights' parameter of Less must be"):
        Less(lr_weights=[1.0, -2.0]).select(train, 1, val=val)
    with pytest.raises(
        ValueError,
        match=r"'lr_weights' parameter of Less must be one weight per checkpoint "
        r"\(the gradients have n_checkpoints=2\)\. Got \[1\.0\] instead",
    ):
        Less(lr_weights=[1.0]).select(train, 1, val=val)


def test_less_wrong_ndim_names_the_selector():
    with pytest.raises(ValueError, match="'less' reads an \\(n_examples, C, d\\) array"):
        Less().select(np.ones(4), 1, val=np.ones(2))


def test_adam_precondition_by_hand():
    # m' = 0.9*[0.5, 0] + 0.1*[1, -2] = [0.55, -0.2]; v' = 0.999*[0.25, 1] + 0.001*[1, 4] = [0.25075, 1.003]
    out = adam_precondition(np.array([[1.0, -2.0]]), np.array([0.5, 0.0]), np.array([0.25, 1.0]))
    expected = [[0.55 / math.sqrt(0.25075 + 1e-8), -0.2 / math.sqrt(1.003 + 1e-8)]]
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_adam_precondition_has_eps_inside_sqrt_and_no_bias_correction():
    zeros = np.zeros(1)
    # eps inside: 0.1 / sqrt(0.001 + 1) = 0.09995; outside would give 0.1 / (sqrt(0.001) + 1) = 0.0969
    np.testing.assert_allclose(adam_precondition(np.ones(1), zeros, zeros, eps=1.0), [0.1 / math.sqrt(1.001)])
    # bias-corrected Adam at step 1 would give 1 / sqrt(1 + eps) = 1.0, not sqrt(10)
    np.testing.assert_allclose(adam_precondition(np.ones(1), zeros, zeros), [0.1 / math.sqrt(0.001 + 1e-8)])


def test_adam_precondition_checks_its_inputs():
    with pytest.raises(ValueError, match=r"exp_avg has shape \(3,\) but grads has shape \(2, 2\)"):
        adam_precondition(np.ones((2, 2)), np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="exp_avg_sq has negative entries"):
        adam_precondition(np.ones(2), np.zeros(2), -np.ones(2))
    with pytest.raises(ValueError, match="The 'beta1' parameter of adam_precondition must be"):
        adam_precondition(np.ones(2), np.zeros(2), np.zeros(2), beta1=1.0)
    with pytest.raises(ValueError, match="The 'eps' parameter of adam_precondition must be"):
        adam_precondition(np.ones(2), np.zeros(2), np.zeros(2), eps=0.0)


# --- normalize=False: the lr-weighted inner product (Du et al., Appendix B) ---------------------------


def direct_inner(train, val, lr_weights, val_groups):
    """The inner-product formula: the full S matrix of lr-weighted dot products, group means, max."""
    w = np.asarray(lr_weights, dtype=float) / np.sum(lr_weights)
    s = np.einsum("ncd,vcd,c->nv", train, val, w)
    groups = np.asarray(val_groups)
    return np.max([s[:, groups == g].mean(axis=1) for g in np.unique(groups)], axis=0)


def test_less_inner_product_tiny_case_by_hand():
    # no normalisation: S = [[2, 0], [1, 3]]; groups a, b -> max(2, 0) = 2 and max(1, 3) = 3
    train = np.array([[2.0, 0.0], [1.0, 1.0]])
    val = np.array([[1.0, 0.0], [0.0, 3.0]])
    scores = less_scores(train, val, val_groups=["a", "b"], normalize=False)
    np.testing.assert_array_equal(scores, [2.0, 3.0])
    np.testing.assert_array_equal(less_scores(train, val, normalize=False), [1.0, 2.0])  # mean [0.5, 1.5]
    # the two definitions keep different examples: cosine prefers row 0 (cos 1), the inner product row 1
    assert Less(val_groups=["a", "b"]).select(train, 1, val=val).indices.tolist() == [0]
    assert Less(val_groups=["a", "b"], normalize=False).select(train, 1, val=val).indices.tolist() == [1]


def test_less_inner_product_two_checkpoints_unequal_weights_by_hand():
    # w = [3, 1] / 4. Group 7: 0.75 * (1*3) + 0.25 * (0*1 + 2*0) = 2.25; group 8: 0.25 * (2*5) = 2.5
    # one group: targets [1.5, 0.5] and [0.5, 2.5]: 0.75 * 1.5 + 0.25 * (2 * 2.5) = 2.375
    train = np.array([[[1.0, 0.0], [0.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]])
    val = np.array([[[3.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 5.0]]])
    selector = SELECTORS.create("less", lr_weights=[3.0, 1.0], val_groups=[7, 8], normalize=False)
    np.testing.assert_array_equal(selector.score(train, val=val), [2.5, 0.0])
    np.testing.assert_array_equal(
        less_scores(train, val, lr_weights=[3.0, 1.0], normalize=False), [2.375, 0.0]
    )


def test_less_inner_product_can_be_negative_and_matches_direct_einsum(gradients):
    train, val = gradients
    groups = ["x", "y", "x", "z", "x", "y"]
    scores = Less(lr_weights=[3.0, 1.0], val_groups=groups, normalize=False).score(train, val=val)
    np.testing.assert_allclose(scores, direct_inner(train, val, [3.0, 1.0], groups), rtol=1e-12)
    assert (scores < 0).any()
    # renormalising lr_weights scales every score by one factor: Du et al.'s raw lr give the same ranking
    raw = np.einsum("ncd,vcd,c->nv", train, val, np.array([3.0, 1.0]))
    du = np.max([raw[:, np.asarray(groups) == g].mean(axis=1) for g in "xyz"], axis=0)
    np.testing.assert_allclose(scores * 4.0, du, rtol=1e-12)


def test_less_inner_product_chunked_and_memmap_equal_one_pass(gradients, tmp_path, monkeypatch):
    train, val = gradients
    groups = [0, 1, 0, 2, 0, 1]
    args = {"lr_weights": [2.0, 1.0], "val_groups": groups, "normalize": False}
    one_pass = less_scores(train, val, chunk_size=13, **args)
    for rows in (1, 4):
        chunked = less_scores(train, val, chunk_size=rows, **args)
        np.testing.assert_allclose(chunked, one_pass, rtol=1e-12, atol=1e-12 * np.abs(one_pass).max())
    np.save(tmp_path / "train.npy", train)
    monkeypatch.setattr(self_influence_module, "CHUNK_BYTES", 8 * 12 * 3)  # 3 rows per chunk
    stored = np.load(tmp_path / "train.npy", mmap_mode="r")
    mapped = Less(**args).score(stored, val=val)
    np.testing.assert_array_equal(mapped, Less(**args).score(train, val=val))  # same chunks: same bits


@pytest.mark.parametrize("bad", ["false", 0, 1, None, 0.5])
def test_less_normalize_must_be_a_bool(gradients, bad):
    train, val = gradients
    with pytest.raises(ValueError, match="The 'normalize' parameter of Less must be True or False"):
        Less(normalize=bad).select(train, 1, val=val)
    with pytest.raises(ValueError, match="The 'normalize' parameter of less_scores must be True or False"):
        less_scores(train, val, normalize=bad)


def test_less_defaults_to_the_normalised_match():
    assert Less().get_params() == {"lr_weights": None, "val_groups": None, "normalize": True}
