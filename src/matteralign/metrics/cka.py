"""Centered kernel alignment (CKA): linear and RBF kernels, biased (Gretton) and debiased (Song) HSIC.

One formula serves every route. With ``K`` and ``L`` symmetric N x N kernels, row sums ``r``, totals ``s``
and diagonals ``d``, the two HSIC estimators need only ``<K, L> = sum_ij K_ij L_ij`` plus one-model
statistics:

.. math::

    \\mathrm{HSIC}_b(K, L) = \\langle K, L\\rangle - \\tfrac{2}{N} r_K \\cdot r_L + \\tfrac{s_K s_L}{N^2}
    \\qquad (= \\operatorname{tr}(K H L H))

    \\mathrm{HSIC}_u(K, L) = \\frac{1}{N(N-3)}\\Big[\\langle \\tilde K, \\tilde L\\rangle
        + \\frac{\\tilde s_K \\tilde s_L}{(N-1)(N-2)} - \\frac{2}{N-2}\\tilde r_K\\cdot\\tilde r_L\\Big]

where tildes zero the diagonal (Song et al. 2012, Eq. 5). ``CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``.

Routes (never an N x N matrix for large N):

* linear, N > D: feature space, ``<K, L> = ||Xc^T Yc||_F^2`` with column-centred features in float64
  (O(N D_x D_y) time, O(D_x D_y) memory); centring leaves both estimators unchanged.
* linear, N <= D: Gram matrices (small N x N).
* linear, all pairs of M models (:func:`pairwise`): the centred features of all models side by side,
  ``Z = [X_1c ... X_Mc]``, give every ``X_ic^T X_jc`` as a block of one symmetric product ``Z^T Z``
  accumulated over row blocks (a BLAS ``syrk`` per block; models in column groups of at most 4,096
  features). Same arithmetic as the pair route, computed about three times faster, and the self terms
  come from the diagonal blocks.
* RBF: dense for N <= 2048, otherwise blocked two-pass accumulation in float64 (O(B N) memory); the
  median squared distance of the bandwidth is found exactly by streamed histogram refinement.

References: Kornblith et al. 2019, arXiv:1905.00414 (CKA; google-research ``representation_similarity``
demo: linear 0.55761, RBF 0.65483, debiased 0.51346 on its seed-1337 data); Gretton et al. 2005 (HSIC);
Song et al. 2012, JMLR 13:1393 (unbiased HSIC); Huh et al. 2024, arXiv:2405.07987 (platonic-rep ``cka``,
``unbiased_cka`` with ``+1e-6`` in the denominator).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..errors import InputError
from . import _nullkernels as _nk
from ._cache import ModelCache
from ._compiled import kernel, run_rows
from ._registry import MetricSpec, register
from ._validate import check_pair
from .normalize import as_given
from .normalize import rows as _rows

__all__ = ["cka", "unbiased_cka"]

_DENSE_MAX_N = 2048
_BLOCK = 1024
_MEDIAN_CANDIDATES = 1 << 22


# ---------------------------------------------------------------------------------------------- engine
class _KernelStats:
    """One kernel's statistics: diagonal, row sums, total, and its HSIC with itself (both estimators)."""

    __slots__ = ("diag", "rows", "total", "kk")

    def __init__(self, diag: np.ndarray, rows: np.ndarray, kk: float):
        self.diag = diag
        self.rows = rows
        self.total = float(rows.sum())
        self.kk = kk  # <K, K>


def _hsic(kl: float, a: _KernelStats, b: _KernelStats, n: int, debiased: bool) -> float:
    if not debiased:
        return kl - 2.0 / n * float(a.rows @ b.rows) + a.total * b.total / n**2
    m = float(n)
    t1 = kl - float(a.diag @ b.diag)
    sa, sb = a.total - float(a.diag.sum()), b.total - float(b.diag.sum())
    t3 = float((a.rows - a.diag) @ (b.rows - b.diag))
    return (t1 + sa * sb / ((m - 1) * (m - 2)) - 2.0 * t3 / (m - 2)) / (m * (m - 3))


def _ratio(hxy: float, hxx: float, hyy: float, eps: float) -> float:
    prod = hxx * hyy
    if prod < 0 or (prod == 0 and eps == 0):
        warnings.warn(
            f"CKA: the self-HSIC terms are {hxx:.3g} and {hyy:.3g}; the score is undefined (NaN).",
            RuntimeWarning,
            stacklevel=3,
        )
        return math.nan
    return hxy / (math.sqrt(prod) + eps)


# ---------------------------------------------------------------------------------------------- linear
def _linear_stats(Xc: np.ndarray) -> _KernelStats:
    diag = np.einsum("ij,ij->i", Xc, Xc)
    if Xc.shape[0] > Xc.shape[1]:
        G = Xc.T @ Xc
        kk = float(np.sum(G * G))
    else:
        K = Xc @ Xc.T
        kk = float(np.sum(K * K))
    return _KernelStats(diag, np.zeros_like(diag), kk)


def _linear_cross(Xc: np.ndarray, Yc: np.ndarray) -> float:
    n = Xc.shape[0]
    if n > max(Xc.shape[1], Yc.shape[1]):
        C = Xc.T @ Yc
        return float(np.sum(C * C))
    return float(np.sum((Xc @ Xc.T) * (Yc @ Yc.T)))


# ------------------------------------------------------------------------------------------------- rbf
def _sqdist_block(X: np.ndarray, sq: np.ndarray, s: int, e: int) -> np.ndarray:
    D2 = sq[s:e, None] + sq[None, :] - 2.0 * (X[s:e] @ X.T)
    np.maximum(D2, 0.0, out=D2)
    r = np.arange(e - s)
    D2[r, s + r] = 0.0
    return D2


def _blocks(n: int, block: int):
    for s in range(0, n, block):
        yield s, min(n, s + block)


def _exact_median_sqdist(X: np.ndarray, block: int) -> float:
    """``np.median`` of all N^2 squared distances (diagonal zeros included), streamed, exact.

    Histogram passes narrow a value window that contains the middle rank(s) until it holds at most a few
    million values; a last pass collects them and selects by exact comparison (counts below the window are
    taken by comparison too, so bin rounding cannot shift a rank).
    """
    n = X.shape[0]
    sq = np.einsum("ij,ij->i", X, X)
    total = n * n
    ranks = [total // 2] if total % 2 else [total // 2 - 1, total // 2]
    lo, hi = 0.0, 0.0
    for s, e in _blocks(n, block):
        hi = max(hi, float(_sqdist_block(X, sq, s, e).max()))
    nbins = 1 << 16
    while hi > lo:
        width = (hi - lo) / nbins
        counts = np.zeros(nbins, dtype=np.int64)
        n_below = 0
        for s, e in _blocks(n, block):
            D2 = _sqdist_block(X, sq, s, e).ravel()
            n_below += int(np.count_nonzero(D2 < lo))
            inside = D2[(D2 >= lo) & (D2 <= hi)]
            b = np.clip(((inside - lo) / width).astype(np.int64), 0, nbins - 1)
            counts += np.bincount(b, minlength=nbins)
        cum = n_below + np.cumsum(counts)
        b_lo = int(np.searchsorted(cum, ranks[0], side="right"))
        b_hi = int(np.searchsorted(cum, ranks[-1], side="right"))
        first, last = max(b_lo - 1, 0), min(b_hi + 1, nbins - 1)  # one spare bin each side
        new_lo = lo + first * width
        new_hi = hi if last == nbins - 1 else min(hi, lo + (last + 1) * width)
        n_cand = int(counts[first : last + 1].sum())
        narrowed = new_lo > lo or new_hi < hi
        lo, hi = new_lo, new_hi
        if n_cand <= _MEDIAN_CANDIDATES or not narrowed:
            break
    below, parts = 0, []
    for s, e in _blocks(n, block):
        D2 = _sqdist_block(X, sq, s, e).ravel()
        below += int(np.count_nonzero(D2 < lo))
        parts.append(D2[(D2 >= lo) & (D2 <= hi)])
    cand = np.sort(np.concatenate(parts))
    pos = [r - below for r in ranks]
    if min(pos) < 0 or max(pos) >= cand.size:  # pragma: no cover - would be a bug in the windowing
        raise RuntimeError("exact median selection lost the middle rank")
    return float(np.mean([cand[p] for p in pos]))


def _rbf_gamma(X: np.ndarray, threshold: float, block: int | None) -> float:
    if block is None:
        sq = np.einsum("ij,ij->i", X, X)
        D2 = _sqdist_block(X, sq, 0, X.shape[0])
        med = float(np.median(D2))
    else:
        med = _exact_median_sqdist(X, block)
    if med <= 0:
        raise InputError(
            "the median squared distance between samples is 0 (over half the pairs coincide); "
            "the RBF bandwidth is undefined."
        )
    return 1.0 / (2.0 * threshold**2 * med)


def _rbf_block(X: np.ndarray, sq: np.ndarray, gamma: float, s: int, e: int) -> np.ndarray:
    return np.exp(-gamma * _sqdist_block(X, sq, s, e))


def _rbf_stats(X: np.ndarray, gamma: float, block: int | None) -> _KernelStats:
    n = X.shape[0]
    sq = np.einsum("ij,ij->i", X, X)
    rows = np.empty(n)
    kk = 0.0
    for s, e in _blocks(n, block or n):
        K = _rbf_block(X, sq, gamma, s, e)
        rows[s:e] = K.sum(axis=1)
        kk += float(np.sum(K * K))
    return _KernelStats(np.ones(n), rows, kk)


def _rbf_cross(X, Y, gx: float, gy: float, block: int | None) -> float:
    n = X.shape[0]
    sx, sy = np.einsum("ij,ij->i", X, X), np.einsum("ij,ij->i", Y, Y)
    kl = 0.0
    for s, e in _blocks(n, block or n):
        kl += float(np.sum(_rbf_block(X, sx, gx, s, e) * _rbf_block(Y, sy, gy, s, e)))
    return kl


# ---------------------------------------------------------------------------------------------- public
def _check_kernel_args(kernel, threshold, eps):
    if kernel not in ("linear", "rbf"):
        raise InputError(f"cka kernel must be 'linear' or 'rbf'; got {kernel!r}.")
    if not (isinstance(threshold, int | float) and math.isfinite(threshold) and threshold > 0):
        raise InputError(f"cka threshold must be a positive number; got {threshold!r}.")
    if not (isinstance(eps, int | float) and math.isfinite(eps) and eps >= 0):
        raise InputError(f"cka eps must be a non-negative number; got {eps!r}.")


def _resolve_block(n: int, block_size: int | None) -> int | None:
    if block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise InputError(f"block_size must be a positive integer; got {block_size!r}.")
        return block_size
    return None if n <= _DENSE_MAX_N else _BLOCK


def cka(
    X,
    Y,
    *,
    kernel: str = "linear",
    debiased: bool = False,
    threshold: float = 1.0,
    eps: float = 0.0,
    block_size: int | None = None,
    normalize: str | None = "l2",
) -> float:
    """Centered kernel alignment of two representations of the same samples.

    .. math::

        \\mathrm{CKA}(X, Y) = \\frac{\\mathrm{HSIC}(K, L)}{\\sqrt{\\mathrm{HSIC}(K, K)\\,\\mathrm{HSIC}(L, L)}
            + \\varepsilon},\\qquad K = X X^T \\text{ or } K_{ij} = e^{-\\lVert x_i - x_j\\rVert^2 / (2\\sigma^2)}

    Parameters
    ----------
    X, Y : array_like, shape (n_samples, d_x), (n_samples, d_y)
        Two representations of the same samples.
    kernel : {"linear", "rbf"}
        Linear (inner product) or Gaussian kernel with ``sigma^2 = threshold^2 * median squared distance``
        (the median over all N^2 pairs, zero diagonal included, as the google-research demo computes it).
    debiased : bool
        ``False``: biased HSIC (Gretton, ``tr(KHLH)``). ``True``: unbiased U-statistic (Song et al. Eq. 5;
        identical to google-research ``center_gram(unbiased=True)`` and platonic-rep ``hsic_unbiased``).
    threshold : float
        RBF bandwidth factor (ignored for the linear kernel).
    eps : float
        Added to the denominator. 0 (default) gives exact CKA (self value 1). platonic-rep adds ``1e-6``:
        with ``debiased=True`` and ``eps=1e-6`` this is its ``unbiased_cka``; for the biased linear kernel its
        HSIC is unnormalised (``tr(KHLH)``), so its ``1e-6`` changes scores only at the ~1e-10 level.
    block_size : int, optional
        RBF only: rows per block of the streamed computation (forces the blocked route; default: dense up to
        N = 2048, blocks of 1024 beyond).
    normalize : {"l2", "max", "clamp95", "none"} or None
        Row normalisation applied to ``X`` and ``Y`` first. Default ``"l2"``, the one rule of every metric
        function, :func:`~matteralign.metrics.pairwise`, ``matteralign compare`` and the study (see
        :func:`~matteralign.metrics.normalize`); ``None`` computes on the arrays as given.

    Returns
    -------
    float
        Biased: in [0, 1], 1 for ``X == Y``. Debiased: in [-1, 1], about 0 for independent data.
        Higher is more aligned. NaN (with a ``RuntimeWarning``) when a self term is not positive.

    Notes
    -----
    Linear: O(N D_x D_y) in feature space (N > D) or O(N^2 D) through Gram matrices (N <= D), float64.
    RBF: O(N^2 D) time in float64, O(B N) memory when blocked (four streamed passes per model for the exact
    median, one per pair). Invariant to rotations, translations, feature and joint sample permutations and
    (for ``eps=0``) isotropic scaling. Reference: Kornblith et al. 2019, arXiv:1905.00414.
    """
    X, Y = _rows(X, normalize, "X"), _rows(Y, normalize, "Y")
    _check_kernel_args(kernel, threshold, eps)
    Xa, Ya = check_pair(X, Y, dtype=np.float64)
    n = Xa.shape[0]
    if kernel == "linear":
        Xc, Yc = Xa - Xa.mean(axis=0), Ya - Ya.mean(axis=0)
        a, b = _linear_stats(Xc), _linear_stats(Yc)
        kl = _linear_cross(Xc, Yc)
    else:
        block = _resolve_block(n, block_size)
        gx, gy = _rbf_gamma(Xa, threshold, block), _rbf_gamma(Ya, threshold, block)
        a, b = _rbf_stats(Xa, gx, block), _rbf_stats(Ya, gy, block)
        kl = _rbf_cross(Xa, Ya, gx, gy, block)
    return _ratio(
        _hsic(kl, a, b, n, debiased), _hsic(a.kk, a, a, n, debiased), _hsic(b.kk, b, b, n, debiased), eps
    )


def unbiased_cka(X, Y, *, eps: float = 1e-6, normalize: str | None = "l2") -> float:
    """Debiased linear CKA exactly as platonic-rep's ``unbiased_cka`` (``+1e-6`` in the denominator).

    .. math::

        \\frac{\\mathrm{HSIC}_u(XX^T, YY^T)}{\\sqrt{\\mathrm{HSIC}_u(XX^T, XX^T)\\,\\mathrm{HSIC}_u(YY^T, YY^T)}
            + \\varepsilon}

    Parameters
    ----------
    X, Y : array_like, shape (n_samples, d_x), (n_samples, d_y)
    eps : float
        Denominator constant (platonic-rep: 1e-6; 0 gives the google-research debiased CKA).
    normalize : {"l2", "max", "clamp95", "none"} or None
        Row normalisation applied to ``X`` and ``Y`` first. Default ``"l2"``, the one rule of every metric
        function, :func:`~matteralign.metrics.pairwise`, ``matteralign compare`` and the study (see
        :func:`~matteralign.metrics.normalize`); ``None`` computes on the arrays as given.

    Returns
    -------
    float
        In [-1, 1], higher is more aligned, about 0 for independent data, ``1 - O(eps)`` for ``X == Y``.

    Notes
    -----
    Same as ``cka(X, Y, debiased=True, eps=eps)`` and ``cknna(X, Y, k=N-1)``. Reference: Song et al. 2012;
    Huh et al. 2024, arXiv:2405.07987.
    """
    X, Y = _rows(X, normalize, "X"), _rows(Y, normalize, "Y")
    return cka(X, Y, kernel="linear", debiased=True, eps=eps, normalize=None)


# ------------------------------------------------------------------------------------------ from cache
def _linear_cache_stats(c: ModelCache) -> _KernelStats:
    return c.memo(("cka", "linear_stats"), lambda: _linear_stats(c.centered64()))


def _linear_from_cache(cx: ModelCache, cy: ModelCache, debiased: bool, eps: float) -> float:
    if cx.n != cy.n:
        raise InputError(f"caches describe different samples: {cx.n} vs {cy.n} rows.")
    a, b = _linear_cache_stats(cx), _linear_cache_stats(cy)
    kl = _linear_cross(cx.centered64(), cy.centered64())
    n = cx.n
    return _ratio(_hsic(kl, a, b, n, debiased), _hsic(a.kk, a, a, n, debiased), _hsic(b.kk, b, b, n, debiased), eps)


_STACK_COLS = 4096  # features per column group of the stacked product
_STACK_ELEMS = 1 << 23  # float64 elements per row block of one group (64 MiB)


@kernel
def _centre_kernel(numba):
    """Compiled ``out[r] = float64(F[s + r]) - mean`` and ``sq[s + r] = |out[r]|^2`` for rows ``lo:hi``
    (:func:`run_rows` runs them in parallel; the numpy ufuncs run on one core). ``sq`` of length 0 skips the
    squared norms."""

    @numba.njit(cache=True, nogil=True)
    def centre(lo, hi, F, mean, s, out, sq):  # pragma: no cover - compiled
        norms = sq.shape[0] > 0
        for r in range(lo, hi):
            acc = 0.0
            for q in range(out.shape[1]):
                z = np.float64(F[s + r, q]) - mean[q]
                out[r, q] = z
                acc += z * z
            if norms:
                sq[s + r] = acc

    return centre


def _centred_block(caches, s: int, e: int, buf: np.ndarray, sq: list[np.ndarray] | None = None) -> np.ndarray:
    """Rows ``s:e`` of the side-by-side centred features of ``caches``, written into (a view of) ``buf``.

    With ``sq`` (one length-N array per cache), also writes the squared norms of the centred rows into
    ``sq[t][s:e]``.
    """
    Z = buf[: e - s]
    compiled = _centre_kernel(work=Z.size)
    o = 0
    for t, c in enumerate(caches):
        blk = Z[:, o : o + c.d]
        if compiled:
            norms = sq[t] if sq is not None else np.empty(0)
            run_rows(compiled, e - s, c.features, c.mean, s, blk, norms, chunks_per_thread=1)
        else:
            np.subtract(c.features[s:e], c.mean, out=blk, dtype=np.float64)
            if sq is not None:
                sq[t][s:e] = np.einsum("ij,ij->i", blk, blk)
        o += c.d
    return Z


def _stacked_frobenius(caches: list[ModelCache]) -> np.ndarray:
    """``F[i, j] = ||X_ic^T X_jc||_F^2`` for all pairs, from blocks of the stacked product ``Z^T Z``.

    The product accumulates in place over row blocks of the centred features: BLAS ``dsyrk`` (upper
    triangle) for a column group with itself, ``dgemm`` between groups, both with ``beta = 1`` into one
    Fortran-ordered float64 matrix (no per-block temporaries). Also memoises each cache's linear kernel
    statistics (diagonal = squared row norms of the centred features, written by the centring pass;
    ``<K, K> = F[i, i]``) so that single-pair calls reuse them.
    """
    from scipy.linalg.blas import dgemm, dsyrk

    n, m = caches[0].n, len(caches)
    groups: list[list[int]] = []
    width = 0
    for i, c in enumerate(caches):
        if not groups or width + c.d > _STACK_COLS:
            groups.append([])
            width = 0
        groups[-1].append(i)
        width += c.d
    F = np.empty((m, m))
    diag = [np.empty(n) for _ in caches]
    for ga, A in enumerate(groups):
        wa = sum(caches[i].d for i in A)
        offa = np.cumsum([0] + [caches[i].d for i in A])
        for B in groups[ga:]:
            same = B is A
            wb = sum(caches[j].d for j in B)
            offb = np.cumsum([0] + [caches[j].d for j in B])
            G = np.zeros((wa, wb), order="F")
            rows = min(n, max(64, _STACK_ELEMS // max(wa, wb)))
            buf_a = np.empty((rows, wa))  # reused across row blocks (no fresh pages per block)
            buf_b = None if same else np.empty((rows, wb))
            for s in range(0, n, rows):
                e = min(n, s + rows)
                Za = _centred_block([caches[i] for i in A], s, e, buf_a, [diag[i] for i in A] if same else None)
                # Za is C-ordered, so Za.T is the Fortran-ordered (w, rows) operand BLAS takes without a copy
                if same:
                    G = dsyrk(1.0, Za.T, beta=1.0, c=G, trans=0, lower=0, overwrite_c=1)
                else:
                    Zb = _centred_block([caches[j] for j in B], s, e, buf_b)
                    G = dgemm(1.0, Za.T, Zb.T, beta=1.0, c=G, trans_b=1, overwrite_c=1)
            for t, i in enumerate(A):
                for u, j in enumerate(B):
                    if same and u < t:
                        continue  # the lower triangle of a dsyrk result is not written (zeros); mirrored below
                    blk = G[offa[t] : offa[t + 1], offb[u] : offb[u + 1]]
                    val = float(np.sum(blk**2))
                    if same and u == t:  # upper triangle with the diagonal: count the strict part twice
                        val = 2.0 * val - float(np.sum(np.diagonal(blk) ** 2))
                    F[i, j] = F[j, i] = val
    for i, c in enumerate(caches):
        c.extras.setdefault(("cka", "linear_stats"), _KernelStats(diag[i], np.zeros(n), F[i, i]))
    return F


def _linear_all(caches: list[ModelCache], debiased: bool, eps: float) -> np.ndarray:
    """All-pairs linear CKA (biased or debiased HSIC) for :func:`pairwise`."""
    n = caches[0].n
    if any(c.n != n for c in caches):
        raise InputError(f"caches describe different samples: {sorted({c.n for c in caches})} rows.")
    m = len(caches)
    if any(c.d >= n for c in caches):  # Gram route: pair by pair
        out = np.empty((m, m))
        for i in range(m):
            for j in range(i, m):
                out[i, j] = out[j, i] = _linear_from_cache(caches[i], caches[j], debiased, eps)
        return out
    F = _stacked_frobenius(caches)
    stats = [_linear_cache_stats(c) for c in caches]
    self_h = [_hsic(st.kk, st, st, n, debiased) for st in stats]
    out = np.empty((m, m))
    for i in range(m):
        for j in range(i, m):
            h = _hsic(F[i, j], stats[i], stats[j], n, debiased)
            out[i, j] = out[j, i] = _ratio(h, self_h[i], self_h[j], eps)
    return out


def cka_all_from_caches(caches: list[ModelCache], *, eps: float = 0.0) -> np.ndarray:
    """Biased linear CKA of every pair of caches at once, shape (M, M) (stacked ``syrk`` route)."""
    return _linear_all(list(caches), False, eps)


def unbiased_cka_all_from_caches(caches: list[ModelCache], *, eps: float = 1e-6) -> np.ndarray:
    """platonic-rep ``unbiased_cka`` of every pair of caches at once, shape (M, M)."""
    return _linear_all(list(caches), True, eps)


def cka_from_cache(cx: ModelCache, cy: ModelCache, *, eps: float = 0.0) -> float:
    """Biased linear CKA from two caches."""
    return _linear_from_cache(cx, cy, False, eps)


def unbiased_cka_from_cache(cx: ModelCache, cy: ModelCache, *, eps: float = 1e-6) -> float:
    """platonic-rep ``unbiased_cka`` from two caches."""
    return _linear_from_cache(cx, cy, True, eps)


def cka_rbf_from_cache(
    cx: ModelCache, cy: ModelCache, *, threshold: float = 1.0, debiased: bool = False, eps: float = 0.0
) -> float:
    """RBF CKA from two caches (per-model bandwidth and row sums are memoised)."""
    _check_kernel_args("rbf", threshold, eps)
    if cx.n != cy.n:
        raise InputError(f"caches describe different samples: {cx.n} vs {cy.n} rows.")
    n = cx.n
    block = _resolve_block(n, None)

    def stats(c: ModelCache):
        def compute():
            F = c.features.astype(np.float64)
            g = _rbf_gamma(F, threshold, block)
            return g, _rbf_stats(F, g, block)

        return c.memo(("cka_rbf", float(threshold)), compute)

    (gx, a), (gy, b) = stats(cx), stats(cy)
    kl = _rbf_cross(cx.features.astype(np.float64), cy.features.astype(np.float64), gx, gy, block)
    return _ratio(_hsic(kl, a, b, n, debiased), _hsic(a.kk, a, a, n, debiased), _hsic(b.kk, b, b, n, debiased), eps)


def _cka_rbf(X, Y, *, threshold: float = 1.0) -> float:
    return cka(X, Y, kernel="rbf", threshold=threshold, normalize=None)


def _cka_linear(X, Y) -> float:
    return cka(X, Y, normalize=None)


_REF = "Kornblith et al. 2019, arXiv:1905.00414 (google-research representation_similarity)"
_ALL = frozenset({"orthogonal", "isotropic_scale", "translation", "feature_permutation", "sample_permutation"})

register(
    MetricSpec(
        name="cka",
        function=_cka_linear,
        symmetric=True,
        bounds=(0.0, 1.0),
        higher_is_better=True,
        invariances=_ALL,
        reference=_REF + "; Gretton et al. 2005 (biased HSIC)",
        params={},
        self_value=1.0,
        from_cache=cka_from_cache,
        from_caches_all=cka_all_from_caches,
        null_kernel=_nk.centred_gram,
        null_ratio=_nk.cka_ratio,
        null_factor=_nk.centred_factor,
        null_max_n=_nk.NULL_MAX_N,
        needs=frozenset({"features"}),
        description="linear CKA, biased HSIC, feature-space route (N > D)",
    )
)
register(
    MetricSpec(
        name="unbiased_cka",
        function=as_given(unbiased_cka),
        symmetric=True,
        bounds=(-1.0, 1.0),
        higher_is_better=True,
        invariances=_ALL - {"isotropic_scale"},
        reference=_REF + "; Song et al. 2012 JMLR 13:1393; arXiv:2405.07987 (platonic-rep, +1e-6)",
        params={"eps": 1e-6},
        self_value=None,
        from_cache=unbiased_cka_from_cache,
        from_caches_all=unbiased_cka_all_from_caches,
        null_kernel=_nk.u_centred_gram,
        null_ratio=_nk.unbiased_cka_ratio,
        null_max_n=_nk.NULL_MAX_N,
        needs=frozenset({"features"}),
        description="debiased linear CKA (unbiased HSIC, +1e-6 as platonic-rep)",
    )
)
register(
    MetricSpec(
        name="cka_rbf",
        function=_cka_rbf,
        symmetric=True,
        bounds=(0.0, 1.0),
        higher_is_better=True,
        invariances=_ALL,
        reference=_REF + " (gram_rbf, median bandwidth)",
        params={"threshold": 1.0},
        self_value=1.0,
        from_cache=cka_rbf_from_cache,
        needs=frozenset({"features"}),
        description="RBF-kernel CKA, sigma^2 = threshold^2 x median squared distance; exact streamed for large N",
    )
)
