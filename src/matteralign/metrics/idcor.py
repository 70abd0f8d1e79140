"""Intrinsic-dimension correlation, IdCor (Basile et al. 2025, arXiv 2406.15812)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _nullkernels as _nk
from ._blocked import exact_knn_l2
from ._registry import MetricSpec, register
from ._validate import check_pair, check_positive_int
from .intrinsic_dim import twonn_from_distances
from .normalize import rows as _rows

__all__ = ["id_correlation", "IdCorResult"]


@dataclass(frozen=True)
class IdCorResult:
    """Result of :func:`id_correlation`.

    Attributes
    ----------
    value : float
        IdCor, in [0, 1] for consistent estimates (higher = more shared structure).
    p_value : float or None
        Add-one permutation p-value ``(1 + #{shuffled Id_joint <= Id_joint}) / (n_permutations + 1)``;
        ``None`` when ``n_permutations == 0``.
    id_x, id_y, id_joint : float
        TwoNN intrinsic dimensions of the normalised ``X``, ``Y`` and of ``[X | Y]``.
    n_permutations : int
    """

    value: float
    p_value: float | None
    id_x: float
    id_y: float
    id_joint: float
    n_permutations: int = 0


def _l2_rows(X: np.ndarray, name: str) -> np.ndarray:
    from ..errors import InputError

    norms = np.linalg.norm(X, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise InputError(f"{name} has {int((norms == 0).sum())} all-zero rows; IdCor normalises rows to unit length.")
    return X / norms


def _twonn(X: np.ndarray, name: str) -> float:
    dist, _ = exact_knn_l2(X, 2)
    return twonn_from_distances(dist[:, 0], dist[:, 1], name=name)


def id_correlation(X, Y, *, n_permutations: int = 100, seed: int = 0, normalize: str | None = "l2") -> IdCorResult:
    """IdCor: how much the joint representation ``[X | Y]`` is lower-dimensional than ``X`` and ``Y`` apart.

    .. math::

        \\mathrm{IdCor}(X, Y) = \\frac{I_X + I_Y - I_{[X|Y]}}{I_X + I_Y - \\min(I_X, I_Y)}

    with ``I`` the TwoNN intrinsic dimension (linear fit, 10% of the largest ratios discarded) of the
    row-L2-normalised data; ``[X|Y]`` concatenates the normalised rows. This is the reference
    definition (lorenzobasile/IDCorrelation ``utils/metrics.py``).

    Parameters
    ----------
    X : array_like, shape (n_samples, n_features_x)
    Y : array_like, shape (n_samples, n_features_y)
        Same samples, same order.
    n_permutations : int
        Shuffles of the rows of ``Y`` for the permutation test (0 to skip it).
    seed : int
        Seed of ``numpy.random.default_rng`` for the shuffles.
    normalize : {"l2", "max", "clamp95", "none"} or None
        Row normalisation applied to ``X`` and ``Y`` first. Default ``"l2"``, the one rule of every metric
        function, :func:`~matteralign.metrics.pairwise`, ``matteralign compare`` and the study (see
        :func:`~matteralign.metrics.normalize`); ``None`` computes on the arrays as given.

    Returns
    -------
    IdCorResult
        ``value`` (1 when ``[X|Y]`` is no larger than the smaller space, about ``I_min / (I_X + I_Y - I_min)``
        or more for independent data, so use the p-value), ``p_value``, ``id_x``, ``id_y``, ``id_joint``.

    Notes
    -----
    p-value convention: ``p = (1 + #{b : I_joint(shuffle_b) <= I_joint}) / (B + 1)``, the add-one
    permutation p-value of the reference code, which counts shuffled values strictly below the
    observed one; with continuous data ties have probability 0, and counting them (``<=``) is the
    conservative choice. Cost: ``n_permutations + 3`` exact kNN searches. Invariant to orthogonal
    transforms and isotropic scaling of either space and to joint sample permutation; not to
    translation (rows are normalised).

    References
    ----------
    Basile, Acevedo, Bortolussi, Anselmi & Rodriguez (2025), arXiv 2406.15812.
    """
    X, Y = _rows(X, normalize, "X"), _rows(Y, normalize, "Y")
    n_permutations = check_positive_int(n_permutations, "n_permutations", minimum=0)
    Xa, Ya = check_pair(X, Y, min_samples=4)
    Xn = _l2_rows(Xa.astype(np.float64), "X")
    Yn = _l2_rows(Ya.astype(np.float64), "Y")
    id_x = _twonn(Xn, "X")
    id_y = _twonn(Yn, "Y")
    id_joint = _twonn(np.hstack([Xn, Yn]), "[X|Y]")
    upper = id_x + id_y
    value = (upper - id_joint) / (upper - min(id_x, id_y))
    p = None
    if n_permutations:
        rng = np.random.default_rng(seed)
        hits = 0
        for _ in range(n_permutations):
            perm = rng.permutation(Yn.shape[0])
            hits += _twonn(np.hstack([Xn, Yn[perm]]), "[X|Y]") <= id_joint
        p = (1 + hits) / (n_permutations + 1)
    return IdCorResult(float(value), p, id_x, id_y, id_joint, n_permutations)


def _idcor_value(X, Y) -> float:
    return id_correlation(X, Y, n_permutations=0, normalize=None).value


register(
    MetricSpec(
        name="idcor",
        function=_idcor_value,
        symmetric=True,
        bounds=(-float("inf"), float("inf")),
        higher_is_better=True,
        invariances=frozenset({"orthogonal", "isotropic_scale", "feature_permutation", "sample_permutation"}),
        reference="Basile et al. 2025, arXiv 2406.15812 (lorenzobasile/IDCorrelation)",
        params={},
        self_value=1.0,
        null_from_cache=_nk.idcor_null,
        null_max_n=_nk.NULL_MAX_N,
        needs=frozenset({"features"}),
        description="IdCor (TwoNN on L2-normalised rows; nominally [0, 1], noisy estimates may leave it); "
        "p-value via id_correlation",
    )
)
