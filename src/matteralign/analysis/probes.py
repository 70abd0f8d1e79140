"""Linear probes of every physical label from every model's representation, beside two baselines.

Not in arXiv 2512.03750: this measures the press article's claim that linear probes read physical
quantities off the models' latent spaces. Each probe is a :class:`~matteralign.probes.LinearProbe`
(standardised features, ridge with a leave-one-out-chosen penalty) scored by K-fold cross-validated
R² and MAE, with a Student-t interval over folds. Baselines on the same samples and folds: Gaussian
random features of the model's width, and the element-count (or fraction) vector of the structure.
"""

from __future__ import annotations

import numpy as np

from ._common import family_of, fmt, is_control, n_text
from ._labels import composition_of, embedded_models, label_values, physical_labels, rows_for, sample_subset
from .base import AnalysisContext, AnalysisResult, register_analysis

__all__ = ["run", "probe_table"]

_COMP_TEXT = {
    "best": "per label the better of element counts and element fractions, ridge on the raw values",
    "counts": "element counts, ridge on the raw values",
    "fractions": "element fractions, ridge on the raw values",
}
_DEFAULTS = {"max_samples": 5000, "cv": 5, "composition": "best", "confidence": 0.95, "max_labels": 24}


def _params(ctx: AnalysisContext) -> dict:
    from ..errors import ConfigError

    p = {**_DEFAULTS, **(ctx.params or {})}
    if p["composition"] not in ("best", "counts", "fractions"):
        raise ConfigError(
            f"probes: composition must be 'best', 'counts' or 'fractions'; got {p['composition']!r}"
        )
    if not isinstance(p["cv"], int) or p["cv"] < 2:
        raise ConfigError(f"probes: cv must be an integer ≥ 2; got {p['cv']!r}")
    return p


def probe_table(ctx: AnalysisContext):
    """Cross-validated probe scores for every dataset × label × model, with baselines.

    Returns
    -------
    (scores, baselines) : tuple of pandas.DataFrame
        ``scores``: dataset, label, model, family, control, r2, r2_low, r2_high, mae, mae_low, mae_high,
        alpha, n, n_dropped, r2_random, r2_composition, mae_composition, composition_kind,
        beats_composition.
        ``baselines``: dataset, label, baseline, dim, r2, r2_low, r2_high, mae, mae_low, mae_high, n.
        The composition baseline (parameter ``composition``: ``best`` (default), ``counts`` or ``fractions``)
        is ridge on the raw element counts or fractions; ``best`` keeps, per label, the better of the two
        (a deliberately strong baseline). A model "beats composition" when the lower end of its R² interval
        exceeds both zero and the composition baseline's mean R² on the same samples and folds.
    """
    import pandas as pd

    from ..probes import cross_validated_probes, random_features

    p = _params(ctx)
    rows, base_rows = [], []
    for ds_name, dataset in ctx.datasets.items():
        models = embedded_models(ctx, ds_name)
        if not models:
            continue
        labels = physical_labels(dataset, p)[: int(p["max_labels"])]
        subset = sample_subset(dataset, p["max_samples"], ctx.seed)
        # models that embedded the same samples share baselines (cached per id set and width)
        kw = {"cv": p["cv"], "seed": ctx.seed, "confidence": p["confidence"]}
        cache: dict = {}
        for m in models:
            ids, X = rows_for(ctx.embeddings[ds_name][m], subset)
            if len(ids) < 2 * p["cv"]:
                continue
            key = tuple(ids)
            if key not in cache:  # labels and the composition baseline, once per set of samples
                ys = {}
                for lab in labels:
                    y = label_values(dataset, ids, lab)
                    if np.isfinite(y).sum() >= 2 * p["cv"] and np.nanstd(y) > 0:
                        ys[lab] = y
                comp: dict = {}
                kinds = ("counts", "fractions") if p["composition"] == "best" else (p["composition"],)
                for kind in kinds:
                    C = composition_of(dataset, ids, kind=kind) if ys else None
                    if C is None:
                        continue
                    # raw element counts/fractions: standardising a rare element would inflate it
                    for lab, r in cross_validated_probes(C, ys, standardize=False, **kw).items():
                        r = r.as_dict()
                        base_rows.append({"dataset": ds_name, "label": lab, "baseline": f"composition ({kind})",
                                          "dim": C.shape[1], **_pick(r)})  # fmt: skip
                        if lab not in comp or r["r2"] > comp[lab]["r2"]:
                            comp[lab] = {**r, "kind": kind}
                cache[key] = (ys, comp)
            ys, comp = cache[key]
            if not ys:
                continue
            rk = (key, X.shape[1])
            if rk not in cache:  # random features of this width on these samples
                R = random_features(len(ids), X.shape[1], seed=ctx.seed + 1)
                cache[rk] = {k: v.as_dict() for k, v in cross_validated_probes(R, ys, **kw).items()}
                for lab, r in cache[rk].items():
                    base_rows.append({"dataset": ds_name, "label": lab, "baseline": f"random (d={X.shape[1]})",
                                      "dim": X.shape[1], **_pick(r)})  # fmt: skip
            rand = cache[rk]
            for lab, r in cross_validated_probes(X, ys, **kw).items():
                res = r.as_dict()
                r2c = comp[lab]["r2"] if lab in comp else np.nan
                rows.append({
                    "dataset": ds_name, "label": lab, "model": m, "family": family_of(ctx.models, m),
                    "control": is_control(ctx.models.get(m)), **res,
                    "r2_random": rand[lab]["r2"],
                    "r2_composition": r2c,
                    "mae_composition": comp[lab]["mae"] if lab in comp else np.nan,
                    "composition_kind": comp[lab]["kind"] if lab in comp else "",
                    "beats_composition": bool(np.isfinite(r2c) and res["r2_low"] > max(r2c, 0.0)),
                })  # fmt: skip
    scores = pd.DataFrame(rows)
    baselines = pd.DataFrame(base_rows).drop_duplicates(subset=["dataset", "label", "baseline"])
    return scores, baselines


def _pick(d: dict) -> dict:
    return {k: d[k] for k in ("r2", "r2_low", "r2_high", "mae", "mae_low", "mae_high", "n")}


def _figure(ctx: AnalysisContext, ds: str, scores, baselines):
    from ._plot import heatmap, model_colors, pyplot, safe_name, save

    plt = pyplot()
    sub = scores[scores["dataset"] == ds]
    labels = list(dict.fromkeys(sub["label"]))
    models = list(dict.fromkeys(sub["model"]))
    M = (
        sub.pivot(index="model", columns="label", values="r2")
        .reindex(index=models, columns=labels)
        .to_numpy()
    )
    extra, names = [], list(models)
    b = baselines[baselines["dataset"] == ds]
    comp = sub.groupby("label")["r2_composition"].first().reindex(labels).to_numpy()
    if np.isfinite(comp).any():
        extra.append(comp)
        names.append("[composition baseline]")
    bb = b[b["baseline"].str.startswith("random")]
    if len(bb):
        extra.append(bb.groupby("label")["r2"].mean().reindex(labels).to_numpy())
        names.append("[random baseline]")
    if extra:
        M = np.vstack([M, *extra])
    colors = model_colors(ctx.models, models) + ["#555555"] * len(extra)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * len(labels), 1.0 + 0.36 * len(names)))
    heatmap(
        ax,
        M,
        names,
        labels,
        vmin=0.0,
        vmax=1.0,
        cbar_label="cross-validated R² (linear probe)",
        row_colors=colors,
        title=f"{ds}: linear-probe R² per label",
    )
    ax.set_aspect("auto")
    return save(fig, ctx.out_dir / f"probes_{safe_name(ds)}.png")


@register_analysis("probes", options=[*_DEFAULTS, "labels", "exclude_labels"], cost=2)
def run(ctx: AnalysisContext) -> AnalysisResult:
    """Probe every label from every model (our extension; see the module docstring)."""
    p = _params(ctx)
    scores, baselines = probe_table(ctx)
    res = AnalysisResult(
        name="probes",
        title="Linear probes of physical labels (extension)",
        summary=(
            "How much of each physical label a linear read-out recovers from each model's pooled representation: "
            f"ridge on standardised features (penalty by leave-one-out), {p['cv']}-fold cross-validated R² "
            f"(mean over folds, {int(p['confidence'] * 100)}% Student-t interval over folds) and MAE in the "
            "label's units. The same samples and folds are probed from Gaussian random features of the same "
            f"width and from the element composition of each structure ({_COMP_TEXT[p['composition']]}); a model "
            "beats composition "
            "when its whole interval lies above both zero and the composition R². This is not an analysis of the paper "
            "(arXiv 2512.03750 has no probes); it tests a claim made about it in the press."
        ),
    )
    if scores.empty:
        res.summary += " No dataset had both labels and embeddings, so nothing was probed."
        return res
    res.tables["probe_scores"] = scores
    res.tables["probe_baselines"] = baselines
    for ds in dict.fromkeys(scores["dataset"]):
        res.figures.append(_figure(ctx, ds, scores, baselines))
        res.captions[res.figures[-1].name] = (
            f"{ds}: cross-validated R² of a linear probe of each label from each model's embedding, beside the "
            "baselines.")
        sub = scores[(scores["dataset"] == ds) & ~scores["control"]]
        if sub.empty:
            continue
        labels = list(dict.fromkeys(sub["label"]))
        scored = sub[np.isfinite(sub["r2"].to_numpy(dtype=float))]  # a label no model could be scored on
        best = scored.loc[scored.groupby("label")["r2"].idxmax()] if len(scored) else scored
        parts = [f"{r.label}: {r.model} R² {fmt(r.r2)} [{fmt(r.r2_low)}, {fmt(r.r2_high)}]"
                 for r in best.itertuples()]  # fmt: skip
        res.findings.append(f"{ds}: best model per label — " + "; ".join(parts)
                            + f" ({n_text(best['n'], 'samples per probe')}).")
        undecoded = [r.label for r in best.itertuples() if not r.r2_low > 0.0]
        if undecoded:
            res.findings.append(
                f"{ds}: no model decodes {', '.join(undecoded)} (the best R² interval reaches down to 0 or below; "
                f"{n_text(best[best['label'].isin(undecoded)]['n'], 'samples per probe')})."
            )
        n_beat = int(best["beats_composition"].sum())
        has_comp = int(np.isfinite(best["r2_composition"]).sum())
        if has_comp:
            res.findings.append(
                f"{ds}: for {n_beat} of {has_comp} labels the best model's R² interval lies above 0 and above the "
                f"composition baseline; per model, labels beating it: "
                + ", ".join(
                    f"{m} {int(g['beats_composition'].sum())}/{len(g)}" for m, g in sub.groupby("model")
                )
                + f" ({n_text(sub['n'], 'samples per probe')})."
            )
        mean_r2 = sub.groupby("model")["r2"].mean().sort_values(ascending=False)
        rand_max = float(scores[scores["dataset"] == ds]["r2_random"].max())
        res.findings.append(
            f"{ds}: mean probe R² over {len(labels)} labels ranges from {fmt(mean_r2.iloc[-1])} "
            f"({mean_r2.index[-1]}) to {fmt(mean_r2.iloc[0])} ({mean_r2.index[0]}); the random-feature "
            f"baseline never exceeds R² {fmt(rand_max)} ({n_text(sub['n'], 'samples per probe')})."
        )
        ctrl = scores[(scores["dataset"] == ds) & scores["control"]]
        if not ctrl.empty:
            res.findings.append(
                f"{ds}: control models reach a mean probe R² of {fmt(float(ctrl['r2'].mean()))} "
                f"(max {fmt(float(ctrl['r2'].max()))}; {n_text(ctrl['n'], 'samples per probe')})."
            )
    return res
