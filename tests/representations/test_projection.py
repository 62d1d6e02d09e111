"""Seeded projections: reproducible bit for bit, norm-preserving in expectation, factorized = explicit."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from datadiet.representations.projection import (
    BLOCK_ROWS,
    KINDS,
    FactorizedProjector,
    Projector,
    cache_info,
    clear_cache,
    factor_dims,
    random_block,
    set_cache_limit,
    signed_injection,
    stable_seed,
)
from tests.helpers import assert_matmul_close, assert_within, factorized_map, product_error_bound


def test_stable_seed_is_the_same_in_another_process():
    code = (
        "from datadiet.representations.projection import Projector, stable_seed;"
        "print(stable_seed(3, 'layer.0', 'dense', 1));"
        "print(Projector(50, 8, seed=3, name='layer.0').matrix().sum().item())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert int(out[0]) == stable_seed(3, "layer.0", "dense", 1)
    assert float(out[1]) == Projector(50, 8, seed=3, name="layer.0").matrix().sum().item()


def test_projector_same_seed_gives_identical_matrix_and_other_seeds_or_names_differ():
    matrix = Projector(300, 16, seed=1, name="a").matrix()
    assert torch.equal(matrix, Projector(300, 16, seed=1, name="a").matrix())
    assert not torch.equal(matrix, Projector(300, 16, seed=2, name="a").matrix())
    assert not torch.equal(matrix, Projector(300, 16, seed=1, name="b").matrix())


def test_projector_matrix_does_not_depend_on_caching_and_spans_several_blocks():
    """The matrix is the same bits however much is cached; each route's output is ``x @ P`` in float32.

    The cached (one GEMM), streamed (a GEMM per block) and partial routes sum in different orders, so
    their outputs are only promised to be ``x @ P`` up to float32 rounding (checked against float64).
    """
    x = torch.randn(3, 2500, generator=torch.Generator().manual_seed(0))
    clear_cache()
    cached = Projector(2500, 32, seed=0, name="big")
    streamed = Projector(2500, 32, seed=0, name="big", max_cache_bytes=0)
    partial = Projector(2500, 32, seed=0, name="big", max_cache_bytes=4 * 32 * 1500)
    assert streamed.cached_rows == 0 and partial.cached_rows == BLOCK_ROWS
    matrix = cached.matrix()
    assert torch.equal(streamed.matrix(), matrix) and torch.equal(partial.matrix(), matrix)
    assert cache_info()["entries"] == 1
    first_block = Projector(BLOCK_ROWS, 32, seed=0, name="big").matrix()  # block i: seed (0, "big", i)
    assert torch.equal(matrix[:BLOCK_ROWS], first_block)
    assert not torch.equal(matrix[BLOCK_ROWS : 2 * BLOCK_ROWS], first_block)
    for projector in (cached, streamed, partial):
        assert_matmul_close(projector(x), x, matrix)
        assert torch.equal(projector(x), projector(x))


@pytest.mark.parametrize("kind", KINDS)
def test_projector_entries_have_variance_one_over_k(kind):
    matrix = Projector(2000, 64, seed=0, kind=kind).matrix()
    assert matrix.mean().abs() < 0.005
    assert matrix.pow(2).mean().item() == pytest.approx(1 / 64, rel=0.03)
    if kind == "rademacher":
        assert torch.all(matrix.abs() == 64**-0.5)
    if kind == "sparse":
        assert (matrix == 0).float().mean().item() == pytest.approx(2 / 3, abs=0.01)
    if kind == "very_sparse":
        assert (matrix != 0).float().mean().item() == pytest.approx(2000**-0.5, rel=0.03)
        torch.testing.assert_close(
            matrix[matrix != 0].abs(), torch.full_like(matrix[matrix != 0], (2000**0.5 / 64) ** 0.5)
        )


def test_projector_preserves_squared_norms_in_expectation_with_jl_spread():
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(400, 1000)), dtype=torch.float32)
    ratios = (Projector(1000, 256, seed=0)(x).pow(2).sum(1) / x.pow(2).sum(1)).numpy()
    assert ratios.mean() == pytest.approx(1.0, abs=0.02)
    assert ratios.std() == pytest.approx(np.sqrt(2 / 256), rel=0.2)


def test_projector_keeps_pairwise_inner_products_within_jl_bound():
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.normal(size=(50, 3000)), dtype=torch.float32)
    x = x / x.norm(dim=1, keepdim=True)
    px = Projector(3000, 1024, seed=0)(x)
    error = (px @ px.T - x @ x.T).abs().max().item()
    assert error < 4 * np.sqrt(2 * np.log(50**2) / 1024)


def test_projector_refuses_wrong_input_width_and_bad_parameters():
    with pytest.raises(ValueError, match=r"shape \(B, 10\)"):
        Projector(10, 4)(torch.zeros(2, 11))
    with pytest.raises(ValueError, match="'kind' parameter of Projector"):
        Projector(10, 4, kind="gaussian")
    with pytest.raises(ValueError, match="'out_dim' parameter of Projector must be an int >= 1"):
        Projector(10, 0)


def test_signed_injection_is_orthonormal_and_random_block_is_seeded():
    inj = signed_injection(5, 12, seed=0)
    torch.testing.assert_close(inj @ inj.T, torch.eye(5))
    assert torch.equal(random_block(4, 3, seed=7), random_block(4, 3, seed=7))


def exact_factorized(
    proj: FactorizedProjector, a: torch.Tensor, delta: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Float64 features ``vec([G | g]) @ M`` (``G = sum_t delta_t a_t^T``) and their float32 error bound.

    ``M`` is the projector's explicit map; the bound is :func:`product_error_bound` of
    ``vec(|delta|^T |[a | 1]|) @ |M|`` with the reductions over tokens, outputs and inputs, so it covers
    every order in which either route multiplies.
    """
    a64 = a.reshape(len(a), -1, proj.in_features).double().numpy()
    d64 = delta.reshape(len(a), -1, proj.out_features).double().numpy()
    if proj.bias:
        a64 = np.concatenate([a64, np.ones((*a64.shape[:2], 1))], axis=2)
    mapping = factorized_map(proj)
    exact = np.einsum("bto,bti->boi", d64, a64).reshape(len(a), -1) @ mapping
    magnitude = np.einsum("bto,bti->boi", abs(d64), abs(a64)).reshape(len(a), -1) @ abs(mapping)
    lengths = (a64.shape[1], proj.out_features, proj.in_features + proj.bias)
    return exact, product_error_bound(magnitude, lengths)


@pytest.mark.parametrize(
    ("shape", "bias", "mode"),
    [
        ((40, 36), False, "kronecker"),
        ((40, 36), True, "kronecker"),
        ((4, 50), True, "rows"),
        ((50, 3), False, "columns"),
    ],
)
@pytest.mark.parametrize("tokens", [True, False])
def test_factorized_projection_from_activations_equals_projection_of_gradient(shape, bias, mode, tokens):
    """Both routes compute ``vec([G | g]) @ M`` in float32, in different orders: each is within its bound."""
    out_features, in_features = shape
    proj = FactorizedProjector(out_features, in_features, dim=64, bias=bias, seed=0, name="fc")
    assert proj.mode == mode
    gen = torch.Generator().manual_seed(0)
    lead = (3, 7) if tokens else (3,)
    a, delta = torch.randn(*lead, in_features, generator=gen), torch.randn(*lead, out_features, generator=gen)
    grad = torch.einsum("bto,bti->boi", delta.reshape(3, -1, out_features), a.reshape(3, -1, in_features))
    bias_grad = delta.reshape(3, -1, out_features).sum(1) if bias else None
    exact, bound = exact_factorized(proj, a, delta)
    assert_within(proj.project(a, delta), exact, bound, "project")
    assert_within(proj.project_gradient(grad, bias_grad), exact, bound, "project_gradient")


def test_kronecker_mode_is_the_kronecker_product_of_its_two_matrices():
    proj = FactorizedProjector(40, 36, dim=64, bias=True, seed=0, name="fc")
    r_out, r_in = proj.matrices()
    assert r_out.shape == (40, proj.k_out) and r_in.shape == (37, proj.k_in)
    grad = torch.randn(2, 40, 37, generator=torch.Generator().manual_seed(1))
    flat, kron = grad.reshape(2, -1).double().numpy(), np.kron(r_out.double().numpy(), r_in.double().numpy())
    bound = product_error_bound(abs(flat) @ abs(kron), (40, 37))
    assert_within(proj.project_gradient(grad[:, :, :36], grad[:, :, 36]), flat @ kron, bound)


@pytest.mark.parametrize("shape", [(40, 36), (4, 300), (300, 8)])
def test_factorized_projection_is_unbiased_for_squared_norms(shape):
    grad = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
    ratios = [
        FactorizedProjector(*shape, dim=64, seed=seed, name="fc").project_gradient(grad).pow(2).sum().item()
        for seed in range(200)
    ]
    assert np.mean(ratios) / grad.pow(2).sum().item() == pytest.approx(1.0, abs=0.03)


def test_thin_layers_keep_dense_accuracy_on_rank_one_gradients():
    """Rank-1 LoRA-A gradient (8 x 384): block layout error near a dense map's, Kronecker's far above."""
    gen = torch.Generator().manual_seed(0)
    grad = torch.outer(torch.randn(8, generator=gen), torch.randn(384, generator=gen))[None]
    padded = torch.nn.functional.pad(grad, (0, 0, 0, 32))  # 40 rows: forces the Kronecker layout
    thin = [FactorizedProjector(8, 384, dim=256, seed=s, name="a").project_gradient(grad) for s in range(60)]
    kron = [
        FactorizedProjector(40, 384, dim=256, seed=s, name="a").project_gradient(padded) for s in range(60)
    ]
    dense = [Projector(8 * 384, 256, seed=s)(grad.reshape(1, -1)) for s in range(60)]
    spread = [
        np.std([p.pow(2).sum().item() / grad.pow(2).sum().item() for p in ps]) for ps in (thin, kron, dense)
    ]
    assert spread[0] < 1.6 * spread[2] and spread[1] > 3 * spread[0]


def test_factor_dims_balances_square_layers_and_keeps_short_sides_exact():
    assert factor_dims(1024, 384, 1536) == (32, 32)
    assert factor_dims(64, 40, 37) == (8, 8)
    assert factor_dims(1024, 1536, 9) == (64, 16)


def test_factorized_matrices_depend_only_on_seed_name_and_shape():
    first = FactorizedProjector(40, 36, dim=64, seed=5, name="layer").matrices()
    again = FactorizedProjector(40, 36, dim=64, seed=5, name="layer").matrices()
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    other = FactorizedProjector(40, 36, dim=64, seed=5, name="layer2").matrices()
    assert not torch.equal(first[0], other[0])


def test_factorized_projection_requires_bias_gradient_when_layer_has_bias():
    proj = FactorizedProjector(4, 3, dim=16, bias=True, name="fc")
    with pytest.raises(ValueError, match="has a bias: pass bias_grad"):
        proj.project_gradient(torch.zeros(1, 4, 3))


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_keeps_pairwise_inner_products_and_norms_within_jl_bounds(kind):
    """JL on random data: inner products of unit vectors within eps, squared norms with spread sqrt(2/k)."""
    rng = np.random.default_rng(2)
    x = torch.as_tensor(rng.normal(size=(60, 5000)), dtype=torch.float32)
    x = x / x.norm(dim=1, keepdim=True)
    px = Projector(5000, 512, seed=3, name=kind, kind=kind)(x)
    inner = (px @ px.T - x @ x.T).fill_diagonal_(0).abs().max().item()
    assert inner < 4 * np.sqrt(2 * np.log(60**2) / 512)
    ratios = px.pow(2).sum(1).numpy()
    assert ratios.mean() == pytest.approx(1.0, abs=4 * np.sqrt(2 / 512 / 60))
    assert ratios.std() < 1.5 * np.sqrt(2 / 512)


@pytest.mark.parametrize("kind", KINDS)
def test_projection_is_bit_identical_across_runs_and_batch_splits(kind):
    x = torch.randn(9, 2600, generator=torch.Generator().manual_seed(0))
    whole = Projector(2600, 48, seed=1, name="split", kind=kind)(x)
    clear_cache()
    parts = [
        Projector(2600, 48, seed=1, name="split", kind=kind)(x[a:b]) for a, b in [(0, 1), (1, 4), (4, 9)]
    ]
    assert torch.equal(torch.cat(parts), whole)
    streamed = Projector(2600, 48, seed=1, name="split", kind=kind, max_cache_bytes=0)
    assert torch.equal(torch.cat([streamed(x[:1]), streamed(x[1:])]), streamed(x))
    matrix = streamed.matrix()  # cached and streamed sum in different orders: each is x @ P up to rounding
    assert_matmul_close(whole, x, matrix)
    assert_matmul_close(streamed(x), x, matrix)


def test_very_sparse_matrix_is_stored_sparse_and_seeded():
    proj = Projector(40_000, 256, seed=0, name="vs", kind="very_sparse")
    matrix = proj._cached(torch.device("cpu"))
    assert matrix.layout == torch.sparse_csr
    assert matrix._nnz() == pytest.approx(40_000 * 256 / 200, rel=0.02)
    again = Projector(40_000, 256, seed=0, name="vs", kind="very_sparse")._rows(0, 2048, torch.device("cpu"))
    other = Projector(40_000, 256, seed=1, name="vs", kind="very_sparse")._rows(0, 2048, torch.device("cpu"))
    first = matrix.to_dense()[:, :2048]
    assert torch.equal(first, again.to_dense()) and not torch.equal(first, other.to_dense())


def test_cache_keeps_matrices_within_its_limit_and_reuses_them():
    clear_cache()
    set_cache_limit(4 * 100 * 16 * 2)
    try:
        first = Projector(100, 16, seed=0, name="a")
        assert first.matrix() is Projector(100, 16, seed=0, name="a").matrix()
        Projector(100, 16, seed=0, name="b").matrix()
        Projector(100, 16, seed=0, name="c").matrix()
        assert cache_info()["entries"] == 2 and cache_info()["bytes"] <= cache_info()["limit"]
        assert torch.equal(first.matrix(), Projector(100, 16, seed=0, name="a").matrix())
    finally:
        set_cache_limit(2**31)
        clear_cache()
