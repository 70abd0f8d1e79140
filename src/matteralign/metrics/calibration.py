"""Calibrated alignment: every pair value with its permutation null, calibrated scores and an interval over samples.

For one metric and many model pairs (per-model caches from :func:`matteralign.metrics.prepare`),
:func:`calibrate_pairs` returns, per ordered pair ``(a, b)``:

* the permutation null of ``s(X_a, X_b[pi])`` for B seeded permutations (the same B permutations for every
  pair of the call, from ``numpy.random.default_rng(seed)``), its mean, sd and the threshold ``tau``;
* the add-one p-value ``(1 + #{null at least as aligned as s}) / (B + 1)`` (Phipson & Smyth 2010);
* the gated calibrated score of the Aristotelian view (Gröger et al. 2026, arXiv 2602.14486, package
  ``calibrated-similarity``): ``tau`` is the ``ceil((1 - alpha)(B + 1))``-th smallest of ``{s} U null`` and

  .. math:: \\tilde s = \\operatorname{clip}\\big((s - \\tau)/(s_{\\max} - \\tau), 0, 1\\big),

  mirrored for lower-is-better metrics (``(tau - s)/(tau - s_min)`` with ``tau`` the ``floor(alpha (B+1))``-th
  smallest); ``s_max`` is the metric's upper bound, or 1 (CKNNA, IdCor: their value for identical inputs);
* the null-centred, ARI-style score ``(s - mu)/(s_max - mu)`` above the null mean ``mu`` and
  ``(s - mu)/(mu - s_min)`` below it (``s_min = -s_max`` for metrics unbounded below), in [-1, 1];
* an interval over **samples** by half-sampling (below).

Null routes (cheapest first; every route computes the metric of ``(X, Y[pi])`` exactly, the tests check each
against recomputing the metric to 1e-9):

``relabel``
    kNN metrics (``spec.null_from_cache``): the kNN graph of ``Y[pi]`` is ``inv_pi[idx_Y[pi]]``, O(N k) per
    permutation, no new search. CKNNA and mutual kNN use one overlap pass per pair and permutation that gives
    both orders of the pair; permuted graphs are built once per model and permutation.
``kernel``
    metrics of the form ``f(<M_x, M_y>, <M_x, M_x>, <M_y, M_y>)`` for a per-model N x N matrix ``M`` that
    commutes with row permutations (``spec.null_kernel``/``spec.null_ratio``): linear CKA (centred Gram),
    unbiased CKA (U-centred Gram, zero diagonal; Song et al. 2012 = Székely & Rizzo 2014's U-centred inner
    product), dCor and dCor^2 (double-centred distances) and bias-corrected dCor^2 (U-centred distances).
    The permuted matrix is ``M_y[pi][:, pi]``, so a null value needs no distance or Gram recomputation: per
    permutation the permuted rows of every model are gathered once (``M N^2 / 2`` elements, symmetry halving
    them) and every pair's ``<M_x, M_y[pi][:, pi]>`` comes out of one matrix product
    (:func:`~._nullkernels.mantel_matrix`). Used up to ``spec.null_max_n`` samples.
``factor``
    the kernel route's inner products from a factor ``M = F F^T`` (``spec.null_factor``; linear CKA: the
    centred features): ``<M_x, M_y[pi][:, pi]> = ||F_x^T F_y[pi]||_F^2``, ``N D_x D_y`` multiply-adds per pair
    and permutation, no N x N matrix. Taken instead of ``kernel`` when it costs less (few pairs of moderate
    width at large N); both are exact.
``cache``
    other metrics with ``spec.null_from_cache`` (information imbalance: per-model rank matrices, ranks of
    ``Y[pi]`` are ``R_Y[pi][:, pi]``; IdCor: joint squared distances ``D_x + D_y[pi][:, pi]``).
``recompute``
    otherwise, the metric is recomputed on ``(X, Y[pi])``.

Above ``spec.null_max_n`` samples (or ``null_max_n`` of the call) the null (and the value it is compared
with) is computed on a seeded subset of that many samples; ``null_n`` records the size and ``note`` says so.

Interval over samples (``ci_method``): half-sampling. B' subsets ``S_b`` of ``m = round(f N)`` distinct samples
(no duplicates: duplicated rows create zero distances and kNN ties), the metric recomputed on each with every
neighbour count scaled to ``k_m = max(1, round(k m / N))`` (at fixed k the kNN metrics change with the
sample size, so a fixed-k subsample interval can miss the full-data value), and the basic interval

.. math:: [\\, s_N - (q_{1-c/2}(D) - \\tilde D),\\; s_N - (q_{c/2}(D) - \\tilde D) \\],\\qquad
    D_b = (s_{S_b} - s_N)\\sqrt{m/(N - m)}

with ``\\tilde D`` the median of ``D``. The finite-population factor makes the spread of ``D`` that of ``s_N``
around its population value (at ``f = 1/2`` it is 1: classical half-sampling). Centring on the median keeps the
estimator's dependence on the sample size (V-statistic dCor, information imbalance at fixed k, kNN metrics)
from shifting the interval off the value: the interval is the sampling spread of the value, not a bias
correction. Multiple testing: :func:`bh_adjust` (Benjamini-Hochberg).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ._cache import ModelCache, prepare
from ._compiled import n_threads, warm
from ._nullkernels import NULL_MAX_N, mantel_matrix, seed_subsample
from ._registry import MetricSpec, get_metric
from ._validate import check_positive_int

__all__ = ["calibrate_pairs", "calibrated_scores", "bh_adjust", "adjust_table", "model_interval", "permutations", "null_values", "CALIBRATION_COLUMNS"]

CALIBRATION_COLUMNS = [
    "model_a", "model_b", "metric", "params", "p_value", "ci_low", "ci_high", "null_mean", "null_sd", "null_tau",
    "calibrated", "calibrated_centered", "n_permutations", "null_seed", "null_n", "null_route", "ci_method",
    "note",
]

#: Samples above which subsample intervals are not kept in the caches between metrics (memory).
_MEMO_SUBSAMPLES_MAX_N = 5000


def permutations(n: int, n_permutations: int, seed: int) -> np.ndarray:
    """The ``(B, n)`` row permutations used for every null of a call (``default_rng(seed).permutation(n)``, B times)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(n_permutations)]) if n_permutations else np.empty((0, n), int)


def _smax_smin(spec: MetricSpec) -> tuple[float, float]:
    lo, hi = spec.bounds
    smax = hi if math.isfinite(hi) else (spec.self_value or 1.0)
    smin = lo if math.isfinite(lo) else -smax
    return float(smax), float(smin)


def _ratio(num: float, den: float) -> float:
    """``num / den``; 0 when the null sits on the bound (``den == 0``, so ``num == 0`` too)."""
    return num / den if den != 0 else 0.0


def calibrated_scores(value: float, null: np.ndarray, *, spec: MetricSpec, alpha: float) -> dict[str, float]:
    """p-value, threshold ``tau``, gated and null-centred scores of one value against its null.

    Parameters
    ----------
    value : float
        The observed score ``s``.
    null : ndarray, shape (B,)
        Scores of ``(X, Y[pi_b])``.
    spec : MetricSpec
        The metric (direction, bounds).
    alpha : float
        Level of the threshold.

    Returns
    -------
    dict
        ``p_value`` in (0, 1], ``null_mean``, ``null_sd`` (ddof 1), ``null_tau``, ``calibrated`` in [0, 1],
        ``calibrated_centered`` in [-1, 1] (module docstring). NaN values give NaN scores.
    """
    null = np.asarray(null, dtype=float)
    B = null.size
    out = dict(p_value=math.nan, null_mean=math.nan, null_sd=math.nan, null_tau=math.nan, calibrated=math.nan,
               calibrated_centered=math.nan)
    if B == 0 or not math.isfinite(value) or not np.isfinite(null).all():
        return out
    lower = spec.higher_is_better is False
    smax, smin = _smax_smin(spec)
    pool = np.sort(np.append(null, value))
    mu = float(null.mean())
    out["null_mean"], out["null_sd"] = mu, float(null.std(ddof=1)) if B > 1 else 0.0
    if lower:
        exceed = int(np.count_nonzero(null <= value))
        tau = float(pool[max(0, math.floor(alpha * (B + 1)) - 1)])
        cal = (tau - value) / max(tau - smin, 1e-12)
        cen = _ratio(mu - value, mu - smin) if value <= mu else _ratio(mu - value, smax - mu)
    else:
        exceed = int(np.count_nonzero(null >= value))
        tau = float(pool[min(B, max(0, math.ceil((1 - alpha) * (B + 1)) - 1))])
        cal = (value - tau) / max(smax - tau, 1e-12)
        cen = _ratio(value - mu, smax - mu) if value >= mu else _ratio(value - mu, mu - smin)
    out["p_value"] = (1.0 + exceed) / (B + 1.0)
    out["null_tau"] = tau
    out["calibrated"] = float(min(1.0, max(0.0, cal)))
    out["calibrated_centered"] = float(min(1.0, max(-1.0, cen)))
    return out


def bh_adjust(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (step-up, monotone, capped at 1); NaN entries stay NaN.

    .. math:: q_{(i)} = \\min_{j \\ge i} \\min\\big(1, p_{(j)} m / j\\big)

    Parameters
    ----------
    p_values : array_like, shape (m,)

    Returns
    -------
    ndarray, shape (m,)
        Adjusted p-values in the input order; a pair is significant at FDR ``q`` when its value is ``<= q``.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return out
    pv = p[ok]
    order = np.argsort(pv, kind="stable")
    ranked = pv[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    adj = np.empty(m)
    adj[order] = np.minimum(q, 1.0)
    out[ok] = adj
    return out


# ---------------------------------------------------------------------------------------------- values
def _values(spec: MetricSpec, caches: Mapping[str, ModelCache], pairs: Sequence[tuple[str, str]],
            params: dict, *, cheap: bool = False) -> dict[tuple[str, str], float]:
    names = sorted({m for p in pairs for m in p})
    n = caches[names[0]].n
    if cheap and n <= min(NULL_MAX_N, spec.null_max_n or NULL_MAX_N) and _route(spec) in ("kernel", "cache"):
        # the null routes at the identity permutation are the metric itself (tested to 1e-9)
        ident = np.arange(n)[None, :]
        return {p: float(v[0]) for p, v in null_values(spec, caches, pairs, params, ident).items()}
    if spec.from_caches_all is not None and len(pairs) > 1:
        mat = np.asarray(spec.from_caches_all([caches[m] for m in names], **params), dtype=float)
        pos = {m: i for i, m in enumerate(names)}
        return {(a, b): float(mat[pos[a], pos[b]]) for a, b in pairs}
    out = {}
    for a, b in pairs:
        if spec.from_cache is not None:
            out[(a, b)] = float(spec.from_cache(caches[a], caches[b], **params))
        else:
            out[(a, b)] = float(spec.function(caches[a].features, caches[b].features, **params))
    return out


def _route(spec: MetricSpec) -> str:
    if spec.name in _FAST_KNN:
        return "relabel"
    if spec.null_kernel is not None:
        return "kernel"
    if spec.null_from_cache is not None:
        return "relabel" if "knn" in spec.needs else "cache"
    return "recompute"


_FAST_KNN = ("cknna", "mutual_knn")


def _knn_nulls(spec, caches, pairs, params, perms) -> dict[tuple[str, str], np.ndarray]:
    """CKNNA / mutual kNN nulls: one overlap pass per (unordered pair, permutation) gives both orders."""
    from . import knn as _k
    from ._compiled import pool

    k = int(params["k"])
    names = sorted({m for p in pairs for m in p})
    graphs = {m: _contiguous(_k._graph_from_cache(caches[m], k)) for m in names}
    selfs = {m: _k._self_hsic_cached(caches[m], k) for m in names} if spec.name == "cknna" else {}
    unordered = sorted({(a, b) if a <= b else (b, a) for a, b in pairs})
    B = perms.shape[0]
    nulls = {p: np.empty(B) for p in unordered}
    rev = {p: np.empty(B) for p in unordered}
    n = next(iter(caches.values())).n

    by_b: dict[str, list[str]] = {}
    for a, b in unordered:
        by_b.setdefault(b, []).append(a)

    def one(t):
        perm = perms[t]
        for b, partners in by_b.items():  # one relabelled graph alive per thread, shared by b's partners
            gpb = _k._permuted_graph(graphs[b], perm)
            for a in partners:
                hxy, hyx, hits = _k._pair_stats(graphs[a], gpb)
                if spec.name == "cknna":
                    nulls[(a, b)][t] = _k._cknna_ratio(hxy, selfs[a], selfs[b])
                    rev[(a, b)][t] = _k._cknna_ratio(hyx, selfs[b], selfs[a])
                else:
                    nulls[(a, b)][t] = rev[(a, b)][t] = hits / (n * k)

    list(pool().map(one, range(B)))
    out = {}
    for a, b in pairs:
        out[(a, b)] = nulls[(a, b)] if (a, b) in nulls else rev[(b, a)]
    return out


def _contiguous(g):
    """The graph with C-contiguous arrays (a k < k_max graph is a strided view of the cached one) and its
    reciprocity computed, before threads share it."""
    from . import knn as _k

    if g.idx.flags.c_contiguous and g.vals.flags.c_contiguous:
        g.recip  # noqa: B018
        return g
    return _k._Graph(np.ascontiguousarray(g.idx), np.ascontiguousarray(g.vals), g.recip)


def _inverse(perms: np.ndarray) -> np.ndarray:
    inv = np.empty_like(perms)
    np.put_along_axis(inv, perms, np.broadcast_to(np.arange(perms.shape[1]), perms.shape), axis=1)
    return inv


def _kernel_nulls(spec, caches, pairs, params, perms) -> dict[tuple[str, str], np.ndarray]:
    """Kernel-route nulls of every pair from one :func:`~._nullkernels.mantel_matrix` pass per permutation."""
    names = sorted({m for p in pairs for m in p})
    stack = _stack_kernels(spec, caches, names, params)
    n = stack.shape[1]
    selfs = [float(np.einsum("ij,ij->", M, M)) for M in stack]  # no BLAS threads for a reduction
    cross = mantel_matrix(stack, perms)  # [t, a, b] = <M_a, M_b[p_t][:, p_t]>
    pos = {m: i for i, m in enumerate(names)}
    out = {}
    for a, b in pairs:
        # a <= b: <M_a, M_b[p]>; a > b uses the inverse: <M_a, M_b[p^-1]> = <M_b, M_a[p]> = cross[t, b, a]
        ia, ib = pos[a], pos[b]
        c = cross[:, ia, ib] if a <= b else cross[:, ib, ia]
        out[(a, b)] = np.array([spec.null_ratio(float(v), selfs[ia], selfs[ib], n=n, **params) for v in c])
    return out


#: Cost of one gathered (random-access) float64 element against one multiply-add of a BLAS product (measured
#: on 2 cores: 5-8 ns against 0.04-0.09 ns), and the number of permutations a kernel route's matrices are
#: amortised over, in the choice of :func:`_factor_pays`.
_GATHER_COST, _AMORTISE = 100, 100


def _factor_pays(spec: MetricSpec, caches: Mapping[str, ModelCache], pairs: Sequence[tuple[str, str]]) -> bool:
    """Whether the factor route (``spec.null_factor``) costs less than the kernel route for these pairs.

    Per permutation, the factor route gathers every second model's ``N x D_b`` rows and forms each unordered
    pair's ``D_a x D_b`` product (``N D_a D_b`` multiply-adds); the kernel route gathers ``M N^2 / 2`` elements
    and forms an ``M^2 N^2`` product (:func:`~._nullkernels.mantel_matrix`), after building the ``M`` matrices
    (``N^2 D`` each). Few pairs of moderate width (one pair at N = 5,000: 1.4 s against 10.1 s for 50
    permutations) take the factor route; many models (8 at N = 2,048: 1.7 s against 4.0 s) the kernel route.
    Both are exact; the choice depends on the shapes only.
    """
    if spec.null_factor is None or spec.null_kernel is None:
        return False
    names = sorted({m for p in pairs for m in p})
    n, m = caches[names[0]].n, len(names)
    d = {x: int(caches[x].features.shape[1]) for x in names}
    unordered = {(a, b) if a <= b else (b, a) for a, b in pairs}
    factor = n * sum(d[a] * d[b] for a, b in unordered) + _GATHER_COST * n * sum(d[b] for b in {b for _, b in unordered})
    kernel = m * m * n * n + _GATHER_COST * m * n * n / 2 + n * n * sum(d.values()) / _AMORTISE
    return factor < kernel


def _factor_nulls(spec, caches, pairs, params, perms) -> dict[tuple[str, str], np.ndarray]:
    """Kernel-route nulls from the factors: ``<M_a, M_b[p][:, p]> = ||F_a^T F_b[p]||_F^2`` (exact, no N x N)."""
    from ._compiled import pool

    names = sorted({m for p in pairs for m in p})
    n = caches[names[0]].n
    F = {m: np.ascontiguousarray(spec.null_factor(caches[m], **params), dtype=np.float64) for m in names}
    selfs = {m: float(np.einsum("ij,ij->", F[m].T @ F[m], F[m].T @ F[m])) for m in names}
    unordered = sorted({(a, b) if a <= b else (b, a) for a, b in pairs})
    B = perms.shape[0]
    cross = {p: np.empty(B) for p in unordered}  # cross[(a, b)][t] = <M_a, M_b[p_t][:, p_t]>, a <= b
    seconds = sorted({b for _, b in unordered})

    def one(t):
        G = {b: np.take(F[b], perms[t], axis=0) for b in seconds}
        for a, b in unordered:
            C = F[a].T @ G[b]
            cross[(a, b)][t] = float(np.einsum("ij,ij->", C, C))

    if n_threads() == 1 or B == 1:
        for t in range(B):
            one(t)
    else:  # BLAS one thread per call, the permutations on the kernels' pool (as mantel_matrix)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            list(pool().map(one, range(B)))
    out = {}
    for a, b in pairs:
        # a > b: <M_a, M_b[p^-1]> = <M_b, M_a[p]> (as in _kernel_nulls)
        c = cross[(a, b)] if a <= b else cross[(b, a)]
        out[(a, b)] = np.array([spec.null_ratio(float(v), selfs[a], selfs[b], n=n, **params) for v in c])
    return out


def _stack_kernels(spec, caches, names, params) -> np.ndarray:
    """The models' ``null_kernel`` matrices as one C-contiguous ``(M, N, N)`` stack for mantel_matrix.

    A matrix the caches memoise becomes a view of the stack, so it is held once, not twice; a later call on the
    same caches and models (the values at the identity, then the null) finds the views and reuses their stack.
    """
    mats = [spec.null_kernel(caches[m], **params) for m in names[:1]]
    base = mats[0].base
    if (base is not None and base.ndim == 3 and base.shape[0] == len(names) and base.flags.c_contiguous
            and all(spec.null_kernel(caches[m], **params).__array_interface__["data"][0]
                    == base[i].__array_interface__["data"][0] for i, m in enumerate(names))):
        return base
    n = caches[names[0]].n
    stack = np.empty((len(names), n, n))
    for i, m in enumerate(names):
        M = spec.null_kernel(caches[m], **params)
        stack[i] = M
        extras = caches[m].extras
        for key in [key for key, v in extras.items() if v is M]:
            extras[key] = stack[i]
        del M
    return stack


def null_values(spec: MetricSpec, caches: Mapping[str, ModelCache], pairs: Sequence[tuple[str, str]],
                params: dict, perms: np.ndarray, *, route: str | None = None) -> dict[tuple[str, str], np.ndarray]:
    """The null ``s(X_a, X_b[perm])`` of every pair for every row of ``perms``, shape (B,) per pair.

    Pairs with ``a <= b`` (name order) use ``perms``, the others their inverses: one pass over an unordered pair
    then gives both orders (``s(X_b, X_a[pi^-1]) = s(X_b[pi], X_a)`` by joint sample permutation invariance).

    ``route`` forces a route (``"recompute"`` is the brute-force reference the tests compare with); by default
    the metric's route, with ``"factor"`` for ``"kernel"`` when it costs less (:func:`_factor_pays`).
    """
    if route is None:
        route = _route(spec)
        if route == "kernel" and _factor_pays(spec, caches, pairs):
            route = "factor"
    perms = np.asarray(perms)
    if route == "factor":
        return _factor_nulls(spec, caches, pairs, params, perms)
    if route == "relabel" and spec.name in _FAST_KNN:
        return _knn_nulls(spec, caches, pairs, params, perms)
    if route == "kernel":
        return _kernel_nulls(spec, caches, pairs, params, perms)
    out = {}
    inv = _inverse(perms)
    for a, b in pairs:
        if spec.symmetric and (b, a) in out:  # s(b, a[inv pi]) = s(a, b[pi]): the mirrored null
            out[(a, b)] = out[(b, a)]
            continue
        ca, cb = caches[a], caches[b]
        use = perms if a <= b else inv
        if route in ("relabel", "cache"):
            out[(a, b)] = np.array([spec.null_from_cache(ca, cb, perm, **params) for perm in use], dtype=float)
        else:
            Xa, Xb = ca.features, cb.features
            out[(a, b)] = np.array([spec.function(Xa, Xb[perm], **params) for perm in use], dtype=float)
    return out


# ---------------------------------------------------------------------------------------------- intervals
def _scaled_params(params: dict, m: int, n: int) -> dict:
    out = dict(params)
    if "k" in out:
        out["k"] = max(1, min(m - 1, int(round(int(out["k"]) * m / n))))
    return out


def _subsample_caches(caches: Mapping[str, ModelCache], names: Sequence[str], idx: np.ndarray,
                      key: tuple) -> dict[str, ModelCache]:
    out = {}
    for m in names:
        c = caches[m]

        def make(c=c):  # per-model matrices the parent holds are sliced, not recomputed
            return seed_subsample(c, prepare(c.features[idx], k_max=None, normalize=None, name=c.name), idx)

        out[m] = c.memo(("calibration", "subsample") + key, make) if c.n <= _MEMO_SUBSAMPLES_MAX_N else make()
    return out


def _intervals(spec, caches, pairs, params, values, *, n_subsamples, fraction, confidence, seed):
    n = next(iter(caches.values())).n
    m = int(round(fraction * n))
    if n_subsamples == 0:
        return {p: (math.nan, math.nan) for p in pairs}, "off (n_subsamples = 0)"
    if m < 4 or m >= n:
        return {p: (math.nan, math.nan) for p in pairs}, f"none: half-samples of {m} of {n} samples"
    sub_params = _scaled_params(params, m, n)
    rng = np.random.default_rng([seed, 1])
    names = sorted({x for p in pairs for x in p})
    draws = {p: np.empty(n_subsamples) for p in pairs}
    for b in range(n_subsamples):
        idx = np.sort(rng.choice(n, size=m, replace=False))
        subs = _subsample_caches(caches, names, idx, (seed, n_subsamples, m, b))
        vals = _values(spec, subs, pairs, sub_params, cheap=True)
        for p in pairs:
            draws[p][b] = vals[p]
    scale = math.sqrt(m / (n - m))
    lo_q, hi_q = (1 - confidence) / 2, (1 + confidence) / 2
    out = {}
    for p in pairs:
        d = (draws[p] - values[p]) * scale
        if not np.isfinite(d).all():
            out[p] = (math.nan, math.nan)
            continue
        q_lo, q_hi = np.quantile(d, [lo_q, hi_q]) - np.median(d)
        out[p] = (values[p] - float(q_hi), values[p] - float(q_lo))
    k_note = f", k scaled to {sub_params['k']}" if "k" in params else ""
    return out, f"half-sampling, median-centred, {n_subsamples} subsets of {m}{k_note}, level {confidence}"


# ---------------------------------------------------------------------------------------------- public
def _default_pairs(spec: MetricSpec, names: Sequence[str]) -> list[tuple[str, str]]:
    return [(a, b) for a in names for b in names]


def calibrate_pairs(
    caches: Mapping[str, ModelCache],
    metric: str,
    params: Mapping[str, Any] | None = None,
    *,
    pairs: Iterable[tuple[str, str]] | None = None,
    n_permutations: int = 100,
    alpha: float = 0.05,
    seed: int = 0,
    n_subsamples: int = 20,
    fraction: float = 0.5,
    confidence: float = 0.95,
    null_max_n: int | None = None,
):
    """Permutation null, p-value, calibrated scores and interval over samples for many pairs of one metric.

    Parameters
    ----------
    caches : mapping of str to ModelCache
        Model name -> :func:`matteralign.metrics.prepare` cache; all describe the same samples in the same order.
    metric : str
        A registered pair metric.
    params : mapping, optional
        Metric parameters; unspecified ones take the registry defaults.
    pairs : iterable of (str, str), optional
        Ordered pairs ``(model_a, model_b)``; default every ordered pair including ``a == b``.
    n_permutations : int
        B, permutations per null (the same B permutations for every pair).
    alpha : float
        Level of the threshold ``tau``.
    seed : int
        Seed of the permutations (``null_seed``); the subsets of the interval use ``default_rng([seed, 1])``.
    n_subsamples : int
        B', half-samples for the interval (0 turns the interval off; ``ci_method`` says so).
    fraction : float
        ``m / N`` of the half-samples, in (0, 1).
    confidence : float
        Level of the interval.
    null_max_n : int, optional
        Largest N for the null (default ``spec.null_max_n``: 2,048 for the metrics whose routes keep N x N
        matrices, no limit otherwise); above it the null and the value it is compared with use a seeded subset
        of that size (``null_n``, ``note``). Given explicitly, it overrides the metric's limit.

    Returns
    -------
    pandas.DataFrame
        :data:`CALIBRATION_COLUMNS`, one row per pair: ``p_value`` (small = more aligned than chance),
        ``ci_low``/``ci_high`` (interval of the value over samples), ``null_mean``, ``null_sd``, ``null_tau``,
        ``calibrated`` in [0, 1] (0 = not above the null at level ``alpha``, 1 = full agreement),
        ``calibrated_centered`` in [-1, 1], ``n_permutations``, ``null_seed``, ``null_n``, ``null_route``,
        ``ci_method``, ``note``. Merge with :func:`~matteralign.metrics.pairwise` on
        ``(model_a, model_b, metric, params)``.

    Notes
    -----
    Cost: module docstring (routes). The interval costs B' recomputations of all pairs at ``m`` samples
    (B' kNN searches per model for kNN metrics).
    """
    import pandas as pd

    spec = get_metric(metric)
    if spec.arity != 2:
        raise InputError(f"metric {metric!r} measures a single representation; calibrate_pairs needs a pair metric.")
    if not isinstance(caches, Mapping) or not caches:
        raise InputError("caches must be a non-empty mapping of model name -> ModelCache.")
    given = dict(params or {})
    unknown = set(given) - set(spec.params)
    if unknown:
        raise InputError(f"metric {metric!r} has no parameter(s) {sorted(unknown)}; it accepts {sorted(spec.params)}.")
    full = dict(spec.params)
    full.update(given)
    B = check_positive_int(n_permutations, "n_permutations", minimum=1)
    Bs = check_positive_int(n_subsamples, "n_subsamples", minimum=0)
    for v, label in ((alpha, "alpha"), (confidence, "confidence"), (fraction, "fraction")):
        if not (isinstance(v, int | float) and 0 < v < 1):
            raise InputError(f"{label} must lie strictly between 0 and 1; got {v!r}.")
    names = [str(m) for m in caches]
    ns = {caches[m].n for m in names}
    if len(ns) != 1:
        raise InputError(f"all caches must describe the same samples; got row counts {sorted(ns)}.")
    n = ns.pop()
    pairs = _default_pairs(spec, names) if pairs is None else [(str(a), str(b)) for a, b in pairs]
    missing = sorted({m for p in pairs for m in p} - set(names))
    if missing:
        raise InputError(f"pairs name models without a cache: {missing}; caches hold {sorted(names)}.")
    pj = json.dumps(full, sort_keys=True)

    warm()  # nulls are much work: compiled kernels from the first pair on
    values = _values(spec, caches, pairs, full, cheap=True)
    route = _route(spec)
    limit = min(n, null_max_n if null_max_n is not None else (spec.null_max_n or n))
    note = ""
    null_caches, null_values_ref, null_n = caches, values, n
    if limit < n:
        rng = np.random.default_rng([seed, 2])
        idx = np.sort(rng.choice(n, size=limit, replace=False))
        models = sorted({m for p in pairs for m in p})
        null_caches = _subsample_caches(caches, models, idx, ("null", seed, limit))
        null_values_ref = _values(spec, null_caches, pairs, full, cheap=True)
        null_n = limit
        note = f"null on a seeded subset of {limit} of {n} samples; p, tau and calibrated refer to that size"
    if route == "kernel" and _factor_pays(spec, null_caches, pairs):
        route = "factor"
    perms = permutations(null_n, B, seed)
    nulls = null_values(spec, null_caches, pairs, full, perms, route=route)
    cis, ci_method = _intervals(spec, caches, pairs, full, values, n_subsamples=Bs, fraction=fraction,
                                confidence=confidence, seed=seed)
    rows = []
    for p in pairs:
        sc = calibrated_scores(null_values_ref[p], nulls[p], spec=spec, alpha=float(alpha))
        row_note = note
        if not math.isfinite(values[p]):
            row_note = "; ".join(x for x in (note, "value undefined (NaN): no null") if x)
        rows.append(dict(model_a=p[0], model_b=p[1], metric=spec.name, params=pj, ci_low=cis[p][0],
                         ci_high=cis[p][1], n_permutations=B, null_seed=int(seed), null_n=int(null_n),
                         null_route=route, ci_method=ci_method, note=row_note, **sc))
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS)


def adjust_table(pairs):
    """``pairs`` with ``p_adjusted``: Benjamini-Hochberg across the pairs of each (dataset, metric, params).

    Self pairs (``model_a == model_b``) are left out (NaN); a symmetric metric counts each unordered pair once
    (both orders get the same adjusted value); an asymmetric one counts both orders.

    Parameters
    ----------
    pairs : pandas.DataFrame
        A pairs table with ``model_a, model_b, metric, params, p_value`` (and optionally ``dataset``).

    Returns
    -------
    pandas.DataFrame
        A copy with the column ``p_adjusted``.
    """
    out = pairs.copy()
    adj = np.full(len(out), np.nan)
    keys = [c for c in ("dataset", "metric", "params") if c in out]
    p = out["p_value"].to_numpy(dtype=float)
    a, b = out["model_a"].astype(str).to_numpy(), out["model_b"].astype(str).to_numpy()
    for _, idx in out.groupby(keys, sort=False).indices.items():
        metric = out["metric"].iloc[idx[0]]
        try:
            symmetric = get_metric(str(metric)).symmetric
        except Exception:  # a metric no longer registered: count both orders
            symmetric = False
        groups: dict[tuple[str, str], list[int]] = {}
        for i in idx:
            if a[i] == b[i]:
                continue
            key = tuple(sorted((a[i], b[i]))) if symmetric else (a[i], b[i])
            groups.setdefault(key, []).append(i)
        firsts = [rows[0] for rows in groups.values()]
        q = bh_adjust(p[firsts])
        for rows, qv in zip(groups.values(), q, strict=True):
            adj[rows] = qv
    out["p_adjusted"] = adj
    return out


def model_interval(X, metric: str, params: Mapping[str, Any] | None = None, *, value: float | None = None,
                   n_subsamples: int = 20, fraction: float = 0.5, confidence: float = 0.95, seed: int = 0):
    """Half-sampling interval of a single-model measure (e.g. intrinsic dimension), as for the pairs.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        The representation (normalised as the measure sees it).
    metric : str
        A registered arity-1 measure.
    params : mapping, optional
        Its parameters (``k`` is scaled with the subsample, as for the pair metrics).
    value : float, optional
        The full-data value, if already computed.
    n_subsamples, fraction, confidence, seed
        As in :func:`calibrate_pairs`.

    Returns
    -------
    (float, float, str)
        ``ci_low``, ``ci_high`` (NaN when the measure is undefined on the subsets) and ``ci_method``.
    """
    spec = get_metric(metric)
    full = dict(spec.params)
    full.update(dict(params or {}))
    X = np.asarray(X)
    n = X.shape[0]
    m = int(round(fraction * n))
    if n_subsamples == 0 or m < 4 or m >= n:
        return math.nan, math.nan, "off" if n_subsamples == 0 else f"none: half-samples of {m} of {n} samples"
    v = float(spec.function(X, **full)) if value is None else float(value)
    sub = _scaled_params(full, m, n)
    rng = np.random.default_rng([seed, 1])
    d = np.empty(n_subsamples)
    for b in range(n_subsamples):
        idx = np.sort(rng.choice(n, size=m, replace=False))
        d[b] = float(spec.function(X[idx], **sub))
    d = (d - v) * math.sqrt(m / (n - m))
    if not np.isfinite(d).all() or not math.isfinite(v):
        return math.nan, math.nan, "none: the measure is undefined on some half-samples"
    q_lo, q_hi = np.quantile(d, [(1 - confidence) / 2, (1 + confidence) / 2]) - np.median(d)
    k_note = f", k scaled to {sub['k']}" if "k" in full else ""
    return (v - float(q_hi), v - float(q_lo),
            f"half-sampling, median-centred, {n_subsamples} subsets of {m}{k_note}, level {confidence}")
