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
from ._compiled import kernel, run_rows

#: Largest N for which the N x N matrices of a null route are kept (32 MiB each in float64).
NULL_MAX_N = 2048


@kernel
def _mantel_kernel(numba):
    """``kernel(lo, hi, A, B, perms, out)``: ``out[t] = sum_ij A[i, j] B[p[i], p[j]]`` with ``p = perms[t]``."""

    @numba.njit(cache=True, nogil=True)
    def mantel(lo, hi, A, B, perms, out):  # pragma: no cover - compiled
        n = A.shape[0]
        for t in range(lo, hi):
            p = perms[t]
            s = 0.0
            for i in range(n):
                Bi = B[p[i]]
                Ai = A[i]
                for j in range(n):
                    s += Ai[j] * Bi[p[j]]
            out[t] = s

    return mantel


def mantel_sums(A: np.ndarray, B: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """``<A, B[p][:, p]>`` for every row ``p`` of ``perms`` (compiled over permutations when numba is present)."""
    out = np.empty(perms.shape[0])
    compiled = _mantel_kernel(work=perms.shape[0] * A.size)
    if compiled:
        run_rows(compiled, perms.shape[0], A, B, np.ascontiguousarray(perms, dtype=np.int64), out)
        return out
    for t, p in enumerate(perms):
        out[t] = float(np.vdot(A, np.take(np.take(B, p, axis=0), p, axis=1)))
    return out


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


def u_centred_gram(cache: ModelCache, **_) -> np.ndarray:
    """U-centred Gram matrix ``X X^T`` with zero diagonal."""
    return cache.memo(("null", "u_gram"), lambda: _u_centre(_f64(cache) @ _f64(cache).T))


def double_centred_distances(cache: ModelCache, **_) -> np.ndarray:
    """Double-centred Euclidean distance matrix (dCor V-statistic)."""
    return cache.memo(("null", "dc_dist"), lambda: _double_centre(np.sqrt(_sqdist(_f64(cache)))))


def u_centred_distances(cache: ModelCache, **_) -> np.ndarray:
    """U-centred Euclidean distance matrix (bias-corrected dCor^2)."""
    return cache.memo(("null", "u_dist"), lambda: _u_centre(np.sqrt(_sqdist(_f64(cache)))))


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
