"""Calibrated alignment in the report: calibrated matrices beside the raw ones, and the confounds.

Reads the calibration columns the measure stage writes into the pairs table
(:func:`matteralign.metrics.calibration.calibrate_pairs`): ``calibrated`` (gated score against the permutation
null, 0 = not above chance at level alpha) and ``p_adjusted`` (Benjamini-Hochberg across the pairs of a dataset
and metric).

Confounds, per dataset and metric, raw and calibrated:

* **training vs architecture**: for each re-initialised model ``r`` of a trained model ``t`` (``random_init_of``
  on its spec), the mean alignment of ``t`` and of ``r`` with every other model (both compared with the same
  partners), their difference and a 95 % bootstrap interval over the partners;
* **scale** (width, parameter count, depth): Spearman correlation between the alignment of a pair and the
  geometric mean of the two models' embedding widths, parameter counts (``n_parameters`` of the model's
  provenance) and depths (the depth index of the compared layer, where the model's spec lists its layers'
  depths), with a 95 % bootstrap interval over pairs (a raw score that grows with width or depth is the
  Aristotelian warning). Pairs with a fact unknown for either model are left out of that fact's row;
* **composition**: each model's alignment with the ``composition`` baseline (element fractions), when the
  study has it, and every pair's alignment after residualising both representations on the composition
  features by ridge regression (:func:`residualise`; unbiased CKA with its permutation null), so the report
  says how much of the agreement is more than shared chemistry.
"""

from __future__ import annotations

import numpy as np

from ._common import fmt, order_models
from .base import AnalysisContext, AnalysisResult, register_analysis

__all__ = ["run", "confounds", "model_depth", "residualise", "beyond_composition"]

_B = 1000


def _pair_frame(ctx: AnalysisContext):
    df = ctx.pairs
    if "calibrated" not in df or df["calibrated"].notna().sum() == 0:
        return None
    return df[df["model_a"] != df["model_b"]]


def _boot_mean_ci(x: np.ndarray, rng) -> tuple[float, float]:
    if x.size < 2:
        return float("nan"), float("nan")
    means = x[rng.integers(0, x.size, (_B, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def _n_params(meta) -> int | None:
    """The parameter count of a model's provenance (``n_params`` of its metadata), when known and positive."""
    value = (meta or {}).get("n_params")
    try:
        value = int(value)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def model_depth(model: str, meta) -> int | None:
    """Depth index of the compared layer (``meta["layer"]``, else the default layer) from the model's spec.

    Only specs that list their layers' depths (``ModelSpec.depths``) count; a spec without them (depths are
    then mere positions in its layer list) or a model outside the registry gives ``None`` (unknown).
    Controls (``meta["control"]``) have no depth.

    Returns
    -------
    int or None
        0 nearest the input; larger is deeper.
    """
    from ..errors import MatterAlignError

    meta = meta or {}
    if meta.get("control"):
        return None
    try:
        from ..models import get_spec

        spec = get_spec(model)
    except (MatterAlignError, ImportError):
        return None
    if not spec.depths:
        return None
    layer = meta.get("layer") or spec.default_layer
    return next((li.depth for li in spec.layer_info() if li.name == layer), None)


def confounds(ctx: AnalysisContext, *, seed: int = 0):
    """The confound tables (module docstring): ``(training, scale, composition)`` DataFrames.

    ``scale`` has one row per (dataset, metric, params, score, confound) with ``confound`` one of ``width``,
    ``n_params``, ``depth``: ``spearman_rho`` of the pair scores against the geometric mean of the two models'
    fact, its 95 % bootstrap interval over pairs (``ci_low``, ``ci_high``), ``pairs`` and ``models`` used.
    """
    import pandas as pd

    df = _pair_frame(ctx)
    rng = np.random.default_rng(seed)
    train_rows, width_rows, comp_rows = [], [], []
    if df is None:
        return pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
    for (ds, metric, params), g in df.groupby(["dataset", "metric", "params"], sort=False):
        widths = {m: e.X.shape[1] for m, e in ctx.embeddings.get(ds, {}).items()}
        n_params = {m: float(p) for m in widths if (p := _n_params(ctx.models.get(m))) is not None}
        depths = {m: float(d) for m in widths if (d := model_depth(m, ctx.models.get(m))) is not None}
        for score in ("value", "calibrated"):
            val = {(a, b): v for a, b, v in zip(g["model_a"], g["model_b"], g[score], strict=True)}
            # training vs architecture
            for r, meta in ctx.models.items():
                t = meta.get("random_init_of")
                if not t or t not in widths or r not in widths:
                    continue
                partners = [o for o in widths if o not in (r, t)
                            and np.isfinite(val.get((t, o), np.nan)) and np.isfinite(val.get((r, o), np.nan))]
                if not partners:
                    continue
                d = np.array([val[(t, o)] - val[(r, o)] for o in partners])
                lo, hi = _boot_mean_ci(d, rng)
                train_rows.append(dict(dataset=ds, metric=metric, params=params, score=score, trained=t,
                                       random_init=r, trained_mean=float(np.mean([val[(t, o)] for o in partners])),
                                       random_mean=float(np.mean([val[(r, o)] for o in partners])),
                                       difference=float(d.mean()), ci_low=lo, ci_high=hi, partners=len(partners)))
            # scale: width, parameter count, depth
            for confound, fact in (("width", widths), ("n_params", n_params), ("depth", depths)):
                keys = [(a, b) for (a, b), v in val.items() if a < b and np.isfinite(v) and a in fact and b in fact]
                if len(keys) < 3:
                    continue
                w = np.array([np.sqrt(fact[a] * fact[b]) for a, b in keys], dtype=float)
                v = np.array([val[k] for k in keys])
                rho = _spearman(w, v)
                boots = [_spearman(w[i], v[i]) for i in rng.integers(0, len(keys), (200, len(keys)))]
                boots = np.array([b for b in boots if np.isfinite(b)])
                lo, hi = (np.quantile(boots, [0.025, 0.975]) if boots.size > 10 else (np.nan, np.nan))
                width_rows.append(dict(dataset=ds, metric=metric, params=params, score=score, confound=confound,
                                       spearman_rho=rho, ci_low=float(lo), ci_high=float(hi), pairs=len(keys),
                                       models=len({m for k in keys for m in k})))
            # composition baseline
            if "composition" in widths:
                for m in widths:
                    if m != "composition" and np.isfinite(val.get((m, "composition"), np.nan)):
                        comp_rows.append(dict(dataset=ds, metric=metric, params=params, score=score, model=m,
                                              with_composition=float(val[(m, "composition")])))
    return pd.DataFrame(train_rows), pd.DataFrame(width_rows), pd.DataFrame(comp_rows)


def residualise(X: np.ndarray, C: np.ndarray, *, ridge: float = 1e-6) -> np.ndarray:
    """What of ``X`` the features ``C`` do not explain: residuals of a ridge regression of ``X`` on ``C``.

    .. math:: R = X_c - C_c (C_c^T C_c + \\lambda I)^{-1} C_c^T X_c,\\qquad
        \\lambda = \\text{ridge} \\cdot \\operatorname{tr}(C_c^T C_c) / d_C

    Parameters
    ----------
    X : ndarray, shape (n, d)
        A representation.
    C : ndarray, shape (n, d_C)
        Confound features (e.g. element fractions); both are column-centred first.
    ridge : float
        Relative ridge penalty (small: it only keeps collinear confounds, e.g. fractions summing to 1, solvable).

    Returns
    -------
    ndarray, shape (n, d)
        Residuals (float64, column-centred): the part of ``X`` orthogonal to (what is linear in) ``C``.
    """
    Xc = np.asarray(X, dtype=np.float64) - np.mean(X, axis=0)
    Cc = np.asarray(C, dtype=np.float64) - np.mean(C, axis=0)
    G = Cc.T @ Cc
    lam = ridge * max(float(np.trace(G)) / max(G.shape[0], 1), 1e-12)
    W = np.linalg.solve(G + lam * np.eye(G.shape[0]), Cc.T @ Xc)
    return Xc - Cc @ W


def beyond_composition(ctx: AnalysisContext, *, metric: str = "unbiased_cka", n_permutations: int = 100):
    """Alignment of every model pair after residualising both on the ``composition`` baseline (per dataset):
    raw and residual value, the residual's p-value and calibrated score (:func:`calibrate_pairs`)."""
    import pandas as pd

    from ..metrics import prepare
    from ..metrics.calibration import calibrate_pairs

    rows = []
    for ds, embs in ctx.embeddings.items():
        if "composition" not in embs:
            continue
        names = [m for m in embs if m != "composition"]
        common = set(embs["composition"].ids).intersection(*(set(embs[m].ids) for m in names))
        ids = [i for i in embs["composition"].ids if i in common]
        if len(ids) < 20 or len(names) < 2:
            continue
        C = embs["composition"].aligned(ids)
        raw = {m: prepare(embs[m].aligned(ids), k_max=10, normalize="none", name=m) for m in names}
        res = {}
        for m in names:
            R = residualise(embs[m].aligned(ids), C)
            if np.ptp(R) > 0:
                res[m] = prepare(R, k_max=10, normalize="none", name=m)
        pairs = [(a, b) for a in res for b in res if a < b]
        if not pairs:
            continue
        before = calibrate_pairs(raw, metric, {}, pairs=pairs, n_permutations=n_permutations, seed=ctx.seed,
                                 n_subsamples=0)
        after = calibrate_pairs(res, metric, {}, pairs=pairs, n_permutations=n_permutations, seed=ctx.seed,
                                n_subsamples=0)
        from ..metrics import get_metric

        spec = get_metric(metric)
        for (a, b), rb, ra in zip(pairs, before.itertuples(), after.itertuples(), strict=True):
            rows.append(dict(dataset=ds, metric=metric, model_a=a, model_b=b, n=len(ids),
                             value=float(spec.from_cache(raw[a], raw[b])), calibrated=rb.calibrated,
                             value_beyond_composition=float(spec.from_cache(res[a], res[b])),
                             p_beyond_composition=ra.p_value, calibrated_beyond_composition=ra.calibrated))
    return pd.DataFrame(rows)


@register_analysis("calibration", options={"fdr", "n_permutations"}, cost=5)
def run(ctx: AnalysisContext) -> AnalysisResult:
    """Calibrated matrices (significant cells after FDR starred) and the confound tables."""
    from ._plot import heatmap, matrix_figsize, pyplot, safe_name, save

    fdr = float(ctx.params.get("fdr", 0.05))
    res = AnalysisResult(
        name="calibration", title="Calibrated alignment and confounds",
        summary=(
            "Each raw score is compared with its permutation null (the metric with the samples of one model "
            "shuffled). Calibrated score: (s - tau) / (s_max - tau) clipped to [0, 1], tau the 95th percentile of "
            "the null: 0 means no more aligned than chance. Stars mark pairs significant after the "
            f"Benjamini-Hochberg correction at FDR {fdr} across the pairs of a dataset and metric. The "
            "confound tables compare trained models with their re-initialised architectures, relate scores to "
            "embedding width, parameter count (from each model's provenance) and layer depth (from each model's "
            "spec, where it lists its layers' depths), each as the Spearman correlation of a pair's score with "
            "the geometric mean of the two models' values, and give each model's alignment with plain element "
            "fractions (composition)."),
    )
    df = _pair_frame(ctx)
    if df is None:
        res.summary += " This study ran without calibration ([calibration] enabled = false): nothing to show."
        return res
    plt = pyplot()
    full = ctx.pairs
    for (ds, metric, params), g in full.groupby(["dataset", "metric", "params"], sort=False):
        names = order_models(ctx.models, list(dict.fromkeys([*g["model_a"], *g["model_b"]])))
        pos = {m: i for i, m in enumerate(names)}
        raw = np.full((len(names),) * 2, np.nan)
        cal = raw.copy()
        sig = np.zeros(raw.shape, dtype=bool)
        for a, b, v, c, q in zip(g["model_a"], g["model_b"], g["value"], g["calibrated"], g["p_adjusted"],
                                 strict=True):
            raw[pos[a], pos[b]], cal[pos[a], pos[b]] = v, c
            sig[pos[a], pos[b]] = a != b and np.isfinite(q) and q <= fdr
        w, h = matrix_figsize(len(names), len(names), names)
        fig, axes = plt.subplots(1, 2, figsize=(2 * w, h))
        heatmap(axes[0], raw, names, title=f"{metric}: raw", marks=sig)
        heatmap(axes[1], cal, names, vmin=0, vmax=1, title=f"{metric}: calibrated", marks=sig)
        path = save(fig, ctx.out_dir / f"calibrated_{safe_name(ds)}_{safe_name(metric)}_{safe_name(params)}.png")
        res.figures.append(path)
        res.captions[path.name] = (
            f"{ds}, {metric} {params}: raw scores (left) and calibrated scores (right); * = significant after "
            f"BH at FDR {fdr} (unstarred cells are not distinguishable from chance).")
        off = g[g["model_a"] != g["model_b"]]
        n_sig = int((off["p_adjusted"] <= fdr).sum())
        res.findings.append(
            f"{ds}, {metric}: {n_sig} of {len(off)} model pairs align beyond chance after FDR {fdr}; "
            f"mean raw {fmt(float(off['value'].mean()))}, mean calibrated {fmt(float(off['calibrated'].mean()))}.")
    training, width, comp = confounds(ctx, seed=ctx.seed)
    res.tables["calibrated_pairs"] = df[[c for c in ("dataset", "model_a", "model_b", "metric", "params", "value",
                                                     "p_value", "p_adjusted", "null_mean", "null_tau", "calibrated",
                                                     "calibrated_centered", "ci_low", "ci_high") if c in df]]
    beyond = beyond_composition(ctx, n_permutations=int(ctx.params.get("n_permutations", 100)))
    for name, t in (("training_vs_architecture", training), ("scale", width), ("composition", comp),
                    ("beyond_composition", beyond)):
        if len(t):
            res.tables[name] = t
    for r in training.itertuples() if len(training) else ():
        res.findings.append(
            f"{r.dataset}, {r.metric} ({r.score}): {r.trained} vs its re-initialised {r.random_init}, mean over "
            f"{r.partners} partners {fmt(r.trained_mean)} vs {fmt(r.random_mean)}; difference {fmt(r.difference)} "
            f"[{fmt(r.ci_low)}, {fmt(r.ci_high)}].")
    facts = {"width": "embedding width", "n_params": "parameter count", "depth": "layer depth"}
    for r in width.itertuples() if len(width) else ():
        res.findings.append(f"{r.dataset}, {r.metric} ({r.score}): Spearman rho with {facts[r.confound]} "
                            f"{fmt(r.spearman_rho)} [{fmt(r.ci_low)}, {fmt(r.ci_high)}] over {r.pairs} pairs "
                            f"of {r.models} models.")
    for ds, g in beyond.groupby("dataset") if len(beyond) else ():
        res.findings.append(
            f"{ds}: after removing what element fractions explain (ridge residuals), mean calibrated unbiased "
            f"CKA over {len(g)} pairs goes from {fmt(float(g['calibrated'].mean()))} to "
            f"{fmt(float(g['calibrated_beyond_composition'].mean()))}.")
    return res
