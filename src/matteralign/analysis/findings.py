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

from ._common import n_text
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


def _cknna_n(ctx: AnalysisContext, dataset: str, k: int) -> dict[tuple[str, str], float]:
    """The samples behind each unordered pair's CKNNA (the smaller of both directions)."""
    t = ctx.pairs
    t = t[(t["metric"] == "cknna") & (t["dataset"] == dataset) & (t["model_a"] != t["model_b"])]
    t = t[[json.loads(p).get("k") == k for p in t["params"]]]
    out: dict[tuple[str, str], float] = {}
    for a, b, n in zip(t["model_a"], t["model_b"], t["n"] if "n" in t else [np.nan] * len(t), strict=True):
        key = tuple(sorted((a, b)))
        out[key] = min(out.get(key, np.inf), float(n))
    return out


def _pair_n(ctx: AnalysisContext, dataset: str) -> str:
    """The samples behind the CKNNA values of ``dataset`` (``""`` when the table has no ``n``)."""
    t = ctx.pairs
    if "n" not in t:
        return ""
    return n_text(t.loc[(t["dataset"] == dataset) & (t["metric"] == "cknna"), "n"], "samples per pair")


def _row(claim, dataset, value, low, high, holds, detail, uncertainty="95% bootstrap CI", n="") -> dict[str, Any]:
    verdict = "not measured" if holds is None else ("holds" if holds else "does not hold")
    return {"claim": claim, "dataset": dataset, "value": value, "ci_low": low, "ci_high": high,
            "uncertainty": uncertainty, "verdict": verdict, "n": n, "detail": detail}


def _fmt(r: dict[str, Any]) -> str:
    unc = ""
    if np.isfinite(r["ci_low"]) and np.isfinite(r["ci_high"]):
        unc = f" [{r['ci_low']:.3g}, {r['ci_high']:.3g}]"
    elif np.isfinite(r["ci_high"]) and r["uncertainty"].startswith("p"):
        unc = f" (p = {r['ci_high']:.2g})"
    val = "" if not np.isfinite(r["value"]) else f"{r['value']:.3g}{unc}: "
    where = f"{r['dataset']}: " if r["dataset"] else ""
    n = f" ({r['n']})" if r.get("n") else ""
    return f"{r['claim']} — {where}{val}{r['verdict']}{n}. {r['detail']}"


def _weather_claims(ctx: AnalysisContext, k: int, rng, real: set, gaussian: set) -> list[dict[str, Any]]:
    """The article's claims about its weather models (ClimaX, GraphCast), each tested where it can be.

    Within a gridded dataset: the weather models align with each other above random features, and their
    embeddings decode temperature, humidity, pressure and wind by linear probes (beside the raw-patch
    baseline when it ran). Across domains the article's claims ("a probe trained on ClimaX decodes
    temperature from MatterGen", "EquiformerV2 mirrored the macroscale structure of ClimaX", air parcels and
    crystals on one temperature-coloured UMAP) compare embeddings of *different* samples: a weather grid and a
    crystal share no sample, so neither a probe (a map from one model's embedding of a sample to that
    sample's label) nor CKA/CKNNA (defined on the same samples embedded by two models) applies. What the
    study measures instead: alignment and probe transfer within each dataset, side by side.
    """
    meta = ctx.models
    weather = {m for m in real if meta[m].get("kind") == "weather"}
    grids = sorted(ds for ds, emb in ctx.embeddings.items() if any(meta.get(m, {}).get("modality") == "grid"
                                                                    for m in emb))
    controls = gaussian | {m for m, v in meta.items() if v.get("control") and v.get("modality") == "grid"}
    rows = []
    if not grids:
        rows.append(_row("weather models (ClimaX, GraphCast) align and decode weather quantities", "", np.nan,
                         np.nan, np.nan, None, "no gridded dataset in this study."))
    for ds in grids:
        present = sorted(m for m in weather if m in ctx.embeddings[ds])
        names = ", ".join(present) or "none"
        pairs = _cknna_pairs(ctx, ds, k)
        ww = [v for (a, b), v in pairs.items() if a in present and b in present]
        wr = [v for (a, b), v in pairs.items() if (a in present and b in controls) or (b in present and a in controls)]
        d, lo, hi = _diff_ci(ww, wr, rng)
        rows.append(_row("the weather models align with each other above random features (weather–weather minus "
                         "weather–random CKNNA)", ds, d, lo, hi, None if not ww or not wr else bool(lo > 0),
                         f"weather models here: {names}; {len(ww)} weather pairs, {len(wr)} random-control pairs."))
        pr = ctx.results.get("probes")
        table = pr.tables.get("probe_scores") if pr else None
        sc = table[(table["dataset"] == ds) & table["model"].isin(present)] if table is not None and len(table) else None
        if sc is not None and len(sc):
            v, lo, hi = _boot_ci(sc["r2"].to_numpy(dtype=float), rng, stat=np.median)
            raw_models = {m for m in ctx.embeddings[ds] if meta.get(m, {}).get("modality") == "grid"
                          and meta.get(m, {}).get("kind") == "descriptor"}
            raw = table[(table["dataset"] == ds) & table["model"].isin(raw_models)]
            extra = "" if not len(raw) else (
                f" Raw-patch baseline ({', '.join(sorted(raw_models))}): median R² "
                f"{float(np.nanmedian(raw['r2'].to_numpy(dtype=float))):.3g}; the labels are patch means of input "
                "fields, so a weather model is judged against it.")
            rows.append(_row("probes decode temperature, humidity, pressure and wind from the weather models "
                             "(median R² over model × label)", ds, v, lo, hi, bool(lo >= 0.9),
                             f"{len(sc)} (model, label) probes of {names}.{extra}"))
        else:
            rows.append(_row("probes decode weather quantities from the weather models", ds, np.nan, np.nan, np.nan,
                             None, f"no probe scores of a weather model here ({names})."))
    others = sorted(ds for ds in ctx.embeddings if ds not in grids)
    rows.append(_row(
        "a probe trained on ClimaX decodes temperature from MatterGen (and climate probes work on materials)",
        ", ".join(grids + others), np.nan, np.nan, np.nan, None,
        "Not testable as stated: a probe maps one model's embedding of a sample to that sample's label, and a "
        "weather grid and a crystal share no sample (a crystal has no air temperature; a grid patch has no "
        "structure). Measured instead: probe transfer between models on the same samples within each dataset "
        "(the transfer analysis) and the weather rows above."))
    rows.append(_row(
        "EquiformerV2 mirrors the macroscale structure of ClimaX (CKA across domains)", ", ".join(grids + others),
        np.nan, np.nan, np.nan, None,
        "Not testable as stated: CKA and CKNNA compare two models' embeddings of the same samples, and no sample "
        "is both a weather patch and an atomic structure. Measured instead: the alignment matrix of each "
        "dataset (weather models on the grid, EquiformerV2 on structures) and the within-dataset claims above."))
    return rows


@register_analysis("findings", options=["k"], reads_results=True)
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
        n_of = _cknna_n(ctx, ds, k)

        def group(keep, _pairs=pairs):  # the pair keys that pass `keep(a, b)`
            return [p for p in _pairs if keep(*p)]

        def n_for(*groups, _n=n_of):  # the samples behind the pair values a claim uses
            return n_text([_n.get(p) for g in groups for p in g], "samples per pair")

        def vals(keys, _pairs=pairs):
            return [_pairs[p] for p in keys]

        rr_k = group(lambda a, b: a in real and b in real)
        rr = vals(rr_k)
        # 1. alignment is far above random features
        rand_k = group(lambda a, b: (a in gaussian) != (b in gaussian) and (a in real or b in real))
        rand = vals(rand_k)
        d, lo, hi = _diff_ci(rr, rand, rng)
        rows.append(_row("models align far above random features (mean CKNNA real–real minus random–real)", ds,
                         d, lo, hi, None if not rand or not rr else bool(lo > 0),
                         f"{len(rr)} real pairs, {len(rand)} random-control pairs.", n=n_for(rr_k, rand_k)))
        # 2. trained weights vs the same architectures with random weights
        ri_k = group(lambda a, b: (a in reinit) != (b in reinit) and (a in real or b in real))
        ri = vals(ri_k)
        d, lo, hi = _diff_ci(rr, ri, rng)
        rows.append(_row("training, not architecture, makes the alignment (real–real minus random-weights–real)",
                         ds, d, lo, hi, None if not ri or not rr else bool(lo > 0),
                         f"{len(ri)} pairs with a random-weights model.", n=n_for(rr_k, ri_k)))
        # 3. same family vs cross family
        same_k = group(lambda a, b: a in real and b in real and meta[a]["family"] == meta[b]["family"])
        cross_k = group(lambda a, b: a in real and b in real and meta[a]["family"] != meta[b]["family"])
        same, cross = vals(same_k), vals(cross_k)
        d, lo, hi = _diff_ci(same, cross, rng)
        rows.append(_row("models of one family align more than across families (within minus between)", ds,
                         d, lo, hi, None if not same or not cross else bool(lo > 0),
                         f"{len(same)} within-family, {len(cross)} cross-family pairs.", n=n_for(same_k, cross_k)))
        # 4. text models on strings vs 3D models, against the random control
        tm_k = group(lambda a, b: (a in text and b in mlip) or (b in text and a in mlip))
        rm_k = group(lambda a, b: (a in gaussian and b in mlip) or (b in gaussian and a in mlip))
        tm, rm = vals(tm_k), vals(rm_k)
        d, lo, hi = _diff_ci(tm, rm, rng)
        rows.append(_row("language models on strings align with 3D models above noise (text–3D minus random–3D)",
                         ds, d, lo, hi, None if not tm or not rm else bool(lo > 0),
                         f"{len(tm)} text–3D pairs.", n=n_for(tm_k, rm_k)))
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
                             uncertainty="p-value of the smallest ρ",
                             n=_pair_n(ctx, ds)))
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
                             f"{len(frac)} (label, source → target) pairs whose target probe reaches R² > 0.5.",
                             n=f"{n_text(g['n_train'])} train / {n_text(g['n_test']).removeprefix('n = ')} test "
                               "samples" if {"n_train", "n_test"} <= set(g) and len(g) else ""))
    else:
        rows.append(_row("probes transfer between models", "", np.nan, np.nan, np.nan, None, "the transfer analysis did not run."))
    # 7. labels organise the maps
    mp = res_by.get("maps")
    org = mp.tables.get("map_label_organisation") if mp else None
    if org is not None and len(org):
        o = org[~org["control"]]
        d, lo, hi = _diff_ci(o["knn_r2_embedding"], o["knn_r2_shuffled"], rng)
        rows.append(_row("embeddings organise physical labels (kNN R² of the label minus of a shuffled label)", "",
                         d, lo, hi, bool(lo > 0), f"{len(o)} (model, label) pairs.",
                         n=n_text(o["n"], "samples per map") if "n" in o else ""))
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
                             f"{len(g)} energy models, best {g['best_model'].iloc[0]}.", uncertainty="p-value",
                             n=n_text(g["n"], "structures per model") if "n" in g else ""))
    else:
        rows.append(_row("more accurate models align more with the most accurate one", "", np.nan, np.nan, np.nan,
                         None, "no energy-predicting models or reference energies."))
    rows += _weather_claims(ctx, k, rng, real, gaussian)
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
