"""UMAP maps of pooled molecules and crystals per 3D model, coloured by dataset, labels and energy error.

arXiv 2512.03750 colours its UMAPs by dataset (Fig. 2A, C5) and by energy-prediction error (Fig. 2D); the
press article claims embeddings "cluster by physical property". Here each claim is a number as well as a
picture: the cross-validated kNN-regression R² of each label from the representation (in the full
embedding and in the 2-D map), beside the same score for a shuffled label, and the kNN accuracy of
telling the datasets apart.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ._common import fmt, is_control
from ._labels import label_values, physical_labels, rows_for, sample_subset
from .base import AnalysisContext, AnalysisResult, register_analysis

__all__ = ["run", "umap_embedding", "knn_r2", "knn_accuracy", "map_models"]

_DEFAULTS = {
    "max_points_per_dataset": 2000,
    "n_neighbors": 15,
    "min_dist": 0.1,
    "knn_k": 10,
    "cv": 5,
    "max_models": 8,
    "max_labels": 11,
}
ERROR_LABEL = "abs_energy_error_mev_per_atom"


def umap_embedding(
    X: np.ndarray, *, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0
) -> np.ndarray:
    """Seeded 2-D UMAP of ``X`` (n, d) → (n, 2) float64.

    ``random_state`` is set, so umap-learn runs single-threaded and the map is reproducible.
    Cost: about O(n^1.14 d) for the approximate kNN graph plus the layout; umap-learn's numba functions
    are compiled on first use in a process (~20 s).

    References
    ----------
    McInnes, Healy & Melville, arXiv 1802.03426.
    """
    try:
        import umap
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from ..errors import MissingDependencyError

        raise MissingDependencyError("umap-learn", "The maps analysis", "analysis") from exc
    n = X.shape[0]
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=min(int(n_neighbors), max(2, n - 1)),
        min_dist=float(min_dist),
        random_state=int(seed),
        n_jobs=1,
    )
    return np.asarray(reducer.fit_transform(np.asarray(X, dtype=np.float32)), dtype=np.float64)


def knn_r2(X: np.ndarray, y: np.ndarray, *, k: int = 10, cv: int = 5, seed: int = 0) -> float:
    """Cross-validated R² of k-nearest-neighbour regression of ``y`` (n,) from ``X`` (n, d).

    .. math::

        \\hat y_i = \\frac1k \\sum_{j \\in \\mathrm{kNN}(i)} y_j, \\qquad
        R^2 = \\operatorname{mean}_{folds}\\Big(1 - \\frac{\\sum (y - \\hat y)^2}{\\sum (y - \\bar y)^2}\\Big)

    Neighbours are found among the training folds (Euclidean); folds are shuffled and seeded. Returns
    NaN when fewer than ``2 cv`` finite labels remain. 1 = the label is organised by the neighbourhoods of
    the representation, ≈ 0 or below = not at all.
    """
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neighbors import KNeighborsRegressor

    m = np.isfinite(y)
    if m.sum() < 2 * cv or np.ptp(y[m]) == 0:
        return float("nan")
    kk = min(int(k), int(m.sum() * (cv - 1) / cv) - 1)
    s = cross_val_score(KNeighborsRegressor(n_neighbors=kk), X[m], y[m], scoring="r2",
                        cv=KFold(cv, shuffle=True, random_state=seed))  # fmt: skip
    return float(np.mean(s))


def knn_accuracy(X: np.ndarray, groups: np.ndarray, *, k: int = 10, cv: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of k-nearest-neighbour classification of ``groups`` from ``X``."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    s = cross_val_score(KNeighborsClassifier(n_neighbors=k), X, groups, scoring="accuracy",
                        cv=StratifiedKFold(cv, shuffle=True, random_state=seed))  # fmt: skip
    return float(np.mean(s))


def map_models(ctx: AnalysisContext) -> list[str]:
    """3D (``modality == "atoms"``) models to map: those that embedded the most datasets (at least two when
    any did); at most ``max_models``, interatomic potentials first, families taking turns, controls last
    (:func:`~matteralign.analysis._labels.select_models`)."""
    from ._common import order_models
    from ._labels import select_models

    p = {**_DEFAULTS, **(ctx.params or {})}
    cover: dict[str, int] = {}
    for ds, embs in ctx.embeddings.items():
        if ds not in ctx.datasets:
            continue
        for m in embs:
            if (ctx.models.get(m) or {}).get("modality", "atoms") == "atoms":
                cover[m] = cover.get(m, 0) + 1
    if not cover:
        return []
    need = min(2, max(cover.values()))
    chosen = select_models(ctx, [m for m, c in cover.items() if c >= need], p["max_models"])
    return order_models(ctx.models, chosen)


def _map_one(ctx: AnalysisContext, model: str, p: dict, errors: dict):
    from ..metrics.normalize import normalize

    parts = []
    for ds_name, dataset in ctx.datasets.items():
        emb = ctx.embeddings.get(ds_name, {}).get(model)
        if emb is None:
            continue
        ids, X = rows_for(emb, sample_subset(dataset, p["max_points_per_dataset"], ctx.seed))
        if ids:
            parts.append((ds_name, ids, X))
    Xall = np.vstack([X for _, _, X in parts])
    Xn = normalize(Xall, method=ctx.normalize, name=f"embeddings of {model}").astype(np.float64)
    Y = umap_embedding(Xn, n_neighbors=p["n_neighbors"], min_dist=p["min_dist"], seed=ctx.seed)
    ds_of = np.concatenate([[d] * len(ids) for d, ids, _ in parts])
    all_ids = [i for _, ids, _ in parts for i in ids]
    labels: dict[str, np.ndarray] = {}
    for ds_name, ids, _ in parts:
        for lab in physical_labels(ctx.datasets[ds_name], p)[: int(p["max_labels"])]:
            labels.setdefault(lab, np.full(len(all_ids), np.nan))
            labels[lab][ds_of == ds_name] = label_values(ctx.datasets[ds_name], ids, lab)
        err = errors.get((ds_name, model))
        if err is not None:
            pos = {s: k for k, s in enumerate(err[0])}
            v = np.array([err[1][pos[i]] if i in pos else np.nan for i in ids])
            labels.setdefault(ERROR_LABEL, np.full(len(all_ids), np.nan))
            labels[ERROR_LABEL][ds_of == ds_name] = v
    return parts, Xn, Y, ds_of, all_ids, labels


def _energy_errors(ctx: AnalysisContext) -> dict:
    """(dataset, model) -> (ids, |corrected error| in meV/atom) for every energy model (Eqs. 1–4)."""
    from .convergence import model_errors, reference_label

    out = {}
    for ds_name, dataset in ctx.datasets.items():
        if not ctx.energies.get(ds_name):
            continue
        label = reference_label(dataset, (ctx.params or {}).get("reference_label"))
        if label is None:
            continue
        for m, (ids, r, na) in model_errors(ctx, ds_name, label).items():
            out[(ds_name, m)] = (ids, 1000.0 * np.abs(r) / na)
    return out


def _figure(ctx: AnalysisContext, model: str, Y, ds_of, labels):
    from ._plot import pyplot, safe_name, save

    plt = pyplot()
    dsets = list(dict.fromkeys(ds_of))
    panels = ["dataset", *labels]
    ncol = min(4, len(panels))
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 3.0 * nrow), squeeze=False, layout="constrained")
    s = max(1.0, min(8.0, 6000.0 / len(Y)))
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"]
    for ax, panel in zip(axes.ravel(), panels, strict=False):
        ax.set_xticks([])
        ax.set_yticks([])
        if panel == "dataset":
            for k, d in enumerate(dsets):
                m = ds_of == d
                ax.scatter(
                    Y[m, 0], Y[m, 1], s=s, c=palette[k % len(palette)], label=d, alpha=0.6, linewidths=0
                )
            ax.legend(frameon=False, markerscale=3, fontsize=8)
            ax.set_title("dataset")
            continue
        v = labels[panel]
        ok = np.isfinite(v)
        ax.scatter(Y[~ok, 0], Y[~ok, 1], s=s, c="#dddddd", linewidths=0)
        if ok.any():
            vv = v[ok]
            norm = None
            if panel == ERROR_LABEL and (vv > 0).all():
                from matplotlib.colors import LogNorm

                norm = LogNorm(vmin=max(np.percentile(vv, 2), 1e-6), vmax=np.percentile(vv, 98))
                sc = ax.scatter(Y[ok, 0], Y[ok, 1], s=s, c=vv, cmap="magma", norm=norm, linewidths=0)
            else:
                lo, hi = np.percentile(vv, [2, 98])
                sc = ax.scatter(Y[ok, 0], Y[ok, 1], s=s, c=vv, cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1,
                                linewidths=0)  # fmt: skip
            cb = fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.02)
            cb.ax.tick_params(labelsize=8)
        ax.set_title("|energy error| (meV/atom)" if panel == ERROR_LABEL else panel)
    for ax in axes.ravel()[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(f"UMAP of {model} (grey: label absent)")
    return save(fig, ctx.out_dir / f"maps_{safe_name(model)}.png")


@register_analysis("maps", options=[*_DEFAULTS, "labels", "exclude_labels", "reference_label"], cost=10)
def run(ctx: AnalysisContext) -> AnalysisResult:
    """UMAP per 3D model of all datasets pooled; label organisation and dataset separability as numbers."""
    import pandas as pd

    p = {**_DEFAULTS, **(ctx.params or {})}
    for key in ("max_points_per_dataset", "n_neighbors", "knn_k", "cv"):
        if not isinstance(p[key], int) or p[key] < 2:
            raise ConfigError(f"maps: {key} must be an integer ≥ 2; got {p[key]!r}")
    res = AnalysisResult(
        name="maps",
        title="Maps of the representations",
        summary=(
            "For each 3D model, the pooled embeddings of all datasets it embedded (at most "
            f"{p['max_points_per_dataset']} samples per dataset, '{ctx.normalize}' normalisation) are laid out "
            f"together by UMAP (n_neighbors={p['n_neighbors']}, min_dist={p['min_dist']}, seed {ctx.seed}) and "
            "coloured by dataset, by each physical label (grey where a dataset lacks it) and, where the model "
            "predicts energies, by its composition-corrected energy error (Eqs. 1–4, meV/atom). How strongly a "
            f"label is organised is measured by the {p['cv']}-fold cross-validated R² of {p['knn_k']}-nearest-"
            "neighbour regression of the label within its dataset, in the full embedding and in the 2-D map, "
            "beside the same score for a shuffled label; dataset separability is the kNN classification "
            "accuracy of dataset membership. The paper colours its maps by dataset and energy error only; "
            "colouring by property is our extension."
        ),
    )
    models = map_models(ctx)
    if not models:
        res.summary += " No 3D model embedded any dataset, so there is nothing to map."
        return res
    errors = _energy_errors(ctx)
    org_rows, sep_rows, coords = [], [], []
    rng = np.random.default_rng(ctx.seed)
    kw = {"k": p["knn_k"], "cv": p["cv"], "seed": ctx.seed}
    for model in models:
        parts, Xn, Y, ds_of, all_ids, labels = _map_one(ctx, model, p, errors)
        res.figures.append(_figure(ctx, model, Y, ds_of, labels))
        res.captions[res.figures[-1].name] = (
            f"UMAP map of {model}'s embeddings of {len(Y)} samples ({', '.join(dict.fromkeys(ds_of))}), coloured "
            "by dataset and by each label.")
        coords.append(pd.DataFrame({"model": model, "dataset": ds_of, "id": all_ids, "umap_1": Y[:, 0],
                                    "umap_2": Y[:, 1]}))  # fmt: skip
        dsets = list(dict.fromkeys(ds_of))
        if len(dsets) >= 2:
            counts = np.array([np.sum(ds_of == d) for d in dsets])
            if counts.min() >= p["cv"]:
                sep_rows.append({
                    "model": model, "control": is_control(ctx.models.get(model)), "n": len(ds_of),
                    "accuracy_embedding": knn_accuracy(Xn, ds_of, **kw),
                    "accuracy_umap": knn_accuracy(Y, ds_of, **kw),
                    "chance": float(counts.max() / counts.sum()),
                })  # fmt: skip
        for lab, v in labels.items():
            for d in dsets:
                m = (ds_of == d) & np.isfinite(v)
                if m.sum() < 2 * p["cv"]:
                    continue
                y = v[m]
                ysh = rng.permutation(y)
                org_rows.append({
                    "model": model, "control": is_control(ctx.models.get(model)), "dataset": d, "label": lab,
                    "n": int(m.sum()),
                    "knn_r2_embedding": knn_r2(Xn[m], y, **kw),
                    "knn_r2_umap": knn_r2(Y[m], y, **kw),
                    "knn_r2_shuffled": knn_r2(Xn[m], ysh, **kw),
                })  # fmt: skip
    org = pd.DataFrame(org_rows)
    sep = pd.DataFrame(sep_rows)
    coord = pd.concat(coords, ignore_index=True)
    path = ctx.out_dir / "umap_coordinates.csv"
    coord.to_csv(path, index=False)
    res.files.append(path)
    res.tables["map_label_organisation"] = org
    if not sep.empty:
        res.tables["map_dataset_separability"] = sep
        for r in sep.itertuples():
            res.findings.append(
                f"{r.model}: kNN accuracy of dataset membership {fmt(r.accuracy_embedding)} in the embedding and "
                f"{fmt(r.accuracy_umap)} in the map (chance {fmt(r.chance)})."
            )
    if not org.empty:
        real = org[~org["control"]]
        for d in dict.fromkeys(real["dataset"]):
            sub = real[(real["dataset"] == d) & (real["label"] != ERROR_LABEL)]
            if sub.empty:
                continue
            best = sub.loc[sub["knn_r2_embedding"].idxmax()]
            mean_lab = sub.groupby("label")["knn_r2_embedding"].median().sort_values()
            res.findings.append(
                f"{d}: the label most organised by neighbourhoods is {best['label']} in {best['model']} "
                f"(kNN R² {fmt(best['knn_r2_embedding'])} in the embedding, {fmt(best['knn_r2_umap'])} in the "
                f"map); by the median over models the least organised is {mean_lab.index[0]} "
                f"({fmt(float(mean_lab.iloc[0]))}). Shuffled labels score at most "
                f"{fmt(float(sub['knn_r2_shuffled'].max()))}."
            )
        both = real.dropna(subset=["knn_r2_embedding", "knn_r2_umap"])
        if not both.empty:
            res.findings.append(
                "Across models and labels, the median kNN R² is "
                f"{fmt(float(both['knn_r2_umap'].median()))} in the 2-D map and "
                f"{fmt(float(both['knn_r2_embedding'].median()))} in the full embedding."
            )
        err = org[org["label"] == ERROR_LABEL]
        if not err.empty:
            res.findings.append(
                "Energy error is organised by the map with kNN R² "
                + ", ".join(f"{fmt(r.knn_r2_umap)} ({r.model}, {r.dataset})" for r in err.itertuples())
                + "."
            )
    return res
