"""Linear probes of physical labels, and probes transferred between models.

A *linear probe* asks how much of a physical label can be read off a representation by a
linear function: standardised features, ridge regression whose penalty is chosen by
cross-validation, scored by R² on held-out samples. A *transferred probe* asks whether the
probe trained on model A still works on model B once B's space is mapped linearly onto A's
(the map learned on training samples only).

Neither analysis is in arXiv 2512.03750; they are matteralign's own extensions, measuring
claims made about that study in the press (probes of physical quantities, probes that work
across models).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from .errors import InputError

__all__ = [
    "DEFAULT_ALPHAS",
    "LinearProbe",
    "LinearMap",
    "TransferProbe",
    "ProbeResult",
    "cross_validated_probe",
    "cross_validated_probes",
    "random_features",
    "composition_matrix",
    "train_test_indices",
    "transfer_matrix",
]

#: Ridge penalties searched by default (on standardised features): 10^-3 ... 10^5.
DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-3, 5, 17))


# ----------------------------------------------------------------------------- validation
class _InputTypeError(InputError, TypeError):
    """Non-numeric input (an InputError that is also a TypeError, as scikit-learn expects)."""


def _check_X(X: Any, name: str = "X", *, min_samples: int = 1) -> np.ndarray:
    from sklearn.utils import check_array

    try:
        return check_array(X, dtype=np.float64, ensure_min_samples=min_samples, input_name=name)
    except TypeError as exc:
        raise _InputTypeError(f"{name}: {exc} (expected a numeric array)") from None
    except ValueError as exc:
        raise InputError(
            f"{name}: {exc} (expected a finite dense array of shape (n_samples, n_features))"
        ) from None


def _check_y(y: Any, n: int, name: str = "y", *, allow_nan: bool = False) -> np.ndarray:
    if y is None:
        raise InputError(f"{type(name).__name__} requires y to be passed, but the target y is None")
    y = np.asarray(y)
    if np.iscomplexobj(y):
        raise InputError(f"{name} is complex; labels must be real numbers")
    y = y.astype(np.float64)
    if y.ndim == 2 and y.shape[1] == 1:
        import warnings

        from sklearn.exceptions import DataConversionWarning

        warnings.warn(
            "A column-vector y was passed when a 1d array was expected; it was flattened",
            DataConversionWarning,
            stacklevel=3,
        )
        y = y.ravel()
    if y.ndim != 1:
        raise InputError(f"{name} must be a 1-D array of labels; got shape {y.shape}")
    if y.shape[0] != n:
        raise InputError(f"{name} has {y.shape[0]} labels but the representation has {n} rows")
    if np.isinf(y).any() or (not allow_nan and np.isnan(y).any()):
        raise InputError(f"{name} contains {'inf' if allow_nan else 'NaN or inf'}; labels must be finite")
    return y


def _check_alphas(alphas: Sequence[float] | None) -> np.ndarray:
    a = np.asarray(DEFAULT_ALPHAS if alphas is None else alphas, dtype=np.float64).ravel()
    if a.size == 0 or not np.isfinite(a).all() or (a <= 0).any():
        raise InputError(f"alphas must be a non-empty sequence of positive numbers; got {alphas!r}")
    return a


def _scale(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    sd[sd < 1e-12 * max(1.0, float(np.abs(mu).max(initial=0.0)))] = 1.0  # constant columns stay at zero
    return mu, sd


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    ss = float(((y - y.mean()) ** 2).sum())
    if ss == 0.0:
        return float("nan")
    return 1.0 - float(((y - p) ** 2).sum()) / ss


# ----------------------------------------------------------------------------- probe
def _gcv_ridge(Xc: np.ndarray, Yc: np.ndarray, alphas: np.ndarray, *, per_target: bool = True):
    """Ridge with an unpenalised intercept on centred ``Xc`` (n, d), ``Yc`` (n, L), alpha by exact
    leave-one-out, through the eigendecomposition of the d x d Gram matrix (for n > d).

    .. math::

        X_c = U S V^\\top,\\quad f_j(\\alpha) = \\frac{s_j^2}{s_j^2 + \\alpha},\\quad
        h_i = \\frac1n + \\sum_j U_{ij}^2 f_j,\\quad
        e_i = \\frac{y_i - \\bar y - [U \\operatorname{diag}(f) U^\\top y_c]_i}{1 - h_i}

    the leave-one-out residuals of ridge regression (exact for any linear smoother fitted by penalised least
    squares; the same criterion as scikit-learn's ``RidgeCV(cv=None)``). Returns ``W`` (d, L) and the alpha
    of each column (``per_target``) or one alpha minimising the mean over all columns.
    """
    n = Xc.shape[0]
    ev, V = np.linalg.eigh(Xc.T @ Xc)
    keep = ev > max(float(ev.max(initial=0.0)), 1e-300) * 1e-12
    ev, V = ev[keep], V[:, keep]
    s = np.sqrt(ev)
    U = (Xc @ V) / s
    U2 = U * U
    UtY = U.T @ Yc
    L = Yc.shape[1]
    best = np.full(L if per_target else 1, np.inf)
    best_alpha = np.empty(L if per_target else 1)
    for a in alphas:  # increasing order of the grid as given; ties keep the first, like numpy's argmin
        f = ev / (ev + a)
        h = U2 @ f + 1.0 / n
        E = (Yc - U @ (f[:, None] * UtY)) / (1.0 - h)[:, None]
        err = (E * E).mean(axis=0)
        if not per_target:
            err = np.array([err.mean()])
        better = err < best
        best[better] = err[better]
        best_alpha[better] = a
    alpha = best_alpha if per_target else np.full(L, best_alpha[0])
    W = V @ ((s[:, None] / (ev[:, None] + alpha[None, :])) * UtY)
    return W, alpha


def _fit_ridge(
    X: np.ndarray,
    Y: np.ndarray,
    alphas: np.ndarray,
    *,
    cv: int | None = None,
    standardize: bool = True,
    standardize_target: bool = True,
    per_target: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge of every column of ``Y`` (n, L) on ``X`` (n, d), alpha chosen by cross-validation.

    Returns ``coef`` (d, L) and ``intercept`` (L,) in original units, and ``alpha`` (L,): one per column
    (``per_target``) or one shared by all columns. With ``cv=None`` alpha is chosen by exact leave-one-out
    and all columns share one decomposition (:func:`_gcv_ridge` when n > d, else scikit-learn's
    ``RidgeCV``); each column's alpha and weights then equal those of a single-column fit. With an integer
    ``cv``, scikit-learn's K-fold ``RidgeCV`` is run per column (or once, for a shared alpha).
    """
    from threadpoolctl import threadpool_limits

    # The d x d problems here are small: one BLAS thread is faster than several, and far faster on a busy
    # machine, where multi-threaded LAPACK (eigh, SVD) can slow down a hundredfold.
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_ridge_impl(X, Y, alphas, cv=cv, standardize=standardize,
                               standardize_target=standardize_target, per_target=per_target)  # fmt: skip


def _fit_ridge_impl(X, Y, alphas, *, cv, standardize, standardize_target, per_target):
    from sklearn.linear_model import RidgeCV

    n, d = X.shape
    L = Y.shape[1]
    mu = X.mean(axis=0)
    sd = _scale(X)[1] if standardize else np.ones(d)
    y_mu = Y.mean(axis=0)
    y_sd = Y.std(axis=0) if standardize_target else np.ones(L)
    y_sd = np.where(y_sd == 0.0, 1.0, y_sd)
    Xs = (X - mu) / sd
    Ys = (Y - y_mu) / y_sd
    if cv is None and n > d:
        W, alpha = _gcv_ridge(Xs, Ys, alphas, per_target=per_target)
        b = np.zeros(L)
    elif cv is None or not per_target:
        multi = per_target and L > 1
        ridge = RidgeCV(alphas=alphas, cv=cv, fit_intercept=True, alpha_per_target=multi)
        ridge.fit(Xs, Ys if L > 1 else Ys[:, 0])
        W = np.asarray(ridge.coef_, dtype=np.float64).reshape(L, d).T  # (d, L)
        b = np.asarray(ridge.intercept_, dtype=np.float64).reshape(L)
        alpha = np.broadcast_to(np.asarray(ridge.alpha_, dtype=np.float64), (L,)).copy()
    else:
        W, b, alpha = np.empty((d, L)), np.empty(L), np.empty(L)
        for j in range(L):
            ridge = RidgeCV(alphas=alphas, cv=cv, fit_intercept=True).fit(Xs, Ys[:, j])
            W[:, j], b[j], alpha[j] = np.ravel(ridge.coef_), float(ridge.intercept_), float(ridge.alpha_)
    coef = y_sd * W / sd[:, None]
    intercept = y_mu + y_sd * (b - (mu / sd) @ W)
    return coef, intercept, alpha


class LinearProbe(RegressorMixin, BaseEstimator):
    """Ridge regression on standardised features, penalty chosen by cross-validation.

    .. math::

        \\hat y = \\bar y + s_y\\,\\Big(\\frac{x - \\mu}{\\sigma}\\Big)^{\\!\\top} w + b, \\qquad
        w = \\arg\\min_w \\sum_i (\\tilde y_i - \\tilde x_i^\\top w - b)^2 + \\alpha \\lVert w \\rVert^2

    with :math:`\\alpha` picked from ``alphas`` by exact leave-one-out (``cv=None``) or by ``cv``-fold
    cross-validation within the training data.

    Parameters
    ----------
    alphas : sequence of float, optional
        Penalties searched (default :data:`DEFAULT_ALPHAS`, 10⁻³ … 10⁵ on a log grid).
    cv : int or None, default None
        ``None``: exact leave-one-out, the criterion of :class:`sklearn.linear_model.RidgeCV` with
        ``cv=None`` (computed here through the eigendecomposition of the d x d Gram matrix when n > d, by
        ``RidgeCV`` itself otherwise); an int: K-fold inner cross-validation (``RidgeCV(cv=cv)``).
    standardize : bool, default True
        Standardise each feature (mean 0, s.d. 1; constant features are left at 0).
    standardize_target : bool, default True
        Standardise the label before fitting (makes the alpha grid unit-free).

    Attributes
    ----------
    alpha_ : float
        The chosen penalty.
    coef_ : ndarray, shape (n_features,)
        Weights in the original feature units, so ``predict(X) = X @ coef_ + intercept_``.
    intercept_ : float
    n_features_in_ : int

    Notes
    -----
    Cost of a fit with leave-one-out: O(n d² + d³) for the Gram matrix and its eigendecomposition when
    n > d (O(n² d) otherwise), plus O(n d) per alpha. BLAS runs single-threaded inside the fit (faster for
    these small problems, and robust on a busy machine). Invariant to per-feature affine rescaling when
    ``standardize`` is True. Tested to choose the same alpha and predictions as scikit-learn's ``RidgeCV``.
    """

    def __init__(
        self,
        *,
        alphas: Sequence[float] | None = None,
        cv: int | None = None,
        standardize: bool = True,
        standardize_target: bool = True,
    ):
        self.alphas = alphas
        self.cv = cv
        self.standardize = standardize
        self.standardize_target = standardize_target

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearProbe:
        """Fit the probe on ``X`` (n, d) and labels ``y`` (n,); returns ``self``."""

        if y is None:
            raise InputError("LinearProbe requires y to be passed, but the target y is None")
        X = _check_X(X, min_samples=3)
        y = _check_y(y, X.shape[0])
        alphas = _check_alphas(self.alphas)
        n = X.shape[0]
        if self.cv is not None and (not isinstance(self.cv, int) or self.cv < 2 or self.cv > n):
            raise InputError(f"cv must be None or an integer in [2, n_samples={n}]; got {self.cv!r}")
        coef, intercept, alpha = _fit_ridge(
            X,
            y[:, None],
            alphas,
            cv=self.cv,
            standardize=self.standardize,
            standardize_target=self.standardize_target,
        )
        self.alpha_ = float(alpha[0])
        self.coef_ = coef[:, 0]
        self.intercept_ = float(intercept[0])
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted labels, shape (n,)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "coef_")
        X = _check_X(X)
        if X.shape[1] != self.n_features_in_:
            raise InputError(
                f"X has {X.shape[1]} features, but LinearProbe is expecting {self.n_features_in_} features as input"
            )
        return X @ self.coef_ + self.intercept_


# ----------------------------------------------------------------------------- cross-validation
@dataclass
class ProbeResult:
    """Cross-validated probe scores.

    ``r2_ci`` and ``mae_ci`` are two-sided Student-t intervals over the fold scores
    (mean ± t_{K-1, (1+confidence)/2} · s / sqrt(K)); they describe fold-to-fold spread, not a
    population interval.
    """

    r2_folds: np.ndarray
    mae_folds: np.ndarray
    alpha_folds: np.ndarray
    n: int
    n_dropped: int
    confidence: float
    y_pred: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)

    @property
    def r2(self) -> float:
        """Mean held-out R² over folds (≤ 1, higher is better; ≈ 0 or below for no signal)."""
        return float(np.mean(self.r2_folds))

    @property
    def mae(self) -> float:
        """Mean held-out mean absolute error over folds (label units)."""
        return float(np.mean(self.mae_folds))

    @property
    def r2_ci(self) -> tuple[float, float]:
        return _t_interval(self.r2_folds, self.confidence)

    @property
    def mae_ci(self) -> tuple[float, float]:
        return _t_interval(self.mae_folds, self.confidence)

    def as_dict(self) -> dict[str, float]:
        """Flat summary: r2, r2_low, r2_high, mae, mae_low, mae_high, alpha (median), n, n_dropped."""
        lo, hi = self.r2_ci
        mlo, mhi = self.mae_ci
        return {
            "r2": self.r2,
            "r2_low": lo,
            "r2_high": hi,
            "mae": self.mae,
            "mae_low": mlo,
            "mae_high": mhi,
            "alpha": float(np.median(self.alpha_folds)),
            "n": self.n,
            "n_dropped": self.n_dropped,
        }


def _t_interval(v: np.ndarray, confidence: float) -> tuple[float, float]:
    from scipy import stats

    v = np.asarray(v, dtype=np.float64)
    m = float(v.mean())
    if v.size < 2:
        return (float("nan"), float("nan"))
    half = float(stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return (m - half, m + half)


def _folds(n: int, cv: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold

    return list(KFold(n_splits=cv, shuffle=True, random_state=seed).split(np.zeros((n, 1))))


def cross_validated_probe(
    X: np.ndarray,
    y: np.ndarray,
    *,
    cv: int = 5,
    seed: int = 0,
    alphas: Sequence[float] | None = None,
    inner_cv: int | None = None,
    standardize: bool = True,
    confidence: float = 0.95,
) -> ProbeResult:
    """K-fold cross-validated R² and MAE of a :class:`LinearProbe`.

    .. math::

        R^2_k = 1 - \\frac{\\sum_{i \\in T_k} (y_i - \\hat y_i)^2}{\\sum_{i \\in T_k} (y_i - \\bar y_{T_k})^2},
        \\qquad \\mathrm{MAE}_k = \\frac{1}{|T_k|} \\sum_{i \\in T_k} |y_i - \\hat y_i|

    for each held-out fold :math:`T_k`; the probe (scaler and alpha included) is fitted on the
    other folds only.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Representation (finite).
    y : ndarray, shape (n,)
        Label; NaN entries are dropped (with the matching rows of ``X``) and counted.
    cv : int, default 5
        Number of outer folds (shuffled :class:`~sklearn.model_selection.KFold` seeded by ``seed``).
        The folds depend only on the kept rows and ``seed``, so two representations of the same
        samples with the same label are scored on identical folds.
    alphas, inner_cv, standardize
        Passed to :class:`LinearProbe` (``inner_cv`` is its ``cv``).
    confidence : float, default 0.95
        Level of the Student-t interval over fold scores.

    Returns
    -------
    ProbeResult
        Per-fold R² (≤ 1, higher is better) and MAE (≥ 0, label units), their means and t-intervals,
        out-of-fold predictions, ``n`` kept and ``n_dropped`` NaN labels.
    """
    X = _check_X(X)
    y = _check_y(y, X.shape[0], allow_nan=True)
    if not (0.0 < confidence < 1.0):
        raise InputError(f"confidence must be in (0, 1); got {confidence!r}")
    mask = ~np.isnan(y)
    Xk, yk = X[mask], y[mask]
    n = int(mask.sum())
    if not isinstance(cv, (int, np.integer)) or cv < 2:
        raise InputError(f"cv must be an integer ≥ 2; got {cv!r}")
    if n < 2 * cv:
        raise InputError(f"label has {n} non-NaN values; {cv}-fold probing needs at least {2 * cv}")
    r2s, maes, alphas_used = [], [], []
    pred = np.full(n, np.nan)
    for tr, te in _folds(n, int(cv), seed):
        probe = LinearProbe(alphas=alphas, cv=inner_cv, standardize=standardize).fit(Xk[tr], yk[tr])
        p = probe.predict(Xk[te])
        pred[te] = p
        r2s.append(_r2(yk[te], p))
        maes.append(float(np.abs(yk[te] - p).mean()))
        alphas_used.append(probe.alpha_)
    return ProbeResult(
        r2_folds=np.asarray(r2s),
        mae_folds=np.asarray(maes),
        alpha_folds=np.asarray(alphas_used),
        n=n,
        n_dropped=int((~mask).sum()),
        confidence=confidence,
        y_pred=pred,
        mask=mask,
    )


def cross_validated_probes(
    X: np.ndarray,
    labels: Mapping[str, np.ndarray],
    *,
    cv: int = 5,
    seed: int = 0,
    alphas: Sequence[float] | None = None,
    inner_cv: int | None = None,
    standardize: bool = True,
    confidence: float = 0.95,
) -> dict[str, ProbeResult]:
    """:func:`cross_validated_probe` for many labels of one representation at once.

    Labels with the same missing (NaN) entries share their folds and, with ``inner_cv=None``, one SVD per
    fold (each label keeps its own leave-one-out alpha), so L labels cost about as much as one. Every
    result equals ``cross_validated_probe(X, labels[name], ...)`` with the same arguments.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    labels : mapping name -> ndarray (n,)
        NaN = missing.
    cv, seed, alphas, inner_cv, standardize, confidence
        As in :func:`cross_validated_probe`.

    Returns
    -------
    dict name -> ProbeResult
    """
    X = _check_X(X)
    if not (0.0 < confidence < 1.0):
        raise InputError(f"confidence must be in (0, 1); got {confidence!r}")
    if not isinstance(cv, (int, np.integer)) or cv < 2:
        raise InputError(f"cv must be an integer ≥ 2; got {cv!r}")
    a = _check_alphas(alphas)
    ys = {k: _check_y(v, X.shape[0], f"label {k!r}", allow_nan=True) for k, v in labels.items()}
    groups: dict[bytes, list[str]] = {}
    for k, y in ys.items():
        mask = ~np.isnan(y)
        if mask.sum() < 2 * cv:
            raise InputError(
                f"label {k!r} has {int(mask.sum())} non-NaN values; {cv}-fold probing needs {2 * cv}"
            )
        groups.setdefault(mask.tobytes(), []).append(k)
    out: dict[str, ProbeResult] = {}
    for names in groups.values():
        mask = ~np.isnan(ys[names[0]])
        Xk = X[mask]
        Yk = np.column_stack([ys[k][mask] for k in names])
        n = Xk.shape[0]
        pred = np.full((n, len(names)), np.nan)
        r2s, maes, al = [], [], []
        for tr, te in _folds(n, int(cv), seed):
            coef, intercept, alpha = _fit_ridge(Xk[tr], Yk[tr], a, cv=inner_cv, standardize=standardize)
            P = Xk[te] @ coef + intercept
            pred[te] = P
            r2s.append([_r2(Yk[te, j], P[:, j]) for j in range(len(names))])
            maes.append(np.abs(Yk[te] - P).mean(axis=0))
            al.append(alpha)
        r2s, maes, al = np.asarray(r2s), np.asarray(maes), np.asarray(al)
        for j, k in enumerate(names):
            out[k] = ProbeResult(r2_folds=r2s[:, j], mae_folds=maes[:, j], alpha_folds=al[:, j], n=n,
                                 n_dropped=int((~mask).sum()), confidence=confidence, y_pred=pred[:, j],
                                 mask=mask)  # fmt: skip
    return {k: out[k] for k in ys}


# ----------------------------------------------------------------------------- baselines
def random_features(n: int, d: int, *, seed: int = 0) -> np.ndarray:
    """A Gaussian random representation (n, d), seeded: the no-information baseline of a probe."""
    if n < 1 or d < 1:
        raise InputError(f"random features need n ≥ 1 and d ≥ 1; got n={n}, d={d}")
    return np.random.default_rng(seed).standard_normal((int(n), int(d)))


def composition_matrix(
    structures: Sequence[Any], *, kind: str = "counts", elements: Sequence[int] | None = None
) -> tuple[np.ndarray, list[int]]:
    """Element-count (or element-fraction) vectors of structures.

    Parameters
    ----------
    structures : sequence of ase.Atoms (or anything with ``.numbers``), or of integer arrays
        of atomic numbers.
    kind : {"counts", "fractions"}
        ``counts``: number of atoms of each element (extensive); ``fractions``: counts / n_atoms.
    elements : sequence of int, optional
        Atomic numbers giving the columns (default: every element present, sorted).

    Returns
    -------
    C : ndarray, shape (n, n_elements), float64
    elements : list of int
        Atomic number of each column.
    """
    if kind not in ("counts", "fractions"):
        raise InputError(f"composition kind must be 'counts' or 'fractions'; got {kind!r}")
    numbers = []
    for i, s in enumerate(structures):
        if s is None:
            raise InputError(f"structure {i} is None; a composition needs a 3D (atoms) view of every sample")
        z = np.asarray(getattr(s, "numbers", s), dtype=np.int64).ravel()
        if z.size == 0:
            raise InputError(f"structure {i} has no atoms")
        numbers.append(z)
    cols = sorted({int(v) for z in numbers for v in z}) if elements is None else [int(e) for e in elements]
    pos = {e: j for j, e in enumerate(cols)}
    C = np.zeros((len(numbers), len(cols)))
    for i, z in enumerate(numbers):
        for v in z:
            j = pos.get(int(v))
            if j is None:
                raise InputError(f"structure {i} contains element Z={int(v)} not among elements={cols}")
            C[i, j] += 1.0
        if kind == "fractions":
            C[i] /= z.size
    return C, cols


# ----------------------------------------------------------------------------- transfer
class LinearMap(BaseEstimator):
    """Ridge map from one representation onto another, :math:`X_A \\approx \\tilde X_B M + c`.

    ``X_B`` is standardised; the shared penalty (one alpha for all output columns) is chosen by
    efficient leave-one-out over ``alphas`` (or ``cv``-fold CV). Fitted attributes: ``alpha_``,
    ``coef_`` (d_B, d_A) in original units, ``intercept_`` (d_A,).
    """

    def __init__(self, *, alphas: Sequence[float] | None = None, cv: int | None = None):
        self.alphas = alphas
        self.cv = cv

    def fit(self, XB: np.ndarray, XA: np.ndarray) -> LinearMap:
        """Learn the map from ``XB`` (n, d_B) to ``XA`` (n, d_A); returns ``self``."""

        XB = _check_X(XB, "XB")
        XA = _check_X(XA, "XA")
        if XA.shape[0] != XB.shape[0]:
            raise InputError(f"XA has {XA.shape[0]} rows and XB {XB.shape[0]}; they must be the same samples")
        coef, intercept, alpha = _fit_ridge(
            XB, XA, _check_alphas(self.alphas), cv=self.cv, standardize_target=False, per_target=False
        )
        self.alpha_ = float(alpha[0])
        self.coef_ = coef
        self.intercept_ = intercept
        self.n_features_in_ = XB.shape[1]
        return self

    def predict(self, XB: np.ndarray) -> np.ndarray:
        """``XB`` mapped into A's space, shape (n, d_A)."""
        XB = _check_X(XB, "XB")
        if XB.shape[1] != self.n_features_in_:
            raise InputError(f"XB has {XB.shape[1]} features; the map was fitted on {self.n_features_in_}")
        return XB @ self.coef_ + self.intercept_


class TransferProbe(RegressorMixin, BaseEstimator):
    """A probe trained on model A, applied to model B through a linear map B → A.

    .. math::

        \\hat y_B(x_B) = \\mathrm{probe}_A\\big(x_B M + c\\big), \\qquad
        (M, c) = \\arg\\min \\lVert X_A - \\tilde X_B M - c \\rVert_F^2 + \\alpha \\lVert M \\rVert_F^2

    Both the probe and the map are learned from the training rows given to :meth:`fit` only;
    :meth:`predict`/:meth:`score` never change them.

    Parameters
    ----------
    alphas : sequence of float, optional
        Penalty grid for both the probe and the map (default :data:`DEFAULT_ALPHAS`).
    cv : int or None
        Inner CV of the probe and the map (None: efficient leave-one-out).

    Attributes
    ----------
    source_probe_ : LinearProbe
        Probe of the label on A.
    map_ : LinearMap
        Map from B's space onto A's.
    """

    def __init__(self, *, alphas: Sequence[float] | None = None, cv: int | None = None):
        self.alphas = alphas
        self.cv = cv

    def fit(self, XA: np.ndarray, XB: np.ndarray, y: np.ndarray) -> TransferProbe:
        """Fit on training rows: ``XA`` (n, d_A), ``XB`` (n, d_B) of the same samples, ``y`` (n,).

        Rows with a NaN label still train the map (it needs no label) but not the probe.
        """
        XA = _check_X(XA, "XA")
        XB = _check_X(XB, "XB")
        y = _check_y(y, XA.shape[0], allow_nan=True)
        self.map_ = LinearMap(alphas=self.alphas, cv=self.cv).fit(XB, XA)
        m = ~np.isnan(y)
        self.source_probe_ = LinearProbe(alphas=self.alphas, cv=self.cv).fit(XA[m], y[m])
        return self

    def predict(self, XB: np.ndarray) -> np.ndarray:
        """Labels predicted from B's representation (n,)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "map_")
        return self.source_probe_.predict(self.map_.predict(XB))


def _fit_probes(
    X: np.ndarray, labels: Mapping[str, np.ndarray], *, alphas: Sequence[float] | None, cv: int | None
) -> dict[str, LinearProbe]:
    """One fitted :class:`LinearProbe` per label (rows with a NaN label left out), identical to fitting each
    label alone; labels with the same missing rows share one decomposition."""
    a = _check_alphas(alphas)
    groups: dict[bytes, list[str]] = {}
    for k, y in labels.items():
        groups.setdefault((~np.isnan(y)).tobytes(), []).append(k)
    out = {}
    for names in groups.values():
        m = ~np.isnan(labels[names[0]])
        coef, intercept, alpha = _fit_ridge(X[m], np.column_stack([labels[k][m] for k in names]), a, cv=cv)
        for j, k in enumerate(names):
            P = LinearProbe(alphas=alphas, cv=cv)
            P.coef_, P.intercept_, P.alpha_, P.n_features_in_ = (
                coef[:, j],
                float(intercept[j]),
                float(alpha[j]),
                X.shape[1],
            )
            out[k] = P
    return out


def train_test_indices(n: int, *, test_size: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``range(n)`` into sorted train and test indices."""
    if not (0.0 < test_size < 1.0):
        raise InputError(f"test_size must be in (0, 1); got {test_size!r}")
    n_test = int(round(n * test_size))
    if n_test < 2 or n - n_test < 3:
        raise InputError(f"cannot split {n} samples with test_size={test_size}: too few on one side")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def transfer_matrix(
    reps: Mapping[str, np.ndarray],
    y: np.ndarray | Mapping[str, np.ndarray],
    *,
    test_size: float = 0.3,
    seed: int = 0,
    alphas: Sequence[float] | None = None,
    cv: int | None = None,
    train_index: np.ndarray | None = None,
    return_models: bool = False,
):
    """Held-out R² of every probe transferred between every ordered pair of representations.

    For each ordered pair (source A, target B), A ≠ B: a :class:`TransferProbe` is fitted on the
    training rows (the map B → A on all training rows, the probe on those with a label) and
    scored on the test rows of B, beside B's own probe and A's own probe on the same test rows.

    Parameters
    ----------
    reps : mapping name -> ndarray (n, d_name)
        Representations of the same n samples, rows in the same order.
    y : ndarray (n,) or mapping label name -> ndarray (n,)
        Label(s); NaN = missing (dropped from probe training and scoring).
    test_size : float, default 0.3
        Fraction of samples held out (seeded by ``seed``); ignored when ``train_index`` is given.
    train_index : ndarray of int, optional
        Explicit training rows; the test rows are all others.
    return_models : bool
        Also return ``{"maps": {(A, B): LinearMap}, "probes": {(label, A): LinearProbe}}``.

    Returns
    -------
    pandas.DataFrame
        Columns label, source, target, r2_transfer, r2_target_own, r2_source_own, n_train, n_test.
        R² values ≤ 1, higher is better; ``r2_transfer`` near ``r2_source_own`` means A's probe
        survives the map, near ``r2_target_own`` that B holds the label as linearly as A.

    Notes
    -----
    Maps are fitted once per ordered pair and shared by all labels; cost M(M-1) multi-output
    ridge fits plus M·L probe fits, each one SVD of the (n_train, d) matrix.
    """
    import pandas as pd

    if not isinstance(reps, Mapping) or len(reps) < 2:
        raise InputError("reps must map at least two representation names to arrays")
    names = list(reps)
    R = {k: _check_X(v, f"reps[{k!r}]") for k, v in reps.items()}
    n = next(iter(R.values())).shape[0]
    for k, v in R.items():
        if v.shape[0] != n:
            raise InputError(f"reps[{k!r}] has {v.shape[0]} rows; expected {n} (the same samples for all)")
    labels = dict(y) if isinstance(y, Mapping) else {"y": y}
    labels = {k: _check_y(v, n, f"label {k!r}", allow_nan=True) for k, v in labels.items()}
    if train_index is None:
        tr, te = train_test_indices(n, test_size=test_size, seed=seed)
    else:
        tr = np.unique(np.asarray(train_index, dtype=np.int64))
        if tr.size < 3 or tr.min() < 0 or tr.max() >= n:
            raise InputError(f"train_index must hold at least 3 row indices in [0, {n}); got {tr.size}")
        te = np.setdiff1d(np.arange(n), tr)
    # Only training rows are handed to any fit below.
    train = {k: v[tr] for k, v in R.items()}
    maps = {
        (a, b): LinearMap(alphas=alphas, cv=cv).fit(train[b], train[a])
        for a in names
        for b in names
        if a != b
    }
    for lab, yy in labels.items():
        n_tr, n_te = int(np.isfinite(yy[tr]).sum()), int(np.isfinite(yy[te]).sum())
        if n_tr < 3 or n_te < 2:
            raise InputError(f"label {lab!r} has too few values ({n_tr} train, {n_te} test)")
    fitted = {
        a: _fit_probes(train[a], {k: v[tr] for k, v in labels.items()}, alphas=alphas, cv=cv) for a in names
    }
    mapped = {(a, b): M.predict(R[b][te]) for (a, b), M in maps.items()}  # test rows of B in A's space
    rows, probes = [], {}
    for lab, yy in labels.items():
        ytr, yte = yy[tr], yy[te]
        mtr, mte = ~np.isnan(ytr), ~np.isnan(yte)
        for a in names:
            probes[(lab, a)] = fitted[a][lab]
        own = {a: _r2(yte[mte], probes[(lab, a)].predict(R[a][te][mte])) for a in names}
        for a, b in maps:
            p = probes[(lab, a)].predict(mapped[(a, b)][mte])
            rows.append(
                {
                    "label": lab,
                    "source": a,
                    "target": b,
                    "r2_transfer": _r2(yte[mte], p),
                    "r2_target_own": own[b],
                    "r2_source_own": own[a],
                    "n_train": int(mtr.sum()),
                    "n_test": int(mte.sum()),
                }
            )
    df = pd.DataFrame(rows)
    if return_models:
        return df, {"maps": maps, "probes": probes, "train_index": tr, "test_index": te}
    return df
