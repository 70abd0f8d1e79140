"""Row normalisation of representations before they are compared.

One rule everywhere: every public metric function, :func:`~matteralign.metrics.prepare`,
:func:`~matteralign.metrics.pairwise`, ``matteralign compare`` and the study normalise the rows first with
:data:`DEFAULT` (``"l2"``, as platonic-rep's pipeline does) and record the method with every number;
``normalize=None`` computes on the arrays as given. The registry's ``MetricSpec.function`` is the metric on
the arrays as given (the pipeline normalises once per model, then calls it).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ._validate import check_array

__all__ = ["normalize", "NORMALIZATIONS", "DEFAULT"]

#: Accepted values of ``method`` (``None`` and ``"none"`` leave the array unchanged).
NORMALIZATIONS = ("l2", "max", "clamp95", "none")

#: The normalisation every route applies unless told otherwise.
DEFAULT = "l2"


def check_method(method) -> str:
    """``method`` as a key of :data:`NORMALIZATIONS` (``None`` -> ``"none"``); InputError otherwise."""
    key = "none" if method is None else method
    if key not in NORMALIZATIONS:
        raise InputError(f"normalize must be one of {list(NORMALIZATIONS)} or None; got {method!r}.")
    return key


def rows(X, method, name: str = "X"):
    """``X`` normalised by ``method``, or ``X`` itself (not even copied) when ``method`` is None/"none".

    The first step of every public metric function.
    """
    if check_method(method) == "none":
        return X
    return normalize(X, method=method, name=name)


def rows_many(reps, method):
    """:func:`rows` over a sequence (a list back) or a mapping (a dict back) of representations."""
    from collections.abc import Mapping

    if isinstance(reps, Mapping):
        return {key: rows(R, method, f"reps[{key!r}]") for key, R in reps.items()}
    return [rows(R, method, f"reps[{i}]") for i, R in enumerate(reps)]


def as_given(function):
    """``function`` with ``normalize=None`` bound: the registry's as-given form of a public metric."""
    import functools

    bound = functools.partial(function, normalize=None)
    functools.update_wrapper(bound, function)
    return bound


def _zero_rows_error(X: np.ndarray, method: str, name: str) -> None:
    zero = np.flatnonzero(~np.any(X != 0, axis=1))
    if zero.size:
        first = ", ".join(str(i) for i in zero[:5]) + (", ..." if zero.size > 5 else "")
        raise InputError(
            f"{name} has {zero.size} all-zero row(s) (rows {first}); {method!r} normalisation divides each row "
            "by its norm and is undefined for them. Drop those samples or use normalize=None."
        )


def _l2(X: np.ndarray, name: str) -> np.ndarray:
    _zero_rows_error(X, "l2", name)
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    return (X / norms[:, None].astype(X.dtype, copy=False)).astype(X.dtype, copy=False)


def normalize(X, *, method: str | None = "l2", name: str = "X") -> np.ndarray:
    """Normalise the rows of a representation.

    .. math::

        \\text{l2}: x_i \\mapsto x_i / \\lVert x_i \\rVert_2, \\qquad
        \\text{max}: x_i \\mapsto x_i / \\max_d |x_{id}|, \\qquad
        \\text{clamp95}: x_i \\mapsto \\text{l2}(\\operatorname{clip}(x_i, -q, q)),\\;
        q = \\tfrac{1}{N}\\sum_i Q_{0.95}(|x_i|)

    Parameters
    ----------
    X : array_like, shape (n_samples, n_features)
        Representation; float32 stays float32, anything else becomes float64.
    method : {"l2", "max", "clamp95", "none", None}
        ``"l2"`` (default, as platonic-rep): unit Euclidean norm per row. ``"max"``: each row divided by its
        largest absolute element, so ``max |x| = 1`` (the paper's wording, "maximum element value of 1").
        ``"clamp95"``: platonic-rep's ``remove_outliers`` (q = 0.95, per-sample quantiles averaged over
        samples, linear interpolation) followed by l2. ``None``/``"none"``: unchanged (a copy).
    name : str
        Argument name used in error messages.

    Returns
    -------
    ndarray, shape (n_samples, n_features)
        The normalised rows, same dtype as the checked input.

    Raises
    ------
    InputError
        Unknown method; a row of zeros under ``"l2"``, ``"max"`` or ``"clamp95"``; non-finite input.

    Notes
    -----
    Cost O(N D). ``"clamp95"`` handles transformer "emergent outlier" features; the threshold is one
    number for the whole array. Reference: Huh et al., arXiv 2405.07987 (platonic-rep
    ``measure_alignment.prepare_features``).
    """
    key = check_method(method)
    arr = check_array(X, name, min_samples=1, allow_constant=True, rescale=True)  # row scale-invariant
    if key == "none":
        return arr.copy()
    if key == "l2":
        return _l2(arr, name)
    if key == "max":
        _zero_rows_error(arr, "max", name)
        m = np.abs(arr).max(axis=1)
        return (arr / m[:, None]).astype(arr.dtype, copy=False)
    # clamp95
    q = float(np.quantile(np.abs(arr).astype(np.float64), 0.95, axis=1).mean())
    clipped = np.clip(arr, -q, q).astype(arr.dtype, copy=False)
    return _l2(clipped, name)
