"""In- vs out-of-distribution alignment of interatomic potentials (paper §OOD: OMat24 vs OMol25)."""

from __future__ import annotations

import numpy as np

from ._common import fmt, is_mlip, n_text, select_params
from .base import AnalysisContext, AnalysisResult, register_analysis
from .imbalance import _sym_lookup

__all__ = ["run"]


@register_analysis("ood", options=["id_dataset", "ood_dataset", "metric", "k"])
def run(ctx: AnalysisContext) -> AnalysisResult:
    """CKNNA of every pair of interatomic potentials on the in-distribution vs the OOD dataset."""
    import pandas as pd
    from scipy.stats import pearsonr, spearmanr

    from ._plot import label_points, pyplot, save

    id_ds = str(ctx.params.get("id_dataset", "crystals"))
    ood_ds = str(ctx.params.get("ood_dataset", "molecules"))
    metric = str(ctx.params.get("metric", "cknna"))
    k = int(ctx.params.get("k", 25))
    res = AnalysisResult(
        name="ood",
        title="In- vs out-of-distribution alignment",
        summary=(
            f"{metric} of each pair of interatomic potentials (models of kind 'mlip' or with an invariant, "
            f"equivariant or vanilla embedding; controls excluded) on '{id_ds}' (x, in distribution for "
            f"materials potentials) against '{ood_ds}' (y, out of distribution). Points above the identity line "
            "agree more out of distribution than in it. The paper finds local alignment (CKNNA) lower and "
            "global alignment higher on its OOD set (OMol25), with models clustering by architecture."
        ),
    )
    present = set(ctx.pairs["dataset"]) if len(ctx.pairs) else set()
    missing = [d for d in (id_ds, ood_ds) if d not in present]
    if missing:
        res.findings.append(f"Skipped: no pair results for dataset(s) {', '.join(repr(m) for m in missing)} "
                            f"(set id_dataset / ood_dataset in the study's analysis parameters).")
        return res
    mlips = {m for m, meta in ctx.models.items() if is_mlip(meta)}
    vals, ns = {}, {}
    for ds in (id_ds, ood_ds):
        rows = select_params(ctx.pairs[ctx.pairs["dataset"] == ds], metric, prefer={"k": k})
        rows = rows[rows["model_a"].isin(mlips) & rows["model_b"].isin(mlips)]
        vals[ds] = _sym_lookup(rows)
        ns[ds] = {}  # samples behind each pair value (the smaller of both directions)
        if "n" in rows:
            for a, b, n in zip(rows["model_a"], rows["model_b"], rows["n"], strict=True):
                key = (min(a, b), max(a, b))
                ns[ds][key] = min(ns[ds].get(key, np.inf), float(n))
    keys = sorted(set(vals[id_ds]) & set(vals[ood_ds]))
    if len(keys) < 2:
        res.findings.append(f"Skipped: fewer than 2 pairs of interatomic potentials have {metric} on both "
                            f"datasets ({len(keys)}).")
        return res
    tab = pd.DataFrame([(a, b, vals[id_ds][(a, b)], vals[ood_ds][(a, b)]) for a, b in keys],
                       columns=["model_a", "model_b", f"{metric}_{id_ds}", f"{metric}_{ood_ds}"])
    x, y = tab.iloc[:, 2].to_numpy(float), tab.iloc[:, 3].to_numpy(float)
    tab[f"n_{id_ds}"] = [ns[id_ds].get(key, np.nan) for key in keys]
    tab[f"n_{ood_ds}"] = [ns[ood_ds].get(key, np.nan) for key in keys]
    n_both = (f"{n_text(tab[f'n_{id_ds}'])} samples per pair on {id_ds}, "
              f"{n_text(tab[f'n_{ood_ds}'])} on {ood_ds}")
    tab["difference"] = y - x
    res.tables["pairs"] = tab

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.4, 5.0))
    lo = min(0.0, x.min(), y.min())
    hi = max(x.max(), y.max()) * 1.05 + 1e-9
    ax.plot([lo, hi], [lo, hi], color="#999999", lw=0.8, ls="--", label="identity")
    ax.scatter(x, y, s=32, color="#1f77b4", edgecolors="white", linewidths=0.5, zorder=3)
    far = np.argsort(-np.abs(y - x))[: min(4, len(tab))]  # label the pairs farthest from the identity
    label_points(ax, x[far], y[far], [f"{keys[i][0]} · {keys[i][1]}" for i in far], fontsize=8)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel(f"{metric} on {id_ds} (in distribution)")
    ax.set_ylabel(f"{metric} on {ood_ds} (out of distribution)")
    ax.set_title(f"{len(tab)} pairs of interatomic potentials (labelled: farthest from identity)", fontsize=9)
    ax.legend(frameon=False, loc="upper left")
    res.figures.append(save(fig, ctx.out_dir / "ood_scatter.png"))
    res.captions[res.figures[-1].name] = (
        f"{metric} of each pair of interatomic potentials on {id_ds} (x, in distribution) and {ood_ds} (y, out of "
        f"distribution; {n_both}); dashed: equal alignment on both.")

    if len(tab) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        r = float(pearsonr(x, y).statistic)
        rho = float(spearmanr(x, y).statistic)
        res.findings.append(f"{metric} on {id_ds} vs {ood_ds} across {len(tab)} pairs of interatomic potentials: "
                            f"Pearson r = {fmt(r)}, Spearman ρ = {fmt(rho)} ({n_both}).")
    lower = int((y < x).sum())
    res.findings.append(f"{lower} of {len(tab)} pairs align less on {ood_ds} than on {id_ds} (mean {metric} "
                        f"{fmt(float(y.mean()))} vs {fmt(float(x.mean()))}; {n_both}).")
    return res
