"""The article's claims, each tested on this study's numbers.

Every line is computed from the tables of the study and of the analyses that ran before this one
(``ctx.results``): a value, its uncertainty (a bootstrap interval over model pairs, or the p-value of
a rank correlation) and whether the claim holds on this data. A claim whose inputs are missing says so.
Nothing is hard-coded: change the data and the verdicts change.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .base import AnalysisContext, AnalysisResult, register_analysis

N_BOOT = 2000


def _boot_ci(values, rng, *, stat=np.mean, confidence=0.95) -> tuple[float, float, float]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.nan, np.nan, np.nan
    boots = np.array([stat(rng.choice(v, size=v.size, replace=True)) for _ in range(N_BOOT)])
    a = (1 - confidence) / 2
    return float(stat(v)), float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))


def _diff_ci(a, b, rng, confidence=0.95) -> tuple[float, float, float]:
    """Mean(a) − mean(b) with a bootstrap interval resampling both groups."""
    a = np.asarray(a, float)[np.isfinite(a)]
    b = np.asarray(b, float)[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return np.nan, np.nan, np.nan
    boots = np.array([rng.choice(a, a.size).mean() - rng.choice(b, b.size).mean() for _ in range(N_BOOT)])
    q = (1 - confidence) / 2
    return float(a.mean() - b.mean()), float(np.quantile(boots, q)), float(np.quantile(boots, 1 - q))


def _cknna_pairs(ctx: AnalysisContext, dataset: str, k: int, score: str = "value") -> dict[tuple[str, str], float]:
    """Symmetrised CKNNA (``score``: the raw ``value`` or the ``calibrated`` score) per unordered pair of distinct
    models (mean of both directions)."""
    t = ctx.pairs
    t = t[(t["metric"] == "cknna") & (t["dataset"] == dataset) & (t["model_a"] != t["model_b"])]
    t = t[[json.loads(p).get("k") == k for p in t["params"]]]
    out: dict[tuple[str, str], list[float]] = {}
    for a, b, v in zip(t["model_a"], t["model_b"], t[score], strict=True):
        out.setdefault(tuple(sorted((a, b))), []).append(float(v))
    return {p: float(np.nanmean(v)) for p, v in out.items()}


def _row(claim, dataset, value, low, high, holds, detail, uncertainty="95% bootstrap CI") -> dict[str, Any]:
    verdict = "not measured" if holds is None else ("holds" if holds else "does not hold")
    return {"claim": claim, "dataset": dataset, "value": value, "ci_low": low, "ci_high": high,
            "uncertainty": uncertainty, "verdict": verdict, "detail": detail}


def _fmt(r: dict[str, Any]) -> str:
    unc = ""
    if np.isfinite(r["ci_low"]) and np.isfinite(r["ci_high"]):
        unc = f" [{r['ci_low']:.3g}, {r['ci_high']:.3g}]"
    elif np.isfinite(r["ci_high"]) and r["uncertainty"].startswith("p"):
        unc = f" (p = {r['ci_high']:.2g})"
    val = "" if not np.isfinite(r["value"]) else f"{r['value']:.3g}{unc}: "
    where = f"{r['dataset']}: " if r["dataset"] else ""
    return f"{r['claim']} — {where}{val}{r['verdict']}. {r['detail']}"


@register_analysis("findings", options=["k"])
def run(ctx: AnalysisContext) -> AnalysisResult:
    """Test the article's claims on the study's numbers (see the module docstring)."""
    import pandas as pd
    from scipy import stats

    k = int(ctx.params.get("k", 25))
    rng = np.random.default_rng(ctx.seed)
    meta = ctx.models
    real = {m for m, v in meta.items() if not v.get("control")}
    gaussian = {m for m, v in meta.items() if v.get("control") and v.get("kind") == "control"
                and not v.get("random_init_of") and v.get("reads") == []}  # features of nothing but the id
    reinit = {m for m, v in meta.items() if v.get("control") and v.get("random_init_of")}
    mlip = {m for m in real if meta[m].get("kind") == "mlip"}
    text = {m for m in real if meta[m].get("modality") in ("smiles", "selfies", "text")
            and meta[m].get("kind") in ("language", "chemical_lm", "llm")}
    rows = []
    scores = ["value"] + (["calibrated"] if "calibrated" in ctx.pairs and ctx.pairs["calibrated"].notna().any() else [])
    for ds, score in ((d, sc) for d in sorted(ctx.embeddings) for sc in scores):
        first = len(rows)
        pairs = _cknna_pairs(ctx, ds, k, score)
        rr = [v for (a, b), v in pairs.items() if a in real and b in real]
        # 1. alignment is far above random features
        rand = [v for (a, b), v in pairs.items() if (a in gaussian) != (b in gaussian) and (a in real or b in real)]
        d, lo, hi = _diff_ci(rr, rand, rng)
        rows.append(_row("models align far above random features (mean CKNNA real–real minus random–real)", ds,
                         d, lo, hi, None if not rand or not rr else bool(lo > 0),
                         f"{len(rr)} real pairs, {len(rand)} random-control pairs."))
        # 2. trained weights vs the same architectures with random weights
        ri = [v for (a, b), v in pairs.items() if (a in reinit) != (b in reinit) and (a in real or b in real)]
        d, lo, hi = _diff_ci(rr, ri, rng)
        rows.append(_row("training, not architecture, makes the alignment (real–real minus random-weights–real)",
                         ds, d, lo, hi, None if not ri or not rr else bool(lo > 0),
                         f"{len(ri)} pairs with a random-weights model."))
        # 3. same family vs cross family
        same = [v for (a, b), v in pairs.items() if a in real and b in real and meta[a]["family"] == meta[b]["family"]]
        cross = [v for (a, b), v in pairs.items() if a in real and b in real and meta[a]["family"] != meta[b]["family"]]
        d, lo, hi = _diff_ci(same, cross, rng)
        rows.append(_row("models of one family align more than across families (within minus between)", ds,
                         d, lo, hi, None if not same or not cross else bool(lo > 0),
                         f"{len(same)} within-family, {len(cross)} cross-family pairs."))
        # 4. text models on strings vs 3D models, against the random control
        tm = [v for (a, b), v in pairs.items() if (a in text and b in mlip) or (b in text and a in mlip)]
        rm = [v for (a, b), v in pairs.items() if (a in gaussian and b in mlip) or (b in gaussian and a in mlip)]
        d, lo, hi = _diff_ci(tm, rm, rng)
        rows.append(_row("language models on strings align with 3D models above noise (text–3D minus random–3D)",
                         ds, d, lo, hi, None if not tm or not rm else bool(lo > 0),
                         f"{len(tm)} text–3D pairs."))
        if score == "calibrated":  # the same four claims on calibrated CKNNA, the raw verdict beside it
            for r, raw in zip(rows[first:], rows[first - 4:first], strict=True):
                r["claim"] += " [calibrated CKNNA]"
                if r["verdict"] != raw["verdict"]:
                    r["detail"] += f" On raw CKNNA: {raw['verdict']}."
    res_by = ctx.results
    # 5. the k sweep keeps the ranking
    ks = res_by.get("ksweep")
    stab = ks.tables.get("rank_stability") if ks else None
    if stab is not None and len(stab):
        for ds, g in stab.groupby("dataset"):
            g = g[g["k"] != k] if (g["k"] != k).any() else g  # ρ of k = 25 against itself is 1
            rho = float(g["spearman_rho"].min())
            n = int(g["n_models"].max())
            p = float(stats.t.sf(rho * np.sqrt((n - 2) / max(1e-12, 1 - rho**2)), n - 2)) if n > 2 and rho < 1 else 0.0
            rows.append(_row("the k sweep keeps the ranking of models (min Spearman ρ vs k = 25)", ds, rho, np.nan, p,
                             bool(rho >= 0.8), f"{n} models, k = {sorted(stab[stab.dataset == ds]['k'])}.",
                             uncertainty="p-value of the smallest ρ"))
    else:
        rows.append(_row("the k sweep keeps the ranking of models", "", np.nan, np.nan, np.nan, None,
                         "the ksweep analysis did not run."))
    # 6. probes transfer between models
    tr = res_by.get("transfer")
    tt = tr.tables.get("probe_transfer") if tr else None
    if tt is not None and len(tt):
        for ds, g in tt.groupby("dataset"):
            g = g[(~g["source_control"]) & (~g["target_control"]) & (g["r2_target_own"] > 0.5)]
            frac = (g["r2_transfer"] / g["r2_target_own"]).to_numpy()
            v, lo, hi = _boot_ci(frac, rng, stat=np.median)
            rows.append(_row("probes transfer between models (median transfer R² / target's own R²)", ds, v, lo, hi,
                             None if not np.isfinite(v) else bool(lo >= 0.8),
                             f"{len(frac)} (label, source → target) pairs whose target probe reaches R² > 0.5."))
    else:
        rows.append(_row("probes transfer between models", "", np.nan, np.nan, np.nan, None, "the transfer analysis did not run."))
    # 7. labels organise the maps
    mp = res_by.get("maps")
    org = mp.tables.get("map_label_organisation") if mp else None
    if org is not None and len(org):
        o = org[~org["control"]]
        d, lo, hi = _diff_ci(o["knn_r2_embedding"], o["knn_r2_shuffled"], rng)
        rows.append(_row("embeddings organise physical labels (kNN R² of the label minus of a shuffled label)", "",
                         d, lo, hi, bool(lo > 0), f"{len(o)} (model, label) pairs."))
    else:
        rows.append(_row("embeddings organise physical labels", "", np.nan, np.nan, np.nan, None, "the maps analysis did not run."))
    # 8. accuracy tracks alignment
    cv = res_by.get("convergence")
    em = cv.tables.get("energy_mae") if cv else None
    if em is not None and len(em):
        for ds, g in em.groupby("dataset"):
            g = g[(g["model"] != g["best_model"]) & g["cknna_to_best"].notna()]
            g = g[[not meta.get(m, {}).get("control", False) for m in g["model"]]]
            if len(g) < 3:
                rows.append(_row("more accurate models align more with the most accurate one", ds, np.nan, np.nan,
                                 np.nan, None, f"only {len(g)} energy models besides the best."))
                continue
            rho, p = stats.spearmanr(g["mae_mev_per_atom"], g["cknna_to_best"])
            rows.append(_row("more accurate models align more with the most accurate one (Spearman MAE vs CKNNA)", ds,
                             float(rho), np.nan, float(p), bool(rho < 0 and p < 0.05),
                             f"{len(g)} energy models, best {g['best_model'].iloc[0]}.", uncertainty="p-value"))
    else:
        rows.append(_row("more accurate models align more with the most accurate one", "", np.nan, np.nan, np.nan,
                         None, "no energy-predicting models or reference energies."))
    table = pd.DataFrame(rows)
    n_hold = int((table["verdict"] == "holds").sum())
    n_tested = int((table["verdict"] != "not measured").sum())
    return AnalysisResult(
        name="findings",
        title="Findings: the article's claims on this data",
        summary=(f"Each claim of the press article, tested on this study (CKNNA k = {k} on the {ctx.normalize}-normalised "
                 "embeddings; intervals are 95% bootstrap intervals over model pairs or samples, rank correlations carry "
                 f"their p-value). {n_hold} of {n_tested} tested claims hold on this data."),
        tables={"claims": table},
        findings=[_fmt(r) for r in rows],
    )
