"""Accuracy vs alignment: composition-corrected energy error against CKNNA to the most accurate model.

Reproduces the convergence plot of arXiv 2512.03750 (Methods Eqs. 1–4, Fig. 1B / Fig. 3) on our data:
every energy-predicting model's error against reference energies after removing each side's own
linear composition model (which absorbs per-element reference energies, so models trained at
different levels of theory are comparable), plotted against its CKNNA to the most accurate model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError, InputError
from ._common import family_of, fmt, select_params
from .base import AnalysisContext, AnalysisResult, register_analysis

__all__ = ["run", "composition_residual", "corrected_errors", "energy_regression_mae", "reference_label",
           "reference_energies", "convergence_table", "model_errors"]  # fmt: skip


def composition_residual(E: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Energy left after the least-squares linear composition model, :math:`E - \\hat E_{lin}`.

    .. math::

        \\hat E_{lin} = C w + b, \\qquad (w, b) = \\arg\\min \\lVert E - C w - b \\rVert_2^2

    Parameters
    ----------
    E : ndarray, shape (n,)
        Energies per structure (eV).
    counts : ndarray, shape (n, n_elements)
        Element counts of each structure.

    Returns
    -------
    ndarray, shape (n,)
        Residuals (eV); ordinary least squares with intercept via ``numpy.linalg.lstsq``, so a
        rank-deficient design (e.g. an element present in every structure in fixed proportion) gives the
        minimum-norm solution and the same, unique, fitted values.
    """
    E = np.asarray(E, dtype=np.float64)
    C = np.asarray(counts, dtype=np.float64)
    if E.ndim != 1 or C.ndim != 2 or C.shape[0] != E.shape[0]:
        raise InputError(f"energies (n,) and counts (n, n_elements) must match; got {E.shape} and {C.shape}")
    if not (np.isfinite(E).all() and np.isfinite(C).all()):
        raise InputError("energies and counts must be finite")
    A = np.hstack([C, np.ones((C.shape[0], 1))])
    beta, *_ = np.linalg.lstsq(A, E, rcond=None)
    return E - A @ beta


def corrected_errors(e_ref: np.ndarray, e_model: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Signed per-structure errors :math:`\\Delta E_{true} - \\Delta E_f` (Eqs. 1–4 of arXiv 2512.03750).

    .. math::

        \\Delta E_{true} = E_{ref} - \\hat E_{lin}, \\qquad \\Delta E_f = \\hat E_f - \\hat E_{lin,f}

    each side with its own linear composition model (:func:`composition_residual`) fitted on the same
    structures. Invariant to adding any per-element offsets and a constant to either energy.
    """
    return composition_residual(e_ref, counts) - composition_residual(e_model, counts)


def energy_regression_mae(
    e_ref: np.ndarray, e_model: np.ndarray, counts: np.ndarray, *, n_atoms: np.ndarray | None = None
) -> dict[str, float]:
    """Composition-corrected energy MAE, per structure and per atom.

    .. math::

        \\mathrm{MAE}_f = \\frac1n \\sum_i |\\Delta E_{true,i} - \\Delta E_{f,i}|, \\qquad
        \\mathrm{MAE}_f^{atom} = \\frac1n \\sum_i \\frac{|\\Delta E_{true,i} - \\Delta E_{f,i}|}{N_i}

    Parameters
    ----------
    e_ref, e_model : ndarray, shape (n,)
        Reference and model energies per structure (eV).
    counts : ndarray, shape (n, n_elements)
        Element counts.
    n_atoms : ndarray, shape (n,), optional
        Atoms per structure (default: row sums of ``counts``).

    Returns
    -------
    dict
        ``mae_ev`` (eV/structure, ≥ 0, lower is better), ``mae_ev_per_atom`` (eV/atom), ``n``.

    References
    ----------
    Edamadaka et al., arXiv 2512.03750, Methods Eqs. 1–4.
    """
    r = corrected_errors(e_ref, e_model, counts)
    na = np.asarray(counts, dtype=float).sum(axis=1) if n_atoms is None else np.asarray(n_atoms, dtype=float)
    if na.shape != r.shape or not (na > 0).all():
        raise InputError(f"n_atoms must be positive atom counts of shape {r.shape}; got shape {na.shape}, "
                         f"min {na.min() if na.size else 'n/a'}")  # fmt: skip
    return {
        "mae_ev": float(np.abs(r).mean()),
        "mae_ev_per_atom": float((np.abs(r) / na).mean()),
        "n": int(r.size),
    }


def reference_label(dataset, name: str | None = None) -> str | None:
    """The reference-energy label: ``name`` if given, else the first label (sorted) starting with ``energy``."""
    labels = dataset.label_names()
    if name is not None:
        if name not in labels:
            raise ConfigError(f"reference energy label {name!r} is not a label of dataset {dataset.name!r}; "
                              f"it has {labels}")  # fmt: skip
        return name
    cands = [lab for lab in labels if lab.startswith("energy")]
    return cands[0] if cands else None


def reference_energies(dataset, ids: Sequence[str], label: str) -> np.ndarray:
    """Reference energy per structure (eV) for ``ids``; a ``*per_atom*`` label is multiplied by the atom count."""
    per_atom = "per_atom" in label
    out = np.empty(len(ids))
    for k, i in enumerate(ids):
        s = dataset.by_id(i)
        v = float(s.labels.get(label, np.nan))
        out[k] = v * s.n_atoms if per_atom else v
    out[~np.isfinite(out)] = np.nan
    return out


def model_errors(ctx: AnalysisContext, ds_name: str, label: str, *, min_coverage: float = 0.9):
    """``{model: (ids, signed corrected errors eV, n_atoms)}`` for every energy model of ``ds_name``.

    Structures are those with a finite reference energy, a 3D view and a finite prediction. Models that
    predicted at least ``min_coverage`` of the structures the best-covering model predicted are all scored
    on the structures they share (so their MAEs compare like with like, and Eqs. 1–4 fit one reference
    composition model); a model covering fewer (e.g. one restricted to some elements) is scored on its own.
    """
    from ..probes import composition_matrix

    dataset = ctx.datasets[ds_name]
    known = set(dataset.ids)
    preds: dict[str, dict[str, float]] = {}
    for m, (ids, e) in (ctx.energies.get(ds_name) or {}).items():
        e = np.asarray(e, dtype=np.float64).ravel()
        if len(ids) != e.size:
            raise InputError(f"energies of {m!r} on {ds_name!r}: {len(ids)} ids but {e.size} energies")
        ok = [i for i in ids if i in known and dataset.by_id(i).atoms is not None]
        ref = dict(zip(ok, reference_energies(dataset, ok, label), strict=True))
        preds[m] = {
            i: float(v)
            for i, v in zip(ids, e, strict=True)
            if i in ref and np.isfinite(v) and np.isfinite(ref[i])
        }
    if not preds:
        return {}
    most = max(len(v) for v in preds.values())
    core = [m for m, v in preds.items() if len(v) >= min_coverage * most]
    shared = set.intersection(*(set(preds[m]) for m in core))
    out = {}
    for m, v in preds.items():
        ids_k = [i for i in dataset.ids if i in (shared if m in core else v)]
        if len(ids_k) < 3:
            continue
        C, _ = composition_matrix([dataset.by_id(i).atoms for i in ids_k])
        ref = reference_energies(dataset, ids_k, label)
        out[m] = (ids_k, corrected_errors(ref, np.array([v[i] for i in ids_k]), C), C.sum(axis=1))
    return out


def _cknna_to(ctx: AnalysisContext, ds: str, best: str, metric: str) -> dict[str, float]:
    if ctx.pairs is None or len(ctx.pairs) == 0:
        return {}
    rows = select_params(ctx.pairs[ctx.pairs["dataset"] == ds], metric, prefer={"k": 25})
    out = {}
    for a, b, v in zip(rows["model_a"], rows["model_b"], rows["value"], strict=True):
        if a == best and b != best:
            out.setdefault(b, float(v))
        elif b == best and a != best:
            out.setdefault(a, float(v))
    return out


def convergence_table(ctx: AnalysisContext):
    """One row per (dataset, energy model): MAE per structure and per atom, CKNNA to the best model."""
    import pandas as pd

    metric = (ctx.params or {}).get("metric", "cknna")
    rows = []
    for ds_name, dataset in ctx.datasets.items():
        if not ctx.energies.get(ds_name):
            continue
        label = reference_label(dataset, (ctx.params or {}).get("reference_label"))
        if label is None:
            continue
        errs = model_errors(ctx, ds_name, label)
        if not errs:
            continue
        mae = {
            m: (float(np.abs(r).mean()), float((np.abs(r) / na).mean()), len(r))
            for m, (_, r, na) in errs.items()
        }
        best = min(mae, key=lambda m: mae[m][1])
        ck = _cknna_to(ctx, ds_name, best, metric)
        for m, (a, b, n) in mae.items():
            meta = ctx.models.get(m) or {}
            rows.append({
                "dataset": ds_name, "model": m, "family": family_of(ctx.models, m),
                "n_params": meta.get("n_params"), "n": n, "mae_ev": a, "mae_mev_per_atom": 1000.0 * b,
                "best_model": best, f"{metric}_to_best": 1.0 if m == best else ck.get(m, np.nan),
                "reference_label": label,
            })  # fmt: skip
    return pd.DataFrame(rows), metric


def _figure(ctx: AnalysisContext, ds: str, sub, metric: str):
    from ._plot import label_points, model_styles, pyplot, safe_name, save

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    x = sub[f"{metric}_to_best"].to_numpy(dtype=float)
    y = sub["mae_mev_per_atom"].to_numpy(dtype=float)
    npar = _numeric(sub["n_params"])
    finite = npar[np.isfinite(npar) & (npar > 0)]
    scale = finite.max() if finite.size else 1.0
    sizes = np.where(np.isfinite(npar) & (npar > 0), 30 + 400 * npar / scale, 30)
    styles = model_styles(ctx.models, list(sub["model"]))  # family colour; a shade and marker per model
    ok = np.isfinite(x)
    for xi, yi, si, m in zip(x[ok], y[ok], sizes[ok], sub["model"][ok], strict=True):
        ax.scatter([xi], [yi], s=si, color=styles[m]["color"], marker=styles[m]["marker"], alpha=0.8,
                   edgecolors="black", linewidths=0.5)
    label_points(ax, x[ok], y[ok], [m for m, o in zip(sub["model"], ok, strict=True) if o], fontsize=8)
    best = sub["best_model"].iloc[0]
    ax.set_xlabel(f"{metric.upper() if metric == 'cknna' else metric} to the most accurate model ({best})")
    ax.set_ylabel("composition-corrected energy MAE (meV/atom)")
    ax.set_title(f"{ds}: accuracy vs alignment (size ∝ parameters)")
    return save(fig, ctx.out_dir / f"convergence_{safe_name(ds)}.png")


def _numeric(s) -> np.ndarray:
    return np.array([float(v) if v is not None and v == v else np.nan for v in s], dtype=float)


@register_analysis("convergence", options=["metric", "reference_label"])
def run(ctx: AnalysisContext) -> AnalysisResult:
    """Energy MAE (Eqs. 1–4) of every energy model against its alignment with the most accurate model."""
    from scipy import stats

    table, metric = convergence_table(ctx)
    res = AnalysisResult(
        name="convergence",
        title="Accuracy vs alignment",
        summary=(
            "Each energy-predicting model's error against the dataset's reference energies after composition "
            "correction (arXiv 2512.03750, Eqs. 1–4): a linear model of the element counts (least squares with "
            "intercept) is fitted to the reference energies and, separately, to each model's own predictions; "
            "the MAE is taken between the two residuals, so per-element reference energies of different levels "
            "of theory cancel. Models that predicted (nearly) all structures are scored on the structures they share. "
            "The plot shows the MAE per atom (mean over structures of |error| / atoms; the "
            "table also has eV per structure) against the model's "
            f"{metric.upper() if metric == 'cknna' else metric} to the most accurate model; point size is "
            "proportional to the parameter count."
        ),
    )
    if table.empty:
        res.summary += " No dataset had both reference energies and model energy predictions."
        return res
    res.tables["energy_mae"] = table
    col = f"{metric}_to_best"
    for ds in dict.fromkeys(table["dataset"]):
        sub = table[table["dataset"] == ds].sort_values("mae_mev_per_atom")
        res.figures.append(_figure(ctx, ds, sub, metric))
        res.captions[res.figures[-1].name] = (
            f"{ds}: each energy model's composition-corrected energy MAE against the reference (y; n = "
            f"{int(sub['n'].min())}–{int(sub['n'].max())} structures) and its {metric} to the most accurate "
            "model (x); marker area grows with the parameter count, colour = family.")
        best = sub.iloc[0]
        res.findings.append(
            f"{ds}: the most accurate model is {best['model']} with a composition-corrected MAE of "
            f"{fmt(best['mae_mev_per_atom'])} meV/atom ({fmt(best['mae_ev'])} eV/structure) against "
            f"{best['reference_label']}; the least accurate is {sub.iloc[-1]['model']} with "
            f"{fmt(sub.iloc[-1]['mae_mev_per_atom'])} meV/atom."
        )
        others = sub[(sub["model"] != best["model"]) & np.isfinite(sub[col].astype(float))]
        if len(others) >= 3:
            rho, pval = stats.spearmanr(others["mae_mev_per_atom"], others[col])
            res.findings.append(
                f"{ds}: Spearman correlation between MAE and {metric} to {best['model']} over the other "
                f"{len(others)} models is {fmt(float(rho))} (p = {fmt(float(pval), 2)}); negative means more "
                "accurate models are more aligned with the best one."
            )
        missing = sub[(sub["model"] != best["model"]) & ~np.isfinite(sub[col].astype(float))][
            "model"
        ].tolist()
        if missing:
            res.findings.append(
                f"{ds}: no {metric} to {best['model']} in the pair table for {', '.join(missing)}."
            )
    return res
