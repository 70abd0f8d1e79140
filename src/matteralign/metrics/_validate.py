"""Input checks shared by every metric.

Public metric functions call these first; private kernels assume checked input.
Every failure is an :class:`~matteralign.errors.InputError` naming the argument.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..errors import InputError

__all__ = ["check_array", "check_pair", "check_k", "check_positive_int"]


#: Largest magnitudes every metric computes without overflow or underflow: float64 inputs within
#: [2^-200, 2^200] (fourth powers, summed over N^2 terms, stay normal), float32 within [2^-20, 2^20]
#: (float32 inputs outside it are computed in float64).
SAFE_RANGE = {np.dtype(np.float64): (2.0**-200, 2.0**200), np.dtype(np.float32): (2.0**-20, 2.0**20)}


def check_array(
    X, name: str = "X", *, min_samples: int = 4, dtype=None, allow_constant: bool = False, rescale: bool = False
) -> np.ndarray:
    """Return ``X`` as a finite 2-D floating array of shape ``(n_samples, n_features)``.

    Parameters
    ----------
    X : array_like, shape (n_samples, n_features)
    name : str
        The argument name used in error messages.
    min_samples : int
        Fewest rows accepted (U-statistics need 4).
    dtype : numpy dtype, optional
        Cast to this dtype; by default float32 stays float32 and everything else becomes float64.
    allow_constant : bool
        Accept an input whose rows are all identical (no variation to compare).
    rescale : bool
        The caller is invariant to a global scale: an input whose largest magnitude lies outside
        :data:`SAFE_RANGE` is multiplied by a power of two (exact) to bring it near 1. Otherwise such
        a float64 input is refused (a float32 one is computed in float64).
    """
    try:
        arr = np.asarray(X)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise InputError(f"{name} could not be converted to an array: {exc}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{name} must hold numbers; got dtype {arr.dtype}.")
    if arr.ndim != 2:
        raise InputError(
            f"{name} must be 2-D with shape (n_samples, n_features); got {arr.ndim}-D shape {arr.shape}."
            + (" Reshape a single feature with X.reshape(-1, 1)." if arr.ndim == 1 else "")
        )
    if dtype is None:
        dtype = np.float32 if arr.dtype == np.float32 else np.float64
    arr = np.ascontiguousarray(arr, dtype=dtype)
    n, d = arr.shape
    if d < 1:
        raise InputError(f"{name} has no features (shape {arr.shape}).")
    if n < min_samples:
        raise InputError(f"{name} has {n} samples; at least {min_samples} are needed.")
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise InputError(
            f"{name} contains non-finite values ({n_nan} NaN, {n_inf} inf; first at row {bad[0][0]}, "
            f"column {bad[0][1]}); expected finite numbers."
        )
    arr = _in_safe_range(arr, name, rescale)
    if not allow_constant and n > 1 and not (arr != arr[0]).any():
        raise InputError(f"all {n} rows of {name} are identical; the representation carries no information.")
    return arr


def check_pair(X, Y, *, names: tuple[str, str] = ("X", "Y"), min_samples: int = 4, dtype=None):
    """Check two representations of the same samples (same number of rows)."""
    Xa = check_array(X, names[0], min_samples=min_samples, dtype=dtype)
    Ya = check_array(Y, names[1], min_samples=min_samples, dtype=dtype)
    if Xa.shape[0] != Ya.shape[0]:
        raise InputError(
            f"{names[0]} and {names[1]} must describe the same samples: {names[0]} has {Xa.shape[0]} rows, "
            f"{names[1]} has {Ya.shape[0]}."
        )
    return Xa, Ya


def check_positive_int(value, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """Check an integer parameter lies in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be an integer; got {value!r} ({type(value).__name__}).")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        hi = "" if maximum is None else f" and at most {maximum}"
        raise InputError(f"{name} must be at least {minimum}{hi}; got {value}.")
    return value


def check_k(k, n_samples: int, name: str = "k") -> int:
    """Check a neighbour count: ``1 <= k <= n_samples - 1`` (self is never a neighbour)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise InputError(f"{name} must be an integer number of neighbours; got {k!r}.")
    k = int(k)
    if k < 1:
        raise InputError(f"{name} must be at least 1; got {k}.")
    if k >= n_samples:
        raise InputError(
            f"{name}={k} is too large for {n_samples} samples; expected {name} <= {n_samples - 1} "
            "(a sample is never its own neighbour)."
        )
    return k


def _in_safe_range(arr: np.ndarray, name: str, rescale: bool) -> np.ndarray:
    """``arr`` with its largest magnitude inside :data:`SAFE_RANGE` (exactly rescaled, upcast or refused)."""
    if arr.size == 0 or arr.dtype not in SAFE_RANGE:
        return arr
    top = float(max(arr.max(), -arr.min()))
    lo, hi = SAFE_RANGE[arr.dtype]
    if top == 0.0 or lo <= top <= hi:
        return arr
    if rescale:
        _, exp = np.frexp(top)  # top = m * 2**exp, 0.5 <= m < 1
        return np.ldexp(arr, -int(exp)).astype(arr.dtype, copy=False)  # a power of two: exact
    if arr.dtype == np.float32:
        return _in_safe_range(arr.astype(np.float64), name, rescale)
    raise InputError(
        f"{name} holds values of magnitude up to {top:.3g}; this computation is exact only for magnitudes "
        f"within [{lo:.3g}, {hi:.3g}] (beyond, its sums of products overflow or vanish). Rescale {name} "
        "(e.g. divide by its largest magnitude) or normalise its rows (normalize='l2')."
    )
