"""The findings section: computed verdicts that change when the data change."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from matteralign.analysis import AnalysisContext, AnalysisResult, Embedding, get_analysis

META = {
    "a": {"family": "f1", "control": False, "kind": "mlip", "modality": "atoms"},
    "b": {"family": "f1", "control": False, "kind": "mlip", "modality": "atoms"},
    "c": {"family": "f2", "control": False, "kind": "mlip", "modality": "atoms"},
    "lm": {"family": "lm", "control": False, "kind": "language", "modality": "smiles"},
    "random": {"family": "control", "control": True, "kind": "control", "modality": "atoms", "reads": []},
    "a-random": {"family": "control", "control": True, "kind": "control", "modality": "atoms", "reads": ["atoms"],
                 "random_init_of": "a"},
}


def _context(tmp_path, value, *, results=None):
    rows = []
    names = list(META)
    for x in names:
        for y in names:
            v = 1.0 if x == y else value(x, y)
            rows.append({"dataset": "d", "model_a": x, "model_b": y, "metric": "cknna",
                         "params": json.dumps({"k": 25}), "value": v})
    emb = {"d": {m: Embedding(ids=["0"], X=np.zeros((1, 1))) for m in names}}
    return AnalysisContext(out_dir=tmp_path, datasets={}, embeddings=emb, models=META, pairs=pd.DataFrame(rows),
                           per_model=pd.DataFrame(), params={}, seed=0, results=results or {})


def _verdict(res, start):
    t = res.tables["claims"]
    return t[t["claim"].str.startswith(start)]["verdict"].tolist()


def test_claims_hold_on_aligned_data_and_fail_when_alignment_is_noise(tmp_path):
    run = get_analysis("findings")
    rng = np.random.default_rng(0)

    def aligned(x, y):
        if "random" in (x, y) or "a-random" in (x, y):
            return 0.05 + 0.01 * rng.random()
        same = META[x]["family"] == META[y]["family"]
        return (0.8 if same else 0.5) + 0.01 * rng.random()

    res = run(_context(tmp_path, aligned))
    assert _verdict(res, "models align far above random") == ["holds"]
    assert _verdict(res, "training, not architecture") == ["holds"]
    assert _verdict(res, "models of one family") == ["holds"]
    assert _verdict(res, "language models on strings") == ["holds"]
    # analyses that did not run are reported as not measured, never guessed
    assert _verdict(res, "the k sweep") == ["not measured"]
    assert any("holds" in f for f in res.findings)

    def noise(x, y):
        return 0.05 + 0.01 * rng.random()

    res = run(_context(tmp_path, noise))
    assert _verdict(res, "models align far above random") == ["does not hold"]
    assert _verdict(res, "models of one family") == ["does not hold"]


def test_claims_read_earlier_analyses(tmp_path):
    run = get_analysis("findings")
    stab = pd.DataFrame({"dataset": ["d"] * 3, "k": [10, 25, 50], "n_models": [6] * 3,
                         "spearman_rho": [0.3, 1.0, 0.9]})
    energy = pd.DataFrame({"dataset": ["d"] * 4, "model": ["a", "b", "c", "lm"], "best_model": ["a"] * 4,
                           "mae_mev_per_atom": [10.0, 20.0, 30.0, 40.0], "cknna_to_best": [1.0, 0.8, 0.5, 0.2]})
    results = {"ksweep": AnalysisResult("ksweep", "k", tables={"rank_stability": stab}),
               "convergence": AnalysisResult("convergence", "c", tables={"energy_mae": energy})}
    res = run(_context(tmp_path, lambda x, y: 0.5, results=results))
    t = res.tables["claims"].set_index("claim")
    ks = t[t.index.str.startswith("the k sweep")].iloc[0]
    assert ks["value"] == 0.3 and ks["verdict"] == "does not hold"  # k = 25 against itself is left out
    conv = t[t.index.str.startswith("more accurate models")].iloc[0]
    assert conv["value"] == -1.0  # b, c, lm: MAE up, CKNNA to the best down


def test_claims_recomputed_on_calibrated_scores(tmp_path):
    """Raw scores say training matters; calibrated scores (all pairs at chance but family pairs) say it does not."""
    run = get_analysis("findings")
    rng = np.random.default_rng(1)

    def raw(x, y):
        if "random" in (x, y) and "a-random" not in (x, y):
            return 0.05 + 0.01 * rng.random()
        if "a-random" in (x, y):
            return 0.2 + 0.01 * rng.random()
        return 0.5 + 0.01 * rng.random()

    ctx = _context(tmp_path, raw)
    same = [META[a]["family"] == META[b]["family"] and a != b for a, b in zip(ctx.pairs.model_a, ctx.pairs.model_b,
                                                                               strict=True)]
    ctx.pairs["calibrated"] = np.where(same, 0.3, 0.0)
    res = run(ctx)
    t = res.tables["claims"]
    tr = t[t["claim"].str.startswith("training, not architecture")]
    assert tr["verdict"].tolist() == ["holds", "does not hold"]
    cal = tr[tr["claim"].str.endswith("[calibrated CKNNA]")].iloc[0]
    assert "On raw CKNNA: holds." in cal["detail"]


def test_weather_claims(tmp_path):
    """Weather rows: alignment of the weather models and their probes on the grid, the cross-domain claims
    reported as not testable (no sample is both a grid patch and a structure), never guessed."""
    run = get_analysis("findings")
    meta = {"climax": {"family": "climax", "control": False, "kind": "weather", "modality": "grid"},
            "graphcast": {"family": "graphcast", "control": False, "kind": "weather", "modality": "grid"},
            "aurora": {"family": "aurora", "control": False, "kind": "weather", "modality": "grid"},
            "grid-patch": {"family": "descriptor", "control": False, "kind": "descriptor", "modality": "grid"},
            "grid-random": {"family": "control", "control": True, "kind": "control", "modality": "grid",
                            "reads": ["grid"]}}
    rng = np.random.default_rng(2)
    rows = []
    for x in meta:
        for y in meta:
            v = 1.0 if x == y else (0.05 if "grid-random" in (x, y) else 0.6) + 0.01 * rng.random()
            rows.append({"dataset": "weather", "model_a": x, "model_b": y, "metric": "cknna",
                         "params": json.dumps({"k": 25}), "value": v})
    labels = ["temperature_2m_k", "specific_humidity_g_kg", "mslp_hpa", "wind_speed_10m_m_s"]
    probe = pd.DataFrame([{"dataset": "weather", "model": m, "label": lab, "family": meta[m]["family"],
                           "r2": 0.99 if m != "grid-random" else 0.5}
                          for m in meta for lab in labels])
    results = {"probes": AnalysisResult("probes", "p", tables={"probe_scores": probe})}
    emb = {"weather": {m: Embedding(ids=["0"], X=np.zeros((1, 1))) for m in meta}}
    ctx = AnalysisContext(out_dir=tmp_path, datasets={}, embeddings=emb, models=meta, pairs=pd.DataFrame(rows),
                          per_model=pd.DataFrame(), params={}, seed=0, results=results)
    res = run(ctx)
    t = res.tables["claims"]
    assert _verdict(res, "the weather models align with each other") == ["holds"]
    probes = t[t["claim"].str.startswith("probes decode temperature")].iloc[0]
    assert probes["verdict"] == "holds" and probes["value"] == 0.99
    assert "12 (model, label) probes of aurora, climax, graphcast" in probes["detail"]
    assert "Raw-patch baseline (grid-patch): median R² 0.99" in probes["detail"]
    for start in ("a probe trained on ClimaX decodes temperature from MatterGen", "EquiformerV2 mirrors"):
        r = t[t["claim"].str.startswith(start)].iloc[0]
        assert r["verdict"] == "not measured" and r["detail"].startswith("Not testable as stated")
    # weather alignment at noise level does not hold
    ctx.pairs["value"] = np.where(ctx.pairs.model_a == ctx.pairs.model_b, 1.0, 0.05 + 0.01 * rng.random(len(rows)))
    assert _verdict(run(ctx), "the weather models align with each other") == ["does not hold"]


def test_claims_give_the_samples_behind_them(tmp_path):
    """Each claim states its n: the range of the samples behind the pair values it uses."""
    run = get_analysis("findings")
    ctx = _context(tmp_path, lambda x, y: 0.5)
    lm_n = {"a": 140, "b": 150, "c": 160}  # the language model's pairs rest on fewer samples
    ctx.pairs["n"] = [lm_n.get(b if a == "lm" else a, 300) if "lm" in (a, b) and a != b else 300
                      for a, b in zip(ctx.pairs.model_a, ctx.pairs.model_b, strict=True)]
    energy = pd.DataFrame({"dataset": ["d"] * 4, "model": ["a", "b", "c", "lm"], "best_model": ["a"] * 4,
                           "mae_mev_per_atom": [10.0, 20.0, 30.0, 40.0], "cknna_to_best": [1.0, 0.8, 0.5, 0.2],
                           "n": [200, 200, 180, 200]})
    ctx.results = {"convergence": AnalysisResult("convergence", "c", tables={"energy_mae": energy})}
    res = run(ctx)
    t = res.tables["claims"].set_index("claim")

    def n_of(start):
        return t[t.index.str.startswith(start)]["n"].iloc[0]

    assert n_of("models align far above random") == "n = 140–300 samples per pair"  # real–real and random–real
    assert n_of("models of one family") == "n = 140–300 samples per pair"
    assert n_of("language models on strings") == "n = 140–300 samples per pair"  # lm–3D and random–3D
    assert n_of("training, not architecture") == "n = 140–300 samples per pair"
    assert n_of("more accurate models") == "n = 180–200 structures per model"  # b, c, lm: the best is left out
    assert any(f.startswith("models align far above random") and "(n = 140–300 samples per pair)" in f
               for f in res.findings)
    ctx.pairs["n"] = 300
    res = run(ctx)
    assert set(res.tables["claims"]["n"]) >= {"n = 300 samples per pair"}
