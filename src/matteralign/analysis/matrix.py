"""M x M alignment matrices per dataset and metric, and their family-condensed versions (paper Fig. 1A/1C)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._common import (
    METRIC_LABELS,
    METRIC_ORDER,
    family_of,
    fmt,
    is_control,
    is_symmetric,
    order_models,
    pair_matrix,
    params_label,
    select_params,
)
from .base import AnalysisContext, AnalysisResult, register_analysis

__all__ = ["run", "condense", "metric_matrices"]


def condense(M: np.ndarray, families: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Block means of an M x M matrix over model families.

    .. math::

        \\bar C_{FG} = \\operatorname{mean}\\{ M_{ij} : i \\in F,\\ j \\in G,\\ i \\neq j,\\ M_{ij}
        \\text{ finite} \\}

    Parameters
    ----------
    M : ndarray, shape (m, m)
        Pair values, row model ``i`` vs column model ``j`` (asymmetric metrics keep their direction).
    families : sequence of str, length m
        Family of each row/column.

    Returns
    -------
    C : ndarray, shape (f, f)
        Block means; a diagonal block excludes the self pairs, so it is the mean over distinct models of the
        same family (NaN for a family with a single model).
    fams : list of str
        The families in order of first appearance in ``families``.
    """
    fams = list(dict.fromkeys(families))
    idx = {f: [i for i, g in enumerate(families) if g == f] for f in fams}
    C = np.full((len(fams), len(fams)), np.nan)
    for a, fa in enumerate(fams):
        for b, fb in enumerate(fams):
            vals = [M[i, j] for i in idx[fa] for j in idx[fb] if i != j and np.isfinite(M[i, j])]
            if vals:
                C[a, b] = float(np.mean(vals))
    return C, fams


def _metrics_in(df) -> list[str]:
    present = list(dict.fromkeys(df["metric"]))
    return [m for m in METRIC_ORDER if m in present] + sorted(m for m in present if m not in METRIC_ORDER)


def metric_matrices(ctx: AnalysisContext, dataset: str, *, k: int = 25):
    """``{metric: (M, names, params_label)}`` for one dataset, models ordered by family then name.

    kNN-type metrics with several ``k`` in the table use ``k`` (default 25). Self pairs absent from the
    table are NaN.
    """
    df = ctx.pairs[ctx.pairs["dataset"] == dataset]
    out = {}
    for metric in _metrics_in(df):
        rows = select_params(df, metric, prefer={"k": k})
        names = order_models(ctx.models, set(rows["model_a"]) | set(rows["model_b"]))
        M = pair_matrix(rows, names, symmetric=is_symmetric(metric))
        label = params_label(rows["params"].iloc[0]) if len(rows) else ""
        out[metric] = (M, names, label)
    return out


def _spec(metric: str):
    try:
        from ..metrics import METRICS

        return METRICS.get(metric)
    except ImportError:  # pragma: no cover
        return None


def _colour_scale(metric: str, M: np.ndarray):
    spec = _spec(metric)
    lower_better = (spec is not None and spec.higher_is_better is False) or "imbalance" in metric
    finite = M[np.isfinite(M)]
    lo = float(min(0.0, finite.min())) if finite.size else 0.0
    hi = float(max(1.0, finite.max())) if finite.size else 1.0
    if spec is not None and np.isfinite(spec.bounds[1]) and not lower_better:
        hi = max(float(spec.bounds[1]), float(finite.max()) if finite.size else 0.0)
    cmap = "viridis_r" if lower_better else "viridis"
    label = "lower = more shared information" if lower_better else "higher = more aligned"
    return lo, hi, cmap, label


@register_analysis("matrix", options=["k"])
def run(ctx: AnalysisContext) -> AnalysisResult:
    """Heatmaps and tables of every pair metric per dataset, full and condensed by family."""
    import pandas as pd

    from ._plot import heatmap, model_colors, pyplot, safe_name, save

    plt = pyplot()
    k = int(ctx.params.get("k", 25))
    res = AnalysisResult(
        name="matrix",
        title="Alignment matrices",
        summary=(
            "Every model against every other, per dataset and metric. Models are ordered by family (tick "
            "labels coloured by family; random controls last, in grey). For information imbalance the cell "
            "(row, column) is Δ(row → column): low means the row model's neighbourhoods predict the column "
            "model's. Condensed matrices average the values of each block of families: a cell is the mean "
            "over all pairs (i in row family, j in column family, i ≠ j), so diagonal blocks exclude the self "
            "pairs and are below 1; a family with a single model has an empty (blank) diagonal block."
        ),
    )
    fam_colors_all = None
    for dataset in sorted(set(ctx.pairs["dataset"])) if len(ctx.pairs) else []:
        mats = metric_matrices(ctx, dataset, k=k)
        if not mats:
            continue
        n_panels = len(mats)
        ncol = 2 if n_panels > 1 else 1
        nrow = int(np.ceil(n_panels / ncol))
        m_max = max(len(v[1]) for v in mats.values())
        side = max(4.0, 0.42 * m_max + 2.2)
        fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * side + 1.0, nrow * side), squeeze=False)
        fig_c, axes_c = plt.subplots(nrow, ncol, figsize=(ncol * 5.2, nrow * 4.6), squeeze=False)
        for ax, ax_c, (metric, (M, names, plabel)) in zip(axes.flat, axes_c.flat, mats.items(), strict=False):
            lo, hi, cmap, clabel = _colour_scale(metric, M)
            title = METRIC_LABELS.get(metric, metric) + (f" ({plabel})" if plabel else "")
            colors = model_colors(ctx.models, names)
            heatmap(ax, M, names, vmin=lo, vmax=hi, cmap=cmap, cbar_label=clabel, row_colors=colors,
                    col_colors=colors, title=title)
            res.tables[f"{dataset}/{metric}"] = pd.DataFrame(
                M, index=pd.Index(names, name="model"), columns=names
            ).reset_index()

            fams = [family_of(ctx.models, m) for m in names]
            C, fam_list = condense(M, fams)
            if fam_colors_all is None:
                from ._plot import family_colors

                fam_colors_all = family_colors(ctx.models)
            fcol = [fam_colors_all.get(f, "#000000") for f in fam_list]
            heatmap(ax_c, C, fam_list, vmin=lo, vmax=hi, cmap=cmap, cbar_label=clabel, row_colors=fcol,
                    col_colors=fcol, title=title + " — family means")
            res.tables[f"{dataset}/{metric}/condensed"] = pd.DataFrame(
                C, index=pd.Index(fam_list, name="family"), columns=fam_list
            ).reset_index()
            if metric == "cknna":
                res.findings.extend(_cknna_findings(ctx, dataset, M, names, C, fam_list))
        for ax in list(axes.flat)[n_panels:] + list(axes_c.flat)[n_panels:]:
            ax.set_visible(False)
        fig.suptitle(f"{dataset}: pair metrics", y=1.0)
        fig_c.suptitle(f"{dataset}: condensed by family", y=1.0)
        fig.tight_layout()
        fig_c.tight_layout()
        res.figures.append(save(fig, ctx.out_dir / f"matrix_{safe_name(dataset)}.png"))
        res.figures.append(save(fig_c, ctx.out_dir / f"condensed_{safe_name(dataset)}.png"))
    if not res.figures:
        res.findings.append("No pair results were available, so no matrix was drawn.")
    return res


def _cknna_findings(ctx, dataset, M, names, C, fam_list) -> list[str]:
    out = []
    ctrl = [i for i, m in enumerate(names) if is_control(ctx.models.get(m))]
    real = [i for i in range(len(names)) if i not in ctrl]
    if len(real) >= 2:
        sub = M[np.ix_(real, real)].copy()
        np.fill_diagonal(sub, np.nan)
        if np.isfinite(sub).any():
            i, j = np.unravel_index(np.nanargmax(sub), sub.shape)
            out.append(
                f"{dataset}: the most aligned pair of real models is {names[real[i]]} – {names[real[j]]} "
                f"(CKNNA {fmt(sub[i, j])}); the median over real pairs is {fmt(float(np.nanmedian(sub)))}."
            )
    if ctrl and real:
        vals = M[np.ix_(ctrl, real)]
        vals = np.concatenate([vals[np.isfinite(vals)], M[np.ix_(real, ctrl)][np.isfinite(M[np.ix_(real, ctrl)])]])
        if vals.size:
            out.append(
                f"{dataset}: random controls ({', '.join(names[i] for i in ctrl)}) vs every other model: "
                f"max |CKNNA| {fmt(float(np.abs(vals).max()))}."
            )
    diag = np.diag(C)
    off = C[~np.eye(len(fam_list), dtype=bool)]
    if np.isfinite(diag).any() and np.isfinite(off).any():
        out.append(
            f"{dataset}: mean CKNNA within a family {fmt(float(np.nanmean(diag)))} vs between families "
            f"{fmt(float(np.nanmean(off)))} (condensed matrix, controls included)."
        )
    return out
