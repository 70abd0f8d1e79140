"""Information imbalance (Glielmo et al. 2022), exact and streamed.

For each sample ``i`` and each of its ``k`` nearest neighbours ``j`` in ``X`` (exact Euclidean kNN),
the rank of ``j`` among ``i``'s neighbours in ``Y`` is

.. math::  r^Y_i(j) = 1 + \\#\\{l \\ne i : d_Y(i, l) < d_Y(i, j)\\}

(nearest has rank 1; **ties** share the smallest rank, i.e. ``1 +`` the count of strictly closer
points). The counts come from one blocked pass over ``Y``'s distances (``O(N^2 D)`` time, ``O(B N)``
memory, never ``N x N``): each block of squared distances is compared with the thresholds
``d_Y(i, j)^2`` (computed exactly in float64), and every comparison that falls within the float32
rounding band (:func:`~matteralign.metrics._blocked.sq_dist_error_bound`) is re-decided in float64,
so the counts are those of float64 distances. DADApy instead breaks ties by ``argsort`` order and
fills ranks beyond ``maxk`` at random; without ties and with ``maxk = N - 1`` both agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from . import _nullkernels as _nk
from ._blocked import (
    _STREAM_BYTES,
    Workspace,
    check_precision,
    exact_knn_l2,
    exact_sq_dists,
    prepare_workspace,
    row_blocks,
    sq_dist_block,
)
from ._compiled import kernel, run_rows
from ._registry import MetricSpec, register
from ._validate import check_array, check_k, check_pair, check_positive_int
from .normalize import as_given
from .normalize import rows as _rows
from .normalize import rows_many as _rows_many

__all__ = [
    "information_imbalance",
    "information_imbalance_subsets",
    "information_imbalance_matrix",
    "ImbalanceEstimate",
]

#: Above this many thresholds per row, rows are sorted once and thresholds located by binary search.
_SORT_ABOVE = 8


class RankCounter:
    """Accumulates ``#{l != i : d_n(i, l)^2 < t_n[i, c]}`` for target representations ``n``.

    Parameters
    ----------
    workspaces : list of Workspace
        All representations of the pass (indexed like the squared-distance blocks it receives).
    thresholds : dict int -> ndarray (N, T_n)
        For each target index ``n``, float64 squared thresholds (one column per (source, neighbour)).
    neighbours : dict int -> ndarray (N, T_n), optional
        The neighbour index that defines each threshold. With numba installed, rows with few thresholds are
        then counted in one fused pass that also settles the rounding band in float64 (no second pass).
    """

    def __init__(self, workspaces: Sequence[Workspace], thresholds: dict[int, np.ndarray],
                 neighbours: dict[int, np.ndarray] | None = None):
        self.workspaces = workspaces
        self.thresholds = thresholds
        self.neighbours = neighbours
        self.counts = {n: np.zeros(t.shape, dtype=np.int64) for n, t in thresholds.items()}

    def __call__(self, i0: int, i1: int, sq_blocks) -> None:
        import torch

        for n, thr_all in self.thresholds.items():
            ws = self.workspaces[n]
            D = sq_blocks[n]
            thr = thr_all[i0:i1]
            band = ws.band[i0:i1, None]
            out = self.counts[n][i0:i1]
            if thr.shape[1] <= _SORT_ABOVE and self.neighbours is not None and _exact_kernel():
                lo32 = np.ascontiguousarray((thr - band).astype(D.numpy().dtype))
                hi32 = np.ascontiguousarray((thr + band).astype(D.numpy().dtype))
                nbr = np.ascontiguousarray(self.neighbours[n][i0:i1], dtype=np.int64)
                run_rows(_exact_kernel(), D.shape[0], D.numpy(), lo32, hi32, nbr, ws.raw, i0, out)
                continue
            lo = torch.from_numpy(thr - band).to(D.dtype)
            hi = torch.from_numpy(thr + band).to(D.dtype)
            if thr.shape[1] > _SORT_ABOVE:
                srt = torch.sort(D, dim=1).values
                c_lo = torch.searchsorted(srt, lo.contiguous(), side="left")
                c_hi = torch.searchsorted(srt, hi.contiguous(), side="right")
                del srt
            else:
                c_lo, c_hi = _band_counts(D.numpy(), lo.numpy(), hi.numpy())
            c_lo = np.asarray(c_lo).astype(np.int64)
            c_hi = np.asarray(c_hi).astype(np.int64)
            out += c_lo
            # the neighbour j that defines a threshold is always inside its band and never counts
            # (d(i, j) < d(i, j) is false): only a second entry in the band needs a float64 decision
            amb_r, amb_c = np.nonzero(c_hi - c_lo > 1)
            for r in np.unique(amb_r):
                cols_here = amb_c[amb_r == r]
                lo_r, hi_r = lo[r, cols_here].min(), hi[r, cols_here].max()
                drow = D[r]
                cand = torch.nonzero((drow >= lo_r) & (drow <= hi_r)).ravel().numpy()
                exact = exact_sq_dists(ws.raw, np.full(len(cand), i0 + r), cand)
                dlow = drow[cand].numpy()
                for c in cols_here:
                    inband = (dlow >= lo[r, c].item()) & (dlow <= hi[r, c].item())
                    out[r, c] += int((exact[inband] < thr[r, c]).sum())
        return None

    def ranks(self, n: int) -> np.ndarray:
        """``1 + #{l != i : ...}`` (self, at distance 0, is removed from the count when the threshold is > 0)."""
        return 1 + self.counts[n] - (self.thresholds[n] > 0)


@kernel
def _exact_kernel(numba):
    """The fused exact counting kernel, compiled on first use (cached on disk); ``False`` without numba.

    ``kernel(lo_row, hi_row, D, lo, hi, nbr, raw, i0, out)`` adds to ``out[r, t]`` (rows ``lo_row:hi_row``)
    the number of ``l`` with ``d(i, l)^2 < d(i, nbr[r, t])^2`` in float64, ``i = i0 + r``: entries of the
    float32 block ``D`` below ``lo`` count, entries above ``hi`` do not, and the few inside the rounding band
    ``[lo, hi]`` are decided by recomputing both squared distances in float64 from ``raw`` (difference
    formula). One vectorised pass over a row (in cache) per threshold; :func:`run_rows` runs the rows in
    parallel.
    """

    # Per threshold, two counts (entries below its band, entries up to its top) in vectorised passes over the
    # row: integer accumulators over chunks of a literal 128 entries, which LLVM vectorises (no fastmath: the
    # float64 distances below keep their plain summation order). The neighbour that defines a threshold
    # always lies in its band and never counts; only a row with another entry in a band is scanned again,
    # entry by entry, in float64.
    @numba.njit(cache=True, nogil=True)
    def exact_counts(lo_row, hi_row, D, lo, hi, nbr, raw, i0, out):  # pragma: no cover - compiled
        d = raw.shape[1]
        n_t = lo.shape[1]
        n = D.shape[1]
        full = n // 128 * 128
        for r in range(lo_row, hi_row):
            i = i0 + r
            row = D[r]
            for t in range(n_t):
                lt, ht = lo[r, t], hi[r, t]
                below, upto = 0, 0
                for b0 in range(0, full, 128):
                    a_lo = np.int32(0)
                    a_hi = np.int32(0)
                    for b in range(128):
                        x = row[b0 + b]
                        a_lo += np.int32(x < lt)
                        a_hi += np.int32(x <= ht)
                    below += a_lo
                    upto += a_hi
                for col in range(full, n):
                    below += row[col] < lt
                    upto += row[col] <= ht
                out[r, t] += below
                j = nbr[r, t]
                if upto - below == (1 if lt <= row[j] <= ht else 0):
                    continue  # the band holds the neighbour alone
                thr = 0.0  # the threshold, recomputed like the band entries below
                for q in range(d):
                    z = raw[i, q] - raw[j, q]
                    thr += z * z
                for col in range(n):
                    x = row[col]
                    if lt <= x <= ht and col != j:
                        acc = 0.0
                        for q in range(d):
                            z = raw[i, q] - raw[col, q]
                            acc += z * z
                        if acc < thr:
                            out[r, t] += 1

    return exact_counts


def _band_counts(D: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row and threshold column: ``#{D < lo}`` and ``#{D <= hi}`` (two numpy passes per column;
    numpy's ``count_nonzero`` is several times faster than torch's boolean sum)."""
    c_lo = np.stack([np.count_nonzero(D < lo[:, c : c + 1], axis=1) for c in range(lo.shape[1])], 1)
    c_hi = np.stack([np.count_nonzero(D <= hi[:, c : c + 1], axis=1) for c in range(lo.shape[1])], 1)
    return c_lo, c_hi


def _thresholds(ws_y: Workspace, nn: np.ndarray) -> np.ndarray:
    n, k = nn.shape
    rows = np.repeat(np.arange(n), k)
    return exact_sq_dists(ws_y.raw, rows, nn.ravel()).reshape(n, k)


def _stream(workspaces: Sequence[Workspace], counter, *, block_rows=None) -> None:
    import torch

    n = workspaces[0].n
    itemsize = workspaces[0].left.element_size()
    if block_rows is None:  # larger blocks than the distance-sum pass: it keeps no float64 stack
        block_rows = max(16, min(n, _STREAM_BYTES // (itemsize * n * len(workspaces))))
    spans = list(row_blocks(n, len(workspaces), block_rows))
    rows = max(i1 - i0 for i0, i1 in spans)
    bufs = [torch.empty((rows, n), dtype=ws.left.dtype) for ws in workspaces]  # reused across blocks
    for i0, i1 in spans:
        counter(i0, i1, [sq_dist_block(ws, i0, i1, out=buf[: i1 - i0]) for ws, buf in zip(workspaces, bufs,
                                                                                         strict=True)])


def information_imbalance(
    X, Y, *, k: int = 1, precision: str = "float32", block_rows: int | None = None,
    normalize: str | None = "l2",
) -> float:
    """Information imbalance Δ(X → Y): how well neighbourhoods in ``X`` predict those in ``Y``.

    .. math::

        \\Delta(X \\to Y) = \\frac{2}{N} \\cdot \\frac{1}{N k} \\sum_i \\sum_{j \\in kNN_X(i)} r^Y_i(j)

    Parameters
    ----------
    X : array_like, shape (n_samples, n_features_x)
        Source space (its exact Euclidean k nearest neighbours are looked up in ``Y``).
    Y : array_like, shape (n_samples, n_features_y)
        Target space; same samples, same order.
    k : int
        Neighbours per sample in ``X``, ``1 <= k <= N - 1``.
    precision : {"float32", "float64"}
        Precision of the distance GEMMs. The ranks are exact (float64) either way: comparisons inside
        the float32 error band are re-decided in float64.
    block_rows : int, optional
        Rows per block; chosen automatically.
    normalize : {"l2", "max", "clamp95", "none"} or None
        Row normalisation applied to ``X`` and ``Y`` first. Default ``"l2"``, the one rule of every metric
        function, :func:`~matteralign.metrics.pairwise`, ``matteralign compare`` and the study (see
        :func:`~matteralign.metrics.normalize`); ``None`` computes on the arrays as given.

    Returns
    -------
    float
        Δ in ``[(k + 1)/N, ~1]``: about 0 when ``X``'s neighbourhoods are ``Y``'s (``Δ(X→X) = (k+1)/N``),
        about 1 when ``X`` carries no information about ``Y``. Lower is better; asymmetric.

    Notes
    -----
    Exact, one kNN search of ``X`` plus one blocked pass over ``Y`` (``O(N^2 D_y)`` time, ``O(B N)``
    memory). Invariant to translations, orthogonal transforms and isotropic scaling of either space
    (only ranks matter) and to joint permutation of the samples. Equals DADApy's
    ``return_information_imbalace`` with ``subset_size = N`` on data without distance ties; see
    :func:`information_imbalance_subsets` for DADApy's subset protocol.

    References
    ----------
    Glielmo, Zeni, Cheng, Tamás & Laio (2022), PNAS Nexus 1(2), pgac039, doi:10.1093/pnasnexus/pgac039.
    """
    X, Y = _rows(X, normalize, "X"), _rows(Y, normalize, "Y")
    check_precision(precision)
    Xa, Ya = check_pair(X, Y, min_samples=4)
    k = check_k(k, Xa.shape[0])
    return float(information_imbalance_matrix([Xa, Ya], k=k, precision=precision, block_rows=block_rows,
                                              pairs=[(0, 1)], normalize=None)[0, 1])


def information_imbalance_matrix(
    reps: Sequence,
    *,
    k: int = 1,
    precision: str = "float32",
    block_rows: int | None = None,
    pairs: Sequence[tuple[int, int]] | None = None,
    knn: Sequence[np.ndarray] | None = None,
    normalize: str | None = "l2",
) -> np.ndarray:
    """Δ(reps[m] → reps[n]) for every ordered pair, ``(M, M)``, in one blocked pass.

    Each block of rows produces every model's squared-distance block once and counts the ranks for
    every ordered pair, so ``M`` models cost about ``M`` distance passes plus one kNN search each.
    ``pairs`` restricts the computation to some ordered pairs (others are NaN); ``knn`` passes
    precomputed exact Euclidean neighbour indices ``(N, >= k)`` per model (self excluded) of the
    normalised rows. Rows are normalised by ``normalize`` first (default ``"l2"``, the rule of every metric
    function; ``None`` = as given).
    """
    reps = _rows_many(reps, normalize)
    check_precision(precision)
    arrays = [check_array(r, f"reps[{i}]", min_samples=4) for i, r in enumerate(reps)]
    n = arrays[0].shape[0]
    for i, a in enumerate(arrays):
        if a.shape[0] != n:
            raise InputError(f"all representations must describe the same samples: reps[0] has {n} rows, "
                             f"reps[{i}] has {a.shape[0]}.")
    k = check_k(k, n)
    m = len(arrays)
    pairs = [(a, b) for a in range(m) for b in range(m)] if pairs is None else list(pairs)
    workspaces = [prepare_workspace(a, precision=precision) for a in arrays]
    sources = sorted({a for a, _ in pairs})
    nn = {}
    for s in sources:
        if knn is not None:
            nn[s] = np.asarray(knn[s])[:, :k]
        else:
            nn[s] = exact_knn_l2(arrays[s], k, ws=workspaces[s])[1]
    counter = imbalance_counter(workspaces, nn, pairs)
    targets = sorted({b for _, b in pairs})
    used = [workspaces[t] for t in targets]
    remap = RankCounter(used, {targets.index(t): thr for t, thr in counter.thresholds.items()},
                        {targets.index(t): nb for t, nb in counter.neighbours.items()})
    _stream(used, remap, block_rows=block_rows)
    counter.counts = {t: remap.counts[targets.index(t)] for t in targets}
    return imbalance_from_counter(counter, pairs, m)


def imbalance_counter(workspaces: Sequence[Workspace], nn: dict[int, np.ndarray], pairs) -> RankCounter:
    """A :class:`RankCounter` whose thresholds are ``d_n(i, nn_m(i))^2`` for every ordered pair ``(m, n)``."""
    cols: dict[int, list[np.ndarray]] = {}
    nbrs: dict[int, list[np.ndarray]] = {}
    for a, b in pairs:
        cols.setdefault(b, []).append(_thresholds(workspaces[b], nn[a]))
        nbrs.setdefault(b, []).append(np.asarray(nn[a], dtype=np.int64))
    counter = RankCounter(workspaces, {b: np.concatenate(c, axis=1) for b, c in cols.items()},
                          {b: np.concatenate(c, axis=1) for b, c in nbrs.items()})
    counter.layout = {}
    for b in cols:
        off = 0
        for a, bb in pairs:
            if bb == b:
                kk = nn[a].shape[1]
                counter.layout[(a, b)] = (off, off + kk)
                off += kk
    return counter


def imbalance_from_counter(counter: RankCounter, pairs, m: int) -> np.ndarray:
    out = np.full((m, m), np.nan)
    for a, b in pairs:
        s, e = counter.layout[(a, b)]
        ranks = counter.ranks(b)[:, s:e]
        n = ranks.shape[0]
        out[a, b] = 2.0 * ranks.mean() / n
    return out


@dataclass(frozen=True)
class ImbalanceEstimate:
    """Mean information imbalance over disjoint subsets, with its standard error."""

    value: float
    sem: float
    n_subsets: int
    subset_size: int


def information_imbalance_subsets(
    X, Y, *, k: int = 1, subset_size: int = 2000, seed: int = 0,
    normalize: str | None = "l2",
) -> ImbalanceEstimate:
    """DADApy-style Δ(X → Y): exact Δ on disjoint random subsets, mean ± standard error.

    The samples are shuffled with ``numpy.random.default_rng(seed)`` and cut into
    ``N // subset_size`` disjoint subsets of ``subset_size`` rows (remainder unused); Δ is computed
    exactly on each (ranks within the subset), and the result is the mean with
    ``SEM = std(ddof=1) / sqrt(n_subsets)`` (0 for one subset). With ``subset_size >= N`` it equals
    :func:`information_imbalance` (one subset). This is the protocol of DADApy's
    ``return_information_imbalace(coords, k, subset_size)``; its values differ from ours only by the
    random subsets drawn.
    normalize : {"l2", "max", "clamp95", "none"} or None
        Row normalisation applied to ``X`` and ``Y`` first. Default ``"l2"``, the one rule of every metric
        function, :func:`~matteralign.metrics.pairwise`, ``matteralign compare`` and the study (see
        :func:`~matteralign.metrics.normalize`); ``None`` computes on the arrays as given.

    Returns
    -------
    ImbalanceEstimate
        ``value`` (lower is better, as :func:`information_imbalance`), ``sem``, ``n_subsets``,
        ``subset_size``.
    """
    X, Y = _rows(X, normalize, "X"), _rows(Y, normalize, "Y")
    Xa, Ya = check_pair(X, Y, min_samples=4)
    n = Xa.shape[0]
    subset_size = check_positive_int(subset_size, "subset_size", minimum=2)
    subset_size = min(subset_size, n)
    k = check_k(k, subset_size, name="k")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n) if subset_size < n else np.arange(n)
    n_sub = n // subset_size
    vals = []
    for s in range(n_sub):
        idx = perm[s * subset_size : (s + 1) * subset_size]
        vals.append(information_imbalance(Xa[idx], Ya[idx], k=k, normalize=None))
    vals = np.asarray(vals)
    sem = float(vals.std(ddof=1) / np.sqrt(n_sub)) if n_sub > 1 else 0.0
    return ImbalanceEstimate(float(vals.mean()), sem, n_sub, subset_size)


def _from_caches_all(caches, *, k: int = 1, precision: str = "float32") -> np.ndarray:
    """All ordered pairs from :class:`~matteralign.metrics.ModelCache` objects, one blocked pass."""
    return information_imbalance_matrix([c.features for c in caches], k=k, precision=precision, normalize=None)


register(
    MetricSpec(
        name="information_imbalance",
        function=as_given(information_imbalance),
        symmetric=False,
        bounds=(0.0, 2.0),
        higher_is_better=False,
        invariances=frozenset({"orthogonal", "isotropic_scale", "translation", "feature_permutation",
                               "sample_permutation"}),
        reference="Glielmo et al. 2022, doi:10.1093/pnasnexus/pgac039 (DADApy return_information_imbalace)",
        params={"k": 1, "precision": "float32"},
        from_caches_all=_from_caches_all,
        null_from_cache=_nk.imbalance_null,
        null_max_n=_nk.NULL_MAX_N,
        needs=frozenset({"features"}),
        description="information imbalance Delta(a -> b), exact ranks; ~0 = a predicts b, ~1 = unrelated",
    )
)
