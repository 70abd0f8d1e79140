"""The information-imbalance plane: (Δ(a→b), Δ(b→a)) for every pair of models (paper Fig. C9)."""

from __future__ import annotations

import numpy as np

from ._common import fmt, pair_n, parse_params, select_params
from .base import AnalysisContext, AnalysisResult, register_analysis

__all__ = ["run", "imbalance_pairs"]


def _sym_lookup(rows) -> dict[tuple[str, str], float]:
    """Unordered-pair values (mean of both directions when both are present)."""
    acc: dict[tuple[str, str], list[float]] = {}
    for a, b, v in zip(rows["model_a"], rows["model_b"], rows["value"], strict=True):
        if a != b:
            acc.setdefault((min(a, b), max(a, b)), []).append(float(v))
    return {k: float(np.mean(v)) for k, v in acc.items()}


def imbalance_pairs(ii_rows, color_rows=None):
    """One row per unordered pair with both directions of the information imbalance.

    Returns
    -------
    pandas.DataFrame
        ``model_a, model_b`` (a < b), ``delta_ab`` = Δ(a→b), ``delta_ba`` = Δ(b→a) and, when ``color_rows`` is
        given, ``color`` = the (symmetrised) value of that metric for the pair.
    """
    import pandas as pd

    d = {(a, b): float(v) for a, b, v in zip(ii_rows["model_a"], ii_rows["model_b"], ii_rows["value"],
                                             strict=True) if a != b}
    col = _sym_lookup(color_rows) if color_rows is not None and len(color_rows) else {}
    out = []
    for (a, b), v in sorted(d.items()):
        if a < b and (b, a) in d:
            out.append((a, b, v, d[(b, a)], col.get((a, b), np.nan)))
    return pd.DataFrame(out, columns=["model_a", "model_b", "delta_ab", "delta_ba", "color"])


@register_analysis("imbalance", options=["color", "k"])
def run(ctx: AnalysisContext) -> AnalysisResult:
    """Scatter of both directions of the information imbalance per pair, coloured by CKNNA."""
    import pandas as pd

    from ._plot import pyplot, safe_name, save

    plt = pyplot()
    color_metric = str(ctx.params.get("color", "cknna"))
    k = int(ctx.params.get("k", 25))
    res = AnalysisResult(
        name="imbalance",
        title="Information-imbalance plane",
        summary=(
            "Each point is a pair of models (a, b) at (Δ(a→b), Δ(b→a)), where Δ(a→b) measures how well the "
            "nearest neighbours in a's space predict the neighbours in b's space (Glielmo et al. 2022; 0 = "
            "perfectly, about 1 = not at all). Near (0, 0) the two spaces hold the same information; near (1, 1) "
            "they are unrelated; near (0, 1) a's space contains b's but not the reverse (and (1, 0) the opposite); "
            "points on the diagonal share information symmetrically. Colour: "
            f"{color_metric} of the pair (k = {k} where it has a k)."
        ),
    )
    if ctx.pairs.empty or "information_imbalance" not in set(ctx.pairs["metric"]):
        res.findings.append("No information-imbalance results in the study, so the plane is not drawn.")
        return res
    tables = []
    for dataset in sorted(set(ctx.pairs["dataset"])):
        df = ctx.pairs[ctx.pairs["dataset"] == dataset]
        ii_all = df[df["metric"] == "information_imbalance"]
        if ii_all.empty:
            continue
        col_rows = select_params(df, color_metric, prefer={"k": k})
        keys = sorted(set(ii_all["params"].map(lambda p: parse_params(p).get("k", 1))))
        fig, axes = plt.subplots(1, len(keys), figsize=(5.4 * len(keys) + 0.8, 5.0), squeeze=False)
        sc = None
        finite = col_rows["value"].to_numpy(dtype=float) if len(col_rows) else np.array([])
        finite = finite[np.isfinite(finite)]
        vmin, vmax = (min(0.0, finite.min()), max(finite.max(), 1e-9)) if finite.size else (0.0, 1.0)
        for ax, kk in zip(axes[0], keys, strict=True):
            rows = ii_all[ii_all["params"].map(lambda p, kk=kk: parse_params(p).get("k", 1) == kk)]
            t = imbalance_pairs(rows, col_rows)
            t.insert(0, "k", kk)
            t.insert(0, "dataset", dataset)
            tables.append(t)
            ax.plot([0, 1.05], [0, 1.05], color="#999999", lw=0.8, ls="--", zorder=1)
            c = t["color"].to_numpy(dtype=float)
            sc = ax.scatter(t["delta_ab"], t["delta_ba"], c=np.where(np.isfinite(c), c, vmin), cmap="viridis",
                            vmin=vmin, vmax=vmax, s=30, edgecolors="#333333", linewidths=0.4, zorder=3)
            for x, y, txt in ((-0.07, -0.07, "A"), (1.17, 1.17, "B"), (-0.07, 1.17, "C"), (1.17, -0.07, "D")):
                ax.text(x, y, txt, ha="center", va="center", fontsize=8, fontweight="bold", color="#555555",
                        bbox=dict(boxstyle="circle,pad=0.2", fc="white", ec="#aaaaaa", lw=0.6))
            ax.text(0.75, 0.70, "symmetric", rotation=45, fontsize=7.5, color="#777777", ha="center")
            ax.set_xlim(-0.13, 1.23)
            ax.set_ylim(-0.13, 1.23)
            ax.set_aspect("equal")
            ax.set_xlabel("Δ(a → b)")
            ax.set_ylabel("Δ(b → a)")
            ax.set_title(f"{dataset}: information imbalance (k = {kk}), {len(t)} pairs")
        fig.text(0.5, -0.02, "A (0,0): same information    B (1,1): unrelated    C (0,1): a contains b    "
                 "D (1,0): b contains a    dashed: symmetric", ha="center", va="top", fontsize=8, color="#444444")
        cbar = fig.colorbar(sc, ax=list(axes[0]), fraction=0.035, pad=0.02)
        cbar.set_label(f"{color_metric} (higher = more aligned)")
        res.figures.append(save(fig, ctx.out_dir / f"imbalance_{safe_name(dataset)}.png"))
        res.captions[res.figures[-1].name] = (
            f"{dataset}: every pair of models in the information-imbalance plane, Δ(a → b) against Δ(b → a), "
            f"for each k; colour = {color_metric} of the pair.")
    if not tables:
        return res
    tab = pd.concat(tables, ignore_index=True).rename(columns={"color": color_metric})
    res.tables["pairs"] = tab
    for (dataset, kk), g in tab.groupby(["dataset", "k"], sort=True):
        if g.empty:
            continue
        asym = (g["delta_ab"] - g["delta_ba"]).abs()
        i = int(asym.to_numpy().argmax())
        r = g.iloc[i]
        near = int(((g["delta_ab"] < 0.2) & (g["delta_ba"] < 0.2)).sum())
        n_pair = pair_n(ctx.pairs, dataset, r["model_a"], r["model_b"], "information_imbalance")
        res.findings.append(
            f"{dataset} (k = {kk}): {near} of {len(g)} pairs lie near (0, 0) (both Δ < 0.2); the most asymmetric "
            f"pair is {r['model_a']} → {r['model_b']} Δ = {fmt(r['delta_ab'])} vs {r['model_b']} → {r['model_a']} "
            f"Δ = {fmt(r['delta_ba'])} (n = {n_pair})."
        )
        ok = g[color_metric].notna()
        if ok.sum() >= 3:
            from scipy.stats import spearmanr

            rho = float(spearmanr((g["delta_ab"] + g["delta_ba"])[ok] / 2, g[color_metric][ok]).statistic)
            res.findings.append(f"{dataset} (k = {kk}): Spearman ρ between the mean imbalance of a pair and its "
                                f"{color_metric} is {fmt(rho)} (negative = the two agree).")
    return res
