"""Blocked Euclidean-distance engine: exact O(N^2 D) passes in O(B N) memory, never N x N.

Every geometry metric that needs all pairwise distances (distance correlation, information
imbalance) streams them here, one block of ``B`` rows against all ``N`` rows at a time:

* Squared distances of a block come from **one GEMM** on augmented matrices,
  ``[x_i, |x_i|^2, 1] . [-2 x_j, 1, |x_j|^2] = |x_i - x_j|^2``, in float32 (default) or float64,
  after centring the columns in float64 (distances are translation invariant; centring keeps the
  norms, hence the cancellation error, small).
* Sums over the blocks are accumulated in float64.
* Several representations of the same samples are processed together (``M`` models, one GEMM
  each per block), and all ``M x M`` cross sums come from one more GEMM on the stacked blocks.

Accuracy of the float32 route. With ``u = 2**-24`` and ``n = D + 3`` the computed squared distance
obeys ``|fl(d2) - d2| <= c (|x_i|^2 + |x_j|^2)`` with ``c = 2 gamma_n + 4 u``,
``gamma_n = n u / (1 - n u)`` (standard dot-product bound plus the rounding of the inputs and of the
norm column). :func:`sq_dist_error_bound` returns twice this (a safety factor). Rank decisions
(information imbalance, kNN) are made exact by re-deciding every comparison that falls inside this
band in float64; sums (distance correlation) see independent rounding errors of relative size about
``sqrt(D) u`` per entry, which average out over the ``N^2`` terms (measured against float64: see
``tests/metrics/test_blocked.py``). The diagonal is set to exactly zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = [
    "Workspace",
    "prepare_workspace",
    "row_blocks",
    "sq_dist_error_bound",
    "exact_sq_dists",
    "distance_sums",
    "DistanceSums",
    "exact_knn_l2",
]

_PRECISIONS = ("float32", "float64")
#: Target size (bytes) of the float64 buffers of one block, all models together.
_BLOCK_BYTES = 96 * 2**20  # per pass: float64 stacks of all models (distance sums)
_STREAM_BYTES = 256 * 2**20  # per pass: squared-distance blocks in their own precision (rank counting)


def _torch():
    import torch

    return torch


def sq_dist_error_bound(n_features: int, precision: str) -> float:
    """Relative bound ``c`` with ``|fl(d2) - d2| <= c (|x_i|^2 + |x_j|^2)`` (safety factor 2 included)."""
    u = 2.0**-24 if precision == "float32" else 2.0**-53
    n = n_features + 3
    gamma = n * u / (1.0 - n * u)
    return 2.0 * (2.0 * gamma + 4.0 * u)


def check_precision(precision: str) -> str:
    if precision not in _PRECISIONS:
        raise InputError(f"precision must be one of {_PRECISIONS}; got {precision!r}.")
    return precision


@dataclass
class Workspace:
    """One representation prepared for blocked distance passes.

    Attributes
    ----------
    centred : ndarray, shape (N, D), float64
        Column-centred data.
    raw : ndarray, shape (N, D), float64
        The data as given (exact recomputations use it, so exact ties in the input stay ties).
    sqn : ndarray, shape (N,), float64
        Squared row norms of ``centred``.
    left, right : torch.Tensor, shape (N, D + 2)
        Augmented GEMM operands in the working precision.
    bound : float
        Absolute squared-distance error bound per row: ``band[i] = c (sqn[i] + max(sqn))``.
    """

    centred: np.ndarray
    raw: np.ndarray
    sqn: np.ndarray
    left: object
    right: object
    precision: str
    band: np.ndarray

    @property
    def n(self) -> int:
        return self.centred.shape[0]


def prepare_workspace(X: np.ndarray, *, precision: str = "float32") -> Workspace:
    """Centre ``X`` (float64) and build the augmented GEMM operands."""
    torch = _torch()
    check_precision(precision)
    raw = np.asarray(X, dtype=np.float64)
    Xc = raw - raw.mean(axis=0)
    sqn = np.einsum("ij,ij->i", Xc, Xc)
    n, d = Xc.shape
    dt = np.float32 if precision == "float32" else np.float64
    left = np.empty((n, d + 2), dtype=dt)
    right = np.empty((n, d + 2), dtype=dt)
    left[:, :d] = Xc
    left[:, d] = sqn
    left[:, d + 1] = 1.0
    right[:, :d] = -2.0 * Xc
    right[:, d] = 1.0
    right[:, d + 1] = sqn
    c = sq_dist_error_bound(d, precision)
    # centring in float64 perturbs the differences by ~2**-53 |x|; cover it too
    shift = 8.0 * 2.0**-53 * d * float(np.abs(raw).max()) ** 2
    band = c * (sqn + sqn.max()) + shift
    return Workspace(Xc, raw, sqn, torch.from_numpy(left), torch.from_numpy(right), precision, band)


def row_blocks(n: int, n_models: int = 1, block_rows: int | None = None, *, itemsize: int = 8):
    """Yield ``(start, stop)`` row ranges so that ``n_models`` blocks of ``itemsize`` bytes fit the budget."""
    if block_rows is None:
        block_rows = max(16, min(n, _BLOCK_BYTES // max(1, itemsize * n * max(1, n_models))))
    for i0 in range(0, n, block_rows):
        yield i0, min(n, i0 + block_rows)


def sq_dist_block(ws: Workspace, i0: int, i1: int, out=None):
    """Squared distances of rows ``i0:i1`` to all rows, shape ``(i1 - i0, N)``; diagonal exactly 0."""
    torch = _torch()
    out = torch.mm(ws.left[i0:i1], ws.right.T, out=out)
    out.clamp_min_(0.0)
    b = i1 - i0
    r = torch.arange(b)
    out[r, r + i0] = 0.0
    return out


def exact_sq_dists(data: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Float64 squared distances ``|x_rows - x_cols|^2`` by the difference formula (no cancellation).

    ``data`` may be float32 (rows are upcast exactly before the subtraction) or float64.
    """
    out = np.empty(len(rows), dtype=np.float64)
    step = 65536
    for s in range(0, len(rows), step):
        diff = data[rows[s : s + step]].astype(np.float64)  # float32 data: gathered as is, upcast exactly
        diff -= data[cols[s : s + step]]
        out[s : s + step] = np.einsum("ij,ij->i", diff, diff)
    return out


@dataclass(frozen=True)
class DistanceSums:
    """Sufficient statistics of the Euclidean distance matrices ``a^(m)`` of ``M`` representations.

    Attributes
    ----------
    n : int
        Number of samples.
    row_sums : ndarray, shape (M, N)
        ``r_m[i] = sum_j a^(m)_ij``.
    cross : ndarray, shape (M, M)
        ``S_mn = sum_ij a^(m)_ij a^(n)_ij``.
    """

    n: int
    row_sums: np.ndarray
    cross: np.ndarray

    def dcov2(self, *, unbiased: bool = False) -> np.ndarray:
        """Squared distance covariances, ``(M, M)``: V-statistic or the U-statistic (Székely & Rizzo 2014)."""
        n = float(self.n)
        r = self.row_sums
        tot = r.sum(axis=1)
        rr = r @ r.T
        if unbiased:
            return (self.cross + np.outer(tot, tot) / ((n - 1) * (n - 2)) - 2.0 * rr / (n - 2)) / (n * (n - 3))
        return (self.cross - 2.0 * rr / n + np.outer(tot, tot) / n**2) / n**2


def distance_sums(
    workspaces: Sequence[Workspace], *, block_rows: int | None = None, on_block=None
) -> DistanceSums:
    """Row sums and all cross sums of the distance matrices of several representations, in one pass.

    One GEMM per model per block gives the distances; the ``(M, B N)`` stack of float64 blocks gives
    every ``S_mn`` with one more GEMM. ``on_block(i0, i1, sq_blocks)`` (optional) receives each
    model's squared-distance block (torch, diagonal 0) before the square root, so other reductions
    (information imbalance) can share the pass.
    """
    torch = _torch()
    m = len(workspaces)
    n = workspaces[0].n
    row_sums = np.zeros((m, n), dtype=np.float64)
    cross = np.zeros((m, m), dtype=np.float64)
    wdtype = workspaces[0].left.dtype
    blocks = list(row_blocks(n, m + 1, block_rows))
    rows = max(i1 - i0 for i0, i1 in blocks)
    stack_buf = torch.empty((m, rows * n), dtype=torch.float64)  # reused: no fresh pages per block
    d2_bufs = [torch.empty((rows, n), dtype=wdtype) for _ in workspaces]
    for i0, i1 in blocks:
        b = i1 - i0
        flat = stack_buf[:, : b * n]
        stack = flat.view(m, b, n)
        sq_blocks = [sq_dist_block(ws, i0, i1, out=buf[:b]) for ws, buf in zip(workspaces, d2_bufs, strict=True)]
        if on_block is not None:
            on_block(i0, i1, sq_blocks)
        for k, d2 in enumerate(sq_blocks):
            stack[k].copy_(d2.sqrt_())
            row_sums[k, i0:i1] = stack[k].sum(dim=1).numpy()
        cross += (flat @ flat.T).numpy()
    return DistanceSums(n, row_sums, cross)


def exact_knn_l2(X: np.ndarray, k: int, *, ws: Workspace | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean k nearest neighbours (self excluded), distances recomputed in float64.

    A float32 search of the centred points proposes ``k + margin`` candidates: the symmetric BLAS search of
    :func:`~matteralign.metrics.knn_graph` (``backend="blas"``, when numba is loaded or the search pays for
    loading it), else FAISS ``IndexFlatL2``. Their distances are recomputed
    in float64 by the difference formula and re-sorted (ties by index); only candidates whose float32
    distance comes within twice the error bound of the k-th smallest are recomputed (the others are provably
    farther than k candidates). The result is *proven* exact
    when the float32 distance of the last candidate exceeds the chosen k-th float64 distance by more
    than the float32 error bound; otherwise the margin doubles and the search repeats for those rows.

    Returns
    -------
    dist : ndarray, shape (N, k), float64
        Sorted Euclidean distances (not squared).
    idx : ndarray, shape (N, k), int64
    """
    from ._knn import _blas_candidates, _blas_worth, _rows_candidates

    if ws is not None:
        Xc, centred, sqn = ws.raw, ws.centred, ws.sqn
    else:  # only what the search needs (no GEMM operands)
        Xc = np.asarray(X, dtype=np.float64)
        centred = Xc - Xc.mean(axis=0)
        sqn = np.einsum("ij,ij->i", centred, centred)
    n, d = Xc.shape
    X32 = np.ascontiguousarray(centred, dtype=np.float32)
    del centred
    if _blas_worth(n, d):  # squared float32 distances, self included, best first: FAISS's conventions

        def search(rows, ks):
            if rows.size == n:
                return _blas_candidates(X32, ks, "l2")[::-1]
            return _rows_candidates(X32, rows, ks, "l2")[::-1]
    else:
        import faiss

        index = faiss.IndexFlatL2(d)
        index.add(X32)

        def search(rows, ks):
            return index.search(X32[rows], ks)
    c = sq_dist_error_bound(d, "float32")
    maxsq = sqn.max()
    out_d = np.empty((n, k), dtype=np.float64)
    out_i = np.empty((n, k), dtype=np.int64)
    todo = np.arange(n)
    margin = 8
    # float64 distances are recomputed from the caller's array when it is float32 (half the gather traffic)
    data = X if (isinstance(X, np.ndarray) and X.dtype == np.float32 and X.shape == Xc.shape) else Xc
    while len(todo):
        ks = min(n, k + 1 + margin)
        D32, cand = search(todo, ks)
        valid = (cand >= 0) & (cand != todo[:, None])
        d32 = np.where(valid, D32.astype(np.float64), np.inf)
        tol = c * (sqn[todo] + maxsq)
        if ks >= n:
            need = valid
        else:
            # per candidate, |float32 - exact| <= c (|x_i|^2 + |x_j|^2): a candidate whose lower bound exceeds
            # the k-th smallest upper bound is farther (in exact arithmetic) than k others, never among the k
            tol_c = c * (sqn[todo][:, None] + sqn[np.where(valid, cand, 0)])
            kth_upper = np.partition(d32 + tol_c, k - 1, axis=1)[:, k - 1]
            need = valid & (d32 - tol_c <= kth_upper[:, None])
        d64 = np.full(cand.shape, np.inf)
        r_idx, c_idx = np.nonzero(need)
        d64[r_idx, c_idx] = exact_sq_dists(data, todo[r_idx], cand[r_idx, c_idx])
        cols2 = np.where(need, cand, n)
        order = np.lexsort((cols2, d64), axis=1)
        d_sorted = np.take_along_axis(d64, order, axis=1)[:, :k]
        i_sorted = np.take_along_axis(cols2, order, axis=1)[:, :k]
        if ks >= n:
            proven = np.ones(len(todo), dtype=bool)
        else:
            last32 = D32[:, -1].astype(np.float64)
            proven = last32 - tol > d_sorted[:, -1]
        out_d[todo[proven]] = d_sorted[proven]
        out_i[todo[proven]] = i_sorted[proven]
        todo = todo[~proven]
        margin *= 4
    return np.sqrt(out_d), out_i
