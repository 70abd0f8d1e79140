"""Exact k-nearest-neighbour graphs without an N x N matrix.

Backends (``backend="auto"`` picks the first that applies):

* ``"torch"`` -- CUDA, when ``torch.cuda.is_available()``: blocked float32 matmul + ``topk``.
* ``"blas"`` -- CPU, float32 input, with numba: a symmetric search. The rows are cut into tiles and every
  pair of tiles is multiplied once (float32 BLAS), so each block serves the rows of both tiles: half the
  multiply-adds of a query-by-database search. Compiled kernels keep each row's best candidates, behind a
  vectorised float32 pre-filter (:func:`_blas_candidates`). About 1.3x faster than FAISS's flat search on
  2 cores (``bench/README.md``); ``auto`` takes it when numba is loaded, or the search is large enough to
  pay for loading it (:data:`_BLAS_WORTH`).
* ``"faiss"`` -- CPU, float32 input: FAISS ``IndexFlatIP`` / ``IndexFlatL2`` (exact), queried in row blocks.
* ``"numpy"`` -- CPU, any dtype (the path for float64 input): blocked matmul in the input dtype and an exact
  top-k selection with a deterministic tie rule.

Every backend returns candidates that are re-scored in float64 (inner products, or Euclidean distances
recomputed from the coordinate differences, so there is no ``|x|^2 + |y|^2 - 2 x.y`` cancellation) and
ordered best-first with **ties broken by the lower index**. The float32 backends (blas, faiss, torch) search
``k + 1 + margin`` candidates and their candidate sets are *proven* complete (:func:`_proven_exact`): a row
is settled when its last float32 candidate is worse than its k-th by more than twice the float32 error bound
(``gamma_D |x_i| max_j |x_j|``, Higham Eq. 3.5), so no unseen point can enter; other rows are searched
again with four times the margin, up to all points. Only candidates within the bound of the k-th are then
re-scored beyond the first k. With numba, self removal, re-scoring and ordering are one compiled pass over
the rows (``_select_kernel``); the numpy route gives the same result and stays for installs without it.

Self-exclusion is by index, not by value: a query never lists itself, and an exact duplicate of it is an
ordinary (tied-best) neighbour. When a float32 search does not return the query itself among its
candidates (more than ``k + margin`` duplicates), the last candidate is dropped instead.

Tie rule. Among candidates with equal float64 scores the lower index comes first. This is exact also at the
k-th position (which of several tied points enters the list): rows with ties at the boundary are searched
again until the last candidate is provably worse, or all points are candidates.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext as _nullcontext

import numpy as np

from ..errors import InputError
from ._compiled import kernel, n_threads, run_rows
from ._validate import check_array, check_k

__all__ = ["knn_graph"]

_BACKENDS = ("auto", "blas", "faiss", "numpy", "torch")

_MARGIN = 4  # extra float32 candidates searched first (grown for rows whose completeness is not proven)
_GATHER_ELEMS = 1 << 22  # float64 elements per re-scoring block (32 MiB)


def _cuda_available() -> bool:
    """``torch.cuda.is_available()``, without importing torch (seconds) on machines with no NVIDIA device."""
    if "torch" not in sys.modules and not (os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvidiactl")):
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return bool(torch.cuda.is_available())


@kernel
def _select_kernel(numba):
    """Compiled :func:`_finalize`: per query row, drop self, re-score in float64, keep the k best, sorted.

    ``select(lo, hi, X, rows, cand, scores, bound, k, l2, has_self, use_scores, out_idx, out_vals)`` handles
    rows ``lo:hi`` (:func:`~matteralign.metrics._compiled.run_rows` spreads them over threads), with no
    gathered copies. Each score is one float64 sum over the features whose vector lanes
    follow the feature index only, so ``score(i, j) == score(j, i)`` bit for bit (the squared difference is
    the same either way; float32 products are exact in float64, so fusing them into the sum changes nothing).
    """
    # reassoc lets the sums vectorise (lane order depends on the feature index alone); contract fuses the
    # exact float32 products into their sums. One function: a jitted callee held in a closure would defeat
    # numba's on-disk cache (closure variables are part of its key).
    @numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
    def select(lo, hi, X, rows, cand, scores, bound, k, l2, has_self, use_scores,
               out_idx, out_vals):  # pragma: no cover - compiled
        c = cand.shape[1]
        d = X.shape[1]
        ids = np.empty(c, dtype=np.int64)
        fs = np.empty(c, dtype=np.float64)
        vs = np.empty(c, dtype=np.float64)
        for r in range(lo, hi):
            i = rows[r]
            drop = -1
            if has_self:
                drop = c - 1  # more duplicates than candidates: the last one goes instead of self
                for t in range(c):
                    if cand[r, t] == i:
                        drop = t
                        break
            m = 0
            for t in range(c):
                if t != drop:
                    ids[m] = cand[r, t]
                    if use_scores:
                        fs[m] = np.float64(scores[r, t])
                    m += 1
            width = m
            if use_scores and m > k:  # a later float32 score near the k-th: re-score them all
                width = k
                for t in range(k, m):
                    if (fs[t] <= fs[k - 1] + 2.0 * bound[r]) if l2 else (fs[t] >= fs[k - 1] - 2.0 * bound[r]):
                        width = m
                        break
            for t in range(width):  # smaller is better: distance, or minus the inner product
                j = ids[t]
                acc = 0.0
                if l2:
                    for q in range(d):
                        z = np.float64(X[j, q]) - np.float64(X[i, q])
                        acc += z * z
                    vs[t] = np.sqrt(acc)
                else:
                    for q in range(d):
                        acc += np.float64(X[i, q]) * np.float64(X[j, q])
                    vs[t] = -acc
            for t in range(1, width):  # insertion sort by (score, index): the lower index wins ties
                v, j = vs[t], ids[t]
                u = t - 1
                while u >= 0 and (vs[u] > v or (vs[u] == v and ids[u] > j)):
                    vs[u + 1] = vs[u]
                    ids[u + 1] = ids[u]
                    u -= 1
                vs[u + 1] = v
                ids[u + 1] = j
            for t in range(k):
                out_idx[r, t] = ids[t]
                out_vals[r, t] = vs[t] if l2 else -vs[t]

    return select


@kernel
def _topc_kernel(numba):
    """Compiled top-``c`` update of the symmetric search (:func:`_blas_candidates`) from one float32 block.

    ``update(lo, hi, S, by_column, row_off, col_off, l2, sq, sq32, slack, keys, ids, worst, low, wpos)``:
    ``S`` holds the float32 inner products ``x_{row_off + a} . x_{col_off + b}``. With ``by_column`` false the
    owners are the rows ``lo:hi`` and their candidates the columns; with ``by_column`` true the owners are the
    columns in chunks ``lo:hi`` of 128 and their candidates the rows. A candidate's key is its inner product
    (ip) or ``2 x.y - |y|^2`` (l2: larger is nearer; the owner's ``|x|^2`` is common to its row), in float64
    from the float32 product. Each owner keeps its ``c`` best keys unordered in ``keys``/``ids``, the worst
    one's key in ``worst`` and position in ``wpos``.

    A vectorised float32 pre-filter scans 128 entries at a time against ``low = float32(worst) - slack``
    (``slack`` exceeds every float32 rounding of the filter, so it never drops a candidate that beats the
    worst key); only the entries that pass are checked in float64, where a better candidate replaces the
    worst and the owner's row is scanned for the new worst.
    """

    # reassoc lets the chunk sums vectorise (a sum of d + |d| is positive exactly when some d > 0); LLVM
    # vectorises these loops only with a literal trip count (128).
    @numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz", "contract"})
    def update(lo, hi, S, by_column, row_off, col_off, l2, sq, sq32, slack, keys, ids, worst, low,
               wpos):  # pragma: no cover - compiled
        nr, nc = S.shape
        c = keys.shape[1]
        dbuf = np.empty(128, dtype=np.float32)
        inner = nr if by_column else (nc + 127) // 128
        for x in range(lo, hi):  # a row (by rows) or a chunk of 128 columns (by columns)
            for y in range(inner):
                a, b0 = (y, x * 128) if by_column else (x, y * 128)
                w = min(128, nc - b0)
                if w == 128:
                    acc = np.float32(0.0)
                    if by_column:  # the 128 owners' thresholds side by side
                        lw = low[col_off + b0 : col_off + b0 + 128]
                        s2 = sq32[row_off + a] if l2 else np.float32(0.0)
                        for b in range(128):
                            d = (np.float32(2.0) * S[a, b0 + b] - s2 if l2 else S[a, b0 + b]) - lw[b]
                            dbuf[b] = d
                            acc += d + abs(d)
                    elif l2:
                        t = low[row_off + a]
                        for b in range(128):
                            d = np.float32(2.0) * S[a, b0 + b] - sq32[col_off + b0 + b] - t
                            dbuf[b] = d
                            acc += d + abs(d)
                    else:
                        t = low[row_off + a]
                        for b in range(128):
                            d = S[a, b0 + b] - t
                            dbuf[b] = d
                            acc += d + abs(d)
                    if not acc > 0:
                        continue
                else:  # a short last chunk: every entry goes to the float64 check
                    dbuf[:w] = 1.0
                for b in range(w):
                    if not dbuf[b] > 0:
                        continue
                    if by_column:
                        o, cand = col_off + b0 + b, row_off + a
                    else:
                        o, cand = row_off + a, col_off + b0 + b
                    key = np.float64(S[a, b0 + b])
                    if l2:
                        key = 2.0 * key - sq[cand]
                    if key > worst[o]:
                        p = wpos[o]
                        keys[o, p] = key
                        ids[o, p] = cand
                        lo_key, lo_pos = keys[o, 0], 0
                        for u in range(1, c):
                            if keys[o, u] < lo_key:
                                lo_key, lo_pos = keys[o, u], u
                        worst[o] = lo_key
                        wpos[o] = lo_pos
                        low[o] = np.float32(lo_key) - slack

    return update


def _prefilter_slack(sq: np.ndarray) -> np.float32:
    """Slack of the float32 pre-filter of :func:`_topc_kernel` for squared norms ``sq``: its roundings (of
    ``2 x.y - |y|^2 - float32(worst)``, every term at most ``4 max |x|^2``) stay below ``8 u`` times that;
    ``2^-20`` times it (``16 u``) is well above."""
    return np.float32(2.0**-20 * 4.0 * float(sq.max()))


_TILE = 2048  # rows per tile of the symmetric search
_PANEL = 2048  # columns per block of a tile row (float32 block of _TILE x _PANEL: 16 MiB)


def _blas_candidates(X: np.ndarray, c: int, metric: str, tile: int | None = None, panel: int | None = None):
    """Symmetric search of the ``c`` best float32 candidates of every row (self included, as FAISS returns it).

    Rows are cut into tiles ``I``. Each tile's own square ``X_I X_I^T`` comes first, so every row starts with
    ``tile`` candidates and a threshold near its final one. Then, from the last tile to the first, the tile
    is multiplied (float32 BLAS) with the rows after it, in column panels: every pair of rows is multiplied
    once, half the multiply-adds of a query-by-database search. A block updates the candidates of its rows
    and, transposed, of its columns (:func:`_topc_kernel`). Going from the
    last tile up, a row sees the rows after it (its own tile's pass) before those before it (the column
    passes of earlier tiles), which keeps the costly replacements few.

    Returns ``(ids (N, c) int64, scores (N, c) float32)``, best first: inner products (ip) or squared
    distances (l2), in FAISS's conventions and within its error bound (float32 products of ``D`` terms, then
    exact float64 additions).
    """
    update = _topc_kernel()
    Xf = np.ascontiguousarray(X, dtype=np.float32)
    n = Xf.shape[0]
    tile, panel = tile or _TILE, panel or _PANEL
    l2 = metric == "l2"
    sq = np.einsum("ij,ij->i", Xf, Xf, dtype=np.float64)
    slack = _prefilter_slack(sq)
    sq32 = sq.astype(np.float32)
    keys = np.full((n, c), -np.inf)
    ids = np.full((n, c), -1, dtype=np.int64)
    worst = np.full(n, -np.inf)
    low = np.full(n, -np.inf, dtype=np.float32)
    wpos = np.zeros(n, dtype=np.int64)
    flat = np.empty(min(n, tile) * min(n, max(tile, panel)), dtype=np.float32)
    state = (l2, sq, sq32, slack, keys, ids, worst, low, wpos)
    threads = n_threads()

    def product(lo, hi, A, B, S):  # columns lo:hi of one block: a one-threaded BLAS call per worker
        np.matmul(A, B[lo:hi].T, out=S[:, lo:hi])

    def block(i0, i1, j0, j1):
        S = flat[: (i1 - i0) * (j1 - j0)].reshape(i1 - i0, j1 - j0)
        square = i0 == j0
        # a copy of the right operand of X_I X_I^T: numpy would call syrk, which is slower here
        B = Xf[j0:j1].copy() if square else Xf[j0:j1]
        run_rows(product, j1 - j0, Xf[i0:i1], B, S, chunks_per_thread=1)
        run_rows(update, i1 - i0, S, False, i0, j0, *state, chunks_per_thread=2)
        if not square:
            run_rows(update, -(-(j1 - j0) // 128), S, True, i0, j0, *state, chunks_per_thread=2)

    # Every step runs on the kernels' thread pool, BLAS included (one thread per call): OpenBLAS's own
    # workers spin for a while after each call and would take the cores from the selection kernels.
    from threadpoolctl import threadpool_limits

    starts = list(range(0, n, tile))
    with threadpool_limits(limits=1, user_api="blas") if threads > 1 else _nullcontext():
        for i0 in starts:
            block(i0, min(n, i0 + tile), i0, min(n, i0 + tile))
        for i0 in reversed(starts):
            i1 = min(n, i0 + tile)
            for j0 in range(i1, n, panel):
                block(i0, i1, j0, min(n, j0 + panel))
    order = np.lexsort((ids, -keys), axis=1)  # best first; ties by the lower index
    ids = np.take_along_axis(ids, order, axis=1)
    keys = np.take_along_axis(keys, order, axis=1)
    scores = (sq[:, None] - keys) if l2 else keys
    return ids, scores.astype(np.float32)


def _rows_candidates(X: np.ndarray, rows: np.ndarray, c: int, metric: str, block: int | None = None):
    """The ``c`` best float32 candidates of ``X[rows]`` against all rows (blocked float32 BLAS + partition):
    ``(ids (len(rows), c) int64, scores float32)`` in the conventions of :func:`_blas_candidates`. Blocks of
    ``block`` query rows (default: 32 MiB of float64 keys per block)."""
    Xf = np.ascontiguousarray(X, dtype=np.float32)
    n = Xf.shape[0]
    block = block or max(16, _GATHER_ELEMS // n)
    l2 = metric == "l2"
    sq = np.einsum("ij,ij->i", Xf, Xf, dtype=np.float64) if l2 else None
    ids = np.empty((rows.size, c), dtype=np.int64)
    scores = np.empty((rows.size, c), dtype=np.float32)
    for s in range(0, rows.size, block):
        q = rows[s : s + block]
        key = (Xf[q] @ Xf.T).astype(np.float64)
        if l2:
            key = 2.0 * key - sq[None, :]
        part = np.argpartition(-key, c - 1, axis=1)[:, :c] if c < n else np.tile(np.arange(n), (q.size, 1))
        pk = np.take_along_axis(key, part, axis=1)
        order = np.lexsort((part, -pk), axis=1)
        ids[s : s + q.size] = np.take_along_axis(part, order, axis=1)
        pk = np.take_along_axis(pk, order, axis=1)
        scores[s : s + q.size] = (sq[q, None] - pk) if l2 else pk
    return ids, scores


def _rescore(X: np.ndarray, cand: np.ndarray, metric: str, rows: np.ndarray | None = None) -> np.ndarray:
    """Float64 scores of ``cand`` (n, c) against query ``rows`` (default: all rows in order).

    ip: inner product, l2: distance by the difference formula. float32 products are exact in float64.
    """
    n, c = cand.shape
    out = np.empty((n, c), dtype=np.float64)
    if n == 0 or c == 0:
        return out
    rows = np.arange(n) if rows is None else rows
    block = max(1, _GATHER_ELEMS // max(1, c * X.shape[1]))
    for s in range(0, n, block):
        e = min(n, s + block)
        q = X[rows[s:e]]
        if metric == "ip":
            out[s:e] = np.einsum("nd,ncd->nc", q, X[cand[s:e]], dtype=np.float64)
        else:
            diff = X[cand[s:e]].astype(np.float64) - q.astype(np.float64)[:, None, :]
            out[s:e] = np.sqrt(np.einsum("ncd,ncd->nc", diff, diff))
    return out


def _float32_error_bound(X: np.ndarray, metric: str) -> np.ndarray:
    """Per query row, a bound on the error of a float32 score of that row against any other row.

    For inner products ``|fl(x . y) - x . y| <= gamma_D ||x|| ||y||`` with ``gamma_D = D u / (1 - D u)``,
    ``u = 2^-24``, whatever the summation order (Higham, Accuracy and Stability, Eq. 3.5); squared
    distances ``|x|^2 + |y|^2 - 2 x . y`` add the same bound for each term. It is doubled for safety.
    """
    d = X.shape[1] + 2
    u = 2.0**-24
    gamma = d * u / (1.0 - d * u)
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    big = float(norms.max())
    if metric == "ip":
        return 2.0 * gamma * norms * big
    return 2.0 * gamma * (norms + big) ** 2 * 2.0


def _finalize(X: np.ndarray, cand: np.ndarray, k: int, metric: str, *, has_self: bool,
              scores: np.ndarray | None = None, rows: np.ndarray | None = None,
              bound: np.ndarray | None = None):
    """Drop self (or the last candidate), re-score in float64, sort best-first, keep k.

    With the float32 ``scores`` of the candidates (FAISS: inner products, or squared distances, best first),
    only the first ``k`` are re-scored in rows where no later candidate comes within the float32 error bound
    of the ``k``-th (it then cannot belong to the top ``k``); other rows re-score every candidate.
    """
    n, c = cand.shape
    query = np.arange(n) if rows is None else rows
    compiled = _select_kernel(work=n * c * X.shape[1])
    if compiled:
        use = scores is not None
        idx = np.empty((n, k), dtype=np.int32)
        vals = np.empty((n, k), dtype=np.float64)
        bd = ((_float32_error_bound(X, metric) if bound is None else bound)[query] if use else np.empty(0))
        run_rows(compiled, n, np.ascontiguousarray(X), np.ascontiguousarray(query, dtype=np.int64),
                 np.ascontiguousarray(cand, dtype=np.int64),
                 np.ascontiguousarray(scores, dtype=np.float32) if use else np.empty((0, 0), np.float32),
                 np.ascontiguousarray(bd, dtype=np.float64), int(k), metric == "l2", bool(has_self), use, idx, vals)
        return idx, vals
    cand = cand.astype(np.int64, copy=False)
    if has_self:
        is_self = cand == query[:, None]
        drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), c - 1)
        keep = np.ones((n, c), dtype=bool)
        keep[np.arange(n), drop] = False
        cand = cand[keep].reshape(n, c - 1)
        if scores is not None:
            scores = scores[keep].reshape(n, c - 1)
    if scores is not None and cand.shape[1] > k:
        bound = (_float32_error_bound(X, metric) if bound is None else bound)[query]
        s = scores.astype(np.float64)
        if metric == "ip":
            full = (s[:, k:] >= (s[:, k - 1] - 2.0 * bound)[:, None]).any(axis=1)
        else:
            full = (s[:, k:] <= (s[:, k - 1] + 2.0 * bound)[:, None]).any(axis=1)
        idx = np.empty((n, k), dtype=np.int32)
        vals = np.empty((n, k), dtype=np.float64)
        for sel, width in ((np.flatnonzero(~full), k), (np.flatnonzero(full), cand.shape[1])):
            if sel.size:
                idx[sel], vals[sel] = _order(X, query[sel], cand[sel, :width], k, metric)
        return idx, vals
    return _order(X, query, cand, k, metric)


def _order(X: np.ndarray, rows: np.ndarray, cand: np.ndarray, k: int, metric: str):
    """Float64 scores of ``cand`` for query ``rows``, sorted best-first (ties: lower index), first k."""
    vals = _rescore(X, cand, metric, rows)
    primary = -vals if metric == "ip" else vals
    order = np.lexsort((cand, primary), axis=-1)[:, :k]
    idx = np.take_along_axis(cand, order, axis=1).astype(np.int32)
    return idx, np.take_along_axis(vals, order, axis=1)


def _numpy_candidates(X: np.ndarray, k: int, metric: str, block_size: int) -> np.ndarray:
    n = X.shape[0]
    out = np.empty((n, k), dtype=np.int64)
    sq = np.einsum("ij,ij->i", X, X) if metric == "l2" else None
    for s in range(0, n, block_size):
        e = min(n, s + block_size)
        S = X[s:e] @ X.T  # (B, N) similarities in the input dtype
        if metric == "l2":  # larger is better: -(squared distance) up to the row constant |x_i|^2
            S = 2 * S - sq[None, :]
        rows = np.arange(e - s)
        S[rows, s + rows] = -np.inf
        part = np.argpartition(-S, k - 1, axis=1)[:, :k]
        t = np.take_along_axis(S, part, axis=1).min(axis=1)
        n_eq = (S == t[:, None]).sum(axis=1)
        n_gt = (S > t[:, None]).sum(axis=1)
        fix = np.flatnonzero(n_eq > k - n_gt)  # ties straddle the boundary: take the lowest indices
        for r in fix:
            gt = np.flatnonzero(S[r] > t[r])
            eq = np.flatnonzero(S[r] == t[r])[: k - gt.size]
            part[r] = np.concatenate([gt, eq])
        out[s:e] = part
    return out


def _faiss_candidates(X: np.ndarray, c: int, metric: str, block_size: int, n_threads: int | None,
                      rows: np.ndarray | None = None, index=None):
    """FAISS flat search of ``c`` candidates for ``X[rows]`` (all rows by default): (ids, float32 scores, index)."""
    import faiss

    if n_threads is not None:
        faiss.omp_set_num_threads(int(n_threads))
    Xf = np.ascontiguousarray(X, dtype=np.float32)
    if index is None:
        index = faiss.IndexFlatIP(Xf.shape[1]) if metric == "ip" else faiss.IndexFlatL2(Xf.shape[1])
        index.add(Xf)
    Q = Xf if rows is None else Xf[rows]
    out = np.empty((Q.shape[0], c), dtype=np.int64)
    scores = np.empty((Q.shape[0], c), dtype=np.float32)
    for s in range(0, Q.shape[0], block_size):
        dist, ind = index.search(Q[s : s + block_size], c)
        out[s : s + block_size] = ind
        scores[s : s + block_size] = dist
    if (out < 0).any():  # pragma: no cover - FAISS pads with -1 only when c > N
        raise InputError("FAISS returned fewer neighbours than requested")
    return out, scores, index


def _proven_exact(X: np.ndarray, k: int, metric: str, search) -> tuple[np.ndarray, np.ndarray]:
    """Exact graph from float32 candidate searches, proven complete: a row is settled when its last float32
    candidate is worse than its k-th by more than twice the float32 error bound (no unseen point can then
    enter the k best); other rows are searched again with four times the margin, up to all points.

    ``search(c, rows)`` returns the ``c`` best float32 candidates of ``X[rows]`` (all rows when ``rows`` is
    None), self included where it ranks, as ``(ids int64, scores float32)``, best first (FAISS's conventions).
    """
    n = X.shape[0]
    bound = _float32_error_bound(X, metric)
    idx = np.empty((n, k), dtype=np.int32)
    vals = np.empty((n, k), dtype=np.float64)
    todo, margin = None, _MARGIN
    while todo is None or todo.size:
        c = min(n, k + 1 + margin)
        cand, scores = search(c, todo)
        rows = np.arange(n) if todo is None else todo
        if c >= n:
            proven = np.ones(rows.size, dtype=bool)
        else:  # scores[:, k] (self may be among the first k + 1) is on the safe side of the k-th non-self score
            s = scores.astype(np.float64)
            if metric == "ip":
                proven = s[:, -1] < s[:, k] - 2.0 * bound[rows]
            else:
                proven = s[:, -1] > s[:, k] + 2.0 * bound[rows]
        done = rows[proven]
        if done.size:
            idx[done], vals[done] = _finalize(X, cand[proven], k, metric, has_self=True, scores=scores[proven],
                                              rows=done, bound=bound)
        todo = rows[~proven]
        margin *= 4
    return idx, vals


def _faiss_exact(X: np.ndarray, k: int, metric: str, block_size: int, n_threads: int | None):
    """FAISS flat searches (one index, reused for the rows searched again), proven complete."""
    index = []

    def search(c, rows):
        cand, scores, ix = _faiss_candidates(X, c, metric, block_size, n_threads, rows=rows,
                                             index=index[0] if index else None)
        index[:] = [ix]
        return cand, scores

    return _proven_exact(X, k, metric, search)


def _blas_exact(X: np.ndarray, k: int, metric: str, tile: int | None):
    """The symmetric search for all rows, blocked float32 searches for rows searched again; proven complete."""

    def search(c, rows):
        if rows is None:
            return _blas_candidates(X, c, metric, tile)
        return _rows_candidates(X, rows, c, metric)

    return _proven_exact(X, k, metric, search)


def _torch_candidates(X: np.ndarray, c: int, metric: str, block_size: int, rows: np.ndarray | None = None):
    """CUDA search of the ``c`` best float32 candidates of ``X[rows]`` (all rows by default; self included):
    blocked matmul + ``topk`` in full float32 (TF32 off for the call), in FAISS's conventions."""
    import torch

    dev = torch.device("cuda")
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(dev)
    l2 = metric == "l2"
    sq = (Xt * Xt).sum(1) if l2 else None
    q = np.arange(Xt.shape[0]) if rows is None else rows
    ids = np.empty((q.size, c), dtype=np.int64)
    scores = np.empty((q.size, c), dtype=np.float32)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # the float32 error bound assumes float32 products
    try:
        with torch.no_grad():
            for s in range(0, q.size, block_size):
                qi = torch.from_numpy(q[s : s + block_size]).to(dev)
                S = Xt[qi] @ Xt.T
                if l2:  # larger is nearer: 2 x.y - |y|^2
                    S = 2 * S - sq[None, :]
                v, i = torch.topk(S, c, dim=1)
                if l2:
                    v = sq[qi][:, None] - v
                ids[s : s + qi.numel()] = i.cpu().numpy()
                scores[s : s + qi.numel()] = v.cpu().numpy()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return ids, scores


def _torch_exact(X: np.ndarray, k: int, metric: str, block_size: int):
    """CUDA searches, proven complete like the CPU routes."""
    return _proven_exact(X, k, metric, lambda c, rows: _torch_candidates(X, c, metric, block_size, rows))


def knn_graph(
    X,
    *,
    k: int,
    metric: str = "ip",
    backend: str = "auto",
    block_size: int | None = None,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-nearest-neighbour graph of the rows of ``X`` (self excluded), best neighbour first.

    .. math::

        \\mathrm{kNN}(i) = \\operatorname{top-}k_{j \\ne i}\\; \\langle x_i, x_j \\rangle \\quad (\\text{ip}),
        \\qquad \\operatorname{bottom-}k_{j \\ne i}\\; \\lVert x_i - x_j \\rVert_2 \\quad (\\text{l2})

    Parameters
    ----------
    X : array_like, shape (n_samples, n_features)
        Points, as given (normalise first for cosine neighbours).
    k : int
        Neighbours per point, ``1 <= k <= n_samples - 1``.
    metric : {"ip", "l2"}
        Inner product (larger is nearer; platonic-rep's choice) or Euclidean distance.
    backend : {"auto", "blas", "faiss", "numpy", "torch"}
        ``"auto"``: torch on CUDA when available; for float32 input the symmetric ``"blas"`` search when
        numba is loaded or the search is large enough to pay for its import, else FAISS; numpy for any other
        dtype (float64 input is searched in float64).
    block_size : int, optional
        Query rows per block (memory O(block_size * n_samples) for numpy/torch); rows per tile for blas.
    n_threads : int, optional
        FAISS OpenMP threads (``faiss.omp_set_num_threads``); default: FAISS's own. The ``"blas"`` search
        and the compiled kernels use ``MATTERALIGN_THREADS`` (default: the cores this process may use).

    Returns
    -------
    indices : ndarray of int32, shape (n_samples, k)
        Neighbour indices, best first, ties by lower index.
    values : ndarray of float64, shape (n_samples, k)
        Inner products (descending) or Euclidean distances (ascending), recomputed in float64.

    Notes
    -----
    Cost O(N^2 D) time, O(B N) memory; never an N x N matrix. See the module docstring for the tie rule and
    duplicate rows.
    """
    X = check_array(X, "X", min_samples=2, allow_constant=True)
    n = X.shape[0]
    k = check_k(k, n)
    if metric not in ("ip", "l2"):
        raise InputError(f"knn metric must be 'ip' or 'l2'; got {metric!r}.")
    if backend not in _BACKENDS:
        raise InputError(f"knn backend must be one of {list(_BACKENDS)}; got {backend!r}.")
    if backend == "auto":
        if _cuda_available():
            backend = "torch"
        elif X.dtype == np.float32:
            backend = "blas" if _blas_worth(n, X.shape[1]) else "faiss"
        else:
            backend = "numpy"
    if backend == "torch" and not _cuda_available():
        raise InputError("knn backend 'torch' needs CUDA (torch.cuda.is_available() is False); use 'auto'.")
    if backend == "blas" and not _topc_kernel():
        raise InputError("knn backend 'blas' needs numba (pip install numba, or the 'analysis' extra); "
                         "use 'auto' or 'faiss'.")
    if backend == "numpy":
        bs = block_size or max(1, min(n, (1 << 24) // max(1, n)))
        cand = _numpy_candidates(X, k, metric, bs)
        return _finalize(X, cand, k, metric, has_self=False)
    if backend == "blas":
        return _blas_exact(X, k, metric, block_size)
    if backend == "faiss":
        bs = block_size or (1 << 17)
        threads = n_threads if n_threads is not None else _env_threads()
        return _faiss_exact(X, k, metric, bs, threads)
    return _torch_exact(X, k, metric, block_size or max(1, min(n, (1 << 26) // max(1, n))))


#: Multiply-adds (N^2 D) from which a search pays numba's import and start (about 0.5 s) when numba is not
#: loaded yet: the symmetric search saves about a third of FAISS's time (~1e11 multiply-adds/s on 2 cores).
_BLAS_WORTH = 2e11


def _blas_worth(n: int, d: int) -> bool:
    """Whether ``auto`` takes the symmetric search: numba present, and loaded already or the search is large."""
    if "numba" not in sys.modules and float(n) * n * d < _BLAS_WORTH:
        return False
    return bool(_topc_kernel())


def _env_threads() -> int | None:
    value = os.environ.get("MATTERALIGN_THREADS")
    return int(value) if value else None
