"""Cheap permutation-null routes of the kernel and distance metrics (used by :mod:`.calibration`).

Each metric below is a function of per-model N x N matrices that commute with row permutations
(``M(Y[pi]) = M(Y)[pi][:, pi]``), so the metric of ``(X, Y[pi])`` needs no Gram or distance recomputation:

* linear CKA: ``<K_c, L_c> / (sqrt(<K_c, K_c><L_c, L_c>) + eps)``, ``K_c = X_c X_c^T`` (centred features);
* unbiased CKA: Song et al.'s HSIC_u equals ``<K~, L~> / (N (N - 3))`` with ``K~`` the U-centred Gram matrix
  of zero diagonal (Székely & Rizzo 2014, Prop. 1), then the same ratio;
* dCor^2 (V-statistic): double-centred Euclidean distance matrices, ``<A, B> / sqrt(<A, A><B, B>)``;
  dCor is its square root; bias-corrected dCor^2 uses U-centred distance matrices;
* information imbalance: ranks of ``Y[pi]`` are ``R_Y[pi][:, pi]``;
* IdCor: squared distances of the joint space ``[X | Y[pi]]`` are ``D_x + D_y[pi][:, pi]``.

Matrices are memoised in the caches (O(N^2) memory per model); the metrics declare ``null_max_n`` so that
larger N use a subset for the null.
"""

from __future__ import annotations

import math

import numpy as np

from ._cache import ModelCache
from ._compiled import kernel, n_threads, pool, run_rows

#: Largest N for which the N x N matrices of a null route are kept (32 MiB each in float64).
NULL_MAX_N = 2048


@kernel
def _two_nn_kernel(numba):
    """``kernel(lo, hi, Dx, Dy, p, r)``: the two smallest ``Dx[i, j] + Dy[p[i], p[j]]`` over ``j != i``."""

    @numba.njit(cache=True, nogil=True)
    def two_nn(lo, hi, Dx, Dy, p, r):  # pragma: no cover - compiled
        n = Dx.shape[0]
        for i in range(lo, hi):
            a = np.inf
            b = np.inf
            Dyi = Dy[p[i]]
            for j in range(n):
                if j == i:
                    continue
                d = Dx[i, j] + Dyi[p[j]]
                if d < a:
                    b = a
                    a = d
                elif d < b:
                    b = d
            r[i, 0] = a
            r[i, 1] = b

    return two_nn


def _sqdist(F: np.ndarray) -> np.ndarray:
    sq = np.einsum("ij,ij->i", F, F)
    D = sq[:, None] + sq[None, :] - 2.0 * (F @ F.T)
    np.maximum(D, 0.0, out=D)
    np.fill_diagonal(D, 0.0)
    return D


def _double_centre(M: np.ndarray) -> np.ndarray:
    r = M.mean(axis=1)
    return M - r[:, None] - r[None, :] + M.mean()


def _u_centre(M: np.ndarray) -> np.ndarray:
    n = M.shape[0]
    M = M.copy()
    np.fill_diagonal(M, 0.0)
    r = M.sum(axis=1)
    out = M - r[:, None] / (n - 2) - r[None, :] / (n - 2) + r.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(out, 0.0)
    return out


def _f64(cache: ModelCache) -> np.ndarray:
    return cache.features.astype(np.float64)


def centred_gram(cache: ModelCache, **_) -> np.ndarray:
    """``X_c X_c^T`` of the centred features (float64)."""
    def compute():
        Fc = cache.centered64()
        return Fc @ Fc.T
    return cache.memo(("null", "centred_gram"), compute)


def centred_factor(cache: ModelCache, **_) -> np.ndarray:
    """The centred float64 features ``X_c``: :func:`centred_gram` is ``X_c X_c^T``."""
    return cache.centered64()


#: Memo keys of per-model matrices whose rows and columns ``idx`` are the matrix of the samples ``idx``
#: (entry (i, j) depends on samples i and j only): a subsample's cache takes them by slicing
#: (:func:`seed_subsample`) instead of a new N^2 D product.
SLICEABLE = (("null", "gram"), ("null", "sqdist"), ("null", "l2_sqdist"))


def seed_subsample(parent: ModelCache, child: ModelCache, idx: np.ndarray) -> ModelCache:
    """Give ``child`` (the cache of ``parent``'s samples ``idx``) the :data:`SLICEABLE` matrices ``parent``
    already holds, as ``M[idx][:, idx]``; returns ``child``."""
    for key in SLICEABLE:
        if key in parent.extras and key not in child.extras:
            child.extras[key] = parent.extras[key][np.ix_(idx, idx)]
    return child


def _gram(cache: ModelCache) -> np.ndarray:
    """``X X^T`` (float64, memoised)."""
    return cache.memo(("null", "gram"), lambda: _f64(cache) @ _f64(cache).T)


def _sqdist_of(cache: ModelCache) -> np.ndarray:
    """Squared Euclidean distances from the Gram matrix (memoised): ``G_ii + G_jj - 2 G_ij``, clipped at 0."""
    def compute():
        G = _gram(cache)
        sq = np.diag(G).copy()
        D = sq[:, None] + sq[None, :] - 2.0 * G
        np.maximum(D, 0.0, out=D)
        np.fill_diagonal(D, 0.0)
        return D
    return cache.memo(("null", "sqdist"), compute)


def u_centred_gram(cache: ModelCache, **_) -> np.ndarray:
    """U-centred Gram matrix ``X X^T`` with zero diagonal."""
    return cache.memo(("null", "u_gram"), lambda: _u_centre(_gram(cache)))


def double_centred_distances(cache: ModelCache, **_) -> np.ndarray:
    """Double-centred Euclidean distance matrix (dCor V-statistic)."""
    return cache.memo(("null", "dc_dist"), lambda: _double_centre(np.sqrt(_sqdist_of(cache))))


def u_centred_distances(cache: ModelCache, **_) -> np.ndarray:
    """U-centred Euclidean distance matrix (bias-corrected dCor^2)."""
    return cache.memo(("null", "u_dist"), lambda: _u_centre(np.sqrt(_sqdist_of(cache))))


def cka_ratio(cross: float, xx: float, yy: float, *, n: int, eps: float = 0.0, **_) -> float:
    """Linear CKA from ``<K_c, L_c>`` and the self terms."""
    prod = xx * yy
    if prod < 0 or (prod == 0 and eps == 0):
        return math.nan
    return cross / (math.sqrt(prod) + eps)


def unbiased_cka_ratio(cross: float, xx: float, yy: float, *, n: int, eps: float = 1e-6, **_) -> float:
    """Unbiased CKA from the U-centred inner products (scaled by ``1/(N(N-3))`` as HSIC_u)."""
    s = 1.0 / (n * (n - 3))
    return cka_ratio(cross * s, xx * s, yy * s, n=n, eps=eps)


def dcor2_ratio(cross: float, xx: float, yy: float, *, n: int, **_) -> float:
    """Squared distance correlation from centred distance inner products (0 when a variance is 0)."""
    denom = math.sqrt(max(xx * yy, 0.0))
    return cross / denom if denom > 0 else 0.0


def dcor_ratio(cross: float, xx: float, yy: float, *, n: int, **_) -> float:
    """Distance correlation (square root of the clipped squared one)."""
    return math.sqrt(max(dcor2_ratio(cross, xx, yy, n=n), 0.0))


# ------------------------------------------------------------------------------------ rank-based metrics
def _ranks(cache: ModelCache) -> tuple[np.ndarray, np.ndarray]:
    """``(R, order)``: ``R[i, j]`` = 1 + number of samples closer to ``i`` than ``j`` (self excluded, 0 on the
    diagonal); ``order[i]`` the samples by distance from ``i``, self first."""
    def compute():
        D = _sqdist(_f64(cache))
        np.fill_diagonal(D, -1.0)
        order = np.argsort(D, axis=1, kind="stable")
        R = np.empty(D.shape, dtype=np.int32)
        np.put_along_axis(R, order, np.arange(D.shape[0], dtype=np.int32)[None, :].repeat(D.shape[0], 0), axis=1)
        return R, order
    return cache.memo(("null", "ranks"), compute)


def imbalance_null(cx: ModelCache, cy: ModelCache, perm: np.ndarray, *, k: int = 1, **_) -> float:
    """Information imbalance Δ(X → Y[perm]) from the rank matrix of Y (O(N k) per permutation).

    Above :data:`NULL_MAX_N` samples the metric is recomputed on ``(X, Y[perm])`` (no N x N matrix)."""
    if cx.n > NULL_MAX_N:
        from .imbalance import information_imbalance

        return information_imbalance(cx.features, cy.features[perm], k=k, normalize=None, **_)
    _, ox = _ranks(cx)
    Ry, _ = _ranks(cy)
    n = cx.n
    nn = ox[:, 1:k + 1]
    r = Ry[perm[:, None], perm[nn]]
    return float(2.0 / n * r.sum(dtype=np.float64) / (n * k))


def _l2_sqdist(cache: ModelCache) -> np.ndarray:
    def compute():
        F = _f64(cache)
        return _sqdist(F / np.linalg.norm(F, axis=1, keepdims=True))
    return cache.memo(("null", "l2_sqdist"), compute)


def idcor_null(cx: ModelCache, cy: ModelCache, perm: np.ndarray, **_) -> float:
    """IdCor of ``(X, Y[perm])``: TwoNN of the joint space from per-model squared distances (O(N^2)).

    Above :data:`NULL_MAX_N` samples the metric is recomputed on ``(X, Y[perm])`` (no N x N matrix)."""
    from .idcor import _idcor_value, _l2_rows, _twonn

    if cx.n > NULL_MAX_N:
        return _idcor_value(cx.features, cy.features[perm])
    from .intrinsic_dim import twonn_from_distances

    def ids(c):
        return c.memo(("null", "idcor_id"), lambda: _twonn(_l2_rows(_f64(c), c.name or "X"), c.name or "X"))

    ix, iy = ids(cx), ids(cy)
    compiled = _two_nn_kernel(work=cx.n * cx.n)
    if compiled:
        two = np.empty((cx.n, 2))
        args = (_l2_sqdist(cx), _l2_sqdist(cy), np.ascontiguousarray(perm, dtype=np.int64), two)
        if cx.n < 1024:  # small: threads cost more than they save
            compiled(0, cx.n, *args)
        else:
            run_rows(compiled, cx.n, *args)
    else:
        J = _l2_sqdist(cx) + _l2_sqdist(cy)[np.ix_(perm, perm)]
        np.fill_diagonal(J, np.inf)
        two = np.partition(J, 1, axis=1)[:, :2]
    two = np.sqrt(two)
    ij = twonn_from_distances(two[:, 0], two[:, 1], name="[X|Y]")
    upper = ix + iy
    return float((upper - ij) / (upper - min(ix, iy)))



@kernel
def _gather_kernel(numba):
    """``kernel(lo, hi, S, perms, t0, i0, i1, W)``: ``W[g, m, i - i0, j - i0] = S[m, p[i], p[j]]`` for
    ``p = perms[t0 + g]``, rows ``i0 <= i < i1``, columns ``j >= i0``; ``lo:hi`` index ``g * M + m``."""

    @numba.njit(cache=True, nogil=True)
    def gather(lo, hi, S, perms, t0, i0, i1, W):  # pragma: no cover - compiled
        n_models = S.shape[0]
        n = S.shape[1]
        for gm in range(lo, hi):
            g = gm // n_models
            m = gm - g * n_models
            p = perms[t0 + g]
            for i in range(i0, i1):
                row = S[m, p[i]]
                Wi = W[g, m, i - i0]
                for j in range(i0, n):
                    Wi[j - i0] = row[p[j]]

    return gather


def mantel_matrix(mats, perms: np.ndarray, *, tile_bytes: int = 4 << 20) -> np.ndarray:
    """``out[t, a, b] = <M_a, M_b[p][:, p]>`` for symmetric N x N matrices ``M_a`` and every row ``p`` of ``perms``.

    All pairs of a permutation come from matrix products: for each block of rows ``R = [i0, i1)`` the
    permuted rows ``M_b[p_R][:, p_{i0:}]`` of every model and of a group of G permutations are gathered into a
    tile (kept small enough for the cache) and multiplied against the unpermuted rows ``M_a[R, i0:]`` of every
    model, read once per group. Symmetry halves the work,

    .. math:: \\langle A, B \\rangle = \\sum_R \\Big( \\sum_{i, j \\in R} A_{ij} B_{ij}
              + 2 \\sum_{i \\in R,\\, j \\ge i_1} A_{ij} B_{ij} \\Big),

    so a permutation costs ``M N^2 / 2`` gathered elements and a GEMM of ``M^2 N^2`` flops, against
    ``M^2 N^2 / 2`` gathered multiply-adds for the pairs one at a time. Exact: the same sums in another order
    (the tests compare with the direct sums and with recomputing the metric, 1e-9). The tiles and groups depend
    on ``(B, M, N, tile_bytes)`` only, so the result is the same bit for bit on any number of threads.

    Parameters
    ----------
    mats : sequence of ndarray, shape (N, N), or ndarray, shape (M, N, N)
        Symmetric float64 matrices (centred Gram or distance matrices); stacked into one array (M N^2 doubles)
        unless given as one C-contiguous float64 stack, which is used as it is.
    perms : ndarray of int, shape (B, N)
        Row permutations.
    tile_bytes : int
        Size of the gathered tile.

    Returns
    -------
    ndarray, shape (B, M, M)
        Entry ``[t, a, b]``: ``<M_a, M_b[p_t][:, p_t]>``; ``[t, b, a]`` equals ``<M_a, M_b[q][:, q]>`` for ``q``
        the inverse of ``p_t``.
    """
    perms = np.ascontiguousarray(perms, dtype=np.int64)
    n_models, B = len(mats), perms.shape[0]
    n = mats[0].shape[0] if n_models else 0
    out = np.zeros((B, n_models, n_models))
    if not n_models or not B or not n:
        return out
    if isinstance(mats, np.ndarray) and mats.ndim == 3 and mats.dtype == np.float64 and mats.flags.c_contiguous:
        S = mats  # already stacked: no copy
    else:
        S = np.stack([np.asarray(M, dtype=np.float64) for M in mats])
    compiled = _gather_kernel(work=B * n_models * n * n / 2)
    # tiles depend on (B, M, N, tile_bytes) only, never on the number of threads: the same sums, bit for bit
    G = min(B, _GROUP)
    tiles, i0 = [], 0
    while i0 < n:
        w = n - i0
        rows = max(1, min(w, tile_bytes // (8 * G * n_models * w)))
        tiles.append((i0, i0 + rows))
        i0 += rows
    buf_size = max((i1 - i0) * (n - i0) for i0, i1 in tiles) * G * n_models

    def group(t0: int) -> None:
        g = min(G, B - t0)
        buf = np.empty(buf_size)
        acc = np.zeros((n_models, g * n_models))
        for i0, i1 in tiles:
            rows, w = i1 - i0, n - i0
            V = np.ascontiguousarray(S[:, i0:i1, i0:])
            V[:, :, rows:] *= 2.0  # the mirrored rows below the block (exact: a power of two)
            W = buf[: g * n_models * rows * w].reshape(g, n_models, rows, w)
            if compiled:
                compiled(0, g * n_models, S, perms, t0, i0, i1, W)
            else:
                for gi in range(g):
                    p = perms[t0 + gi]
                    for m in range(n_models):
                        W[gi, m] = S[m][np.ix_(p[i0:i1], p[i0:])]
            acc += V.reshape(n_models, rows * w) @ W.reshape(g * n_models, rows * w).T  # [a, gi M + b]
        out[t0:t0 + g] = acc.reshape(n_models, g, n_models).transpose(1, 0, 2)

    starts = list(range(0, B, G))
    if n_threads() == 1 or len(starts) == 1:
        for t0 in starts:
            group(t0)
        return out
    # BLAS one thread per call, the groups on the kernels' pool (OpenBLAS's own workers spin on a shared CPU)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        for f in [pool().submit(group, t0) for t0 in starts]:
            f.result()
    return out


#: Permutations per group of :func:`mantel_matrix` (one gathered tile holds the rows of a group).
_GROUP = 8
