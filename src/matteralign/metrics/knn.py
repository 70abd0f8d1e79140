"""Neighbourhood alignment: mutual kNN, cycle kNN and CKNNA, with platonic-rep semantics, in O(N k).

Neighbours are found by **inner product** with self excluded (platonic-rep's
``compute_nearest_neighbors``) on the rows after the normalisation rule (``normalize="l2"`` by
default, so cosine neighbours; ``normalize=None`` = the arrays as given). All three are computed from two cached kNN graphs
(:class:`~matteralign.metrics.ModelCache`) by row-wise comparison of the neighbour lists (O(N k^2)
comparisons): no N x N matrix.

CKNNA (Huh et al. 2024, arXiv 2405.07987, Eqs. 16-18, as implemented in platonic-rep ``metrics.py``):
the raw kernels ``K = X X^T`` and ``L = Y Y^T`` are masked by ``mask = mask_K * mask_L`` (``j`` among the
``k`` inner-product neighbours of ``i`` in **both** spaces; not symmetrised), and the unbiased HSIC of
Song et al. (2012, Eq. 5) is taken of the masked matrices ``A = mask * K``, ``B = mask * L``:

.. math::

    \\mathrm{HSIC}_u(A, B) = \\frac{1}{m(m-3)}\\Big[\\sum_{ij} A_{ij} B_{ji}
        + \\frac{\\mathbf 1^T A \\mathbf 1 \\; \\mathbf 1^T B \\mathbf 1}{(m-1)(m-2)}
        - \\frac{2}{m-2} \\mathbf 1^T A B \\mathbf 1\\Big]

    \\mathrm{CKNNA} = \\frac{\\mathrm{HSIC}_u(A, B)}{\\sqrt{\\mathrm{HSIC}_u(A_K, A_K)\\,
        \\mathrm{HSIC}_u(B_L, B_L)} + 10^{-6}}

where the self terms use ``mask_K`` (resp. ``mask_L``) alone. Each term reduces to O(nnz) work:
``sum A_ij B_ji`` runs over mask entries whose reverse pair is also in the mask (pairs reciprocal in both
graphs; ``B_ji = L_ij`` since ``L`` is symmetric), ``1^T A B 1 = colsum(A) . rowsum(B)``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..errors import InputError
from ._cache import ModelCache
from ._compiled import kernel, pool, run_rows
from ._knn import knn_graph
from ._registry import MetricSpec, register
from ._validate import check_k, check_pair
from .normalize import as_given
from .normalize import rows as _rows

__all__ = ["mutual_knn", "cycle_knn", "cknna", "CKNNA_EPS"]

#: platonic-rep's constant in the CKNNA / CKA denominators.
CKNNA_EPS = 1e-6

_KNN_INVARIANCES = frozenset({"orthogonal", "isotropic_scale", "feature_permutation", "sample_permutation"})
_PRH = "Huh et al. 2024, arXiv:2405.07987 (platonic-rep metrics.py)"


# ----------------------------------------------------------------------------------------------- graphs
_ROW_BLOCK = 4096  # rows per block of the (rows, k, k) neighbour comparisons


@kernel
def _recip_kernel(numba):
    """Compiled reciprocity flags: ``kernel(lo, hi, idx, out)`` sets ``out[i, a] = i in idx[idx[i, a]]`` for
    rows ``lo:hi``."""

    @numba.njit(cache=True, nogil=True)
    def recip(lo, hi, idx, out):  # pragma: no cover - compiled
        k = idx.shape[1]
        for i in range(lo, hi):
            for a in range(k):
                j = idx[i, a]
                hit = False
                for b in range(k):
                    if idx[j, b] == i:
                        hit = True
                        break
                out[i, a] = hit

    return recip


class _Graph:
    """A kNN graph: neighbour indices and kernel values per row, with lazily derived structure.

    ``recip[i, a]`` says whether the pair ``(i, idx[i, a])`` is reciprocal (``i`` is among the neighbours
    of ``idx[i, a]``); ``keys``/``order`` (sorted pair keys ``i * n + j``) serve membership tests of
    arbitrary pairs (cycle kNN). Both are computed on first use and kept.
    """

    __slots__ = ("n", "k", "idx", "vals", "_recip", "_keys", "_order", "__weakref__")

    def __init__(self, idx: np.ndarray, vals: np.ndarray, recip: np.ndarray | None = None):
        self.n, self.k = idx.shape
        self.idx, self.vals = idx, vals
        self._recip = recip
        self._keys = self._order = None

    @property
    def recip(self) -> np.ndarray:
        """Boolean (n, k): ``i`` is among the neighbours of its ``a``-th neighbour."""
        if self._recip is None:
            out = np.empty((self.n, self.k), dtype=bool)
            compiled = _recip_kernel(work=self.n * self.k * self.k)
            if compiled:
                run_rows(compiled, self.n, np.ascontiguousarray(self.idx), out)
            else:
                rows = np.arange(self.n, dtype=self.idx.dtype)
                for s in range(0, self.n, _ROW_BLOCK):
                    e = min(self.n, s + _ROW_BLOCK)
                    (self.idx[self.idx[s:e]] == rows[s:e, None, None]).any(axis=2, out=out[s:e])
            self._recip = out
        return self._recip

    def _sorted_keys(self) -> None:
        flat = (np.arange(self.n, dtype=np.int64)[:, None] * self.n + self.idx).ravel()
        self._order = np.argsort(flat, kind="stable")
        self._keys = flat[self._order]

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Membership of the pair ``keys`` (``i * n + j``) in the graph."""
        if self._keys is None:
            self._sorted_keys()
        pos = np.minimum(np.searchsorted(self._keys, keys), self._keys.size - 1)
        return self._keys[pos] == keys


def _overlap(gx: _Graph, gy: _Graph) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise intersection of two graphs with the same ``k``.

    Returns ``hit`` (n, k) bool: ``gx.idx[i, a]`` is also a neighbour of ``i`` in ``gy``; and ``pos``
    (n, k): its column in ``gy.idx[i]`` (valid where ``hit``). O(n k^2) comparisons in row blocks.
    """
    n, k = gx.idx.shape
    if gx is gy or (gx.idx is gy.idx):
        return np.ones((n, k), dtype=bool), np.broadcast_to(np.arange(k), (n, k))
    hit = np.empty((n, k), dtype=bool)
    pos = np.empty((n, k), dtype=np.intp)
    for s in range(0, n, _ROW_BLOCK):
        e = min(n, s + _ROW_BLOCK)
        eq = gx.idx[s:e, :, None] == gy.idx[s:e, None, :]
        eq.argmax(axis=2, out=pos[s:e])
        hit[s:e] = np.take_along_axis(gy.idx[s:e], pos[s:e], axis=1) == gx.idx[s:e]
    return hit, pos


def _graph_from_cache(cache: ModelCache, k: int) -> _Graph:
    k = check_k(k, cache.n)
    return cache.memo(("knn", "graph", k), lambda: _Graph(*cache.knn(k)))


def _graph_from_array(X: np.ndarray, k: int) -> _Graph:
    return _Graph(*knn_graph(X, k=k, metric="ip"))


def _permuted_graph(g: _Graph, perm: np.ndarray) -> _Graph:
    """Graph of ``Y[perm]`` from the graph of ``Y`` by relabelling: ``inv_perm[idx[perm]]``.

    Reciprocity is a property of the pair, not of its labels, so ``recip`` is carried over as ``recip[perm]``.
    """
    inv = np.empty(perm.size, dtype=np.int32)
    inv[perm] = np.arange(perm.size, dtype=np.int32)
    # np.take of whole rows: half the time of fancy indexing plus an int64 -> int32 copy
    return _Graph(np.take(inv, np.take(g.idx, perm, axis=0)), np.take(g.vals, perm, axis=0),
                  np.take(g.recip, perm, axis=0))


# ------------------------------------------------------------------------------------------ sparse hsic
def _hsic_terms(n: int, a: np.ndarray, b: np.ndarray, rows: np.ndarray, cols: np.ndarray, t1: float) -> float:
    """Song et al. unbiased HSIC of two n x n matrices with entries ``a``, ``b`` at ``(rows, cols)``.

    ``t1 = sum_ij A_ij B_ji`` is passed in (it needs the reverse pairs); the diagonal is zero.
    """
    t3 = float(np.dot(np.bincount(cols, weights=a, minlength=n), np.bincount(rows, weights=b, minlength=n)))
    return _hsic_from_sums(n, t1, float(a.sum()), float(b.sum()), t3)


def _hsic_from_sums(n: int, t1: float, sa: float, sb: float, t3: float) -> float:
    """Unbiased HSIC from ``sum A_ij B_ji``, the totals of A and B, and ``1^T A B 1``."""
    m = float(n)
    return (t1 + sa * sb / ((m - 1) * (m - 2)) - 2.0 * t3 / (m - 2)) / (m * (m - 3))


@kernel
def _pair_kernel(numba):
    """Compiled one-pass overlap of two kNN graphs (numba; cached on disk), or ``False`` without numba.

    ``kernel(ix, vx, rx, iy, vy, ry, col_a, row_a, col_b, row_b) -> (t1, hits)`` walks the shared pairs
    ``(i, j)`` of the two graphs once (O(N k) steps: each row of the second graph is stamped into an N-long
    scratch array, then the first graph's row looks its neighbours up there): it accumulates the column and
    row sums of ``A = mask * K`` and ``B = mask * L`` into the four zeroed arrays, ``t1 = sum A_ij B_ji``
    (pairs reciprocal in both graphs) and the number of shared pairs. Pairs are visited in the first graph's
    order, so every sum is taken in the order of the numpy route.
    """

    @numba.njit(cache=True, nogil=True)
    def pair_sums(ix, vx, rx, iy, vy, ry, col_a, row_a, col_b, row_b):  # pragma: no cover - compiled
        n, kx = ix.shape
        ky = iy.shape[1]
        # stamp[j] == i: j is among row i's neighbours in the second graph, at position where[j] (int32: the two
        # scratch arrays of a 50,000-sample graph stay in a 1 MiB L2 cache)
        stamp = np.full(n, -1, dtype=np.int32)
        where = np.empty(n, dtype=np.int32)
        t1 = 0.0
        hits = 0
        for i in range(n):
            for b in range(ky):
                stamp[iy[i, b]] = i
                where[iy[i, b]] = b
            for a in range(kx):
                j = ix[i, a]
                if stamp[j] == i:
                    b = where[j]
                    ka = vx[i, a]
                    lb = vy[i, b]
                    hits += 1
                    col_a[j] += ka
                    row_a[i] += ka
                    col_b[j] += lb
                    row_b[i] += lb
                    if rx[i, a] and ry[i, b]:
                        t1 += ka * lb
        return t1, hits

    return pair_sums


def _pair_stats(gx: _Graph, gy: _Graph) -> tuple[float, float, int]:
    """``(HSIC_u(A, B), HSIC_u(B, A), number of shared pairs)`` of two graphs (compiled or numpy route)."""
    kernel = _pair_kernel(work=gx.n * gx.k * gy.k)
    if not kernel:
        return _cross_hsic_both(gx, gy)
    n = gx.n
    col_a, row_a, col_b, row_b = (np.zeros(n) for _ in range(4))
    t1, hits = kernel(gx.idx, gx.vals, gx.recip, gy.idx, gy.vals, gy.recip, col_a, row_a, col_b, row_b)
    sa, sb = float(row_a.sum()), float(row_b.sum())
    return (_hsic_from_sums(n, t1, sa, sb, float(col_a @ row_b)),
            _hsic_from_sums(n, t1, sb, sa, float(col_b @ row_a)), int(hits))


_LAST_PAIRS: list = [None, None]  # (weak refs to graphs, stats) of the last all-pairs pass


def _all_pairs(graphs: list[_Graph]) -> dict[tuple[int, int], tuple[float, float, int]]:
    """:func:`_pair_stats` of every unordered pair ``i < j``, two pairs at a time when compiled.

    The last result is kept with weak references to its graphs (which live in the models' caches), so a
    second metric over the same graphs (mutual kNN after CKNNA in :func:`pairwise`) reuses it instead of
    walking the overlaps again.
    """
    import weakref

    last, stats = _LAST_PAIRS
    if last is not None and len(last) == len(graphs) and all(r() is g for r, g in zip(last, graphs, strict=True)):
        return stats
    stats = _compute_pairs(graphs)
    _LAST_PAIRS[:] = [[weakref.ref(g) for g in graphs], stats]
    return stats


def _compute_pairs(graphs: list[_Graph]) -> dict[tuple[int, int], tuple[float, float, int]]:
    pairs = [(i, j) for i in range(len(graphs)) for j in range(i + 1, len(graphs))]
    for g in graphs:
        g.recip  # noqa: B018 - computed once, before the threads share the graphs
    if _pair_kernel(work=len(pairs) * graphs[0].n * graphs[0].k ** 2) and len(pairs) > 1:
        # the kernel releases the GIL: pairs run side by side on the kernels' thread pool
        stats = list(pool().map(lambda p: _pair_stats(graphs[p[0]], graphs[p[1]]), pairs))
        return dict(zip(pairs, stats, strict=True))
    return {p: _pair_stats(graphs[p[0]], graphs[p[1]]) for p in pairs}


def _self_hsic(g: _Graph) -> float:
    # A = mask_K * K with K symmetric: sum_ij A_ij A_ji runs over the reciprocal pairs, A_ji = K_ij.
    v = g.vals
    t1 = float(np.dot(v[g.recip], v[g.recip]))
    rows = np.repeat(np.arange(g.n), g.k)
    return _hsic_terms(g.n, v.ravel(), v.ravel(), rows, g.idx.ravel(), t1)


def _cross_hsic_both(gx: _Graph, gy: _Graph) -> tuple[float, float, int]:
    """``HSIC_u(A, B)``, ``HSIC_u(B, A)`` of the masked kernels and the number of shared pairs, from one
    overlap of the two graphs.

    The mask is the same in both orders; only ``1^T A B 1`` differs (``colsum(A) . rowsum(B)`` against
    ``colsum(B) . rowsum(A)``).
    """
    # mask = mask_K * mask_L: pairs (i, j) in both graphs. A_ij B_ji is non-zero when (j, i) is in both graphs
    # too, i.e. the pair is reciprocal in each; then B_ji = L_ij (L symmetric; the cached float64 values of
    # (i, j) and (j, i) are the same float64 sum, equal up to the order of summation).
    hit, pos = _overlap(gx, gy)
    rows, colx = np.nonzero(hit)
    at_y = rows * gy.k + pos[rows, colx]  # flat positions in gy of the shared pairs
    a = gx.vals[rows, colx]
    b = gy.vals.ravel()[at_y]
    both = gx.recip[rows, colx] & gy.recip.ravel()[at_y]
    t1 = float(np.dot(a[both], b[both]))
    cols = gx.idx[rows, colx]
    return _hsic_terms(gx.n, a, b, rows, cols, t1), _hsic_terms(gx.n, b, a, rows, cols, t1), int(rows.size)


def _cross_hsic(gx: _Graph, gy: _Graph) -> float:
    return _cross_hsic_both(gx, gy)[0]


def _cknna_from_graphs(gx: _Graph, gy: _Graph, hxx: float, hyy: float) -> float:
    return _cknna_ratio(_cross_hsic(gx, gy), hxx, hyy)


def _cknna_ratio(hxy: float, hxx: float, hyy: float) -> float:
    prod = hxx * hyy
    if prod < 0:
        warnings.warn(
            f"CKNNA: the product of the self-HSIC terms is negative ({prod:.3g}); the score is undefined (NaN).",
            RuntimeWarning,
            stacklevel=3,
        )
        return math.nan
    return hxy / (math.sqrt(prod) + CKNNA_EPS)


def _mutual_from_graphs(gx: _Graph, gy: _Graph) -> float:
    hit, _ = _overlap(gx, gy)
    return float(np.count_nonzero(hit)) / (gx.n * gx.k)


def _cycle_from_graphs(gx: _Graph, gy: _Graph) -> float:
    n = gx.n
    # i -> j in Y's graph, then is i among X's neighbours of j?  key j * n + i in X's graph.
    back = gy.idx.astype(np.int64) * n + np.arange(n, dtype=np.int64)[:, None]
    hit = gx.contains(back.ravel())
    return float(hit.reshape(n, -1).any(axis=1).mean())


# ------------------------------------------------------------------------------------------- public API
def _check(X, Y, k):
    Xa, Ya = check_pair(X, Y)
    return Xa, Ya, check_k(k, Xa.shape[0])


def mutual_knn(X, Y, *, k: int = 10, normalize: str | None = "l2") -> float:
    """Mutual k-nearest-neighbour overlap (platonic-rep ``mutual_knn``).

    .. math::

        \\mathrm{mKNN}(X, Y) = \\frac{1}{N}\\sum_i \\frac{|\\mathrm{kNN}_X(i) \\cap \\mathrm{kNN}_Y(i)|}{k}

    Parameters
    ----------
    X : array_like, shape (n_samples, d_x)
    Y : array_like, shape (n_samples, d_y)
        Two representations of the same samples (inner-product neighbours: cosine after ``"l2"``).
    k : int
        Neighbours per sample (inner product, self excluded), ``1 <= k < n_samples``.
    normalize : {"l2", "max", "clamp95", "none"} or None
        Row normalisation applied to ``X`` and ``Y`` first. Default ``"l2"``, the one rule of every metric
        function, :func:`~matteralign.metrics.pairwise`, ``matteralign compare`` and the study (see
        :func:`~matteralign.metrics.normalize`); ``None`` computes on the arrays as given.

    Returns
    -------
    float
        In [0, 1], higher is more aligned; 1 for ``X == Y``; about ``k / (N - 1)`` for independent data.

    Notes
    -----
    Cost: two exact kNN searches plus O(N k log(N k)). Symmetric. Invariant to rotations, isotropic scaling,
    feature and joint sample permutations; not to translation (inner-product neighbours).
    Reference: Huh et al. 2024, arXiv:2405.07987.
    """
    X, Y = _rows(X, normalize, "X"), _rows(Y, normalize, "Y")
    Xa, Ya, k = _check(X, Y, k)
    return _mutual_from_graphs(_graph_from_array(Xa, k), _graph_from_array(Ya, k))


def cycle_knn(X, Y, *, k: int = 10, normalize: str | None = "l2") -> float:
    """Cycle kNN: fraction of samples that come back to themselves via Y's then X's neighbours.

    .. math::

        \\mathrm{cKNN}(X, Y) = \\frac{1}{N}\\sum_i \\mathbb 1\\big[\\exists\\, j \\in \\mathrm{kNN}_Y(i):
            i \\in \\mathrm{kNN}_X(j)\\big]

    Parameters
    ----------
    X, Y : array_like, shape (n_samples, d_x), (n_samples, d_y)
        Two representations of the same samples.
    k : int
        Neighbours per sample (inner product, self excluded).
    normalize : {"l2", "max", "clamp95", "none"} or None
        Row normalisation applied to ``X`` and ``Y`` first. Default ``"l2"``, the one rule of every metric
        function, :func:`~matteralign.metrics.pairwise`, ``matteralign compare`` and the study (see
        :func:`~matteralign.metrics.normalize`); ``None`` computes on the arrays as given.

    Returns
    -------
    float
        In [0, 1], higher is more aligned. **Asymmetric**; ``cycle_knn(X, X) < 1`` in general because kNN
        relations are not symmetric (platonic-rep ``cycle_knn(A, B) = acc(knn_A[knn_B])``).

    Notes
    -----
    Cost: two kNN searches plus O(N k log(N k)). Reference: Huh et al. 2024, arXiv:2405.07987.
    """
    X, Y = _rows(X, normalize, "X"), _rows(Y, normalize, "Y")
    Xa, Ya, k = _check(X, Y, k)
    return _cycle_from_graphs(_graph_from_array(Xa, k), _graph_from_array(Ya, k))


def cknna(X, Y, *, k: int = 25, normalize: str | None = "l2") -> float:
    """Centered kernel nearest-neighbour alignment (CKNNA), exactly as platonic-rep computes it.

    .. math::

        \\mathrm{CKNNA}(X, Y) = \\frac{\\mathrm{HSIC}_u(M \\circ K, M \\circ L)}
            {\\sqrt{\\mathrm{HSIC}_u(M_K \\circ K, M_K \\circ K)\\,\\mathrm{HSIC}_u(M_L \\circ L, M_L \\circ L)}
            + 10^{-6}},\\quad M = M_K \\circ M_L

    with ``K = X X^T``, ``L = Y Y^T``, ``M_K[i, j] = 1`` iff ``j`` is among the ``k`` inner-product
    neighbours of ``i`` (self excluded) and ``HSIC_u`` the unbiased estimator of Song et al. (2012, Eq. 5).

    Parameters
    ----------
    X, Y : array_like, shape (n_samples, d_x), (n_samples, d_y)
        Two representations of the same samples (the paper L2-normalises first, as the default does).
    k : int
        Neighbours per sample (the paper uses 25 at N = 50,000), ``1 <= k < n_samples``.
    normalize : {"l2", "max", "clamp95", "none"} or None
        Row normalisation applied to ``X`` and ``Y`` first. Default ``"l2"``, the one rule of every metric
        function, :func:`~matteralign.metrics.pairwise`, ``matteralign compare`` and the study (see
        :func:`~matteralign.metrics.normalize`); ``None`` computes on the arrays as given.

    Returns
    -------
    float
        Higher is more aligned; about 0 (slightly positive) for independent data, ``1 - O(1e-6)`` for
        ``X == Y``; may be slightly negative. ``k = N - 1`` gives platonic-rep's ``unbiased_cka``.
        NaN with a ``RuntimeWarning`` if a self term is negative.

    Notes
    -----
    Computed sparsely from the two kNN graphs in O(N k log(N k)) after the searches (module docstring).
    The ``+1e-6`` makes the score depend (slightly) on the overall scale of the inputs. Reference:
    Huh et al. 2024, arXiv:2405.07987 (Eqs. 16-18); Song et al. 2012, JMLR 13:1393.
    """
    X, Y = _rows(X, normalize, "X"), _rows(Y, normalize, "Y")
    Xa, Ya, k = _check(X, Y, k)
    gx, gy = _graph_from_array(Xa, k), _graph_from_array(Ya, k)
    return _cknna_from_graphs(gx, gy, _self_hsic(gx), _self_hsic(gy))


# --------------------------------------------------------------------------------------- cache combines
def _check_caches(cx: ModelCache, cy: ModelCache) -> None:
    if cx.n != cy.n:
        raise InputError(f"caches describe different samples: {cx.name or 'X'} has {cx.n} rows, "
                         f"{cy.name or 'Y'} has {cy.n}.")


def _self_hsic_cached(cache: ModelCache, k: int) -> float:
    return cache.memo(("cknna", "self_hsic", k), lambda: _self_hsic(_graph_from_cache(cache, k)))


def cknna_from_cache(cx: ModelCache, cy: ModelCache, *, k: int = 25) -> float:
    """CKNNA from two caches (see :func:`cknna`)."""
    _check_caches(cx, cy)
    gx, gy = _graph_from_cache(cx, k), _graph_from_cache(cy, k)
    return _cknna_from_graphs(gx, gy, _self_hsic_cached(cx, k), _self_hsic_cached(cy, k))


def mutual_knn_from_cache(cx: ModelCache, cy: ModelCache, *, k: int = 10) -> float:
    """Mutual kNN from two caches (see :func:`mutual_knn`)."""
    _check_caches(cx, cy)
    return _mutual_from_graphs(_graph_from_cache(cx, k), _graph_from_cache(cy, k))


def cycle_knn_from_cache(cx: ModelCache, cy: ModelCache, *, k: int = 10) -> float:
    """Cycle kNN from two caches (see :func:`cycle_knn`)."""
    _check_caches(cx, cy)
    return _cycle_from_graphs(_graph_from_cache(cx, k), _graph_from_cache(cy, k))


def cknna_all_from_caches(caches, *, k: int = 25) -> np.ndarray:
    """CKNNA of every ordered pair of caches, shape (M, M); one pass over each unordered pair's overlap."""
    caches = list(caches)
    for c in caches[1:]:
        _check_caches(caches[0], c)
    graphs = [_graph_from_cache(c, k) for c in caches]
    selfs = [_self_hsic_cached(c, k) for c in caches]
    out = np.empty((len(caches),) * 2)
    for i, h in enumerate(selfs):  # a graph overlaps itself entirely: the cross term is the self term
        out[i, i] = _cknna_ratio(h, h, h)
    for (i, j), (hxy, hyx, _) in _all_pairs(graphs).items():
        out[i, j] = _cknna_ratio(hxy, selfs[i], selfs[j])
        out[j, i] = _cknna_ratio(hyx, selfs[j], selfs[i])
    return out


def mutual_knn_all_from_caches(caches, *, k: int = 10) -> np.ndarray:
    """Mutual kNN of every pair of caches, shape (M, M)."""
    caches = list(caches)
    for c in caches[1:]:
        _check_caches(caches[0], c)
    graphs = [_graph_from_cache(c, k) for c in caches]
    out = np.eye(len(caches))
    for (i, j), (_, _, hits) in _all_pairs(graphs).items():
        out[i, j] = out[j, i] = hits / (graphs[i].n * graphs[i].k)
    return out


def cknna_null(cx: ModelCache, cy: ModelCache, perm: np.ndarray, *, k: int = 25) -> float:
    """CKNNA of ``(X, Y[perm])`` by relabelling Y's cached neighbours (no new search)."""
    gy = _permuted_graph(_graph_from_cache(cy, k), perm)
    return _cknna_from_graphs(_graph_from_cache(cx, k), gy, _self_hsic_cached(cx, k), _self_hsic_cached(cy, k))


def mutual_knn_null(cx: ModelCache, cy: ModelCache, perm: np.ndarray, *, k: int = 10) -> float:
    """Mutual kNN of ``(X, Y[perm])`` by relabelling Y's cached neighbours."""
    return _mutual_from_graphs(_graph_from_cache(cx, k), _permuted_graph(_graph_from_cache(cy, k), perm))


def cycle_knn_null(cx: ModelCache, cy: ModelCache, perm: np.ndarray, *, k: int = 10) -> float:
    """Cycle kNN of ``(X, Y[perm])`` by relabelling Y's cached neighbours."""
    return _cycle_from_graphs(_graph_from_cache(cx, k), _permuted_graph(_graph_from_cache(cy, k), perm))


# ------------------------------------------------------------------------------------------- registry
register(
    MetricSpec(
        name="cknna",
        function=as_given(cknna),
        symmetric=False,
        # Unbounded: the cross term uses mask_K * mask_L, the self terms mask_K and mask_L alone, so no
        # Cauchy-Schwarz bound holds. Values are usually in [0, 1]; they exceed 1 when the two masks differ
        # strongly (e.g. many duplicated rows), exactly as in the reference implementation.
        bounds=(-float("inf"), float("inf")),
        higher_is_better=True,
        invariances=frozenset({"orthogonal", "feature_permutation", "sample_permutation"}),
        reference=_PRH + "; Song et al. 2012 JMLR 13:1393 (unbiased HSIC); arXiv:2512.03750 (k=25)",
        params={"k": 25},
        self_value=None,
        from_cache=cknna_from_cache,
        from_caches_all=cknna_all_from_caches,
        null_from_cache=cknna_null,
        needs=frozenset({"knn"}),
        description="CKNNA: unbiased HSIC of the mutual-kNN-masked inner-product kernels (+1e-6 as platonic-rep)",
    )
)
register(
    MetricSpec(
        name="mutual_knn",
        function=as_given(mutual_knn),
        symmetric=True,
        bounds=(0.0, 1.0),
        higher_is_better=True,
        invariances=_KNN_INVARIANCES,
        reference=_PRH,
        params={"k": 10},
        self_value=1.0,
        from_cache=mutual_knn_from_cache,
        from_caches_all=mutual_knn_all_from_caches,
        null_from_cache=mutual_knn_null,
        needs=frozenset({"knn"}),
        description="mean fraction of shared inner-product k-nearest neighbours",
    )
)
register(
    MetricSpec(
        name="cycle_knn",
        function=as_given(cycle_knn),
        symmetric=False,
        bounds=(0.0, 1.0),
        higher_is_better=True,
        invariances=_KNN_INVARIANCES,
        reference=_PRH,
        params={"k": 10},
        self_value=None,
        from_cache=cycle_knn_from_cache,
        null_from_cache=cycle_knn_null,
        needs=frozenset({"knn"}),
        description="fraction of samples returning to themselves via Y's then X's k-NN (asymmetric)",
    )
)
