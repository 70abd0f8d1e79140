"""Distance correlation (Székely, Rizzo & Bakirov 2007), exact and streamed.

All ``N^2`` Euclidean distances are visited once, block by block (:mod:`._blocked`); only the
row sums and the cross sums ``S = sum_ij a_ij b_ij`` are kept, so memory is ``O(B N)``. The double
centring is applied algebraically afterwards:

.. math::

    N^2\\,\\mathrm{dCov}^2_V = S_{ab} - \\tfrac{2}{N} \\sum_i r^a_i r^b_i + \\tfrac{R^a R^b}{N^2},
    \\qquad
    N(N-3)\\,\\mathrm{dCov}^2_U = S_{ab} + \\tfrac{R^a R^b}{(N-1)(N-2)} - \\tfrac{2}{N-2}\\sum_i r^a_i r^b_i,

with ``r_i = sum_j a_ij`` and ``R = sum_i r_i``; these equal ``<A, B>/N^2`` for the double-centred
matrices and the U-centred inner product of Székely & Rizzo (2014). All sums are float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from . import _nullkernels as _nk
from ._blocked import check_precision, distance_sums, prepare_workspace
from ._registry import MetricSpec, register
from ._validate import check_pair
from .normalize import rows as _rows
from .normalize import rows_many as _rows_many

__all__ = ["distance_correlation", "distance_correlation_matrix"]


def _ratio(cov: np.ndarray) -> np.ndarray:
    var = np.diag(cov).copy()
    denom = np.sqrt(np.clip(np.outer(var, var), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), 0.0)
    return out


def _finish(dcor2: np.ndarray, *, squared: bool, unbiased: bool) -> np.ndarray:
    if squared:
        return dcor2
    if unbiased:
        raise InputError(
            "distance_correlation(unbiased=True) is only defined squared: the bias-corrected dCor^2 "
            "can be negative and has no square root; pass squared=True."
        )
    return np.sqrt(np.clip(dcor2, 0.0, None))


def distance_correlation(
    X,
    Y,
    *,
    squared: bool = False,
    unbiased: bool = False,
    precision: str = "float64",
    block_rows: int | None = None,
    normalize: str | None = "l2",
) -> float:
    """Distance correlation of two representations of the same samples.

    .. math::

        \\mathrm{dCor}^2(X, Y) = \\frac{\\mathrm{dCov}^2(X, Y)}{\\sqrt{\\mathrm{dVar}^2(X)\\,\\mathrm{dVar}^2(Y)}},
        \\qquad \\mathrm{dCov}^2_V(X, Y) = \\frac{1}{N^2} \\sum_{ij} A_{ij} B_{ij},

    where ``A`` and ``B`` are the double-centred Euclidean distance matrices of the rows of ``X`` and
    ``Y``. ``unbiased=True`` uses the U-centred matrices (bias-corrected estimator of Székely &
    Rizzo 2014, equal to ``dcor.u_distance_correlation_sqr``).

    Parameters
    ----------
    X : array_like, shape (n_samples, n_features_x)
    Y : array_like, shape (n_samples, n_features_y)
        Rows are the same samples in the same order. Distances are Euclidean on the normalised rows.
    squared : bool
        Return dCor² (the quantity of arXiv 2512.03750 Eq. A18) instead of dCor.
    unbiased : bool
        Bias-corrected U-statistic dCor². Only defined with ``squared=True`` (it may be negative);
        ``unbiased=True, squared=False`` raises :class:`~matteralign.errors.InputError`.
    precision : {"float32", "float64"}
        Precision of the distance GEMMs; sums are always float64. ``"float64"`` (default) agrees with
        a dense float64 computation to about 1e-13; ``"float32"`` is about 2x faster and agrees to
        about 1e-8 (per-entry rounding ``~ sqrt(D) 2**-24 |x|^2``, see :mod:`matteralign.metrics._blocked`).
    block_rows : int, optional
        Rows per block (memory ``O(block_rows * N)``); chosen automatically by default.
    normalize : {"l2", "max", "clamp95", "none"} or None
        Row normalisation applied to ``X`` and ``Y`` first. Default ``"l2"``, the one rule of every metric
        function, :func:`~matteralign.metrics.pairwise`, ``matteralign compare`` and the study (see
        :func:`~matteralign.metrics.normalize`); ``None`` computes on the arrays as given.

    Returns
    -------
    float
        dCor or dCor² in [0, 1] (V-statistic; 1 for ``X`` vs a similarity transform of itself,
        higher is more dependent); the U-statistic lies in [-1, 1] and is about 0 under independence.

    Notes
    -----
    Exact, ``O(N^2 (D_x + D_y))`` time in one streamed pass, ``O(B N)`` memory. Invariant to
    translations, orthogonal transforms and isotropic scaling of either argument. Needs at least 4
    samples.

    References
    ----------
    Székely, Rizzo & Bakirov (2007), Ann. Statist. 35(6), doi:10.1214/009053607000000505;
    Székely & Rizzo (2014), Ann. Statist. 42(6), doi:10.1214/14-AOS1255.
    """
    X, Y = _rows(X, normalize, "X"), _rows(Y, normalize, "Y")
    check_precision(precision)
    if unbiased and not squared:
        _finish(np.zeros((1, 1)), squared=False, unbiased=True)
    Xa, Ya = check_pair(X, Y, min_samples=4)
    sums = distance_sums(
        [prepare_workspace(Xa, precision=precision), prepare_workspace(Ya, precision=precision)],
        block_rows=block_rows,
    )
    d2 = _ratio(sums.dcov2(unbiased=unbiased))
    return float(_finish(d2, squared=squared, unbiased=unbiased)[0, 1])


def distance_correlation_matrix(
    reps: Sequence,
    *,
    squared: bool = False,
    unbiased: bool = False,
    precision: str = "float64",
    block_rows: int | None = None,
    normalize: str | None = "l2",
) -> np.ndarray:
    """Distance correlation of every pair of ``M`` representations, ``(M, M)``, in one streamed pass.

    Costs about ``M`` single-model distance passes (one GEMM per model per block, plus one ``M x M``
    GEMM of the stacked blocks), not ``M^2`` pair passes. Same parameters as
    :func:`distance_correlation` (rows normalised by ``normalize``, default ``"l2"``; ``None`` = as given);
    entry ``[m, n]`` equals ``distance_correlation(reps[m], reps[n])``.
    """
    reps = _rows_many(reps, normalize)
    check_precision(precision)
    if unbiased and not squared:
        _finish(np.zeros((1, 1)), squared=False, unbiased=True)
    arrays = _check_many(reps, min_samples=4)
    sums = distance_sums([prepare_workspace(a, precision=precision) for a in arrays], block_rows=block_rows)
    return _finish(_ratio(sums.dcov2(unbiased=unbiased)), squared=squared, unbiased=unbiased)


def _check_many(reps: Sequence, *, min_samples: int = 4) -> list[np.ndarray]:
    from ._validate import check_array

    if len(reps) < 1:
        raise InputError("need at least one representation; got an empty sequence.")
    arrays = [check_array(r, f"reps[{i}]", min_samples=min_samples) for i, r in enumerate(reps)]
    n = arrays[0].shape[0]
    for i, a in enumerate(arrays):
        if a.shape[0] != n:
            raise InputError(
                f"all representations must describe the same samples: reps[0] has {n} rows, "
                f"reps[{i}] has {a.shape[0]}."
            )
    return arrays


def _sums_from_caches(caches, precision: str):
    key = ("dcor", "sums", tuple(id(c) for c in caches), precision)
    return caches[0].memo(key, lambda: distance_sums([prepare_workspace(c.features, precision=precision)
                                                        for c in caches]))


def _from_caches_all(*, squared: bool, unbiased: bool):
    def compute(caches, precision: str = "float64") -> np.ndarray:
        """All pairs from :class:`~matteralign.metrics.ModelCache` objects; one pass shared by the dCor metrics."""
        sums = _sums_from_caches(list(caches), precision)
        return _finish(_ratio(sums.dcov2(unbiased=unbiased)), squared=squared, unbiased=unbiased)

    return compute


def _dcor(X, Y, *, precision: str = "float64") -> float:
    return distance_correlation(X, Y, precision=precision, normalize=None)


def _dcor2(X, Y, *, precision: str = "float64") -> float:
    return distance_correlation(X, Y, squared=True, precision=precision, normalize=None)


def _dcor2_u(X, Y, *, precision: str = "float64") -> float:
    return distance_correlation(X, Y, squared=True, unbiased=True, precision=precision, normalize=None)


_REF = "Székely, Rizzo & Bakirov 2007, doi:10.1214/009053607000000505; R energy / dcor (vnmabus)"
_ALL = frozenset({"orthogonal", "isotropic_scale", "translation", "feature_permutation", "sample_permutation"})
for _name, _fn, _sq, _ub, _bounds, _desc in (
    ("dcor", _dcor, False, False, (0.0, 1.0), "distance correlation (Székely V-statistic, square root)"),
    ("dcor2", _dcor2, True, False, (0.0, 1.0), "squared distance correlation, V-statistic (arXiv 2512.03750 Eq. A18)"),
    ("dcor2_unbiased", _dcor2_u, True, True, (-1.0, 1.0),
     "bias-corrected squared distance correlation (U-statistic; ~0 under independence, may be negative)"),
):
    register(
        MetricSpec(
            name=_name,
            function=_fn,
            symmetric=True,
            bounds=_bounds,
            higher_is_better=True,
            invariances=_ALL,
            reference=_REF + ("; Székely & Rizzo 2014, doi:10.1214/14-AOS1255" if _ub else ""),
            params={"precision": "float64"},
            self_value=1.0,
            from_caches_all=_from_caches_all(squared=_sq, unbiased=_ub),
            null_kernel=_nk.u_centred_distances if _ub else _nk.double_centred_distances,
            null_ratio=_nk.dcor2_ratio if _sq else _nk.dcor_ratio,
            null_max_n=_nk.NULL_MAX_N,
            needs=frozenset({"features"}),
            description=_desc,
        )
    )
