"""Table helpers shared by the analyses: parameter parsing, model ordering, M x M matrices.

Everything here works on the tidy tables of :class:`~matteralign.analysis.base.AnalysisContext`
(``pairs``: dataset, model_a, model_b, metric, params, n, value, ...; ``per_model``: dataset, model,
metric, params, n, value) and on the models' metadata. Nothing heavy is imported.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "parse_params",
    "params_key",
    "params_label",
    "select_params",
    "is_control",
    "family_of",
    "order_models",
    "is_symmetric",
    "pair_matrix",
    "scored",
    "SCORES",
    "offdiag_values",
    "fmt",
    "METRIC_ORDER",
    "METRIC_LABELS",
    "MLIP_TYPES",
    "is_mlip",
]

#: Order in which pair metrics are shown (others follow alphabetically).
METRIC_ORDER = ["cknna", "mutual_knn", "unbiased_cka", "cka", "dcor2", "dcor", "information_imbalance", "idcor"]

#: Display names.
METRIC_LABELS = {
    "cknna": "CKNNA",
    "mutual_knn": "mutual kNN",
    "unbiased_cka": "CKA (debiased)",
    "cka": "CKA",
    "dcor2": "dCor²",
    "dcor": "dCor",
    "information_imbalance": "information imbalance (row → column)",
    "idcor": "IdCor",
    "intrinsic_dimension": "intrinsic dimension",
}

#: Embedding types of interatomic potentials.
MLIP_TYPES = frozenset({"invariant", "equivariant", "vanilla"})

_ASYMMETRIC_FALLBACK = frozenset({"information_imbalance", "cycle_knn"})
#: Symmetric by definition although the registry calls the estimator asymmetric (its sparse kNN estimate
#: may differ in the last digits between directions): a missing direction is filled from the other.
_SYMMETRIC_BY_DEFINITION = frozenset({"cknna"})


def parse_params(p: Any) -> dict[str, Any]:
    """The ``params`` cell of a tidy table as a dict (accepts a dict, a JSON string, ``None`` or NaN)."""
    if p is None:
        return {}
    if isinstance(p, Mapping):
        return dict(p)
    if isinstance(p, float) and math.isnan(p):
        return {}
    if isinstance(p, str):
        s = p.strip()
        if not s:
            return {}
        try:
            out = json.loads(s)
        except json.JSONDecodeError:
            return {"params": s}
        return dict(out) if isinstance(out, Mapping) else {"params": out}
    return {"params": p}


def params_key(p: Any) -> str:
    """Canonical JSON of a ``params`` cell (sorted keys), usable for grouping."""
    return json.dumps(parse_params(p), sort_keys=True, default=str)


def params_label(p: Any) -> str:
    """Short human label, e.g. ``"k=25"`` (empty for no parameters)."""
    d = parse_params(p)
    return ", ".join(f"{k}={v}" for k, v in sorted(d.items()))


def select_params(df: pd.DataFrame, metric: str, *, prefer: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Rows of ``metric`` computed with one parameter set.

    When several parameter sets are present, the first one (in sorted order of their JSON) that agrees with
    every key of ``prefer`` that it has is taken; if none agrees, the first in sorted order.
    """
    sub = df[df["metric"] == metric]
    if sub.empty:
        return sub
    keys = sub["params"].map(params_key)
    uniq = sorted(set(keys))
    chosen = uniq[0]
    if prefer and len(uniq) > 1:
        for u in uniq:
            d = json.loads(u)
            if any(k in d for k in prefer) and all(d[k] == v for k, v in prefer.items() if k in d):
                chosen = u
                break
    return sub[keys == chosen]


def is_control(meta: Mapping[str, Any] | None) -> bool:
    """True for random baselines and randomised-weight controls."""
    meta = meta or {}
    return bool(meta.get("control")) or meta.get("embedding_type") == "random"


def family_of(models: Mapping[str, Mapping[str, Any]], name: str) -> str:
    """Family of model ``name`` (its own name when the metadata has none)."""
    return str((models.get(name) or {}).get("family") or name)


def is_mlip(meta: Mapping[str, Any] | None) -> bool:
    """True for interatomic potentials: ``kind == "mlip"`` or an invariant/equivariant/vanilla embedding."""
    meta = meta or {}
    if is_control(meta):
        return False
    return meta.get("kind") == "mlip" or meta.get("embedding_type") in MLIP_TYPES


def order_models(models: Mapping[str, Mapping[str, Any]], names: Iterable[str]) -> list[str]:
    """Model names ordered by (control last, family, name)."""
    return sorted(set(names), key=lambda m: (is_control(models.get(m)), family_of(models, m), m))


def is_symmetric(metric: str) -> bool:
    """Whether a missing ``(b, a)`` may be filled from ``(a, b)`` (registry's ``symmetric``, or by definition)."""
    if metric in _SYMMETRIC_BY_DEFINITION:
        return True
    try:
        from ..metrics import METRICS

        if metric in METRICS:
            return bool(METRICS[metric].symmetric)
    except ImportError:  # pragma: no cover
        pass
    return metric not in _ASYMMETRIC_FALLBACK and "imbalance" not in metric


#: Scores a matrix or tree can be built from (option ``score`` of those analyses): the column of the pairs table
#: and how the report names it.
SCORES = {"value": "raw score", "calibrated": "calibrated score"}


def scored(rows: pd.DataFrame, score: str, *, analysis: str) -> pd.DataFrame:
    """``rows`` with ``value`` taken from the pairs table's column ``score`` (``"value"``: unchanged).

    ``"calibrated"`` is the gated score against the permutation null written by the measure stage
    (:func:`matteralign.metrics.calibration.calibrate_pairs`; in [0, 1], 0 = not above chance).

    Raises
    ------
    InputError
        ``score`` is not one of :data:`SCORES`, or the table has no such scores (a study run without
        calibration asked for calibrated matrices).
    """
    from ..errors import InputError

    if score not in SCORES:
        raise InputError(f"{analysis}: score must be one of {sorted(SCORES)}; got {score!r}")
    if score == "value" or rows.empty:
        return rows
    if score not in rows or rows[score].notna().sum() == 0:
        raise InputError(f"{analysis}: score = {score!r} needs the calibration columns of the pairs table, but "
                         "they are empty (the study ran with [calibration] enabled = false); turn calibration on "
                         "or use score = 'value'")
    return rows.assign(value=rows[score].astype(float))


def pair_matrix(
    rows: pd.DataFrame, names: list[str], *, symmetric: bool, diagonal: float | None = None
) -> np.ndarray:
    """M x M matrix of ``value`` from tidy pair rows (one metric, one parameter set, one dataset).

    ``M[i, j]`` is the row with ``model_a = names[i]`` and ``model_b = names[j]``; a symmetric metric
    fills the mirror entry too. Missing entries are NaN. ``diagonal`` (when given) fills self pairs that
    are absent from the table.
    """
    pos = {m: i for i, m in enumerate(names)}
    M = np.full((len(names), len(names)), np.nan)
    for a, b, v in zip(rows["model_a"], rows["model_b"], rows["value"], strict=True):
        if a not in pos or b not in pos:
            continue
        i, j = pos[a], pos[b]
        M[i, j] = float(v)
        if symmetric and np.isnan(M[j, i]):
            M[j, i] = float(v)
    if diagonal is not None:
        d = np.diag(M).copy()
        d[np.isnan(d)] = diagonal
        np.fill_diagonal(M, d)
    return M


def offdiag_values(M: np.ndarray) -> np.ndarray:
    """Finite off-diagonal entries of a square matrix."""
    mask = ~np.eye(M.shape[0], dtype=bool)
    v = M[mask]
    return v[np.isfinite(v)]


def fmt(x: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits for findings (``"n/a"`` for NaN)."""
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:.{digits}g}"


def pair_n(pairs: pd.DataFrame, dataset: str, a: str, b: str, metric: str | None = None) -> int | None:
    """The number of samples behind the pair (a, b) on ``dataset`` (either order; ``None`` if absent)."""
    t = pairs[(pairs["dataset"] == dataset) & (((pairs["model_a"] == a) & (pairs["model_b"] == b))
                                               | ((pairs["model_a"] == b) & (pairs["model_b"] == a)))]
    if metric is not None:
        t = t[t["metric"] == metric]
    return int(t["n"].min()) if len(t) and "n" in t else None


def n_text(values: Iterable[float], unit: str = "") -> str:
    """``"n = 300"`` or ``"n = 47–300"`` (the range of ``values``, NaN left out; ``"n unknown"`` when none),
    followed by ``unit`` (e.g. ``"samples per pair"``) when given: the sample size a headline rests on."""
    v = np.asarray([float(x) for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return "n unknown"
    lo, hi = int(v.min()), int(v.max())
    return (f"n = {lo}" if lo == hi else f"n = {lo}–{hi}") + (f" {unit}" if unit else "")


def n_phrase(pairs: pd.DataFrame, dataset: str, metric: str | None = None) -> str:
    """``"n = 300"`` or ``"n = 47–300"``: the samples behind the pair values of ``dataset``."""
    t = pairs[pairs["dataset"] == dataset]
    if metric is not None:
        t = t[t["metric"] == metric]
    if not len(t) or "n" not in t:
        return "n unknown"
    lo, hi = int(t["n"].min()), int(t["n"].max())
    return f"n = {lo}" if lo == hi else f"n = {lo}–{hi}"
