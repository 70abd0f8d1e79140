"""The measure stage as units: per-model caches, blocks of model pairs, single-model measures.

For one dataset, the models that embed (almost) every sample form the *core* set, compared on their
common samples: one :func:`prepare_cache` unit per model (its exact kNN graph and normalised features,
computed once and shared: through the driver locally, through Ray's object store on a cluster), then one
:func:`measure_block` unit per tile pair of the model list (``pair_block`` models per tile; fixed by the
plan, not by the number of workers, so every executor computes the same numbers). A model with partial
coverage is compared with each other model on the intersection of their two id sets
(:func:`measure_pair_group`). :func:`measure_models` gives the single-model measures.

Every function here is pure (arrays in, a table out); a pair a metric cannot measure gets NaN and the
reason in ``note`` instead of stopping the study.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..errors import MatterAlignError

__all__ = ["prepare_cache", "measure_block", "measure_pair_group", "measure_models", "tiles"]


def _compiled_routes() -> None:
    """Load the compiled kernels before any metric runs: a metric's route (compiled or numpy fallback, which
    round differently) must not depend on what the worker process ran before, or a resumed stage would not
    give the same numbers as an uninterrupted one."""
    from ..metrics._compiled import warm

    warm()


def tiles(names: list[str], size: int | None) -> list[list[str]]:
    """``names`` cut into consecutive tiles of ``size`` (one tile when ``size`` is None or ≥ len)."""
    if not size or size >= len(names):
        return [list(names)]
    return [names[i:i + size] for i in range(0, len(names), size)]


def prepare_cache(X: np.ndarray, normalize: str, k_max: int | None, name: str):
    """The per-model cache of ``X`` (normalised rows, exact kNN graph up to ``k_max``)."""
    _compiled_routes()
    from ..metrics import normalize as _normalize
    from ..metrics import prepare

    Xn = X if normalize == "none" else _normalize(X, method=normalize)
    return prepare(Xn, k_max=k_max, normalize=None, name=name)


def _pairs_recording_errors(caches: dict, name: str, params: dict):
    """All pairs of one metric among ``caches``; a pair it cannot measure gets NaN and the reason in ``note``.

    Degenerate inputs are real (e.g. composition vectors of elemental crystals have duplicated rows, so
    TwoNN-based IdCor is undefined). The study records why instead of stopping or hiding it.
    """
    import pandas as pd

    from ..metrics import get_metric, pairwise

    try:
        df = pairwise(caches, [(name, params)], normalize=None)
        df["note"] = ""
        return df
    except MatterAlignError:
        pass
    spec = get_metric(name)
    rows = []
    names = list(caches)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if spec.symmetric and j < i:
                continue
            try:
                df = pairwise({a: caches[a], b: caches[b]}, [(name, params)], normalize=None)
                df["note"] = ""
                part = df[(df["model_a"] == a) & (df["model_b"] == b)]
                if spec.symmetric and a != b:
                    part = pd.concat([part, df[(df["model_a"] == b) & (df["model_b"] == a)]])
            except MatterAlignError as exc:
                base = {"metric": name, "params": json.dumps(params, sort_keys=True), "n": caches[a].n,
                        "value": np.nan, "normalize": caches[a].normalize, "note": f"{type(exc).__name__}: {exc}"}
                pairs_ = [(a, b)] + ([(b, a)] if spec.symmetric and a != b else [])
                part = pd.DataFrame([{"model_a": x, "model_b": y, **base} for x, y in pairs_])
            rows.append(part)
    return pd.concat(rows, ignore_index=True)


def calibrate_table(df, caches: dict, name: str, params: dict, calibration: dict | None):
    """``df`` (one metric's pairs) with the calibration columns of
    :func:`matteralign.metrics.calibration.calibrate_pairs` merged in (``p_value``, ``ci_low``, ``ci_high``,
    null statistics, calibrated scores); a pair that cannot be calibrated says why in ``note``."""
    import pandas as pd

    from ..metrics.calibration import CALIBRATION_COLUMNS, calibrate_pairs

    if not calibration or not calibration.get("enabled", True) or df.empty:
        return df
    opts = {k: calibration[k] for k in ("n_permutations", "alpha", "seed", "n_subsamples", "fraction",
                                          "confidence", "null_max_n") if k in calibration}
    pairs = [(a, b) for a, b, v in zip(df["model_a"], df["model_b"], df["value"], strict=True) if np.isfinite(v)]
    parts, failed = [], {}
    for group in ([pairs] if pairs else []):
        try:
            parts.append(calibrate_pairs(caches, name, params, pairs=group, **opts))
        except MatterAlignError:
            for pair in group:  # one pair at a time, to keep the others
                try:
                    parts.append(calibrate_pairs(caches, name, params, pairs=[pair], **opts))
                except MatterAlignError as exc:
                    failed[pair] = f"calibration: {type(exc).__name__}: {exc}"
    cal = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CALIBRATION_COLUMNS)
    cal = cal.drop(columns=["metric", "params"]).rename(columns={"note": "_cal_note"})
    out = df.drop(columns=[c for c in ("p_value", "ci_low", "ci_high") if c in df]).merge(
        cal, on=["model_a", "model_b"], how="left")
    notes = []
    for a, b, note, cnote, v in zip(out["model_a"], out["model_b"], out["note"], out["_cal_note"], out["value"],
                                    strict=True):
        extra = failed.get((a, b)) or (cnote if isinstance(cnote, str) else "")
        if not np.isfinite(v) and not extra:
            extra = "no null or interval: the value is undefined"
        notes.append("; ".join(x for x in (note, extra) if x))
    out["note"] = notes
    return out.drop(columns=["_cal_note"])


def measure_block(rows: list[str], cols: list[str], metrics: list[tuple[str, dict]], calibration: dict | None,
                  *caches):
    """The pairs of one tile pair: ``rows × cols`` and ``cols × rows`` (``rows × rows`` on the diagonal).

    ``caches`` are the prepared caches of ``rows`` then of the ``cols`` not in ``rows``, in that order;
    ``calibration`` (the study's ``[calibration]`` table and ``seed``) adds nulls and intervals.
    """
    _compiled_routes()
    import pandas as pd

    names = list(dict.fromkeys([*rows, *cols]))
    by_name = dict(zip(names, caches, strict=True))
    want = {(a, b) for a in rows for b in cols} | {(b, a) for a in rows for b in cols}
    frames = []
    for name, params in metrics:
        df = _pairs_recording_errors(by_name, name, params)
        keep = [(a, b) in want for a, b in zip(df["model_a"], df["model_b"], strict=True)]
        frames.append(calibrate_table(df[keep].reset_index(drop=True), by_name, name, params, calibration))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def measure_pair_group(a: str, b: str, Xa: np.ndarray, Xb: np.ndarray, normalize: str, k_max: int | None,
                       metrics: list[tuple[str, dict]], with_self: bool, calibration: dict | None = None):
    """The pairs ``(a, b)`` and ``(b, a)`` on the intersection of their samples (and ``(a, a)`` if asked)."""
    _compiled_routes()
    import pandas as pd

    caches = {a: prepare_cache(Xa, normalize, k_max, a), b: prepare_cache(Xb, normalize, k_max, b)}
    frames = []
    for name, params in metrics:
        df = _pairs_recording_errors(caches, name, params)
        keep = df["model_a"] != df["model_b"]
        if with_self:
            keep |= (df["model_a"] == a) & (df["model_b"] == a)
        frames.append(calibrate_table(df[keep].reset_index(drop=True), caches, name, params, calibration))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def measure_models(model: str, X: np.ndarray, normalize: str, model_metrics: dict[str, list[dict]],
                   calibration: dict | None = None):
    """Single-model measures of ``X`` (one row per metric and parameter set; NaN and the reason on failure),
    with a half-sampling interval over samples when ``calibration`` is given."""
    _compiled_routes()
    import pandas as pd

    from ..metrics import get_metric
    from ..metrics import normalize as _normalize

    Xn = X if normalize == "none" else _normalize(X, method=normalize)
    rows: list[dict[str, Any]] = []
    for name, param_sets in model_metrics.items():
        spec = get_metric(name)
        for params in param_sets:
            note = ""
            try:
                value = float(spec.function(Xn, **params))
            except MatterAlignError as exc:
                value, note = np.nan, f"{type(exc).__name__}: {exc}"
            ci = {}
            if calibration and calibration.get("enabled", True) and np.isfinite(value):
                from ..metrics.calibration import model_interval

                try:
                    lo, hi, how = model_interval(
                        Xn, name, params, value=value, n_subsamples=calibration.get("n_subsamples", 20),
                        fraction=calibration.get("fraction", 0.5), confidence=calibration.get("confidence", 0.95),
                        seed=calibration.get("seed", 0))
                except MatterAlignError as exc:
                    lo, hi, how = np.nan, np.nan, f"none: {type(exc).__name__}: {exc}"
                ci = {"ci_low": lo, "ci_high": hi, "ci_method": how}
            rows.append({"model": model, "metric": name, "params": json.dumps(params, sort_keys=True),
                         "n": int(X.shape[0]), "value": value, "note": note, **ci})
    return pd.DataFrame(rows)
