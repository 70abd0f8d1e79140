"""Confound tables of the calibration analysis on crafted pair tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matteralign.analysis.base import AnalysisContext, Embedding
from matteralign.analysis.calibration import confounds


def _ctx(tmp_path):
    widths = {"trained": 64, "trained-random": 64, "p1": 16, "p2": 128, "p3": 512, "composition": 8}
    embs = {m: Embedding(ids=["s0"], X=np.zeros((1, d), np.float32)) for m, d in widths.items()}
    models = {m: {"family": "x", "control": False, "random_init_of": None} for m in widths}
    models["trained-random"]["random_init_of"] = "trained"
    rows = []
    for a in widths:
        for b in widths:
            if a == b:
                continue
            if "trained" in (a, b) and "trained-random" not in (a, b):
                v = 0.5
            elif "trained-random" in (a, b):
                v = 0.1
            else:  # grows with width
                v = np.sqrt(widths[a] * widths[b]) / 1000
            rows.append(dict(dataset="d", model_a=a, model_b=b, metric="cknna", params="{}", value=v,
                             calibrated=v / 2, p_adjusted=0.01))
    return AnalysisContext(out_dir=tmp_path, datasets={}, embeddings={"d": embs}, models=models,
                           pairs=pd.DataFrame(rows), per_model=pd.DataFrame())


def test_confounds_known_answers(tmp_path):
    training, width, comp = confounds(_ctx(tmp_path))
    raw = training[training.score == "value"].iloc[0]
    assert raw.trained == "trained" and raw.random_init == "trained-random" and raw.partners == 4
    assert raw.difference == pytest.approx(0.4) and raw.ci_low == pytest.approx(0.4)
    cal = training[training.score == "calibrated"].iloc[0]
    assert cal.difference == pytest.approx(0.2)
    assert set(comp[comp.score == "value"].model) == set(_ctx(tmp_path).embeddings["d"]) - {"composition"}
    w = width[(width.score == "value") & (width.confound == "width")].iloc[0]
    # value = sqrt(w_a w_b) / 1000 on the 10 pairs away from the trained pair, constants on the other 5
    assert w.pairs == 15 and -1 <= w.spearman_rho <= 1
    assert set(width.confound) == {"width"}  # no parameter counts or depths known here


def test_parameter_count_and_depth_confounds(tmp_path):
    """Depths come from the models' specs (the compared layer), parameter counts from their provenance."""
    from matteralign.analysis.calibration import model_depth
    from matteralign.models import get_spec

    layers = {"esm2-t6-8m": "last", "esm2-t30-150m": "last", "esm2-t33-650m": "hidden_10", "esmc-600m": "last",
              "mace-mp": "invariants", "composition": "fraction"}
    depth = {m: model_depth(m, {"layer": lay}) for m, lay in layers.items()}
    spec_depth = {li.name: li.depth for li in get_spec("esm2-t33-650m").layer_info()}
    assert depth["esm2-t6-8m"] == 6 and depth["esm2-t30-150m"] == 30 and depth["esmc-600m"] == 36
    assert depth["esm2-t33-650m"] == spec_depth["hidden_10"] == 10  # the compared layer, not the default one
    assert depth["mace-mp"] is None and depth["composition"] is None  # the spec lists no depths
    assert model_depth("esm2-t6-8m", {"layer": "last", "control": True}) is None
    assert model_depth("no-such-model", {}) is None
    # parameter counts 1e10 / depth: their geometric mean falls as the score grows; unknown for mace-mp
    n_params = {m: (int(1e10 // d) if d else None) for m, d in depth.items()}
    models = {m: {"family": "x", "control": False, "random_init_of": None, "layer": layers[m],
                  "n_params": n_params[m]} for m in layers}
    embs = {m: Embedding(ids=["s0"], X=np.zeros((1, 8), np.float32)) for m in layers}
    rows = [dict(dataset="d", model_a=a, model_b=b, metric="cka", params="{}",
                 value=(depth[a] or 1) * (depth[b] or 1) / 1e4, calibrated=0.0, p_adjusted=0.5)
            for a in layers for b in layers if a != b]
    ctx = AnalysisContext(out_dir=tmp_path, datasets={}, embeddings={"d": embs}, models=models,
                          pairs=pd.DataFrame(rows), per_model=pd.DataFrame())
    _, scale, _ = confounds(ctx)
    got = scale[scale.score == "value"].set_index("confound")
    assert got.loc["depth", "pairs"] == 6 and got.loc["depth", "models"] == 4  # pairs of the 4 known depths
    assert got.loc["depth", "spearman_rho"] == pytest.approx(1.0)  # the score grows with depth
    assert got.loc["n_params", "pairs"] == 6
    assert got.loc["n_params", "spearman_rho"] == pytest.approx(-1.0)  # ... and falls with parameter count
    assert got.loc["width", "pairs"] == 15
    # the calibrated score is constant: no correlation is defined
    assert np.isnan(scale[(scale.score == "calibrated") & (scale.confound == "depth")].spearman_rho.iloc[0])


def test_residualising_removes_shared_composition(tmp_path):
    """X and Y share only a linear function of C: aligned before, chance after residualising on C."""
    from matteralign.analysis.calibration import beyond_composition, residualise

    rng = np.random.default_rng(0)
    n = 200
    C = rng.dirichlet(np.ones(6), n)
    S = rng.standard_normal((n, 4))  # a signal shared beyond composition, for the third model
    X = C @ rng.standard_normal((6, 20)) + 0.05 * rng.standard_normal((n, 20))
    Y = C @ rng.standard_normal((6, 15)) + 0.05 * rng.standard_normal((n, 15))
    Z = np.hstack([C @ rng.standard_normal((6, 10)), S]) + 0.05 * rng.standard_normal((n, 14))
    W = np.hstack([C @ rng.standard_normal((6, 10)), S @ rng.standard_normal((4, 4))]) + 0.05 * rng.standard_normal(
        (n, 14))
    R = residualise(X, C)
    assert np.abs(R.T @ (C - C.mean(0))).max() < 1e-4 * np.linalg.norm(X) * np.linalg.norm(C)  # orthogonal to C
    ids = [f"s{i}" for i in range(n)]
    embs = {m: Embedding(ids=ids, X=A.astype(np.float64)) for m, A in
            (("composition", C), ("x", X), ("y", Y), ("z", Z), ("w", W))}
    ctx = AnalysisContext(out_dir=tmp_path, datasets={}, embeddings={"d": embs}, models={}, pairs=pd.DataFrame(),
                          per_model=pd.DataFrame(), seed=1)
    t = beyond_composition(ctx, n_permutations=99).set_index(["model_a", "model_b"])
    assert t.loc[("x", "y"), "value"] > 0.5 and t.loc[("x", "y"), "calibrated"] > 0.3
    assert t.loc[("x", "y"), "p_beyond_composition"] > 0.05 and t.loc[("x", "y"), "calibrated_beyond_composition"] == 0
    assert t.loc[("w", "z"), "p_beyond_composition"] == pytest.approx(0.01)  # the shared signal survives
    assert t.loc[("w", "z"), "calibrated_beyond_composition"] > 0.3
