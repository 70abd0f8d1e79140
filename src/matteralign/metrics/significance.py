"""Significance of an alignment score: permutation nulls, calibrated scores, subsampling intervals.

Works for every registered pair metric. Metrics with ``spec.null_from_cache`` (the kNN metrics) compute
each null value by relabelling cached neighbour indices (``inv_perm[knn_Y[perm]]``, O(N k)) instead of
searching again; the others are recomputed on ``(X, Y[perm])``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ._cache import prepare
from ._registry import MetricSpec, get_metric
from ._validate import check_pair, check_positive_int
from .normalize import rows as _rows

__all__ = ["PermutationResult", "SubsampleResult", "permutation_test", "subsample_ci"]


@dataclass(frozen=True)
class PermutationResult:
    """Outcome of :func:`permutation_test`.

    Attributes
    ----------
    value : float
        The observed score.
    p_value : float
        ``(1 + #{null at least as aligned as value}) / (K + 1)``, in ``(0, 1]``.
    null : ndarray, shape (K,)
        Scores of ``(X, Y[perm])`` for K seeded permutations.
    calibrated : float
        ``(value - tau) / (s_max - tau)`` clipped to [0, 1], with ``tau`` the ``(1 - alpha)`` order statistic
        of ``{value} U null`` (mirrored for lower-is-better metrics).
    tau : float
        The calibration threshold.
    metric, params, seed, alpha
        What was computed, for provenance.
    """

    value: float
    p_value: float
    null: np.ndarray = field(repr=False)
    calibrated: float
    tau: float
    metric: str
    params: dict[str, Any]
    seed: int
    alpha: float


@dataclass(frozen=True)
class SubsampleResult:
    """Outcome of :func:`subsample_ci`: full-data value and a percentile interval over subsamples."""

    value: float
    low: float
    high: float
    samples: np.ndarray = field(repr=False)
    confidence: float
    fraction: float
    metric: str
    params: dict[str, Any]
    seed: int


def _spec_params(metric: str, params: dict[str, Any]) -> tuple[MetricSpec, dict[str, Any]]:
    spec = get_metric(metric)
    if spec.arity != 2:
        raise InputError(f"metric {metric!r} measures a single representation; significance tests need a pair.")
    unknown = set(params) - set(spec.params)
    if unknown:
        raise InputError(f"metric {metric!r} has no parameter(s) {sorted(unknown)}; it accepts {sorted(spec.params)}.")
    full = dict(spec.params)
    full.update(params)
    return spec, full


def _check_alpha(alpha: float, name: str = "alpha") -> float:
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise InputError(f"{name} must lie strictly between 0 and 1; got {alpha!r}.")
    return float(alpha)


def permutation_test(
    X,
    Y,
    *,
    metric: str,
    n_permutations: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
    normalize: str | None = "l2",
    **params,
) -> PermutationResult:
    """Permutation test and calibrated score of one alignment value.

    .. math::

        p = \\frac{1 + \\#\\{b : s(X, Y_{\\pi_b}) \\ge s(X, Y)\\}}{K + 1}, \\qquad
        \\tilde s = \\operatorname{clip}\\Big(\\frac{s - \\tau}{s_{\\max} - \\tau}, 0, 1\\Big)

    Parameters
    ----------
    X, Y : array_like, shape (n_samples, d_x), (n_samples, d_y)
        Two representations of the same samples.
    metric : str
        A registered pair metric.
    n_permutations : int
        K, the number of seeded row permutations of ``Y``.
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same null.
    alpha : float
        Calibration level: ``tau`` is the ``ceil((1 - alpha)(K + 1))``-th smallest of ``{s} U null``.
    normalize : {"l2", "max", "clamp95", "none"} or None
        Row normalisation applied to ``X`` and ``Y`` first. Default ``"l2"``, the one rule of every metric
        function, :func:`~matteralign.metrics.pairwise`, ``matteralign compare`` and the study (see
        :func:`~matteralign.metrics.normalize`); ``None`` computes on the arrays as given.
    **params
        Metric parameters (e.g. ``k=25``); unspecified ones take the registry defaults.

    Returns
    -------
    PermutationResult
        ``value``, ``p_value`` in (0, 1] (small = more aligned than chance; direction from
        ``higher_is_better``), ``null`` (K,), ``calibrated`` in [0, 1], ``tau``.

    Notes
    -----
    kNN metrics: O(N k) per permutation after one search per representation (cached neighbours are
    relabelled). Other metrics: one full evaluation per permutation. References: Gröger et al.,
    "Aristotelian view" (calibrated-similarity); Phipson & Smyth 2010 (add-one p-values).
    """
    X, Y = _rows(X, normalize, "X"), _rows(Y, normalize, "Y")
    spec, full = _spec_params(metric, params)
    K = check_positive_int(n_permutations, "n_permutations", minimum=1)
    alpha = _check_alpha(alpha)
    Xa, Ya = check_pair(X, Y)
    rng = np.random.default_rng(seed)
    n = Xa.shape[0]
    if spec.null_from_cache is not None and spec.from_cache is not None:
        kmax = full.get("k")
        cx = prepare(Xa, k_max=kmax, normalize=None, name="X")
        cy = prepare(Ya, k_max=kmax, normalize=None, name="Y")
        value = float(spec.from_cache(cx, cy, **full))
        null = np.array([spec.null_from_cache(cx, cy, rng.permutation(n), **full) for _ in range(K)])
    else:
        value = float(spec.function(Xa, Ya, **full))
        null = np.array([spec.function(Xa, Ya[rng.permutation(n)], **full) for _ in range(K)], dtype=float)
    lower = spec.higher_is_better is False
    exceed = np.count_nonzero(null <= value) if lower else np.count_nonzero(null >= value)
    p = (1.0 + exceed) / (K + 1.0)
    pool = np.sort(np.append(null, value))
    if lower:
        tau = float(pool[max(0, math.floor(alpha * (K + 1)) - 1)])
        smin = spec.bounds[0] if math.isfinite(spec.bounds[0]) else 0.0  # full agreement of a distance-like score
        cal = (tau - value) / (tau - smin) if tau > smin else 0.0
    else:
        tau = float(pool[min(K, math.ceil((1 - alpha) * (K + 1)) - 1)])
        # full alignment: the upper bound, or (for CKNNA and IdCor, unbounded above) the value 1
        smax = spec.bounds[1] if math.isfinite(spec.bounds[1]) else (spec.self_value or 1.0)
        cal = (value - tau) / (smax - tau) if smax > tau else (1.0 if value > tau else 0.0)
    if not math.isnan(cal):
        cal = float(min(1.0, max(0.0, cal)))
    return PermutationResult(value, p, null, cal, tau, spec.name, full, int(seed), alpha)


def subsample_ci(
    X,
    Y,
    *,
    metric: str,
    n_subsamples: int = 100,
    fraction: float = 0.5,
    confidence: float = 0.95,
    seed: int = 0,
    normalize: str | None = "l2",
    **params,
) -> SubsampleResult:
    """Percentile interval of a score over m-out-of-n subsamples drawn **without** replacement.

    .. math::

        [\\,Q_{(1-c)/2},\\; Q_{(1+c)/2}\\,] \\text{ of } \\{ s(X_{S_b}, Y_{S_b}) \\}_{b=1}^{B},\\quad
        S_b \\subset \\{1..N\\},\\ |S_b| = \\mathrm{round}(f N)

    Parameters
    ----------
    X, Y : array_like, shape (n_samples, d_x), (n_samples, d_y)
    metric : str
        A registered pair metric.
    n_subsamples : int
        B, the number of subsamples.
    fraction : float
        ``m / N`` in (0, 1]; each subsample has distinct samples (no duplicates, which would create zero
        distances and kNN ties).
    confidence : float
        Interval level ``c``.
    seed : int
        Seed of ``numpy.random.default_rng``.
    normalize : {"l2", "max", "clamp95", "none"} or None
        Row normalisation applied to ``X`` and ``Y`` first. Default ``"l2"``, the one rule of every metric
        function, :func:`~matteralign.metrics.pairwise`, ``matteralign compare`` and the study (see
        :func:`~matteralign.metrics.normalize`); ``None`` computes on the arrays as given.
    **params
        Metric parameters; ``k`` must stay below the subsample size.

    Returns
    -------
    SubsampleResult
        ``value`` on all samples, ``low``/``high`` percentiles, the B ``samples``.

    Notes
    -----
    Scores of sample-size-dependent metrics (kNN metrics at fixed k, biased CKA) shift with m; the interval
    describes the m-sample statistic. Cost: B evaluations at size m.
    """
    X, Y = _rows(X, normalize, "X"), _rows(Y, normalize, "Y")
    spec, full = _spec_params(metric, params)
    B = check_positive_int(n_subsamples, "n_subsamples", minimum=1)
    if not (isinstance(fraction, int | float) and 0 < fraction <= 1):
        raise InputError(f"fraction must lie in (0, 1]; got {fraction!r}.")
    confidence = _check_alpha(confidence, "confidence")
    Xa, Ya = check_pair(X, Y)
    n = Xa.shape[0]
    m = int(round(fraction * n))
    if m < 4:
        raise InputError(f"fraction={fraction} of {n} samples gives subsamples of {m}; at least 4 are needed.")
    if "k" in full and full["k"] >= m:
        raise InputError(f"k={full['k']} is too large for subsamples of {m} samples; use k <= {m - 1}.")
    rng = np.random.default_rng(seed)
    value = float(spec.function(Xa, Ya, **full))
    samples = np.empty(B)
    for b in range(B):
        idx = np.sort(rng.choice(n, size=m, replace=False))
        samples[b] = spec.function(Xa[idx], Ya[idx], **full)
    lo, hi = np.quantile(samples, [(1 - confidence) / 2, (1 + confidence) / 2])
    return SubsampleResult(value, float(lo), float(hi), samples, confidence, float(fraction), spec.name, full,
                           int(seed))
