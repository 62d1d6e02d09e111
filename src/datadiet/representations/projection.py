"""Seeded random projections of gradients: dense (:class:`Projector`) and per-layer factorized.

Every matrix comes from a ``torch.Generator`` seeded with a stable hash (blake2b) of ``(seed, name)``
and is generated on the CPU, so the same ``(seed, name, shape)`` gives the same matrix in every
process, on every device and for every checkpoint (LESS projects all checkpoints with the same
matrix). Python's ``hash()`` and the global RNG are never used. Matrices may differ between torch
versions if torch changes its CPU generator.

**Scale.** Entries have unit variance and are scaled by ``1/sqrt(k)``, so ``E ||P^T x||^2 = ||x||^2``
and ``E <P^T x, P^T y> = <x, y>``. The TRAK and LESS projectors do not scale (their features are
``sqrt(k)`` times ours). The scale is irrelevant once LESS L2-normalises rows, but it matters for
self-influence (``||g||^2``), which these features estimate without bias.

**Guarantee (Johnson-Lindenstrauss).** For a dense matrix with independent sub-Gaussian entries,
``k = O(log(n) / eps^2)`` columns keep every pairwise inner product of ``n`` vectors within
``eps ||x|| ||y||`` with high probability; the relative error of one squared norm has standard
deviation about ``sqrt(2 / k)`` (Rademacher: at most that). Summing the projections of several
layers, each with its own independent matrix, equals projecting the concatenated gradient with the
stacked matrix ``[P_1; P_2; ...]`` (TRAK's ``ChunkedCudaProjector``), so the guarantee carries over.

**Factorized projection** (:class:`FactorizedProjector`, as in LoGra, Choe et al. 2024): a Linear
layer's per-example weight gradient is ``G = sum_t delta_t a_t^T`` (out x in). With seeded
``R_out`` (out x k_o) and ``R_in`` (in x k_i) the feature ``R_out^T G R_in`` (``k_o * k_i`` values)
is ``sum_t (R_out^T delta_t)(R_in^T a_t)^T``, computed from the projected ``delta`` and ``a`` without
forming ``G``. The map is ``R_out kron R_in``: still unbiased, but with heavier tails than a dense
map of the same size (the relative error of a rank-1 ``G`` is about ``sqrt(2/k_o + 2/k_i)``, e.g.
0.35 for 32 x 32, against ``sqrt(2/1024) = 0.044`` dense); summing many layers and tokens averages
this out. A layer with a thin side (at most ``sqrt(dim)`` rows or columns: LoRA's rank r, a
classifier's K classes) instead gets one independent dense block per row (column), which has the
error of a dense map and costs less than the Kronecker route for such shapes. The bias gradient
``sum_t delta_t`` is the weight gradient of an extra input fixed to 1, so it is projected as one
more input column: weight and bias share the layer's ``dim`` features. The tests measure the
distortion of both routes against exact per-example gradients.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from typing import Literal

import torch

ProjectionKind = Literal["rademacher", "normal", "sparse"]
KINDS: tuple[str, ...] = ("rademacher", "normal", "sparse")
BLOCK_ROWS = 1024
DEFAULT_MAX_CACHE_BYTES = 2**31


def stable_seed(seed: int, name: str, *parts: object) -> int:
    """A 63-bit generator seed from ``(seed, name, *parts)`` that is the same in every process.

    Parameters
    ----------
    seed : int
        The user's projection seed.
    name : str
        What the matrix is for (a layer name, ``""`` for a single matrix).
    *parts : object
        More keys (a block index, a side); converted with ``repr``.

    Returns
    -------
    int in [0, 2**63)

    Examples
    --------
    >>> stable_seed(0, "layer") == stable_seed(0, "layer"), stable_seed(0, "a") == stable_seed(1, "a")
    (True, False)
    """
    key = repr((int(seed), str(name), *parts)).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def random_block(rows: int, cols: int, *, seed: int, kind: str = "rademacher") -> torch.Tensor:
    """A ``rows x cols`` float32 block of unit-variance entries from a generator seeded with ``seed``.

    ``rademacher``: +-1 with probability 1/2 each; ``normal``: N(0, 1); ``sparse``: Achlioptas'
    sparse JL, ``sqrt(3) * {+1, 0, -1}`` with probabilities ``{1/6, 2/3, 1/6}``.

    Returns
    -------
    Tensor of shape (rows, cols), on the CPU
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    if kind == "normal":
        return torch.randn(rows, cols, generator=generator)
    if kind == "rademacher":
        return torch.randint(0, 2, (rows, cols), generator=generator, dtype=torch.float32).mul_(2).sub_(1)
    codes = torch.randint(0, 6, (rows, cols), generator=generator)
    block = (codes == 0).float() - (codes == 1).float()
    return block.mul_(math.sqrt(3.0))


def signed_injection(n: int, k: int, *, seed: int) -> torch.Tensor:
    """An ``n x k`` matrix (``n <= k``) mapping coordinate i to its own column with a random sign.

    Orthonormal rows, so it keeps norms and inner products exactly; random columns and signs keep
    it independent of (and uncorrelated with) the matrices of other layers.

    Returns
    -------
    Tensor of shape (n, k), on the CPU
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    columns = torch.randperm(k, generator=generator)[:n]
    signs = torch.randint(0, 2, (n,), generator=generator, dtype=torch.float32).mul_(2).sub_(1)
    matrix = torch.zeros(n, k)
    matrix[torch.arange(n), columns] = signs
    return matrix


def _check_int(owner: str, name: str, value: object, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"The '{name}' parameter of {owner} must be an int >= {low}. Got {value!r} instead.")
    return int(value)


def _check_kind(owner: str, kind: object) -> str:
    if kind not in KINDS:
        raise ValueError(
            f"The 'kind' parameter of {owner} must be one of {list(KINDS)}. Got {kind!r} instead."
        )
    return str(kind)


class Projector:
    """Dense seeded random projection ``x -> P^T x`` from ``in_dim`` to ``out_dim`` features.

    ``P`` (``in_dim x out_dim``) has unit-variance entries scaled by ``1/sqrt(out_dim)``. It is
    generated in blocks of ``BLOCK_ROWS`` rows, block ``i`` from a generator seeded with
    ``stable_seed(seed, name, "dense", i)``, and cached on first use when it fits in
    ``max_cache_bytes`` (TRAK's ``BasicProjector`` regenerates it at every call); a larger matrix
    is regenerated block by block at each call, so memory stays at one block. Either way it
    depends only on ``(seed, name, in_dim, out_dim, kind)``.

    Parameters
    ----------
    in_dim : int
        Input dimension p (number of gradient entries).
    out_dim : int
        Output dimension k.
    seed : int
        Projection seed.
    name : str
        Key that separates independent matrices (e.g. a layer name).
    kind : {"rademacher", "normal", "sparse"}
        Entry distribution.
    max_cache_bytes : int
        Largest matrix (float32 bytes) kept in memory.

    Examples
    --------
    >>> import torch
    >>> proj = Projector(6, 3, seed=0, name="demo")
    >>> proj(torch.ones(2, 6)).shape
    torch.Size([2, 3])
    >>> bool((proj.matrix().abs() == 3**-0.5).all())
    True
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        seed: int = 0,
        name: str = "",
        kind: ProjectionKind = "rademacher",
        max_cache_bytes: int = DEFAULT_MAX_CACHE_BYTES,
    ) -> None:
        self.in_dim = _check_int("Projector", "in_dim", in_dim)
        self.out_dim = _check_int("Projector", "out_dim", out_dim)
        self.seed = _check_int("Projector", "seed", seed, low=0)
        self.name = str(name)
        self.kind = _check_kind("Projector", kind)
        self.max_cache_bytes = _check_int("Projector", "max_cache_bytes", max_cache_bytes, low=0)
        self._cache: dict[torch.device, torch.Tensor] = {}

    def _block(self, index: int) -> torch.Tensor:
        start = index * BLOCK_ROWS
        rows = min(BLOCK_ROWS, self.in_dim - start)
        seed = stable_seed(self.seed, self.name, "dense", index)
        return random_block(rows, self.out_dim, seed=seed, kind=self.kind).div_(math.sqrt(self.out_dim))

    def _blocks(self):
        return (self._block(i) for i in range(math.ceil(self.in_dim / BLOCK_ROWS)))

    def matrix(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The full ``(in_dim, out_dim)`` float32 matrix on ``device`` (cached if it fits)."""
        device = torch.device(device or "cpu")
        if device in self._cache:
            return self._cache[device]
        matrix = torch.cat(list(self._blocks())).to(device)
        if 4 * self.in_dim * self.out_dim <= self.max_cache_bytes:
            self._cache[device] = matrix
        return matrix

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Project rows.

        Parameters
        ----------
        x : Tensor of shape (B, in_dim)

        Returns
        -------
        Tensor of shape (B, out_dim), float32
        """
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"Projector expects inputs of shape (B, {self.in_dim}). Got {tuple(x.shape)}.")
        x = x.float()
        if 4 * self.in_dim * self.out_dim <= self.max_cache_bytes:
            return x @ self.matrix(x.device)
        out = x.new_zeros(x.shape[0], self.out_dim)
        for index, block in enumerate(self._blocks()):
            start = index * BLOCK_ROWS
            out += x[:, start : start + len(block)] @ block.to(x.device)
        return out


def factor_dims(dim: int, out_features: int, in_features: int) -> tuple[int, int]:
    """Split ``dim`` into ``k_out * k_in`` for an (out x in) gradient.

    Each side's expected relative error is about ``1/k`` when it is compressed (side > k) and 0
    when it fits (side <= k, kept exactly by a signed injection); the split minimising the sum
    wins, ties going to the most balanced split. Square layers get ``sqrt(dim)`` per side; LoRA's
    rank-r sides get exactly r.

    Examples
    --------
    >>> factor_dims(1024, 384, 384), factor_dims(1024, 8, 384), factor_dims(1024, 1536, 9)
    ((32, 32), (8, 128), (64, 16))
    """

    def cost(k_out: int) -> tuple[float, int]:
        k_in = dim // k_out
        err = (out_features > k_out) / k_out + (in_features > k_in) / k_in
        return err, abs(k_out - k_in)

    divisors = [q for q in range(1, dim + 1) if dim % q == 0]
    k_out = min(divisors, key=cost)
    return k_out, dim // k_out


def side_matrix(n: int, k: int, *, seed: int, name: str, kind: str = "rademacher") -> torch.Tensor:
    """One side of a factorized projection: ``n x k``, exact injection if ``n <= k``, else random/sqrt(k)."""
    if n <= k:
        return signed_injection(n, k, seed=stable_seed(seed, name))
    return random_block(n, k, seed=stable_seed(seed, name), kind=kind).div_(math.sqrt(k))


class FactorizedProjector:
    """Project one Linear layer's per-example weight (+ bias) gradient to ``dim`` values.

    Example b's gradient is ``[G_b | g_b]`` (out x in [+1]): ``G_b = sum_t delta_bt a_bt^T`` and the bias
    gradient ``g_b = sum_t delta_bt`` is the column of an extra input fixed to 1. Two layouts, chosen
    from the shape (:attr:`mode`):

    - ``"kronecker"`` (both sides longer than ``sqrt(dim)``): ``vec(R_out^T [G | g] R_in)`` with
      ``dim = k_out * k_in`` (:func:`factor_dims`), computed by :meth:`project` from the projected
      ``delta`` and ``a`` without forming ``G``.
    - ``"rows"`` / ``"columns"`` (a thin side of ``s <= sqrt(dim)`` rows or columns, e.g. LoRA's
      rank r or a classifier's K classes): each of the s rows (columns) gets its own block of
      ``dim // s`` outputs and its own dense random matrix, i.e. a block-diagonal dense projection.
      Its error is that of a dense map (a Kronecker map would have the error of a single
      ``dim // s`` sketch); :meth:`project` forms the small ``G`` first, which costs less than
      projecting the long side of every token. The matrices take ``long side x dim`` floats.

    Parameters
    ----------
    out_features, in_features : int
        The layer's shape (``weight`` is out x in).
    dim : int
        Output dimension.
    bias : bool
        Whether the layer has a bias whose gradient is included.
    seed : int
        Projection seed.
    name : str
        The layer's name (separates the layers' independent matrices).
    kind : {"rademacher", "normal", "sparse"}
        Entry distribution of the random matrices.

    Examples
    --------
    >>> import torch
    >>> proj = FactorizedProjector(40, 36, dim=16, bias=True, seed=0, name="fc")
    >>> proj.mode, (proj.k_out, proj.k_in)
    ('kronecker', (4, 4))
    >>> a, delta = torch.randn(2, 5, 36), torch.randn(2, 5, 40)
    >>> grad = torch.einsum("bto,bti->boi", delta, a)
    >>> torch.allclose(proj.project(a, delta), proj.project_gradient(grad, delta.sum(1)), atol=1e-4)
    True
    >>> FactorizedProjector(8, 384, dim=1024, name="lora_A").mode
    'rows'
    """

    def __init__(
        self,
        out_features: int,
        in_features: int,
        *,
        dim: int = 1024,
        bias: bool = False,
        seed: int = 0,
        name: str = "",
        kind: ProjectionKind = "rademacher",
    ) -> None:
        self.out_features = _check_int("FactorizedProjector", "out_features", out_features)
        self.in_features = _check_int("FactorizedProjector", "in_features", in_features)
        self.dim = _check_int("FactorizedProjector", "dim", dim)
        self.bias = bool(bias)
        self.seed = _check_int("FactorizedProjector", "seed", seed, low=0)
        self.name = str(name)
        self.kind = _check_kind("FactorizedProjector", kind)
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def mode(self) -> str:
        """``"rows"``/``"columns"`` if that side has at most ``sqrt(dim)`` entries, else ``"kronecker"``."""
        rows, cols = self.out_features, self.in_features + self.bias
        if min(rows, cols) ** 2 > self.dim:
            return "kronecker"
        return "rows" if rows <= cols else "columns"

    @property
    def k_out(self) -> int:
        """Output factor of the Kronecker layout (the block count in the other layouts)."""
        if self.mode == "kronecker":
            return factor_dims(self.dim, self.out_features, self.in_features + self.bias)[0]
        return self.out_features if self.mode == "rows" else self.dim // (self.in_features + self.bias)

    @property
    def k_in(self) -> int:
        """Input factor of the Kronecker layout (the block width or count in the other layouts)."""
        if self.mode == "kronecker":
            return factor_dims(self.dim, self.out_features, self.in_features + self.bias)[1]
        return self.dim // self.out_features if self.mode == "rows" else self.in_features + self.bias

    def matrices(self, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The random matrices on ``device`` (cached).

        Returns
        -------
        (R_out, R_in) : Tensors of shape (out_features, k_out) and (in_features [+ 1], k_in)
            In the Kronecker layout.
        (blocks, empty) : Tensor of shape (s, long side, dim // s) and an empty tensor
            In the ``rows``/``columns`` layouts (s the thin side).
        """
        device = torch.device(device or "cpu")
        if device not in self._cache:
            if self.mode == "kronecker":
                pair = self._kronecker_matrices()
            else:
                pair = (self._block_matrices(), torch.empty(0))
            self._cache[device] = (pair[0].to(device), pair[1].to(device))
        return self._cache[device]

    def _kronecker_matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        rows_in = self.in_features + self.bias
        r_out = side_matrix(
            self.out_features, self.k_out, seed=self.seed, name=f"{self.name}/out", kind=self.kind
        )
        r_in = side_matrix(rows_in, self.k_in, seed=self.seed, name=f"{self.name}/in", kind=self.kind)
        return r_out, r_in

    def _block_matrices(self) -> torch.Tensor:
        rows, cols = self.out_features, self.in_features + self.bias
        thin, long = (rows, cols) if self.mode == "rows" else (cols, rows)
        width = self.dim // thin
        blocks = [
            side_matrix(long, width, seed=self.seed, name=f"{self.name}/block{j}", kind=self.kind)
            for j in range(thin)
        ]
        return torch.stack(blocks)

    def project(self, a: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Projected per-example gradient from the layer's inputs and output gradients.

        Parameters
        ----------
        a : Tensor of shape (B, T, in_features) or (B, in_features)
            The layer's inputs (T tokens per example).
        delta : Tensor of shape (B, T, out_features) or (B, out_features)
            Gradients of the summed loss with respect to the layer's outputs.

        Returns
        -------
        Tensor of shape (B, dim), float32
        """
        a, delta = _as_tokens(a).float(), _as_tokens(delta).float()
        if self.mode != "kronecker":
            grad = delta.transpose(1, 2) @ a
            return self.project_gradient(grad, delta.sum(1) if self.bias else None)
        r_out, r_in = self.matrices(a.device)
        pa = a @ r_in[: self.in_features]
        if self.bias:
            pa = pa + r_in[self.in_features]
        return ((delta @ r_out).transpose(1, 2) @ pa).reshape(len(a), self.dim)

    def project_gradient(self, grad: torch.Tensor, bias_grad: torch.Tensor | None = None) -> torch.Tensor:
        """Projected per-example gradient from materialised gradients.

        Parameters
        ----------
        grad : Tensor of shape (B, out_features, in_features)
            Per-example weight gradients (or Adam-preconditioned updates).
        bias_grad : Tensor of shape (B, out_features), optional
            Per-example bias gradients; required when ``bias=True``.

        Returns
        -------
        Tensor of shape (B, dim), float32
        """
        if self.bias and bias_grad is None:
            raise ValueError(
                f"Layer {self.name!r} has a bias: pass bias_grad of shape (B, {self.out_features})."
            )
        grad = grad.float()
        if self.bias:
            grad = torch.cat([grad, bias_grad.float().unsqueeze(-1)], dim=-1)
        first, second = self.matrices(grad.device)
        if self.mode == "kronecker":
            return (first.T @ grad @ second).reshape(len(grad), self.dim)
        if self.mode == "columns":
            grad = grad.transpose(1, 2)
        out = torch.bmm(grad.transpose(0, 1), first).transpose(0, 1).reshape(len(grad), -1)
        return torch.nn.functional.pad(out, (0, self.dim - out.shape[1]))


def _as_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, F) -> (B, 1, F); (B, T, F) unchanged; (B, ..., F) -> (B, T, F) with T the product of the middle."""
    if x.ndim == 2:
        return x.unsqueeze(1)
    return x.reshape(x.shape[0], -1, x.shape[-1])
