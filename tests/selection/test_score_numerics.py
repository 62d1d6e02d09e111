"""Scale, magnitude and parameter bounds of the score selectors (issue 11, sections 2 and 3).

Invariants checked here:

- self_influence, less (both ``normalize`` modes) and ccs select the same examples for ``x`` and for any
  positive rescaling of ``x``: bit for bit under a power of two (the same code path on the same numbers),
  and as a set on well-separated data under 1e-170 / 1e150 (float64) and 1e30 / 1e-30 (float32);
- nothing unscaled is squared: self_influence's scores are exact where float64 holds them, and otherwise
  reported times one power of two with a warning; el2n and ambiguous keep the order of tiny errors/spreads;
- rows that are nonzero but all subnormal, and scores spanning more than float64's range, are refused with
  the reason; memmap and in-memory give the same bits at any magnitude;
- every numeric parameter of these selectors is bounded (``param_error`` wording), and no value of
  ``n_strata`` or of the class count allocates memory beyond O(input).
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import datadiet
import datadiet.selection.self_influence as self_influence_module
from datadiet._core import chunks as _chunks
from datadiet.selection._numerics import ScoresRescaledWarning, as_float64_scores, weighted_square_norms
from datadiet.selection.ccs import CCS, assign_strata
from datadiet.selection.el2n import el2n_scores
from datadiet.selection.less import Less, less_scores
from datadiet.selection.registry import SELECTORS
from datadiet.selection.self_influence import SelfInfluence, self_influence_scores

PROPERTY = settings(max_examples=30, deadline=None, derandomize=True, database=None)
N, K = 30, 6


def planted(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, planted rows): K of N training rows are large and aligned with the validation rows.

    Every score these selectors compute separates the planted rows from the others by a wide margin, so
    rounding (float32 storage included) cannot change which K are selected.
    """
    rng = np.random.default_rng(seed)
    direction = np.ones((2, 4))
    val = direction + 0.1 * rng.normal(size=(8, 2, 4))
    train = rng.normal(size=(N, 2, 4))
    rows = np.sort(rng.choice(N, K, replace=False))
    train[rows] = 4.0 * direction + 0.1 * rng.normal(size=(K, 2, 4))
    return train, val, rows


SELECT = {
    "self_influence": lambda train, val, **kw: datadiet.select("self_influence", train, K, **kw),
    "less": lambda train, val, **kw: datadiet.select("less", train, K, val=val, **kw),
    "less_inner": lambda train, val, **kw: datadiet.select("less", train, K, val=val, normalize=False, **kw),
}


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScoresRescaledWarning)
        return fn(*args, **kwargs)


# --- invariance to a positive rescaling ---------------------------------------------------------------


@PROPERTY
@given(
    seed=st.integers(0, 2**16),
    train_exp=st.integers(-900, 900),
    val_exp=st.integers(-900, 900),
    name=st.sampled_from(sorted(SELECT)),
    shape=st.sampled_from([(2, 3), (3,)]),  # (n, C, d) or (n, d)
)
def test_power_of_two_rescaling_selects_the_same_bits(seed, train_exp, val_exp, name, shape):
    rng = np.random.default_rng(seed)
    train, val = rng.normal(size=(12, *shape)), rng.normal(size=(5, *shape))
    base = quiet(SELECT[name], train, val)
    rescaled = quiet(SELECT[name], np.ldexp(train, train_exp), np.ldexp(val, val_exp))
    np.testing.assert_array_equal(rescaled.indices, base.indices)
    if name == "less":  # cosines do not depend on the scale at all
        np.testing.assert_array_equal(rescaled.scores, base.scores)


@pytest.mark.parametrize("exp", [-500, -300, 200, 480])
def test_self_influence_scores_scale_exactly_by_the_square_of_a_power_of_two(exp):
    train, _, _ = planted()
    scores = SelfInfluence().score(train)
    np.testing.assert_array_equal(SelfInfluence().score(np.ldexp(train, exp)), np.ldexp(scores, 2 * exp))


@pytest.mark.parametrize(
    ("dtype", "factor"), [(np.float32, 1e30), (np.float32, 1e-30), (np.float64, 1e-170), (np.float64, 1e150)]
)
@pytest.mark.parametrize("name", sorted(SELECT))
def test_extreme_magnitudes_select_the_planted_rows(name, dtype, factor):
    train, val, rows = planted()
    assert SELECT[name](train, val).indices.tolist() == rows.tolist()
    big = quiet(SELECT[name], (train * factor).astype(dtype), (val * factor).astype(dtype))
    assert big.indices.tolist() == rows.tolist()
    assert np.isfinite(big.scores).all()


@pytest.mark.parametrize(("dtype", "factor"), [(np.float32, 1e30), (np.float32, 1e-30), (np.float64, 1e-170)])
def test_less_cosine_scores_do_not_depend_on_magnitude(dtype, factor):
    train, val, _ = planted()
    train, val = train.astype(dtype), val.astype(dtype)
    scores = Less().score(train, val=val)
    rescaled = Less().score((train * factor).astype(dtype), val=(val * factor).astype(dtype))
    tolerance = 1e-5 if dtype == np.float32 else 1e-12  # float32 storage rounds the rescaled inputs
    np.testing.assert_allclose(rescaled, scores, rtol=tolerance, atol=tolerance)


def test_train_and_val_rescaled_independently_select_the_same_rows():
    train, val, rows = planted()
    for normalize in (True, False):
        sel = quiet(datadiet.select, "less", train * 1e-160, K, val=val * 1e140, normalize=normalize)
        assert sel.indices.tolist() == rows.tolist()


def test_self_influence_outside_float64_range_warns_and_reports_times_a_power_of_two():
    train, _, rows = planted()
    exact = SelfInfluence().score(train)
    with pytest.warns(ScoresRescaledWarning, match=r"self_influence scores lie outside float64's range"):
        tiny = SelfInfluence().score(train * 1e-170)  # SI ~ 1e-338: no float64 holds it
    assert 0.5 <= tiny.max() < 1 and (tiny > 0).all()
    np.testing.assert_allclose(tiny / tiny.max(), exact / exact.max(), rtol=1e-12)
    assert np.sort(np.argsort(-tiny)[:K]).tolist() == rows.tolist()


def test_self_influence_scores_stay_exact_where_float64_holds_them():
    grads = np.array([[[1e150, 0.0]], [[0.0, 2e150]]])  # squares 1e300 and 4e300: finite, the sum 5e300
    np.testing.assert_allclose(self_influence_scores(grads), [1e300, 4e300], rtol=1e-15)
    np.testing.assert_allclose(self_influence_scores(grads * 1e-300), [1e-300, 4e-300], rtol=1e-15)


@pytest.mark.parametrize("weights", [[1e308, 1e308], [1e-320, 1e-320], [5e-324, 5e-324]])
def test_extreme_lr_weights_rank_like_equal_weights(weights):
    train, val, rows = planted()
    assert (
        quiet(datadiet.select, "self_influence", train, K, lr_weights=weights).indices.tolist()
        == rows.tolist()
    )
    for normalize in (True, False):
        sel = datadiet.select("less", train, K, val=val, lr_weights=weights, normalize=normalize)
        np.testing.assert_array_equal(
            sel.scores, datadiet.select("less", train, K, val=val, normalize=normalize).scores
        )


def test_zero_weight_checkpoints_are_ignored_at_any_magnitude():
    train, _, _ = planted()
    train[:, 1] *= 1e300  # a huge checkpoint with weight 0 must not decide the ranking
    np.testing.assert_array_equal(
        SelfInfluence(lr_weights=[1.0, 0.0]).score(train), SelfInfluence().score(train[:, :1])
    )


def test_memmap_equals_in_memory_at_extreme_magnitude(tmp_path, monkeypatch):
    train, val, _ = planted()
    train, val = train * 1e-170, val * 1e-170
    monkeypatch.setattr(_chunks, "CHUNK_BYTES", 256)
    monkeypatch.setattr(self_influence_module, "CHUNK_BYTES", 256)
    np.save(tmp_path / "train.npy", train)
    mapped = np.load(tmp_path / "train.npy", mmap_mode="r")
    for name in sorted(SELECT):
        np.testing.assert_array_equal(
            quiet(SELECT[name], mapped, val).scores, quiet(SELECT[name], train, val).scores
        )


def test_weighted_square_norms_keep_full_precision_at_any_magnitude():
    block = np.array([[[3.0, 4.0], [1.0, 0.0]]])
    for exp in (-1070, -600, 0, 600, 1000):
        mantissa, exponent = weighted_square_norms(np.ldexp(block, exp), np.array([2.0, 1.0]))
        assert mantissa[0] * 2.0 ** (exponent[0] - 2 * exp) == 51.0  # 2 * 25 + 1, exact


# --- ccs: rankings and equal-width strata are scale-free --------------------------------------------


@PROPERTY
@given(
    scores=st.lists(st.integers(-50, 50), min_size=8, max_size=40),
    exp=st.integers(-1000, 1018),  # 50 * 2**1018 is finite, but 100 * 2**1018 (max - min) is not
    n_strata=st.integers(1, 12),
    beta=st.sampled_from([0.0, 0.1, 0.25]),
    seed=st.integers(0, 100),
)
@example(
    scores=[-50, -20, 0, 3, 7, 20, 33, 50], exp=1018, n_strata=3, beta=0.0, seed=0
)  # max - min overflows
@example(scores=[-3, -2, -1, 0, 1, 2, 3, 4, 5], exp=-1000, n_strata=4, beta=0.1, seed=1)
def test_ccs_selects_the_same_bits_under_power_of_two_rescaling(scores, exp, n_strata, beta, seed):
    values = np.asarray(scores, dtype=np.float64)
    k = max(1, len(values) // 3)
    selector = CCS(beta=beta, n_strata=n_strata)
    base = selector.select(values, k, seed=seed).indices
    np.testing.assert_array_equal(selector.select(np.ldexp(values, exp), k, seed=seed).indices, base)
    trajectory = np.stack([values, values + 1.0], axis=1)
    np.testing.assert_array_equal(
        selector.select(np.ldexp(trajectory, exp), k, seed=seed).indices,
        selector.select(trajectory, k, seed=seed).indices,
    )


@pytest.mark.parametrize(
    ("dtype", "factor"),
    [(np.float32, 1e30), (np.float32, 1e-30), (np.float64, 1e-170), (np.float64, 1e150), (np.float64, 8e306)],
)
def test_ccs_on_well_separated_scores_does_not_depend_on_their_magnitude(dtype, factor):
    # scores -19.5 .. 19.5; beta drops 4: strata over [-19.5, 15.5] have edges -19.5 + 8.75 i, >= 0.25 from
    # every score. Times 8e306 the scores are finite but max - min (3.1e308) is not.
    scores = np.random.default_rng(0).permutation(40) - 19.5
    selector = CCS(beta=0.1, n_strata=4)
    for sign in (1.0, -1.0):
        base = selector.select(sign * scores, 12, seed=3).indices
        rescaled = selector.select((sign * scores * factor).astype(dtype), 12, seed=3).indices
        assert rescaled.tolist() == base.tolist()


def test_ccs_range_near_float64_max_keeps_equal_width_strata():
    scores = np.array([-1.5e308, -0.5e308, 0.5e308, 1.5e308])  # max - min = 3e308 overflows
    assert assign_strata(scores, 2).tolist() == [0, 0, 1, 1]
    trajectory = np.array([[1.5e308, 1.7e308], [-1.7e308, -1.5e308], [1e300, 2e300]])  # sums overflow
    assert CCS(n_strata=2).select(trajectory, 3).indices.tolist() == [0, 1, 2]


def test_ccs_huge_n_strata_allocates_no_bin_per_stratum():
    scores = np.arange(1000.0)
    tracemalloc.start()
    try:
        picked = CCS(n_strata=10**12).select(scores, 10, seed=0).indices
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20
    # each score is its own stratum; smallest first, each takes remaining // strata_left: the top 10 remain
    assert picked.tolist() == list(range(990, 1000))


# --- el2n, ambiguous: not scale-free (probabilities), but no square underflows -------------------------


def test_el2n_keeps_the_order_of_errors_below_the_square_root_of_tiny():
    probs = np.array([[1.0, 1e-200], [1.0, 3e-200], [1.0, 2e-200]])
    np.testing.assert_allclose(
        el2n_scores(probs, np.zeros(3, dtype=int)), [1e-200, 3e-200, 2e-200], rtol=1e-15
    )
    assert datadiet.select("el2n", probs, 1, labels=np.zeros(3, dtype=int)).indices.tolist() == [1]


def test_el2n_with_a_vocabulary_sized_class_count_builds_no_k_by_k_matrix():
    n_classes = 2**18  # np.eye(K) would be 512 GiB
    probs = np.zeros((3, n_classes))
    probs[[0, 1, 2], [0, 5, 7]] = [1.0, 0.5, 0.25]
    probs[1, 6], probs[2, 8] = 0.5, 0.75
    tracemalloc.start()
    try:
        scores = el2n_scores(probs, np.array([0, 5, 8]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(scores, [0.0, np.sqrt(0.5), np.sqrt(0.125)], rtol=1e-12)
    assert peak < 64 * 2**20


def test_ambiguous_keeps_the_order_of_tiny_spreads():
    p = np.array([[1e-200, 2e-200], [1e-200, 3e-200]])  # stds 5e-201 and 1e-200; their squares underflow
    np.testing.assert_allclose(SELECTORS.create("ambiguous").score(p), [5e-201, 1e-200], rtol=1e-15)
    assert datadiet.select("ambiguous", p, 1).indices.tolist() == [1]


# --- refusals with the reason ------------------------------------------------------------------------


SUBNORMAL_CASES = [(name, "train") for name in sorted(SELECT)] + [("less", "val"), ("less_inner", "val")]


@pytest.mark.parametrize(("dtype", "value"), [(np.float32, 1e-40), (np.float64, 1e-310)])
@pytest.mark.parametrize(("name", "where"), SUBNORMAL_CASES)
def test_subnormal_rows_are_refused_with_the_reason(name, where, dtype, value):
    train, val, _ = planted()
    train, val = train.astype(dtype), val.astype(dtype)
    (train if where == "train" else val)[1] = value  # nonzero, but every value below the smallest normal
    reason = rf"values are all subnormal \(.*below [^,]*, the smallest normal {np.dtype(dtype)}"
    with pytest.raises(ValueError, match=reason):
        SELECT[name](train, val)


def test_less_refuses_a_subnormal_checkpoint_that_it_would_normalise():
    train, val, _ = planted()
    train[3, 1] = 1e-310  # checkpoint 1 of example 3: no direction left; checkpoint 0 is ordinary
    with pytest.raises(ValueError, match=r"first \(example, checkpoint\): \[\(3, 1\)\]"):
        datadiet.select("less", train, K, val=val)
    # self-influence only adds its (negligible) square: the example is not refused
    assert len(datadiet.select("self_influence", train, K).indices) == K


def test_self_influence_refuses_scores_spanning_more_than_float64():
    grads = np.array([[1e200, 0.0], [1e-200, 0.0], [1e190, 0.0]])  # SI 1e400, 1e-400 (1e800 apart), 1e380
    with pytest.raises(ValueError, match=r"1 rows \(first: \[1\]\) are more than 2\*\*1022 times smaller"):
        quiet(datadiet.select, "self_influence", grads, 1)
    with pytest.raises(ValueError, match="more than 2\\*\\*1022 times smaller"):
        as_float64_scores(np.array([0.5, 0.5]), np.array([1500, -1500]), what="x")


def test_functions_refuse_nan_in_gradients():
    with pytest.raises(ValueError, match="grads has 1 NaN/inf"):
        self_influence_scores(np.array([[1.0, np.nan], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="val has 1 NaN/inf"):
        less_scores(np.ones((2, 2)), np.array([[1.0, np.inf]]))


# --- bounded parameters -------------------------------------------------------------------------------

GRADS = np.random.default_rng(0).normal(size=(10, 2, 3))
NOT_WEIGHTS = [[1.0, -1.0], [0.0, 0.0], [1.0, np.nan], [np.inf, 1.0], [[1.0, 1.0]], "1,2", [], [1.0, "a"]]


@pytest.mark.parametrize("bad", NOT_WEIGHTS)
@pytest.mark.parametrize("name", ["self_influence", "less"])
def test_lr_weights_are_bounded(name, bad):
    owner = type(SELECTORS.create(name)).__name__
    with pytest.raises(ValueError, match=f"The 'lr_weights' parameter of {owner} must be"):
        datadiet.select(name, GRADS, 2, val=GRADS[:3], lr_weights=bad) if name == "less" else datadiet.select(
            name, GRADS, 2, lr_weights=bad
        )


def test_a_long_bad_parameter_is_abbreviated_in_the_message():
    with pytest.raises(ValueError, match=r"Got '\[1\.0, 1\.0, .*, \.\.\. \(100000 items\)\]' instead\.$"):
        datadiet.select("self_influence", GRADS, 2, lr_weights=[1.0] * 100_000)


@pytest.mark.parametrize("bad", [[1.0], [1.0, 1.0, 1.0]])
def test_lr_weights_need_one_per_checkpoint(bad):
    with pytest.raises(ValueError, match=r"one weight per checkpoint \(the gradients have n_checkpoints=2\)"):
        datadiet.select("less", GRADS, 2, val=GRADS[:3], lr_weights=bad)
    with pytest.raises(ValueError, match=r"SelfInfluence must be one weight per checkpoint"):
        datadiet.select("self_influence", GRADS, 2, lr_weights=bad)


@pytest.mark.parametrize("bad", [3, "abc", [[0], [1], [2]], [{}, {}, {}], [0.0, float("nan"), 1.0]])
def test_val_groups_are_bounded(bad):
    with pytest.raises(ValueError, match="The 'val_groups' parameter of Less must be"):
        datadiet.select("less", GRADS, 2, val=GRADS[:3], val_groups=bad)
    with pytest.raises(ValueError, match="val_groups has 2 group ids but val has n_val=3 rows"):
        datadiet.select("less", GRADS, 2, val=GRADS[:3], val_groups=[0, 1])


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"beta": float("nan")}, "beta"),
        ({"beta": float("inf")}, "beta"),
        ({"beta": 1.0}, "beta"),
        ({"n_strata": 2**53 + 1}, "n_strata"),
        ({"n_strata": 10**100}, "n_strata"),
        ({"n_strata": float("nan")}, "n_strata"),
        ({"n_strata": True}, "n_strata"),
        ({"n_strata": -1}, "n_strata"),
    ],
)
def test_ccs_params_are_bounded(params, name):
    with pytest.raises(ValueError, match=f"The '{name}' parameter of CCS must be"):
        CCS(**params).select(np.arange(10.0), 2)


def test_ccs_accepts_n_strata_up_to_its_bound():
    assert len(CCS(n_strata=2**53).select(np.arange(10.0), 3).indices) == 3


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.1, 1.5, True, "0.5"])
def test_calibration_alpha_is_bounded(bad):
    with pytest.raises(ValueError, match=r"The 'alpha' parameter of calibration must be a float in \[0, 1\]"):
        datadiet.select("el2n", np.full((4, 2), 0.5), 2, labels=np.zeros(4, dtype=int), calibrate=bad)


def test_calibration_accepts_numpy_floats():
    sel = datadiet.select(
        "el2n", np.full((4, 2), 0.5), 2, labels=np.zeros(4, dtype=int), calibrate=np.float32(0.5)
    )
    assert sel.budget == 2
