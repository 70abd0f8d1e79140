"""Layer-wise alignment: layer x layer maps between two models, best-matching layers, max over layer pairs.

Representation-similarity work compares every layer of one network with every layer of another
(Kornblith et al., ICML 2019, arXiv:1905.00414, Fig. 2-5: CKA heat maps over depth); the platonic
representation study scores a pair of models by the maximum over all layer pairs (Huh et al., ICML 2024,
arXiv:2405.07987, ``compute_score`` in its reference code). This module computes both from **per-layer
caches**: each layer is prepared once (normalisation, one exact kNN search up to the largest ``k``), then
every cell of the map is a cheap combine, so an ``L_a x L_b`` map costs ``L_a + L_b`` searches, the floor.

* :func:`layer_map` -- the tidy table ``model_a, layer_a, depth_a, model_b, layer_b, depth_b, metric,
  params, n, value, p_value, calibrated`` for any registered pair metric (a model with itself too);
* :func:`best_matches` -- for each layer of one model, the best-matching layer of the other, its score, the
  runner-up and whether the best beats the runner-up beyond subsampling noise;
* :func:`max_over_layer_pairs` -- platonic-rep's "max over layer pairs" score (``aggregate="platonic_max"``);
* :func:`run` -- the report section (registered as the ``layers`` analysis): a heat map per model pair with
  depths on the axes and the best-match path drawn on it, and each model's alignment to a reference model
  across depth. It is shown when the study extracts more than one layer of some model
  (``[layers] model = "all"`` or a list).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError, MatterAlignError
from .base import AnalysisContext, AnalysisResult, register_analysis

__all__ = ["COLUMNS", "AGGREGATES", "layer_map", "best_matches", "max_over_layer_pairs", "run"]

#: Columns of :func:`layer_map`'s table.
COLUMNS = ["model_a", "layer_a", "depth_a", "model_b", "layer_b", "depth_b", "metric", "params", "n", "value",
           "p_value", "calibrated"]

#: Named ways of turning a layer map into one score per model pair.
AGGREGATES = ("platonic_max",)


def _caches(reps: Mapping[str, Any], *, k_max: int | None, normalize: str | None, model: str,
            skipped: dict | None = None) -> dict:
    """One :class:`~matteralign.metrics.ModelCache` per layer (a cache given is reused, its graph extended).

    With ``skipped`` (a dict), a layer that cannot be prepared (e.g. all-zero rows under L2 normalisation:
    mean-pooled equivariant features of a symmetric molecule) is left out and its reason recorded there.
    """
    from ..metrics import ModelCache, prepare

    if not isinstance(reps, Mapping) or not reps:
        raise InputError(f"layers of model {model!r} must be a non-empty mapping of layer name -> array")
    out = {}
    for layer, rep in reps.items():
        if isinstance(rep, ModelCache):
            if k_max and rep.k_max < min(k_max, rep.n - 1):
                rep.knn(min(k_max, rep.n - 1))
            out[str(layer)] = rep
            continue
        try:
            out[str(layer)] = prepare(rep, k_max=k_max, normalize=normalize, name=f"{model}/{layer}")
        except InputError as exc:
            if skipped is None:
                raise
            skipped[f"{model}/{layer}"] = str(exc)
    if not out:
        raise InputError(f"no layer of model {model!r} can be compared: {skipped}")
    return out


def _depths(depths, layers: list[str], model: str) -> list[int]:
    if depths is None:
        return list(range(len(layers)))
    if isinstance(depths, Mapping):
        missing = [lay for lay in layers if lay not in depths]
        if missing:
            raise InputError(f"depths of model {model!r} lack layer(s) {missing}")
        return [int(depths[lay]) for lay in layers]
    depths = list(depths)
    if len(depths) != len(layers):
        raise InputError(f"model {model!r}: {len(depths)} depths for {len(layers)} layers")
    return [int(d) for d in depths]


def _pair_value(spec, ca, cb, params) -> float:
    if spec.from_cache is not None:
        return float(spec.from_cache(ca, cb, **params))
    return float(spec.function(ca.features, cb.features, **params))


_STACK_COLS = 4096  # widest stacked side of the cross-block CKA product (as the metric's own stacked route)


def _linear_cka_cross(ca: list, cb: list, debiased: bool, eps: float) -> np.ndarray | None:
    """Linear CKA of every (layer of A, layer of B) cell from one stacked cross product (``None``: not fit).

    The metric's all-pairs route (:func:`matteralign.metrics.cka.cka_all_from_caches`) forms the Gram of the
    union of both models' layers, ``(sum d)^2`` columns; a cross map needs only the ``A x B`` block
    :math:`F_{ij} = \\lVert X_{ic}^\top Y_{jc} \rVert_F^2`, one ``dgemm`` over row blocks of the centred
    stacks (half the work), combined with each layer's cached kernel statistics by the metric's own HSIC
    and ratio.
    """
    from scipy.linalg.blas import dgemm, dsyrk

    from ..metrics.cka import _centred_block, _hsic, _KernelStats, _linear_cache_stats, _ratio

    n = ca[0].n
    wa, wb = sum(c.d for c in ca), sum(c.d for c in cb)
    if any(c.d >= n for c in [*ca, *cb]) or max(wa, wb) > _STACK_COLS:
        return None
    oa, ob = np.cumsum([0] + [c.d for c in ca]), np.cumsum([0] + [c.d for c in cb])
    # each layer's own kernel statistics come from the same centring pass (as in the metric's stacked route):
    # squared row norms from the centring kernel, <K, K> = ||X_c^T X_c||_F^2 from one dsyrk per layer and block
    todo = {id(c): c for c in [*ca, *cb] if ("cka", "linear_stats") not in c.extras}
    sq = {key: np.empty(n) for key in todo}
    gram = {key: np.zeros((c.d, c.d), order="F") for key, c in todo.items()}
    G = np.zeros((wa, wb), order="F")
    rows = min(n, max(64, (1 << 23) // max(wa, wb)))
    buf_a, buf_b = np.empty((rows, wa)), np.empty((rows, wb))
    for s in range(0, n, rows):
        e = min(n, s + rows)
        Za = _centred_block(ca, s, e, buf_a, [sq.get(id(c), np.empty(n)) for c in ca])
        Zb = _centred_block(cb, s, e, buf_b, [sq.get(id(c), np.empty(n)) for c in cb])
        G = dgemm(1.0, Za.T, Zb.T, beta=1.0, c=G, trans_b=1, overwrite_c=1)
        seen = set()  # a cache given twice (on both sides, or twice on one) is accumulated once
        for Z, cs, offs in ((Za, ca, oa), (Zb, cb, ob)):
            for t, c in enumerate(cs):
                if id(c) in gram and id(c) not in seen:
                    seen.add(id(c))
                    part = np.ascontiguousarray(Z[:, offs[t]:offs[t + 1]])
                    gram[id(c)] = dsyrk(1.0, part.T, beta=1.0, c=gram[id(c)], trans=0, lower=0, overwrite_c=1)
    for key, c in todo.items():
        g = gram[key]  # upper triangle with the diagonal: the strict part counts twice
        kk = 2.0 * float(np.sum(np.triu(g) ** 2)) - float(np.sum(np.diagonal(g) ** 2))
        c.extras.setdefault(("cka", "linear_stats"), _KernelStats(sq[key], np.zeros(n), kk))
    sa, sb = [_linear_cache_stats(c) for c in ca], [_linear_cache_stats(c) for c in cb]
    ha = [_hsic(st.kk, st, st, n, debiased) for st in sa]
    hb = [_hsic(st.kk, st, st, n, debiased) for st in sb]
    M = np.empty((len(ca), len(cb)))
    for i in range(len(ca)):
        for j in range(len(cb)):
            f = float(np.sum(G[oa[i]:oa[i + 1], ob[j]:ob[j + 1]] ** 2))
            M[i, j] = _ratio(_hsic(f, sa[i], sb[j], n, debiased), ha[i], hb[j], eps)
    return M


def _knn_cross(name: str, k: int, ca: list, cb: list) -> np.ndarray:
    """CKNNA or mutual kNN of every (layer of A, layer of B) cell: the metric's one overlap pass per pair
    (compiled, pairs side by side on the kernels' thread pool), over the ``L_a x L_b`` cross pairs only
    (its all-pairs route would also walk the ``L_a^2 + L_b^2`` pairs within each model)."""
    from ..metrics._compiled import pool
    from ..metrics.knn import _cknna_ratio, _graph_from_cache, _pair_stats, _self_hsic_cached

    ga, gb = [_graph_from_cache(c, k) for c in ca], [_graph_from_cache(c, k) for c in cb]
    for g in [*ga, *gb]:
        g.recip  # noqa: B018 - computed once, before the threads share the graphs
    cells = [(i, j) for i in range(len(ca)) for j in range(len(cb))]
    stats = list(pool().map(lambda c: _pair_stats(ga[c[0]], gb[c[1]]), cells))
    M = np.empty((len(ca), len(cb)))
    if name == "cknna":
        sa, sb = [_self_hsic_cached(c, k) for c in ca], [_self_hsic_cached(c, k) for c in cb]
        for (i, j), (hxy, _, _) in zip(cells, stats, strict=True):
            M[i, j] = _cknna_ratio(hxy, sa[i], sb[j])
    else:
        for (i, j), (_, _, hits) in zip(cells, stats, strict=True):
            M[i, j] = hits / (ga[i].n * ga[i].k)
    return M


def _block(spec, params: dict, ca: list, cb: list, same: bool) -> np.ndarray:
    """Values of every (layer of A, layer of B) cell; ``same``: B's caches are A's (a self map)."""
    la, lb = len(ca), len(cb)
    if not same and spec.name in ("cknna", "mutual_knn") and set(params) == {"k"}:
        return _knn_cross(spec.name, int(params["k"]), ca, cb)
    if not same and spec.name in ("cka", "unbiased_cka") and set(params) <= {"eps"}:
        debiased = spec.name == "unbiased_cka"
        M = _linear_cka_cross(ca, cb, debiased, float(params.get("eps", 1e-6 if debiased else 0.0)))
        if M is not None:
            return M
    if spec.from_caches_all is not None:  # stacked passes (CKA) or threaded overlaps (kNN metrics)
        if same:
            return np.asarray(spec.from_caches_all(ca, **params), dtype=float)
        return np.asarray(spec.from_caches_all([*ca, *cb], **params), dtype=float)[:la, la:]
    M = np.full((la, lb), np.nan)
    for i in range(la):
        for j in range(lb):
            if same and spec.symmetric and j < i:
                M[i, j] = M[j, i]
                continue
            M[i, j] = _pair_value(spec, ca[i], cb[j], params)
    return M


def _calibrate(spec, value: float, null: np.ndarray, alpha: float) -> tuple[float, float]:
    """Add-one permutation p-value and gated calibrated score (:func:`~matteralign.metrics.calibration.calibrated_scores`)."""
    from ..metrics.calibration import calibrated_scores

    out = calibrated_scores(value, null, spec=spec, alpha=alpha)
    return float(out["p_value"]), float(out["calibrated"])


def layer_map(
    reps_a: Mapping[str, Any],
    reps_b: Mapping[str, Any] | None = None,
    *,
    metrics: str | Sequence = "cknna",
    model_a: str = "a",
    model_b: str | None = None,
    depths_a=None,
    depths_b=None,
    k: int | None = None,
    normalize: str | None = "l2",
    n_permutations: int = 0,
    alpha: float = 0.05,
    seed: int = 0,
    skip_invalid: bool = False,
):
    """Alignment of every layer of model A with every layer of model B, as a tidy table.

    .. math:: M_{ij} = s\\big(X^{(a)}_i,\\; Y^{(b)}_j\\big),\\qquad i = 1..L_a,\\ j = 1..L_b

    Parameters
    ----------
    reps_a : mapping of str to array_like (n_samples, d_i) or ModelCache
        Layer name -> pooled representation of the samples by model A, in forward order.
    reps_b : mapping, optional
        The same for model B (same samples, same row order). ``None``: A with itself (one set of caches).
    metrics : str or sequence
        Registered pair metrics, names or ``(name, params)`` pairs
        (:func:`~matteralign.metrics.pairwise.resolve_metrics`).
    model_a, model_b : str
        Names written in the table (``model_b`` defaults to ``model_a`` for a self map).
    depths_a, depths_b : sequence of int or mapping, optional
        Depth index of each layer (:attr:`matteralign.models.LayerInfo.depth`); default: the position.
    k : int, optional
        Neighbour count of every kNN metric (overrides the registry default).
    normalize : {"l2", "max", "clamp95", "none", None}
        Row normalisation of raw arrays (caches keep their own).
    n_permutations : int
        K > 0 adds, per cell, the add-one permutation p-value and the calibrated score of
        :func:`~matteralign.metrics.permutation_test` (same seed: the same K permutations in every cell, and
        the same numbers as that function on the normalised arrays). 0 leaves ``p_value`` and ``calibrated``
        NaN (not computed).
    alpha : float
        Calibration level.
    seed : int
        Seed of the permutations.
    skip_invalid : bool
        Leave out a layer that cannot be prepared (e.g. all-zero rows under L2 normalisation) instead of
        raising; the table's ``attrs["skipped"]`` maps ``"model/layer"`` to the reason.

    Returns
    -------
    pandas.DataFrame
        :data:`COLUMNS`, one row per (metric, layer of A, layer of B), layers in the order given;
        ``attrs["skipped"]`` lists the layers left out.

    Notes
    -----
    Cost: one exact kNN search per layer (``L_a + L_b``; ``L_a`` for a self map) whatever the number of
    metrics and cells, then per cell O(N k) for kNN metrics or O(N d_i d_j) for linear CKA. Permutation nulls
    of kNN metrics relabel the cached graphs (O(N k) per permutation); other metrics are evaluated again per
    permutation (O(K) full evaluations per cell: keep K small or N small).
    """
    import pandas as pd

    from ..metrics import METRICS  # noqa: F401 - fills the registry
    from ..metrics.pairwise import resolve_metrics

    resolved = resolve_metrics(metrics, k=k)
    for spec, _ in resolved:
        if spec.arity != 2:
            raise InputError(f"metric {spec.name!r} measures one representation; a layer map needs a pair metric")
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, (int, np.integer)) or n_permutations < 0:
        raise InputError(f"n_permutations must be a non-negative integer; got {n_permutations!r}")
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise InputError(f"alpha must lie strictly between 0 and 1; got {alpha!r}")
    same = reps_b is None
    model_b = model_a if model_b is None else model_b
    k_values = [p["k"] for _, p in resolved if "k" in p]
    k_max = max(k_values) if k_values else None
    skipped: dict[str, str] | None = {} if skip_invalid else None
    caches_a = _caches(reps_a, k_max=k_max, normalize=normalize, model=model_a, skipped=skipped)
    caches_b = caches_a if same else _caches(reps_b, k_max=k_max, normalize=normalize, model=model_b,
                                             skipped=skipped)
    names_a, names_b = list(caches_a), list(caches_b)
    positions = lambda reps: list(range(len(reps)))  # noqa: E731 - default depth: the position given
    da = _depths(_kept(positions(reps_a) if depths_a is None else depths_a, reps_a, names_a), names_a, model_a)
    db = da if same and depths_b is None else _depths(
        _kept(positions(reps_b) if depths_b is None else depths_b, reps_a if same else reps_b, names_b), names_b,
        model_b)
    n = {c.n for c in [*caches_a.values(), *caches_b.values()]}
    if len(n) != 1:
        raise InputError(f"every layer must describe the same samples; row counts {sorted(n)} "
                         f"({model_a!r} vs {model_b!r})")
    (n,) = n
    ca, cb = [caches_a[x] for x in names_a], [caches_b[x] for x in names_b]
    perms = None
    if n_permutations:
        rng = np.random.default_rng(seed)
        perms = [rng.permutation(n) for _ in range(int(n_permutations))]
    rows = []
    for spec, params in resolved:
        pj = json.dumps(dict(params), sort_keys=True, default=str)
        M = _block(spec, params, ca, cb, same)
        for i, la in enumerate(names_a):
            for j, lb in enumerate(names_b):
                p_value = calibrated = float("nan")
                if perms is not None:
                    if spec.null_from_cache is not None:
                        null = np.array([spec.null_from_cache(ca[i], cb[j], p, **params) for p in perms])
                    else:
                        X, Y = ca[i].features, cb[j].features
                        null = np.array([spec.function(X, Y[p], **params) for p in perms], dtype=float)
                    p_value, calibrated = _calibrate(spec, float(M[i, j]), null, alpha)
                rows.append((model_a, la, da[i], model_b, lb, db[j], spec.name, pj, n, float(M[i, j]), p_value,
                             calibrated))
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.attrs["skipped"] = dict(skipped or {})
    return table


def _kept(depths, reps, names: list[str]):
    """``depths`` given as a sequence aligned with ``reps``, restricted to the layers kept."""
    if depths is None or isinstance(depths, Mapping):
        return depths
    depths = list(depths)
    if len(depths) != len(reps):
        return depths  # _depths names the mismatch
    pos = {str(x): i for i, x in enumerate(reps)}
    return [depths[pos[x]] for x in names]


def _matrix(table, metric: str | None):
    """``(M, layers_a, depths_a, layers_b, depths_b, spec)`` of one metric of one model pair."""
    from ..metrics import get_metric

    t = table if metric is None else table[table["metric"] == metric]
    if t.empty:
        raise InputError(f"the layer map holds no rows for metric {metric!r}")
    if t["metric"].nunique() > 1 or t["params"].nunique() > 1 or t["model_a"].nunique() > 1 \
            or t["model_b"].nunique() > 1:
        raise InputError("the layer map holds several metrics, parameter sets or model pairs; select one")
    la = list(dict.fromkeys(t["layer_a"]))
    lb = list(dict.fromkeys(t["layer_b"]))
    pa, pb = {x: i for i, x in enumerate(la)}, {x: j for j, x in enumerate(lb)}
    M = np.full((len(la), len(lb)), np.nan)
    M[t["layer_a"].map(pa).to_numpy(), t["layer_b"].map(pb).to_numpy()] = t["value"].to_numpy(float)
    depth_a = dict(zip(t["layer_a"], t["depth_a"], strict=True))
    depth_b = dict(zip(t["layer_b"], t["depth_b"], strict=True))
    return M, la, [depth_a[x] for x in la], lb, [depth_b[x] for x in lb], get_metric(t["metric"].iloc[0])


def best_matches(
    table,
    *,
    metric: str | None = None,
    reps_a: Mapping[str, Any] | None = None,
    reps_b: Mapping[str, Any] | None = None,
    n_subsamples: int = 0,
    fraction: float = 0.5,
    alpha: float = 0.05,
    seed: int = 0,
    normalize: str | None = "l2",
):
    """For each layer of model A, the best-matching layer of model B (and the runner-up).

    .. math:: j^*(i) = \\arg\\max_j M_{ij}, \\qquad \\Delta_i = M_{i j^*} - M_{i j^{(2)}}

    (``argmin`` for metrics where lower is better). The best is *significantly* better than the runner-up
    when the ``alpha`` percentile of the paired difference over ``n_subsamples`` m-out-of-n subsamples
    (the same samples for both candidates; ``m = fraction * N``, no replacement) is above 0.

    Parameters
    ----------
    table : pandas.DataFrame
        A :func:`layer_map` table of one model pair (``metric`` selects one metric when it holds several).
    metric : str, optional
    reps_a, reps_b : mapping of str to array_like, optional
        The raw layers (as given to :func:`layer_map`; ``reps_b`` ``None`` for a self map); needed only for
        the subsampling test.
    n_subsamples : int
        B; 0 skips the test (``significant`` is then None).
    fraction, alpha, seed : float, float, int
        Subsample size, one-sided level, seed of ``numpy.random.default_rng``.
    normalize : str or None
        Row normalisation, as for :func:`layer_map`.

    Returns
    -------
    pandas.DataFrame
        One row per layer of A: ``model_a, layer_a, depth_a, model_b, best_layer, best_depth, value,
        p_value, calibrated`` (of the best cell), ``runner_up, runner_up_value, margin``, ``margin_low`` (the
        ``alpha`` percentile of the subsampled difference, NaN without the test), ``significant``,
        ``n_subsamples``.

    Notes
    -----
    Cost of the test: B x (layers of A + the distinct best and runner-up layers of B) kNN searches at
    ``m`` samples, each layer prepared once per subsample.
    """
    import pandas as pd

    M, la, da, lb, db, spec = _matrix(table, metric)
    sub = table if metric is None else table[table["metric"] == metric]
    model_a, model_b = sub["model_a"].iloc[0], sub["model_b"].iloc[0]
    params = json.loads(sub["params"].iloc[0])
    cell = {(a, b): (p, c) for a, b, p, c in zip(sub["layer_a"], sub["layer_b"], sub["p_value"], sub["calibrated"],
                                                 strict=True)}
    sign = -1.0 if spec.higher_is_better is False else 1.0
    best, second = [], []
    for i in range(len(la)):
        score = sign * M[i]
        order = np.argsort(-np.where(np.isfinite(score), score, -np.inf), kind="stable")
        best.append(int(order[0]))
        second.append(int(order[1]) if len(lb) > 1 else None)
    lows = [float("nan")] * len(la)
    if n_subsamples:
        if reps_a is None:
            raise InputError("best_matches needs reps_a (and reps_b unless a self map) for the subsampling test")
        lows = _subsampled_margins(spec, params, reps_a, reps_b, la, lb, best, second, n_subsamples=n_subsamples,
                                   fraction=fraction, alpha=alpha, seed=seed, normalize=normalize, sign=sign)
    rows = []
    for i, a in enumerate(la):
        j, j2 = best[i], second[i]
        p, c = cell[(a, lb[j])]
        margin = sign * (M[i, j] - M[i, j2]) if j2 is not None else float("nan")
        sig = None if not n_subsamples or j2 is None else bool(lows[i] > 0)
        rows.append(dict(model_a=model_a, layer_a=a, depth_a=da[i], model_b=model_b, best_layer=lb[j],
                         best_depth=db[j], value=float(M[i, j]), p_value=p, calibrated=c,
                         runner_up=lb[j2] if j2 is not None else None,
                         runner_up_value=float(M[i, j2]) if j2 is not None else float("nan"),
                         margin=float(margin), margin_low=lows[i], significant=sig, n_subsamples=int(n_subsamples)))
    return pd.DataFrame(rows)


def _subsampled_margins(spec, params, reps_a, reps_b, la, lb, best, second, *, n_subsamples, fraction, alpha,
                        seed, normalize, sign) -> list[float]:
    from ..metrics import prepare
    from ..metrics.normalize import normalize as _normalize

    if isinstance(n_subsamples, bool) or not isinstance(n_subsamples, (int, np.integer)) or n_subsamples < 1:
        raise InputError(f"n_subsamples must be a positive integer; got {n_subsamples!r}")
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise InputError(f"fraction must lie in (0, 1]; got {fraction!r}")

    def arrays(reps, names):
        out = {}
        for x in names:
            r = reps[x]
            feats = getattr(r, "features", None)
            out[x] = feats if feats is not None else _normalize(np.asarray(r), method=normalize)
        return out

    A = arrays(reps_a, la)
    B = A if reps_b is None else arrays(reps_b, lb)
    n = next(iter(A.values())).shape[0]
    m = int(round(fraction * n))
    k = params.get("k")
    if m < 4 or (k is not None and k >= m):
        raise InputError(f"subsamples of {m} of {n} samples are too small for {spec.name} (k={k}); raise fraction")
    need_b = sorted({lb[j] for j in best} | {lb[j] for j in second if j is not None}, key=lb.index)
    rng = np.random.default_rng(seed)
    diffs = np.zeros((n_subsamples, len(la)))
    for s in range(n_subsamples):
        idx = np.sort(rng.choice(n, size=m, replace=False))
        ca = {x: prepare(A[x][idx], k_max=k, normalize=None) for x in la}
        cb = ca if reps_b is None else {x: prepare(B[x][idx], k_max=k, normalize=None) for x in need_b}
        for i, a in enumerate(la):
            if second[i] is None:
                continue
            v1 = _pair_value(spec, ca[a], cb[lb[best[i]]], params)
            v2 = _pair_value(spec, ca[a], cb[lb[second[i]]], params)
            diffs[s, i] = sign * (v1 - v2)
    return [float(np.quantile(diffs[:, i], alpha)) for i in range(len(la))]


def max_over_layer_pairs(table):
    """Platonic-rep's score of a model pair: the best value over all (layer of A, layer of B) pairs.

    .. math:: s_{\\max}(A, B) = \\max_{i, j} M_{ij}

    (the minimum for lower-is-better metrics), as ``compute_score`` of the platonic representation
    hypothesis' reference code (Huh et al. 2024, arXiv:2405.07987). Select it with
    ``aggregate="platonic_max"`` in the ``layers`` analysis or ``matteralign layers --aggregate``.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`layer_map` rows (any number of model pairs, metrics and parameter sets).

    Returns
    -------
    pandas.DataFrame
        One row per (model_a, model_b, metric, params): ``value``, the ``layer_a, depth_a, layer_b, depth_b``
        where it is reached (first in table order on ties), ``n_layer_pairs`` and ``aggregate``.

    Notes
    -----
    A maximum over L_a x L_b noisy values is biased upwards; compare such scores only between pairs with
    the same numbers of layers, or with their calibrated values.
    """
    import pandas as pd

    from ..metrics import get_metric

    rows = []
    for (a, b, metric, params), t in table.groupby(["model_a", "model_b", "metric", "params"], sort=False):
        v = t["value"].to_numpy(float)
        lower = get_metric(metric).higher_is_better is False
        idx = int(np.nanargmin(v) if lower else np.nanargmax(v))
        r = t.iloc[idx]
        rows.append(dict(model_a=a, model_b=b, metric=metric, params=params, value=float(v[idx]),
                         layer_a=r["layer_a"], depth_a=r["depth_a"], layer_b=r["layer_b"], depth_b=r["depth_b"],
                         n_layer_pairs=len(t), aggregate="platonic_max"))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- report section
_DEFAULTS: dict[str, Any] = {
    "metrics": ["cknna", "unbiased_cka"],
    "k": 25,
    "reference": None,  # reference model of the depth plot (default: the first model with several layers)
    "n_permutations": 100,  # per cell, for metrics whose null relabels the cached graphs (kNN metrics)
    "n_permutations_dense": 0,  # per cell, for the others (a full evaluation per permutation)
    "n_subsamples": 20,
    "aggregate": None,
    "max_pairs": 12,
}


def _layers_of(emb) -> dict:
    return dict(emb.layers) if getattr(emb, "layers", None) else {emb.layer: emb}


def _depths_of(model: str, layers: list[str]) -> dict[str, int]:
    try:
        from ..models import get_spec

        info = {li.name: li.depth for li in get_spec(model).layer_info()}
    except MatterAlignError:  # a model outside the registry: positions
        info = {}
    return {x: info.get(x, i) for i, x in enumerate(layers)}


def _labels(layers: list[str], depths: list[int]) -> list[str]:
    return [f"{d}: {x}" for x, d in zip(layers, depths, strict=True)]


def _plot_map(table, metric: str, path, title: str, matches=None):
    from ._common import METRIC_LABELS
    from ._plot import heatmap, pyplot, save

    M, la, da, lb, db, spec = _matrix(table, metric)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * len(lb), 1.0 + 0.5 * len(la)))
    bounded = all(math.isfinite(x) for x in spec.bounds)
    heatmap(ax, M, _labels(la, da), _labels(lb, db), vmin=spec.bounds[0] if bounded else None,
            vmax=spec.bounds[1] if bounded else None, cbar_label=METRIC_LABELS.get(metric, metric), title=title)
    ax.set_ylabel(f"{table['model_a'].iloc[0]} (depth: layer)")
    ax.set_xlabel(f"{table['model_b'].iloc[0]} (depth: layer)")
    if matches is not None and len(matches):
        cols = [lb.index(x) for x in matches["best_layer"]]
        ax.plot(cols, range(len(la)), color="#d62728", marker="o", ms=14, mfc="none", mew=1.5, lw=1.2,
                label="best match per row")
        ax.legend(loc="upper left", bbox_to_anchor=(1.25, 1.0), frameon=False)
    return save(fig, path)


@register_analysis("layers", options=_DEFAULTS)
def run(ctx: AnalysisContext) -> AnalysisResult | None:
    """Layer maps of every pair of models with several extracted layers (``None`` when there are none).

    Parameters (study ``[analyses.layers]``): ``metrics`` (default CKNNA and debiased CKA), ``k``,
    ``reference`` (the reference model of the depth plot), ``n_permutations`` (per-cell p-values and
    calibrated scores of the kNN metrics, 100), ``n_permutations_dense`` (the same for the other metrics, whose
    every permutation is a full evaluation; 0), ``n_subsamples`` (best vs runner-up test, 20),
    ``aggregate = "platonic_max"``, ``max_pairs`` (model pairs drawn, 12).
    """
    import pandas as pd

    from ..metrics import get_metric
    from ._common import METRIC_LABELS, fmt
    from ._plot import pyplot, safe_name, save

    p = {**_DEFAULTS, **(ctx.params or {})}
    metrics = p["metrics"] if isinstance(p["metrics"], list) else [p["metrics"]]
    if p["aggregate"] is not None and p["aggregate"] not in AGGREGATES:
        raise InputError(f"analyses.layers.aggregate must be one of {AGGREGATES} or unset; got {p['aggregate']!r}")
    norm = None if ctx.normalize == "none" else ctx.normalize

    def one_map(ra, rb, a, b, da, db):  # every metric, each with the permutations its null route affords
        parts = []
        for metric in metrics:
            k_perm = p["n_permutations"] if get_metric(metric).null_from_cache else p["n_permutations_dense"]
            part = layer_map(ra, rb, metrics=metric, model_a=a, model_b=b, depths_a=da, depths_b=db, k=int(p["k"]),
                             normalize=norm, n_permutations=int(k_perm), seed=ctx.seed, skip_invalid=True)
            skipped.update(part.attrs["skipped"])
            parts.append(part)
        return pd.concat(parts, ignore_index=True)
    multi = {ds: {m: e for m, e in embs.items() if len(_layers_of(e)) > 1} for ds, embs in ctx.embeddings.items()}
    if not any(multi.values()):
        return None
    res = AnalysisResult(
        name="layers",
        title="Layer-wise alignment",
        summary=(
            "Every extracted layer of a model against every layer of another (and of itself), on the samples both "
            "embed; axes are 'depth: layer' in forward order (depth 0 nearest the input). The red path joins each "
            "row layer's best-matching column layer. The line plot shows each model's alignment, layer by layer, "
            "with the reference model's default layer. 'best matches' gives, per layer, the best and runner-up "
            "layers of the other model and, when subsampling is on, whether the best is better beyond "
            "subsampling noise. Each layer's kNN graph is computed once for all cells."
        ),
    )
    maps, bests, ref_rows = [], [], []
    skipped: dict[str, str] = {}
    for ds, embs in ctx.embeddings.items():
        if not multi.get(ds):
            continue
        names = list(embs)
        reference = p["reference"] if p["reference"] in embs else next(iter(multi[ds]))
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i:] if a in multi[ds] or b in multi[ds]]
        pairs = sorted(pairs, key=lambda ab: (ab[0] != ab[1], ab))
        for a, b in pairs[: int(p["max_pairs"])]:
            ea, eb = embs[a], embs[b]
            ids = sorted(set(ea.ids) & set(eb.ids))
            if len(ids) <= int(p["k"]) + 1:
                res.findings.append(f"Skipped {a} vs {b} on {ds}: {len(ids)} shared samples.")
                continue
            ra = {x: e.aligned(ids) for x, e in _layers_of(ea).items()}
            rb = None if a == b else {x: e.aligned(ids) for x, e in _layers_of(eb).items()}
            da = _depths_of(a, list(ra))
            db = da if rb is None else _depths_of(b, list(rb))
            t = one_map(ra, rb, a, b, da, db)
            t.insert(0, "dataset", ds)
            maps.append(t)
            for metric in metrics:
                mt = t[t["metric"] == metric].drop(columns="dataset")
                bm = best_matches(mt, reps_a=ra, reps_b=rb, n_subsamples=int(p["n_subsamples"]), seed=ctx.seed,
                                  normalize=norm)
                bm.insert(0, "dataset", ds)
                bm.insert(3, "metric", metric)
                bests.append(bm)
                label = METRIC_LABELS.get(metric, metric)
                res.figures.append(_plot_map(mt, metric, ctx.out_dir / safe_name(f"map-{ds}-{a}-{b}-{metric}.png"),
                                             f"{label} on {ds}: {a} vs {b}", matches=bm))
        # alignment to the reference across depth: every model's layers vs the reference's default layer
        ref_layer = embs[reference].layer
        ref_x = _layers_of(embs[reference])[ref_layer]
        for m, e in embs.items():
            ids = sorted(set(e.ids) & set(ref_x.ids))
            if len(ids) <= int(p["k"]) + 1:
                continue
            ra = {x: v.aligned(ids) for x, v in _layers_of(e).items()}
            try:
                t = one_map(ra, {ref_layer: ref_x.aligned(ids)}, m, reference, _depths_of(m, list(ra)),
                            _depths_of(reference, [ref_layer]))
            except InputError as exc:  # e.g. every layer of one side left out
                res.findings.append(f"Alignment of {m} to {reference} across depth on {ds} not computed: {exc}")
                continue
            t.insert(0, "dataset", ds)
            ref_rows.append(t)
    for key, reason in skipped.items():
        res.findings.append(f"Layer {key} left out of the layer maps: {reason}")
    if not maps:
        return res
    table = pd.concat(maps, ignore_index=True)
    res.tables["layer_map"] = table
    best = pd.concat(bests, ignore_index=True)
    res.tables["best_matches"] = best
    if p["aggregate"] == "platonic_max":
        res.tables["platonic_max"] = max_over_layer_pairs(table[table["model_a"] != table["model_b"]])
    if ref_rows:
        ref = pd.concat(ref_rows, ignore_index=True)
        res.tables["to_reference"] = ref
        plt = pyplot()
        from ._plot import model_styles

        styles = model_styles(ctx.models, [*ctx.models, *ref["model_a"]])  # family colour; shade + marker per model
        for (ds, metric), t in ref.groupby(["dataset", "metric"], sort=False):
            fig, ax = plt.subplots(figsize=(6, 3.4))
            for m, tm in t.groupby("model_a", sort=False):
                if m == t["model_b"].iloc[0] and len(tm) == 1:
                    continue
                main = ~tm["depth_a"].duplicated()  # the line joins the first layer listed at each depth
                ax.plot(tm.loc[main, "depth_a"], tm.loc[main, "value"], marker=styles[m]["marker"], ms=4,
                        color=styles[m]["color"], label=m)
                if (~main).any():  # other views of a module at the same depth: open markers, not joined
                    ax.plot(tm.loc[~main, "depth_a"], tm.loc[~main, "value"], ls="", marker=styles[m]["marker"],
                            ms=5, mfc="none", color=styles[m]["color"])
            ax.set_xlabel("depth (layer index, forward order; open markers: other views at that depth)")
            ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)} with {t['model_b'].iloc[0]}")
            ax.set_title(f"Alignment to {t['model_b'].iloc[0]} ({t['layer_b'].iloc[0]}) across depth, {ds}")
            ax.legend(frameon=False, fontsize=7, loc="best")
            res.figures.append(save(fig, ctx.out_dir / safe_name(f"to-reference-{ds}-{metric}.png")))
    cross = best[best["model_a"] != best["model_b"]]
    for (ds, metric, a, b), t in cross.groupby(["dataset", "metric", "model_a", "model_b"], sort=False):
        lower = get_metric(metric).higher_is_better is False
        top = t.loc[t["value"].idxmin() if lower else t["value"].idxmax()]  # the best cell of the map
        res.findings.append(
            f"{ds}, {METRIC_LABELS.get(metric, metric)}: the layer of {b} that best matches {a}'s "
            f"{top['layer_a']} (depth {top['depth_a']}) is {top['best_layer']} (depth {top['best_depth']}, "
            f"{fmt(top['value'])}; runner-up {top['runner_up']} at {fmt(top['runner_up_value'])}"
            + ("" if top["significant"] is None else
               (", significantly better" if top["significant"] else ", not significantly better")) + ").")
    return res
