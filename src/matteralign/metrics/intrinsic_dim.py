"""Intrinsic dimension of one representation: TwoNN (linear fit and ML) and Levina–Bickel MLE(k).

All estimators use exact Euclidean nearest neighbours (FAISS ``IndexFlatL2`` proposes candidates,
their distances are recomputed in float64 and the result is proven exact, see
:func:`matteralign.metrics._blocked.exact_knn_l2`). Cost: one exact kNN search, ``O(N^2 D)`` time,
``O(N k)`` memory.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from ..errors import InputError
from ._blocked import exact_knn_l2
from ._registry import MetricSpec, register
from ._validate import check_array, check_k, check_positive_int
from .normalize import as_given
from .normalize import rows as _rows

__all__ = ["intrinsic_dimension", "twonn_from_distances", "mle_from_distances"]

_METHODS = ("twonn", "twonn-ml", "mle")


def _check_fraction(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) < 1.0:
        raise InputError(f"discard_fraction must be a number in [0, 1); got {value!r}.")
    return float(value)


def _drop_duplicates(r1: np.ndarray, *arrays: np.ndarray, name: str = "X"):
    bad = r1 <= 0.0
    if bad.any():
        warnings.warn(
            f"{name}: dropped {int(bad.sum())} of {len(r1)} samples whose nearest neighbour is at distance 0 "
            "(duplicated rows); the intrinsic dimension is estimated on the rest.",
            UserWarning,
            stacklevel=3,
        )
    keep = ~bad
    return (r1[keep],) + tuple(a[keep] for a in arrays)


def twonn_from_distances(
    r1: np.ndarray, r2: np.ndarray, *, method: str = "twonn", discard_fraction: float = 0.1, name: str = "X"
) -> float:
    """TwoNN estimate from first and second nearest-neighbour distances (shape ``(N,)`` each).

    ``method="twonn"``: with ``mu = r2 / r1`` sorted, keep the ``n = int(N (1 - f))`` smallest and fit
    ``-log(1 - i/N) = d log mu_(i)`` (``i = 1..n``) through the origin (Facco et al. 2017; DADApy
    ``compute_id_2NN``, scikit-dimension ``TwoNN``). ``method="twonn-ml"``: ``(N - 1) / sum log mu``
    (all ratios; ``discard_fraction`` is ignored). Samples with ``r1 = 0`` are dropped with a warning.
    """
    r1, r2 = _drop_duplicates(np.asarray(r1, float), np.asarray(r2, float), name=name)
    n = len(r1)
    if n < 3:
        raise InputError(f"{name}: fewer than 3 samples with distinct nearest neighbours; cannot estimate TwoNN.")
    log_mu = np.sort(np.log(r2 / r1))
    if method == "twonn-ml":
        s = log_mu.sum()
        if s <= 0:
            raise InputError(f"{name}: all nearest-neighbour ratios are 1; TwoNN is undefined.")
        return float((n - 1) / s)
    n_keep = int(n * (1.0 - discard_fraction))
    n_keep = min(n_keep, n - 1)  # 1 - F_emp must stay positive
    x = log_mu[:n_keep]
    y = -np.log1p(-np.arange(1, n_keep + 1) / n)
    sxx = float(x @ x)
    if sxx <= 0:
        raise InputError(f"{name}: all kept nearest-neighbour ratios are 1; TwoNN is undefined.")
    return float((x @ y) / sxx)


def mle_from_distances(dist: np.ndarray, *, name: str = "X") -> float:
    """Levina–Bickel MLE from sorted neighbour distances ``T_1..T_k`` (shape ``(N, k)``).

    .. math::

        \\hat m_i = \\Big[\\frac{1}{k - 1} \\sum_{j=1}^{k-1} \\log \\frac{T_k(x_i)}{T_j(x_i)}\\Big]^{-1},
        \\qquad \\hat m = \\frac{1}{N} \\sum_i \\hat m_i,

    the average of the per-point estimates (Levina & Bickel 2004, as in lorenzobasile/IDCorrelation
    ``MLE(X, k)``). Samples with ``T_1 = 0`` are dropped with a warning.
    """
    dist = np.asarray(dist, dtype=np.float64)
    k = dist.shape[1]
    (_, dist) = _drop_duplicates(dist[:, 0], dist, name=name)
    if len(dist) == 0:
        raise InputError(f"{name}: every sample has a duplicate; the MLE is undefined.")
    s = np.log(dist[:, -1:] / dist[:, :-1]).sum(axis=1)
    # Relative distance differences below ~1e-6 are rounding noise of float32 data: such samples have all k
    # neighbours at the same distance (e.g. one-hot or lattice-like point sets stored as float32), where the
    # per-point estimate diverges (it reached 1e6 on element-fraction vectors of crystals).
    tied = s <= 1e-6 * (k - 1)
    if np.any(tied):
        raise InputError(f"{name}: {int(tied.sum())} samples have all {k} neighbours at the same distance "
                         "(up to rounding); the MLE is undefined there (use a larger k, or TwoNN).")
    return float(np.mean((k - 1) / s))


def intrinsic_dimension(
    X, *, method: str = "twonn", k: int = 50, discard_fraction: float = 0.1,
    normalize: str | None = "l2",
) -> float:
    """Intrinsic dimension of a point cloud.

    .. math::

        \\text{TwoNN:}\\quad -\\log(1 - F(\\mu)) = d \\log \\mu, \\qquad \\mu_i = r_2(x_i) / r_1(x_i)

    Parameters
    ----------
    X : array_like, shape (n_samples, n_features)
        Euclidean distances on the normalised rows.
    method : {"twonn", "twonn-ml", "mle"}
        ``"twonn"``: linear fit through the origin after discarding the largest ``discard_fraction`` of
        the ratios (Facco et al. 2017; equals DADApy ``compute_id_2NN`` and scikit-dimension
        ``TwoNN()``). ``"twonn-ml"``: maximum likelihood ``(N - 1) / sum log mu`` (DADApy
        ``algorithm="ml"``). ``"mle"``: Levina–Bickel with ``k`` neighbours, mean of per-point estimates.
    k : int
        Neighbours for ``"mle"``, ``2 <= k <= N - 1``. TwoNN does not use it (it checks only that it is a
        positive integer), so a TwoNN estimate needs no more than 4 samples whatever ``k`` is.
    discard_fraction : float
        Fraction of largest ratios ``mu`` dropped by ``"twonn"``, in [0, 1).
    normalize : {"l2", "max", "clamp95", "none"} or None
        Row normalisation applied to ``X`` first. Default ``"l2"``, the one rule of every metric
        function, :func:`~matteralign.metrics.pairwise`, ``matteralign compare`` and the study (see
        :func:`~matteralign.metrics.normalize`); ``None`` computes on the arrays as given.

    Returns
    -------
    float
        Estimated dimension, > 0 (not a similarity; no direction).

    Notes
    -----
    Invariant to translations, orthogonal transforms, isotropic scaling and the order of samples.
    Samples whose nearest neighbour is at distance 0 (duplicates) are dropped with a warning giving
    their number; the estimate stays finite. Cost: one exact kNN search (FAISS flat) plus float64
    recomputation of the candidates.

    References
    ----------
    Facco, d'Errico, Rodriguez & Laio (2017), Sci. Rep. 7, 12140, doi:10.1038/s41598-017-11873-y;
    Levina & Bickel (2004), NeurIPS 17.
    """
    X = _rows(X, normalize, "X")
    if method not in _METHODS:
        raise InputError(f"method must be one of {_METHODS}; got {method!r}.")
    discard_fraction = _check_fraction(discard_fraction)
    Xa = check_array(X, "X", min_samples=4)
    n = Xa.shape[0]
    if method != "mle":  # TwoNN uses the first two neighbours whatever k is: checked, not bounded by N
        check_positive_int(k, "k")
    else:
        k = check_k(k, n)
        if k < 2:
            raise InputError(f"k must be at least 2 for the MLE; got {k}.")
        dist, _ = exact_knn_l2(Xa, k)
        return mle_from_distances(dist)
    dist, _ = exact_knn_l2(Xa, 2)
    return twonn_from_distances(dist[:, 0], dist[:, 1], method=method, discard_fraction=discard_fraction)


def _from_cache(cache, **params) -> float:
    key = ("intrinsic_dim", tuple(sorted(params.items())))
    return cache.memo(key, lambda: intrinsic_dimension(cache.features, **params, normalize=None))


register(
    MetricSpec(
        name="intrinsic_dimension",
        function=as_given(intrinsic_dimension),
        symmetric=True,
        bounds=(0.0, float("inf")),
        higher_is_better=None,
        invariances=frozenset({"orthogonal", "isotropic_scale", "translation", "feature_permutation",
                               "sample_permutation"}),
        reference="Facco et al. 2017, doi:10.1038/s41598-017-11873-y (TwoNN; DADApy compute_id_2NN); "
        "Levina & Bickel 2004 (MLE)",
        params={"method": "twonn", "k": 50, "discard_fraction": 0.1},
        arity=1,
        from_cache=_from_cache,
        needs=frozenset({"features"}),
        description="intrinsic dimension (TwoNN linear fit; 'twonn-ml'; Levina-Bickel MLE(k))",
    )
)
