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
    scored,
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


def metric_matrices(ctx: AnalysisContext, dataset: str, *, k: int = 25, score: str = "value"):
    """``{metric: (M, names, params_label)}`` for one dataset, models ordered by family then name.

    kNN-type metrics with several ``k`` in the table use ``k`` (default 25). Self pairs absent from the
    table are NaN. ``score``: ``"value"`` (raw scores) or ``"calibrated"`` (the gated calibrated scores of the
    pairs table, :func:`~matteralign.analysis._common.scored`).
    """
    df = ctx.pairs[ctx.pairs["dataset"] == dataset]
    out = {}
    for metric in _metrics_in(df):
        rows = scored(select_params(df, metric, prefer={"k": k}), score, analysis="matrix")
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


def _colour_scale(metric: str, M: np.ndarray, score: str = "value"):
    if score == "calibrated":  # gated scores: [0, 1], higher = more aligned beyond chance, any metric direction
        return 0.0, 1.0, "viridis", "calibrated: 0 = chance, 1 = identical"
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


#: A pair value rests on too few samples when ``n < THIN_FACTOR * k``: each kNN neighbourhood then spans
#: more than a tenth of the samples, chance overlap ``k / (n - 1)`` exceeds 0.1, and the score says more
#: about n than about the models. Such pairs are marked in figures and tables and left out of headlines.
THIN_FACTOR = 10


def pair_n_matrix(rows, names: list[str]) -> np.ndarray:
    """``N[i, j]``: the number of samples behind the pair value ``M[i, j]`` (NaN where there is none)."""
    rows = rows.assign(value=rows["n"].astype(float))
    return pair_matrix(rows, names, symmetric=True)


def thin_mask(N: np.ndarray, k: int | None) -> np.ndarray:
    """Pairs whose value rests on fewer than :data:`THIN_FACTOR` · k samples (none for metrics without k)."""
    if not k:
        return np.zeros(N.shape, dtype=bool)
    return np.isfinite(N) & (N < THIN_FACTOR * k)


def _k_of(label: str) -> int | None:
    for part in label.split(", "):
        if part.startswith("k="):
            return int(float(part[2:]))
    return None


@register_analysis("matrix", options=["k", "score"], cost=3)
def run(ctx: AnalysisContext) -> AnalysisResult:
    """Heatmaps and tables of every pair metric per dataset, full and condensed by family.

    Options: ``k`` (the kNN metrics' k, default 25) and ``score``: ``"value"`` (raw scores, default) or
    ``"calibrated"`` (every matrix, condensed matrix and headline from the calibrated scores of the pairs table;
    the study file, recorded with the report, keeps the choice).
    """
    import pandas as pd

    from ._plot import family_colors, heatmap, matrix_figsize, model_colors, pyplot, safe_name, save

    plt = pyplot()
    k = int(ctx.params.get("k", 25))
    score = str(ctx.params.get("score", "value"))
    cal = score == "calibrated"
    res = AnalysisResult(
        name="matrix",
        title="Alignment matrices",
        summary=(
            "Every model against every other, per dataset and metric, one figure each. Models are ordered by "
            "family (tick labels in the family's colour, a shade per model; random controls last, in grey). "
            "For information imbalance the cell (row, column) is Δ(row → column): low means the row model's neighbourhoods predict the "
            "column model's. Condensed matrices average the values of each block of families: a cell is the "
            "mean over all pairs (i in row family, j in column family, i ≠ j), so diagonal blocks exclude the "
            "self pairs and are below 1; a family with a single model has an empty (blank) diagonal block.\n\n"
            f"A value marked * rests on fewer than {THIN_FACTOR}·k samples (a model that embeds only part of "
            "the dataset): its kNN neighbourhoods span more than a tenth of the samples, so it is shown but "
            "left out of the headlines. Each headline gives the number of samples n behind it."
        ),
    )
    if cal:
        res.title = "Alignment matrices (calibrated scores)"
        res.summary = (
            "Built from calibrated scores (study option score = 'calibrated'): each cell is the pair's score "
            "against its permutation null, (s - tau) / (s_max - tau) clipped to [0, 1] with tau the null's 95th "
            "percentile (mirrored for lower-is-better metrics such as information imbalance), so 0 means no more "
            "aligned than chance and 1 identical; the raw scores are in the calibration section.\n\n"
            + res.summary)
    fam_colors_all = family_colors(ctx.models)
    for dataset in sorted(set(ctx.pairs["dataset"])) if len(ctx.pairs) else []:
        mats = metric_matrices(ctx, dataset, k=k, score=score)
        df = ctx.pairs[ctx.pairs["dataset"] == dataset]
        for metric, (M, names, plabel) in mats.items():
            rows = select_params(df, metric, prefer={"k": k})
            N = pair_n_matrix(rows, names)
            kk = _k_of(plabel)
            thin = thin_mask(N, kk)
            lo, hi, cmap, clabel = _colour_scale(metric, M, score)
            label = ("calibrated " if cal else "") + METRIC_LABELS.get(metric, metric)
            title = f"{dataset}: {label}" + (f" ({plabel})" if plabel else "")
            colors = model_colors(ctx.models, names)
            fig, ax = plt.subplots(figsize=matrix_figsize(len(names), len(names), names))
            heatmap(ax, M, names, vmin=lo, vmax=hi, cmap=cmap, cbar_label=clabel, row_colors=colors,
                    col_colors=colors, title=title, annotate=True, marks=thin)
            fig.tight_layout()
            path = save(fig, ctx.out_dir / f"matrix_{safe_name(dataset)}_{safe_name(metric)}.png")
            res.figures.append(path)
            n_vals = N[np.isfinite(N)]
            n_text = (f"n = {int(n_vals.min())} samples per pair" if n_vals.size and n_vals.min() == n_vals.max()
                      else f"n = {int(n_vals.min())}–{int(n_vals.max())} samples per pair" if n_vals.size else "")
            res.captions[path.name] = (
                f"{label} of every pair of models on {dataset} ({plabel or 'default parameters'}; {n_text}; "
                f"rows = model a, columns = model b; {clabel})."
                + (f" * marks {int(thin.sum())} value(s) on fewer than {THIN_FACTOR}·k = {THIN_FACTOR * kk} "
                   "samples." if thin.any() else "")
            )
            table = pd.DataFrame(M, index=pd.Index(names, name="model"), columns=names)
            res.tables[f"{dataset}/{metric}"] = table.reset_index()
            res.tables[f"{dataset}/{metric}/n"] = pd.DataFrame(
                N, index=pd.Index(names, name="model"), columns=names).reset_index()

            fams = [family_of(ctx.models, m) for m in names]
            C, fam_list = condense(np.where(thin, np.nan, M), fams)
            fcol = [fam_colors_all.get(f, "#000000") for f in fam_list]
            fig_c, ax_c = plt.subplots(figsize=matrix_figsize(len(fam_list), len(fam_list), fam_list))
            heatmap(ax_c, C, fam_list, vmin=lo, vmax=hi, cmap=cmap, cbar_label=clabel, row_colors=fcol,
                    col_colors=fcol, title=title + " — family means", annotate=True)
            fig_c.tight_layout()
            cpath = save(fig_c, ctx.out_dir / f"condensed_{safe_name(dataset)}_{safe_name(metric)}.png")
            res.figures.append(cpath)
            res.captions[cpath.name] = (
                f"{label} on {dataset} averaged over the pairs of each block of families (i ≠ j; values on fewer "
                f"than {THIN_FACTOR}·k samples left out); blank: a family with one model or no pair."
            )
            res.tables[f"{dataset}/{metric}/condensed"] = pd.DataFrame(
                C, index=pd.Index(fam_list, name="family"), columns=fam_list
            ).reset_index()
            if metric == "cknna":
                res.findings.extend(_cknna_findings(ctx, dataset, M, names, C, fam_list, N, thin, kk,
                                                    label="calibrated CKNNA" if cal else "CKNNA"))
    if not res.figures:
        res.findings.append("No pair results were available, so no matrix was drawn.")
    return res


def _n_text(N: np.ndarray, idx) -> str:
    vals = N[idx]
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return "n unknown"
    lo, hi = int(vals.min()), int(vals.max())
    return f"n = {lo}" if lo == hi else f"n = {lo}–{hi}"


def _cknna_findings(ctx, dataset, M, names, C, fam_list, N, thin, k, label: str = "CKNNA") -> list[str]:
    out = []
    ctrl = [i for i, m in enumerate(names) if is_control(ctx.models.get(m))]
    real = [i for i in range(len(names)) if i not in ctrl]
    kk = f", k = {k}" if k else ""
    if k and (thin | np.eye(len(names), dtype=bool)).all():
        return [f"{dataset}: every pair rests on fewer than {THIN_FACTOR}·k = {THIN_FACTOR * k} samples "
                f"({_n_text(N, np.isfinite(N))}, k = {k}), too few for the kNN metrics to say more than the sample "
                "size; no headline is drawn (raise n or lower k)."]
    N = np.where(thin, np.nan, N)  # the n of the values the statements below use
    if thin.any():
        pairs = int(np.triu(thin | thin.T, 1).sum())
        out.append(f"{dataset}: {pairs} pair(s) rest on fewer than {THIN_FACTOR}·k = {THIN_FACTOR * k} samples "
                   "(marked * in the figure) and are left out of the statements below.")
    if len(real) >= 2:
        sub = np.where(thin, np.nan, M)[np.ix_(real, real)].copy()
        np.fill_diagonal(sub, np.nan)
        if np.isfinite(sub).any():
            i, j = np.unravel_index(np.nanargmax(sub), sub.shape)
            a, b = real[i], real[j]
            mask = np.isfinite(sub)
            out.append(
                f"{dataset}: the most aligned pair of real models is {names[a]} – {names[b]} "
                f"({label} {fmt(sub[i, j])}, {_n_text(N, (np.array([a]), np.array([b])))}{kk}); the median over "
                f"{int(np.triu(mask | mask.T, 1).sum())} real pairs is {fmt(float(np.nanmedian(sub)))} "
                f"({_n_text(N, np.ix_(real, real))})."
            )
    if ctrl and real:
        Mt = np.where(thin, np.nan, M)
        vals = np.concatenate([Mt[np.ix_(ctrl, real)].ravel(), Mt[np.ix_(real, ctrl)].ravel()])
        vals = vals[np.isfinite(vals)]
        if vals.size:
            out.append(
                f"{dataset}: random controls ({', '.join(names[i] for i in ctrl)}) vs every other model: "
                f"max |{label}| {fmt(float(np.abs(vals).max()))} ({_n_text(N, np.ix_(ctrl, real))}{kk})."
            )
    diag = np.diag(C)
    off = C[~np.eye(len(fam_list), dtype=bool)]
    if np.isfinite(diag).any() and np.isfinite(off).any():
        out.append(
            f"{dataset}: mean {label} within a family {fmt(float(np.nanmean(diag)))} vs between families "
            f"{fmt(float(np.nanmean(off)))} (condensed matrix, controls included; {_n_text(N, np.isfinite(N))}{kk})."
        )
    return out
