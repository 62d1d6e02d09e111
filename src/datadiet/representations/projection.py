"""Seeded random projections of gradients: dense (:class:`Projector`) and per-layer factorized.

Every matrix comes from a ``torch.Generator`` seeded with a stable hash (blake2b) of ``(seed, name)``
and is generated on the CPU, so the same ``(seed, name, shape)`` gives the same matrix in every
process, on every device and for every checkpoint (LESS projects all checkpoints with the same
matrix). Python's ``hash()`` and the global RNG are never used. Matrices may differ between torch
versions if torch changes its CPU generator.

**Kinds.** ``rademacher`` (+-1), ``normal`` (N(0, 1)), ``sparse`` (Achlioptas 2003: ``sqrt(3)`` times
+-1 with probability 1/6 each, else 0) and ``very_sparse`` (Li, Hastie and Church 2006: ``sqrt(s)``
times +-1 with probability ``1/(2s)`` each, ``s = sqrt(in_dim)``). All have unit-variance entries.
``very_sparse`` is stored as a sparse matrix (``in_dim * out_dim / sqrt(in_dim)`` entries), so it fits
in memory where a dense matrix would not (1M x 4096: 50 MB instead of 16 GB).

**Cache.** Matrices are generated once and kept in a process-wide LRU cache keyed by ``(kind, seed,
name, in_dim, out_dim, device)``, within :func:`set_cache_limit` bytes (2 GiB by default): repeated
calls (one per batch) run at GEMM speed. TRAK's ``BasicProjector`` regenerates its blocks at every
call. A matrix larger than the limit keeps its leading blocks cached and regenerates the rest at each
call. The matrix depends only on the seed, name and shapes; the outputs of one configuration (cache limit
included) are the same in every run and for every split of the rows into batches (tested bit for bit),
while a cached and a streamed matrix give the same products only up to float32 rounding. BLAS picks its
kernel and thread split from the product's shape, so a row's bits could depend on the batch size; rows are
therefore multiplied in zero-padded groups of ``ROW_GROUP`` (32), one fixed shape per matrix.

**Scale.** Entries are scaled by ``1/sqrt(k)``, so ``E ||P^T x||^2 = ||x||^2`` and ``E <P^T x, P^T y>
= <x, y>``. The TRAK and LESS projectors do not scale (their features are ``sqrt(k)`` times ours). The
scale is irrelevant once LESS L2-normalises rows, but it matters for self-influence (``||g||^2``),
which these features estimate without bias.

**Guarantee (Johnson-Lindenstrauss).** For a dense matrix with independent sub-Gaussian entries,
``k = O(log(n) / eps^2)`` columns keep every pairwise inner product of ``n`` vectors within
``eps ||x|| ||y||`` with high probability; the relative error of one squared norm has standard
deviation about ``sqrt(2 / k)`` (Rademacher: at most that). The very sparse kind matches this unless
a few coordinates carry most of a vector's norm (its variance grows with the vector's kurtosis).
Summing the projections of several layers, each with its own independent matrix, equals projecting
the concatenated gradient with the stacked matrix ``[P_1; P_2; ...]`` (TRAK's
``ChunkedCudaProjector``), so the guarantee carries over.

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
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal, TypeVar, cast

import torch

from datadiet.errors import ParameterError

ProjectionKind = Literal["rademacher", "normal", "sparse", "very_sparse"]
KINDS: tuple[str, ...] = ("rademacher", "normal", "sparse", "very_sparse")
BLOCK_ROWS = 1024
ROW_GROUP = 32
DEFAULT_MAX_CACHE_BYTES = 2**31
_T = TypeVar("_T")


class _MatrixCache:
    """Least-recently-used tensors, at most ``limit`` bytes in all (one entry may not exceed it)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: OrderedDict[tuple, tuple[object, int]] = OrderedDict()

    @property
    def nbytes(self) -> int:
        return sum(size for _, size in self.entries.values())

    def get(self, key: tuple, build: Callable[[], _T], size: int) -> _T:
        """The entry for ``key``, built (and kept if ``size`` fits the limit) on a miss."""
        if key in self.entries:
            self.entries.move_to_end(key)
            return cast(_T, self.entries[key][0])  # a key names what its build returns
        value = build()
        if size <= self.limit:
            while self.entries and self.nbytes + size > self.limit:
                self.entries.popitem(last=False)
            self.entries[key] = (value, size)
        return value


_CACHE = _MatrixCache(DEFAULT_MAX_CACHE_BYTES)


def set_cache_limit(nbytes: int) -> None:
    """Keep at most ``nbytes`` bytes of projection matrices in memory (LRU); 0 disables the cache."""
    _CACHE.limit = _check_int("set_cache_limit", "nbytes", nbytes, low=0)
    while _CACHE.entries and _CACHE.nbytes > _CACHE.limit:
        _CACHE.entries.popitem(last=False)


def clear_cache() -> None:
    """Drop every cached projection matrix (the next call regenerates them)."""
    _CACHE.entries.clear()


def cache_info() -> dict[str, int]:
    """``{"entries": ..., "bytes": ..., "limit": ...}`` of the process-wide matrix cache."""
    return {"entries": len(_CACHE.entries), "bytes": _CACHE.nbytes, "limit": _CACHE.limit}


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


def sparse_entries(
    rows: int, cols: int, *, seed: int, density: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nonzeros of a ``rows x cols`` block whose entries are +-1 with probability ``density / 2`` each.

    Every entry is independently nonzero with probability ``density``: the gaps between nonzeros (in
    row-major order) are geometric, so the cost is proportional to the number of nonzeros.

    Returns
    -------
    (row, col, sign) : Tensors of shape (nnz,), int64, int64 and float32 (+-1)
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    total, last, found = rows * cols, -1, []
    while last < total - 1:
        expected = (total - 1 - last) * density
        gaps = torch.empty(int(expected + 6 * math.sqrt(expected) + 16), dtype=torch.float64)
        positions = gaps.geometric_(density, generator=generator).cumsum_(0).add_(last)
        found.append(positions[positions < total].long())
        last = int(positions[-1].item())
    flat = torch.cat(found)
    signs = torch.randint(0, 2, flat.shape, generator=generator, dtype=torch.float32).mul_(2).sub_(1)
    return flat // cols, flat % cols, signs


def random_block(
    rows: int,
    cols: int,
    *,
    seed: int,
    kind: str = "rademacher",
    density: float | None = None,
    scale: float = 1.0,
) -> torch.Tensor:
    """A ``rows x cols`` float32 block of unit-variance entries from a generator seeded with ``seed``.

    ``rademacher``: +-1 with probability 1/2 each; ``normal``: N(0, 1); ``sparse``: Achlioptas'
    sparse JL, ``sqrt(3) * {+1, 0, -1}`` with probabilities ``{1/6, 2/3, 1/6}``; ``very_sparse``:
    ``sqrt(1 / density) * {+1, 0, -1}`` with probabilities ``{density/2, 1 - density, density/2}``
    (``density`` defaults to ``1 / sqrt(rows)``). Entries are multiplied by ``scale``.

    Returns
    -------
    Tensor of shape (rows, cols), on the CPU
    """
    if kind == "very_sparse":
        density = density or 1 / math.sqrt(rows)
        row, col, signs = sparse_entries(rows, cols, seed=seed, density=density)
        block = torch.zeros(rows, cols)
        block[row, col] = signs * (scale / math.sqrt(density))
        return block
    generator = torch.Generator(device="cpu").manual_seed(seed)
    if kind == "normal":
        block = torch.randn(rows, cols, generator=generator)
        return block if scale == 1.0 else block.mul_(scale)
    if kind == "rademacher":
        block = torch.randint(0, 2, (rows, cols), generator=generator, dtype=torch.float32)
        return block.mul_(2 * scale).sub_(scale)
    codes = torch.randint(0, 6, (rows, cols), generator=generator)
    block = (codes == 0).float() - (codes == 1).float()
    return block.mul_(math.sqrt(3.0) * scale)


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
        raise ParameterError(
            f"The '{name}' parameter of {owner} must be an int >= {low}. Got {value!r} instead."
        )
    return int(value)


def _check_kind(owner: str, kind: object) -> ProjectionKind:
    if kind not in KINDS:
        raise ParameterError(
            f"The 'kind' parameter of {owner} must be one of {list(KINDS)}. Got {kind!r} instead."
        )
    return cast(ProjectionKind, str(kind))


class Projector:
    """Dense seeded random projection ``x -> P^T x`` from ``in_dim`` to ``out_dim`` features.

    ``P`` (``in_dim x out_dim``) has unit-variance entries scaled by ``1/sqrt(out_dim)``. It is
    generated in blocks of ``BLOCK_ROWS`` rows, block ``i`` from a generator seeded with
    ``stable_seed(seed, name, "dense", i)`` (``"very_sparse"`` for that kind), and kept in the
    process-wide cache (see the module docstring): its first ``max_cache_bytes`` bytes at most; the
    other blocks are regenerated at each call, so memory stays at one block beyond that. Either
    way it depends only on ``(seed, name, in_dim, out_dim, kind)``.

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
    kind : {"rademacher", "normal", "sparse", "very_sparse"}
        Entry distribution.
    max_cache_bytes : int
        Most bytes of this matrix kept in memory (float32 dense; about 12 bytes a nonzero sparse).

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

    @property
    def density(self) -> float:
        """Expected fraction of nonzero entries."""
        return {"sparse": 1 / 3, "very_sparse": 1 / math.sqrt(self.in_dim)}.get(self.kind, 1.0)

    @property
    def cached_rows(self) -> int:
        """Rows of ``P`` kept in the cache: all if they fit ``max_cache_bytes``, else whole blocks."""
        row_bytes = self.out_dim * (12 * self.density if self.kind == "very_sparse" else 4)
        if self.in_dim * row_bytes <= self.max_cache_bytes:
            return self.in_dim
        return min(self.in_dim, int(self.max_cache_bytes // row_bytes) // BLOCK_ROWS * BLOCK_ROWS)

    def _block(self, index: int) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Block ``index`` (rows ``index * BLOCK_ROWS`` on): dense, or (row, col, value) if very sparse."""
        rows = min(BLOCK_ROWS, self.in_dim - index * BLOCK_ROWS)
        if self.kind != "very_sparse":
            seed = stable_seed(self.seed, self.name, "dense", index)
            return random_block(rows, self.out_dim, seed=seed, kind=self.kind, scale=self.out_dim**-0.5)
        seed = stable_seed(self.seed, self.name, "very_sparse", index)
        row, col, signs = sparse_entries(rows, self.out_dim, seed=seed, density=self.density)
        return row + index * BLOCK_ROWS, col, signs.div_(math.sqrt(self.density * self.out_dim))

    def _rows(self, start: int, stop: int, device: torch.device) -> torch.Tensor:
        """Rows ``start:stop`` (whole blocks): dense (rows, out_dim), or sparse CSR of ``P^T``."""
        indices = range(start // BLOCK_ROWS, math.ceil(stop / BLOCK_ROWS))
        if self.kind != "very_sparse":
            matrix = torch.empty(stop - start, self.out_dim)
            for i in indices:  # written in place: no concatenated copy of a matrix of up to gigabytes
                first = i * BLOCK_ROWS - start
                matrix[first : first + BLOCK_ROWS] = cast(torch.Tensor, self._block(i))  # dense: one Tensor
            return matrix.to(device)
        blocks = [self._block(i) for i in indices]
        row, col, value = (torch.cat(parts) for parts in zip(*blocks, strict=True))
        order = torch.argsort(col * self.in_dim + row)
        crow = torch.zeros(self.out_dim + 1, dtype=torch.int64)
        crow[1:] = torch.bincount(col, minlength=self.out_dim).cumsum(0)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)
            return torch.sparse_csr_tensor(
                crow, row[order] - start, value[order], (self.out_dim, stop - start), check_invariants=False
            ).to(device)

    def _cached(self, device: torch.device) -> torch.Tensor | None:
        rows = self.cached_rows
        if rows == 0:
            return None
        key = ("dense", self.kind, self.seed, self.name, self.in_dim, self.out_dim, rows, str(device))
        size = rows * self.out_dim * (12 * self.density if self.kind == "very_sparse" else 4)
        return _CACHE.get(key, lambda: self._rows(0, rows, device), int(size))

    def matrix(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The full ``(in_dim, out_dim)`` float32 matrix on ``device`` (dense, even if very sparse)."""
        device = torch.device(device or "cpu")
        if self.cached_rows == self.in_dim and self.kind != "very_sparse":
            return cast(torch.Tensor, self._cached(device))  # None only for no cached rows; in_dim >= 1
        if self.kind != "very_sparse":
            return self._rows(0, self.in_dim, device)
        return self._rows(0, self.in_dim, device).to_dense().T.contiguous()

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
            raise ParameterError(
                f"Projector expects inputs of shape (B, {self.in_dim}). Got {tuple(x.shape)}."
            )
        x = x.float()
        groups = [self._project_rows(x[start : start + ROW_GROUP]) for start in range(0, len(x), ROW_GROUP)]
        return torch.cat(groups) if groups else x.new_zeros(0, self.out_dim)

    def _project_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Project at most ``ROW_GROUP`` rows, zero-padded to exactly that many (fixed GEMM shapes)."""
        n = len(x)
        x = torch.nn.functional.pad(x, (0, 0, 0, ROW_GROUP - n))
        rows = self.cached_rows
        cached = self._cached(x.device) if rows else None  # None exactly when no rows are cached
        out = x.new_zeros(ROW_GROUP, self.out_dim) if cached is None else _apply(x[:, :rows], cached)
        for start in range(rows, self.in_dim, BLOCK_ROWS):
            stop = min(start + BLOCK_ROWS, self.in_dim)
            out += _apply(x[:, start:stop], self._rows(start, stop, x.device))
        return out[:n]


def _apply(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``x @ P`` for a dense ``P`` or a sparse CSR ``P^T``."""
    if matrix.layout == torch.sparse_csr:
        return torch.sparse.mm(matrix, x.T.contiguous()).T
    return x @ matrix


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
    kind : {"rademacher", "normal", "sparse", "very_sparse"}
        Entry distribution of the random matrices.

    Examples
    --------
    >>> import torch
    >>> proj = FactorizedProjector(40, 36, dim=16, bias=True, seed=0, name="fc")
    >>> proj.mode, (proj.k_out, proj.k_in)
    ('kronecker', (4, 4))
    >>> generator = torch.Generator().manual_seed(0)
    >>> a, delta = torch.randn(2, 5, 36, generator=generator), torch.randn(2, 5, 40, generator=generator)
    >>> grad = torch.einsum("bto,bti->boi", delta, a)
    >>> fast, slow = proj.project(a, delta), proj.project_gradient(grad, delta.sum(1))
    >>> bool((fast - slow).abs().max() <= 1e-5 * slow.abs().max())  # the same map, up to float32 rounding
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
        key = (self.kind, self.seed, self.name, self.out_features, self.in_features, self.bias, self.dim)
        return _CACHE.get(("factorized", *key, str(device)), lambda: self._build(device), self._nbytes())

    def _build(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "kronecker":
            pair = self._kronecker_matrices()
        else:
            pair = (self._block_matrices(), torch.empty(0))
        return pair[0].to(device), pair[1].to(device)

    def _nbytes(self) -> int:
        if self.mode == "kronecker":
            return 4 * (self.out_features * self.k_out + (self.in_features + self.bias) * self.k_in)
        return 4 * max(self.out_features, self.in_features + self.bias) * self.dim

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
            raise ParameterError(
                f"Layer {self.name!r} has a bias: pass bias_grad of shape (B, {self.out_features})."
            )
        grad = grad.float()
        if self.bias and bias_grad is not None:  # not None whenever self.bias (checked above)
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
