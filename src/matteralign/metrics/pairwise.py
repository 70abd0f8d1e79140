"""All-pairs alignment matrices from per-model caches: M preparations + M^2 cheap combines.

For each metric (a name, or ``(name, params)``) the value of every ordered pair is obtained, in order of
preference, from

1. ``spec.from_caches_all(caches, **params) -> (M, M) array`` -- one call for all pairs;
2. ``spec.from_cache(cache_a, cache_b, **params)`` -- per pair, from :class:`ModelCache` objects;
3. ``spec.function(cache_a.features, cache_b.features, **params)`` -- the plain function on the prepared
   (normalised) arrays.

Symmetric metrics are computed once per unordered pair and mirrored; asymmetric ones in both orders.
Arity-1 measures (e.g. an intrinsic dimension) give one row per model with ``model_b`` empty, from
``from_cache(cache, **params)`` or ``function(features, **params)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ._cache import ModelCache, prepare
from ._compiled import warm
from ._registry import MetricSpec, get_metric

__all__ = ["pairwise", "resolve_metrics"]

COLUMNS = ["model_a", "model_b", "metric", "params", "n", "value", "normalize"]


def resolve_metrics(metrics, *, k: int | None = None) -> list[tuple[MetricSpec, dict[str, Any]]]:
    """Turn ``["cknna", ("mutual_knn", {"k": 5}), ...]`` into ``(spec, full params)`` pairs.

    ``k`` (if given) overrides the ``k`` of every metric whose parameters have one, unless the entry sets
    ``k`` itself. Unknown parameter names raise :class:`~matteralign.errors.InputError`.
    """
    if isinstance(metrics, str | tuple):
        metrics = [metrics]
    out = []
    for entry in metrics:
        if isinstance(entry, str):
            name, given = entry, {}
        elif isinstance(entry, tuple | list) and len(entry) == 2 and isinstance(entry[1], Mapping):
            name, given = entry[0], dict(entry[1])
        else:
            raise InputError(f"a metric must be a name or a (name, params) pair; got {entry!r}.")
        spec = get_metric(name)
        params = dict(spec.params)
        if k is not None and "k" in params and "k" not in given:
            params["k"] = k
        unknown = set(given) - set(spec.params)
        if unknown:
            raise InputError(
                f"metric {name!r} has no parameter(s) {sorted(unknown)}; it accepts {sorted(spec.params)}."
            )
        params.update(given)
        out.append((spec, params))
    return out


def _params_json(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), sort_keys=True, default=str)


def _pair_value(spec: MetricSpec, ca: ModelCache, cb: ModelCache, params: dict) -> float:
    if spec.from_cache is not None:
        return float(spec.from_cache(ca, cb, **params))
    return float(spec.function(ca.features, cb.features, **params))


def pairwise(
    reps: Mapping[str, Any],
    metrics: str | Iterable[str | tuple[str, Mapping[str, Any]]],
    *,
    k: int | None = None,
    normalize: str | None = "l2",
    progress: bool = False,
):
    """Every pairwise alignment value among several models, as a tidy table.

    Parameters
    ----------
    reps : mapping of str to array_like (n_samples, d_m) or ModelCache
        Model name -> representation of the **same** samples (same row order), or a prepared cache.
    metrics : str or sequence
        Metric names or ``(name, params)`` pairs (see :func:`resolve_metrics`).
    k : int, optional
        Neighbour count for every metric with a ``k`` parameter (overrides the registry default).
    normalize : {"l2", "max", "clamp95", "none", None}
        Row normalisation applied to raw arrays (recorded in the table; caches keep their own).
    progress : bool
        Show a Rich progress bar.

    Returns
    -------
    pandas.DataFrame
        Columns ``model_a, model_b, metric, params`` (JSON, sorted keys), ``n, value, normalize``; one row
        per ordered pair ``(a, b)`` including ``a == b`` (symmetric metrics mirrored), one row per model
        with ``model_b == ""`` for arity-1 measures.

    Notes
    -----
    Cost: M kNN searches (one per model, with ``k_max`` the largest ``k`` requested) plus, per pair,
    O(N k log(N k)) for kNN metrics and O(N D^2) for linear CKA.
    """
    import pandas as pd

    if not isinstance(reps, Mapping) or len(reps) == 0:
        raise InputError("reps must be a non-empty mapping of model name -> array (or ModelCache).")
    resolved = resolve_metrics(metrics, k=k)
    k_values = [p["k"] for _, p in resolved if "k" in p]
    k_max = max(k_values) if k_values else None
    names = [str(n) for n in reps]
    caches: dict[str, ModelCache] = {}
    rows: list[dict[str, Any]] = []
    n_pairs = sum(
        len(names) if spec.arity == 1 else len(names) * (len(names) + 1) // 2 * (1 if spec.symmetric else 2)
        for spec, _ in resolved
    )

    warm()  # an M x M table is much work: compiled kernels from the first model on
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        t_prep = bar.add_task("prepare", total=len(names))
        t_pair = bar.add_task("pairs", total=n_pairs)
    try:
        n_rows = None
        for name, rep in reps.items():
            if isinstance(rep, ModelCache):
                cache = rep
                if k_max and cache.k_max < min(k_max, cache.n - 1):
                    cache.knn(min(k_max, cache.n - 1))
            else:
                cache = prepare(rep, k_max=k_max, normalize=normalize, name=str(name))
            if n_rows is None:
                n_rows = cache.n
            elif cache.n != n_rows:
                raise InputError(
                    f"all representations must describe the same samples: {names[0]!r} has {n_rows} rows, "
                    f"{name!r} has {cache.n}."
                )
            caches[str(name)] = cache
            if bar:
                bar.advance(t_prep)

        for spec, params in resolved:
            pj = _params_json(params)
            if spec.arity == 1:
                for a in names:
                    c = caches[a]
                    v = spec.from_cache(c, **params) if spec.from_cache else spec.function(c.features, **params)
                    rows.append(dict(model_a=a, model_b="", metric=spec.name, params=pj, n=c.n,
                                     value=float(v), normalize=c.normalize))
                    if bar:
                        bar.advance(t_pair)
                continue
            M = len(names)
            mat = np.full((M, M), np.nan)
            if spec.from_caches_all is not None:
                mat[:] = np.asarray(spec.from_caches_all([caches[a] for a in names], **params), dtype=float)
                if bar:
                    bar.advance(t_pair, n_pairs)
            else:
                for i in range(M):
                    for j in range(M):
                        if spec.symmetric and j < i:
                            continue
                        mat[i, j] = _pair_value(spec, caches[names[i]], caches[names[j]], params)
                        if spec.symmetric:
                            mat[j, i] = mat[i, j]
                        if bar:
                            bar.advance(t_pair)
            for i, a in enumerate(names):
                for j, b in enumerate(names):
                    norm = caches[a].normalize
                    if caches[b].normalize != norm:
                        norm = f"{norm}|{caches[b].normalize}"
                    rows.append(dict(model_a=a, model_b=b, metric=spec.name, params=pj, n=caches[a].n,
                                     value=float(mat[i, j]), normalize=norm))
    finally:
        if bar:
            bar.stop()
    return pd.DataFrame(rows, columns=COLUMNS)


def to_matrix(table, metric: str | None = None, names: Sequence[str] | None = None):
    """Pivot a :func:`pairwise` table into an M x M DataFrame (rows ``model_a``, columns ``model_b``)."""
    t = table if metric is None else table[table["metric"] == metric]
    if t["params"].nunique() > 1 or t["metric"].nunique() > 1:
        raise InputError("the table holds several metrics or parameter sets; pass metric= to select one.")
    mat = t.pivot(index="model_a", columns="model_b", values="value")
    if names is not None:
        mat = mat.loc[list(names), list(names)]
    return mat
