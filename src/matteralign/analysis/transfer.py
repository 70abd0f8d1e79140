"""Probes transferred between models through a learned linear map (our extension).

Not in arXiv 2512.03750: this measures the press article's claim that a probe trained on one model's
latent space works on another's. For every ordered pair (source A, target B) a linear probe is
trained on A and applied to B through a ridge map B → A; both are fitted on a seeded training split
only and scored (R²) on the held-out samples beside A's and B's own probes
(:func:`matteralign.probes.transfer_matrix`).
"""

from __future__ import annotations

import numpy as np

from ._common import fmt, is_control, n_text, order_models
from ._labels import embedded_models, label_values, physical_labels, rows_for, sample_subset, select_models
from .base import AnalysisContext, AnalysisResult, register_analysis

__all__ = ["run", "transfer_table"]

_DEFAULTS = {"max_samples": 3000, "test_size": 0.3, "max_labels": 12, "min_coverage": 0.9, "max_models": 8}


def transfer_table(ctx: AnalysisContext):
    """Tidy transfer results for every dataset, label and ordered model pair.

    Models embedding fewer than ``min_coverage`` of the (sub)sampled dataset are left out so that all
    pairs share the same samples and split; of the others at most ``max_models`` are kept (interatomic
    potentials first, families taking turns, controls last). Returns ``(table, skipped, dropped)``. Columns: dataset, label, source, target, r2_transfer,
    r2_target_own, r2_source_own, n_train, n_test, source_control, target_control.
    """
    import pandas as pd

    from ..probes import transfer_matrix

    p = {**_DEFAULTS, **(ctx.params or {})}
    frames, skipped, dropped = [], [], []
    for ds_name, dataset in ctx.datasets.items():
        models = embedded_models(ctx, ds_name)
        if len(models) < 2:
            continue
        subset = sample_subset(dataset, p["max_samples"], ctx.seed)
        have = {m: set(ctx.embeddings[ds_name][m].ids) for m in models}
        keep = [m for m in models if len(have[m].intersection(subset)) >= p["min_coverage"] * len(subset)]
        skipped += [(ds_name, m) for m in models if m not in keep]
        dropped += [(ds_name, m) for m in keep if m not in select_models(ctx, keep, p["max_models"])]
        keep = order_models(ctx.models, select_models(ctx, keep, p["max_models"]))
        if len(keep) < 2:
            continue
        ids = [i for i in subset if all(i in have[m] for m in keep)]
        reps = {m: rows_for(ctx.embeddings[ds_name][m], ids)[1] for m in keep}
        labels = {}
        for lab in physical_labels(dataset, p)[: int(p["max_labels"])]:
            y = label_values(dataset, ids, lab)
            n_tr_min = 10
            if np.isfinite(y).sum() >= 2 * n_tr_min and np.nanstd(y) > 0:
                labels[lab] = y
        if not labels:
            continue
        df = transfer_matrix(reps, labels, test_size=p["test_size"], seed=ctx.seed)
        df.insert(0, "dataset", ds_name)
        df["source_control"] = df["source"].map(lambda m: is_control(ctx.models.get(m)))
        df["target_control"] = df["target"].map(lambda m: is_control(ctx.models.get(m)))
        frames.append(df)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return table, skipped, dropped


def _n_split(rows) -> str:
    """The samples behind transfer rows: ``"n = 210 train / 90 test samples"`` (ranges when they differ)."""
    return f"{n_text(rows['n_train'])} train / {n_text(rows['n_test']).removeprefix('n = ')} test samples"


def _figure(ctx: AnalysisContext, ds: str, table):
    from ._plot import heatmap, matrix_figsize, model_colors, pyplot, safe_name, save

    plt = pyplot()
    sub = table[table["dataset"] == ds]
    finite = sub.groupby("label")[["r2_transfer", "r2_source_own"]].apply(lambda g: bool(np.isfinite(g.to_numpy(
        dtype=float)).any()))
    labels = [lab for lab in dict.fromkeys(sub["label"]) if finite.get(lab, False)]  # no empty panel
    if not labels:
        labels = list(dict.fromkeys(sub["label"]))[:1]
    models = list(dict.fromkeys(list(sub["source"]) + list(sub["target"])))
    ncol = min(3, len(labels))
    nrow = int(np.ceil(len(labels) / ncol))
    w, h = matrix_figsize(len(models), len(models), models)
    fig, axes = plt.subplots(nrow, ncol, figsize=(w * ncol + 0.6, h * nrow + 0.6), squeeze=False,
                             layout="constrained")
    colors = model_colors(ctx.models, models)
    pos = {m: i for i, m in enumerate(models)}
    for ax, lab in zip(axes.ravel(), labels, strict=False):
        s = sub[sub["label"] == lab]
        M = np.full((len(models), len(models)), np.nan)
        for r in s.itertuples():
            M[pos[r.source], pos[r.target]] = r.r2_transfer
            M[pos[r.source], pos[r.source]] = r.r2_source_own
        heatmap(ax, M, models, models, vmin=0.0, vmax=1.0, row_colors=colors, col_colors=colors,
                cbar_label="held-out R²", title=lab, annotate=True,
                value_format=lambda v: "<-1" if v < -1 else f"{v:.2f}")  # fmt: skip
    for ax in axes.ravel()[len(labels) :]:
        ax.set_visible(False)
    fig.supylabel("probe trained on (source)")
    fig.supxlabel("applied to (target, mapped → source)")
    fig.suptitle(f"{ds}: transferred linear probes (diagonal: own probe)")
    return save(fig, ctx.out_dir / f"transfer_{safe_name(ds)}.png")


@register_analysis("transfer", options=[*_DEFAULTS, "labels", "exclude_labels"], cost=3)
def run(ctx: AnalysisContext) -> AnalysisResult:
    """Transfer probes between every ordered pair of models (our extension; see the module docstring)."""
    p = {**_DEFAULTS, **(ctx.params or {})}
    table, skipped, dropped = transfer_table(ctx)
    res = AnalysisResult(
        name="transfer",
        title="Probes transferred between models (extension)",
        summary=(
            "A linear probe of a label is trained on the source model's representation and applied to the target "
            "model's representation through a ridge map target → source. Probe and map are fitted on a seeded "
            f"{int(round((1 - p['test_size']) * 100))}% training split only; R² is measured on the held-out "
            "samples, beside the target's own probe and the source's own probe on the same samples. Transfer R² "
            "close to the target's own R² means the label is read the same way through both spaces. Not an "
            "analysis of arXiv 2512.03750 (which has no probes); it tests a claim made about it in the press."
        ),
    )
    if skipped:
        res.summary += " Left out (embedding too few of the samples): " + ", ".join(
            f"{m} on {d}" for d, m in skipped
        ) + "."  # fmt: skip
    if dropped:
        res.summary += (
            f" At most {p['max_models']} models per dataset (parameter max_models; interatomic potentials first, "
            "families taking turns); not included: " + ", ".join(f"{m} on {d}" for d, m in dropped) + "."
        )
    if table.empty:
        res.summary += " Nothing to transfer: no dataset has two models with labels."
        return res
    res.tables["probe_transfer"] = table
    for ds in dict.fromkeys(table["dataset"]):
        res.figures.append(_figure(ctx, ds, table))
        res.captions[res.figures[-1].name] = (
            f"{ds}: R² of a probe trained on the source model's embedding (row) and applied to the target model's "
            "embedding (column) through a linear map between the two.")
        sub = table[(table["dataset"] == ds) & ~table["source_control"] & ~table["target_control"]]
        if sub.empty:
            continue
        # labels that at least one model decodes (own R² > 0.5 for the source) are the informative ones
        dec = sub[sub["r2_source_own"] > 0.5]
        if not dec.empty:
            gap = dec["r2_target_own"] - dec["r2_transfer"]
            res.findings.append(
                f"{ds}: over {len(dec)} (label, source → target) pairs of non-control models whose source probe "
                f"reaches R² > 0.5, mean transfer R² is {fmt(float(dec['r2_transfer'].mean()))} against "
                f"{fmt(float(dec['r2_target_own'].mean()))} for the target's own probe and "
                f"{fmt(float(dec['r2_source_own'].mean()))} for the source's own probe; transfer falls at most 0.05 "
                f"below the target's own R² in {int((gap <= 0.05).sum())} of them ({_n_split(dec)})."
            )
            worst = dec.loc[(dec["r2_transfer"] - dec["r2_target_own"]).idxmin()]
            res.findings.append(
                f"{ds}: largest loss against the target's own probe: {worst['label']} from {worst['source']} "
                f"(own R² {fmt(worst['r2_source_own'])}) to {worst['target']} (transfer R² "
                f"{fmt(worst['r2_transfer'])}, target's own {fmt(worst['r2_target_own'])}; "
                f"{_n_split(dec.loc[[worst.name]])})."
            )
        ctrl = table[(table["dataset"] == ds) & (table["source_control"] | table["target_control"])]
        if not ctrl.empty:
            res.findings.append(
                f"{ds}: transfers to or from control models reach at most R² {fmt(float(ctrl['r2_transfer'].max()))} "
                f"({_n_split(ctrl)})."
            )
    return res
