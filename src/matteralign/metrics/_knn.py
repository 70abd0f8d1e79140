"""Exact k-nearest-neighbour graphs without an N x N matrix.

Backends (``backend="auto"`` picks the first that applies):

* ``"torch"`` -- CUDA, when ``torch.cuda.is_available()``: blocked matmul + ``topk``, self masked.
* ``"faiss"`` -- CPU, float32 input: FAISS ``IndexFlatIP`` / ``IndexFlatL2`` (exact), queried in row blocks.
* ``"numpy"`` -- CPU, any dtype (the path for float64 input): blocked matmul in the input dtype and an exact
  top-k selection with a deterministic tie rule.

Every backend returns candidates that are re-scored in float64 (inner products, or Euclidean distances
recomputed from the coordinate differences, so there is no ``|x|^2 + |y|^2 - 2 x.y`` cancellation) and
ordered best-first with **ties broken by the lower index**. The float32 backends search
``k + 1 + margin`` candidates so that the float64 re-scoring can reorder float32 near-ties. With FAISS the
candidate set is *proven* complete: a row is settled when its last float32 candidate is worse than its
k-th by more than twice the float32 error bound (``gamma_D |x_i| max_j |x_j|``, Higham Eq. 3.5), so no
unseen point can enter; other rows are searched again with four times the margin, up to all points. Only
candidates within the bound of the k-th are then re-scored beyond the first k. With numba, self removal,
re-scoring and ordering are one compiled pass over the rows (``_select_kernel``); the numpy route gives the
same result and stays for installs without it.

Self-exclusion is by index, not by value: a query never lists itself, and an exact duplicate of it is an
ordinary (tied-best) neighbour. When the FAISS result for a query does not contain the query itself
(more than ``k + margin`` duplicates), the last candidate is dropped instead.

Tie rule. Among candidates with equal float64 scores the lower index comes first. With the numpy and FAISS
backends this is exact also at the k-th position (which of several tied points enters the list: FAISS rows
with ties at the boundary are searched again until the last candidate is provably worse). With torch (CUDA)
the candidate set at the boundary is whatever ``topk`` returns; inside the set the lower-index rule holds.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from ..errors import InputError
from ._compiled import kernel, run_rows
from ._validate import check_array, check_k

__all__ = ["knn_graph"]

_MARGIN = 4  # extra float32 candidates searched first (grown for rows whose completeness is not proven)
_TORCH_MARGIN = 8  # extra float32 candidates of the CUDA route, re-scored in float64
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


def _faiss_exact(X: np.ndarray, k: int, metric: str, block_size: int, n_threads: int | None):
    """FAISS candidates, proven complete: a row is settled when its last float32 candidate is worse than its
    k-th by more than twice the float32 error bound (no unseen point can then enter the k best); other rows
    are searched again with four times the margin, up to all points."""
    n = X.shape[0]
    bound = _float32_error_bound(X, metric)
    idx = np.empty((n, k), dtype=np.int32)
    vals = np.empty((n, k), dtype=np.float64)
    todo, margin, index = None, _MARGIN, None
    while todo is None or todo.size:
        c = min(n, k + 1 + margin)
        cand, scores, index = _faiss_candidates(X, c, metric, block_size, n_threads, rows=todo, index=index)
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


def _torch_candidates(X: np.ndarray, c: int, metric: str, block_size: int) -> np.ndarray:
    import torch

    dev = torch.device("cuda")
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(dev)
    sq = (Xt * Xt).sum(1) if metric == "l2" else None
    n = Xt.shape[0]
    out = np.empty((n, c), dtype=np.int64)
    with torch.no_grad():
        for s in range(0, n, block_size):
            e = min(n, s + block_size)
            S = Xt[s:e] @ Xt.T
            if metric == "l2":
                S = 2 * S - sq[None, :]
            rows = torch.arange(e - s, device=dev)
            S[rows, s + rows] = -torch.inf
            out[s:e] = torch.topk(S, c, dim=1).indices.cpu().numpy()
    return out


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
    backend : {"auto", "faiss", "numpy", "torch"}
        ``"auto"``: torch on CUDA when available, else FAISS for float32 input, else numpy (float64 input is
        searched in float64).
    block_size : int, optional
        Query rows per block (memory O(block_size * n_samples) for numpy/torch).
    n_threads : int, optional
        FAISS OpenMP threads (``faiss.omp_set_num_threads``); default: FAISS's own.

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
    if backend not in ("auto", "faiss", "numpy", "torch"):
        raise InputError(f"knn backend must be one of 'auto', 'faiss', 'numpy', 'torch'; got {backend!r}.")
    if backend == "auto":
        if _cuda_available():
            backend = "torch"
        elif X.dtype == np.float32:
            backend = "faiss"
        else:
            backend = "numpy"
    if backend == "torch" and not _cuda_available():
        raise InputError("knn backend 'torch' needs CUDA (torch.cuda.is_available() is False); use 'auto'.")
    if backend == "numpy":
        bs = block_size or max(1, min(n, (1 << 24) // max(1, n)))
        cand = _numpy_candidates(X, k, metric, bs)
        return _finalize(X, cand, k, metric, has_self=False)
    if backend == "faiss":
        bs = block_size or (1 << 17)
        threads = n_threads if n_threads is not None else _env_threads()
        return _faiss_exact(X, k, metric, bs, threads)
    bs = block_size or max(1, min(n, (1 << 26) // max(1, n)))
    cand = _torch_candidates(X, min(n - 1, k + _TORCH_MARGIN), metric, bs)
    return _finalize(X, cand, k, metric, has_self=False)


def _env_threads() -> int | None:
    value = os.environ.get("MATTERALIGN_THREADS")
    return int(value) if value else None
