"""Intrinsic dimension of each model's representation, grouped by embedding type (paper Fig. 1E, C7)."""

from __future__ import annotations

import numpy as np

from ._common import family_of, fmt, parse_params
from .base import AnalysisContext, AnalysisResult, register_analysis

__all__ = ["run", "TYPE_ORDER"]

#: Display order of embedding types.
TYPE_ORDER = ("invariant", "equivariant", "vanilla", "descriptor", "text", "random")


def _estimator(p) -> str:
    d = parse_params(p)
    method = str(d.get("method", "twonn"))
    return f"{method} (k={d['k']})" if "k" in d and method != "twonn" else method


@register_analysis("dimension", options=[])
def run(ctx: AnalysisContext) -> AnalysisResult:
    """Strip plot and table of TwoNN / MLE intrinsic dimension per model, by embedding type."""
    import pandas as pd

    from ._plot import model_legend, model_styles, pyplot, safe_name, save

    plt = pyplot()
    res = AnalysisResult(
        name="dimension",
        title="Intrinsic dimension by embedding type",
        summary=(
            "Intrinsic dimension (Id) of each model's representation of each dataset, by TwoNN (Facco et al. "
            "2017) and by the Levina–Bickel maximum-likelihood estimator, computed on the normalised embeddings. "
            "Models are grouped by embedding type; each point is one model, in its family's colour (a shade and "
            "marker per model), and the bar is the median of the group. The paper finds invariant < equivariant < vanilla, with language-model and "
            "random embeddings much higher (Fig. C7)."
        ),
    )
    pm = ctx.per_model
    pm = pm[pm["metric"] == "intrinsic_dimension"] if len(pm) else pm
    if pm.empty:
        res.findings.append("No intrinsic-dimension results in the study (add intrinsic_dimension to "
                            "model_metrics), so nothing is shown.")
        return res
    tab = pm.assign(estimator=pm["params"].map(_estimator))
    tab = tab.pivot_table(index=["dataset", "model"], columns="estimator", values="value", aggfunc="first")
    tab = tab.reset_index()
    tab.columns.name = None
    ests = [c for c in tab.columns if c not in ("dataset", "model")]
    ests = sorted(ests, key=lambda e: (not e.startswith("twonn"), e))
    tab["family"] = [family_of(ctx.models, m) for m in tab["model"]]
    tab["embedding_type"] = [str((ctx.models.get(m) or {}).get("embedding_type") or "unknown") for m in tab["model"]]
    types = [t for t in TYPE_ORDER if t in set(tab["embedding_type"])] + sorted(
        set(tab["embedding_type"]) - set(TYPE_ORDER))
    tab["_t"] = tab["embedding_type"].map({t: i for i, t in enumerate(types)})
    tab = tab.sort_values(["dataset", "_t", "family", "model"]).drop(columns="_t").reset_index(drop=True)
    res.tables["intrinsic_dimension"] = tab[["dataset", "model", "family", "embedding_type", *ests]]

    med_rows = []
    styles = model_styles(ctx.models, list(ctx.models))  # family colour; a shade and a marker per model
    rng = np.random.default_rng(ctx.seed)
    for dataset, g in tab.groupby("dataset", sort=True):
        fig, axes = plt.subplots(1, len(ests), figsize=(max(4.5, 0.9 * len(types) + 1.5) * len(ests), 4.0),
                                 squeeze=False)
        for ax, est in zip(axes[0], ests, strict=True):
            for ti, t in enumerate(types):
                sub = g[g["embedding_type"] == t]
                vals = sub[est].to_numpy(dtype=float)
                ok = np.isfinite(vals)
                if not ok.any():
                    continue
                x = ti + rng.uniform(-0.18, 0.18, size=len(vals))
                for xi, vi, m in zip(x[ok], vals[ok], sub["model"][ok], strict=True):
                    st = styles.get(m, {"color": "#000000", "marker": "o"})
                    ax.scatter([xi], [vi], s=30, color=st["color"], marker=st["marker"], edgecolors="white",
                               linewidths=0.5, zorder=3)
                med = float(np.median(vals[ok]))
                ax.hlines(med, ti - 0.3, ti + 0.3, color="#222222", lw=1.6, zorder=2)
                med_rows.append((dataset, est, t, int(ok.sum()), med))
            ax.set_xticks(range(len(types)), labels=types, rotation=30, ha="right")
            ax.set_xlim(-0.6, len(types) - 0.4)
            ax.set_ylabel("intrinsic dimension")
            ax.set_title(f"{dataset}: {est}")
        model_legend(axes[0][-1], ctx.models, list(g["model"]), loc="upper left", bbox_to_anchor=(1.0, 1.0),
                     title="model (colour = family)", ncol=1 + len(g) // 25)
        fig.tight_layout()
        res.figures.append(save(fig, ctx.out_dir / f"dimension_{safe_name(dataset)}.png"))
        res.captions[res.figures[-1].name] = (
            f"{dataset}: intrinsic dimension of each model's embedding ({', '.join(ests)}), grouped by embedding "
            "type; a dot per model (colour = family, a shade and marker per model), a bar at each type's median.")
    med = pd.DataFrame(med_rows, columns=["dataset", "estimator", "embedding_type", "n_models", "median_id"])
    res.tables["median_by_type"] = med
    for (dataset, est), g in med.groupby(["dataset", "estimator"], sort=True):
        if est != ests[0]:
            continue
        parts = ", ".join(f"{t} {fmt(v)} (n={n})" for t, v, n in
                          zip(g["embedding_type"], g["median_id"], g["n_models"], strict=True))
        res.findings.append(f"{dataset}: median {est} intrinsic dimension by embedding type: {parts}.")
    return res
