"""A study run calibrates every pair value: p-value, interval, calibrated scores, BH-adjusted p."""

from __future__ import annotations

import numpy as np
import pytest

from matteralign.study import Study

pytestmark = pytest.mark.slow


def test_study_pairs_have_nulls_and_intervals(tmp_path):
    cfg = {
        "name": "calibrated", "seed": 3, "out": str(tmp_path / "run"),
        "models": ["composition", "random", "element-random"],
        "datasets": [{"name": "g2", "n": 40}],
        "metrics": {"cknna": {"k": 5}, "mutual_knn": {"k": 5}, "unbiased_cka": {}, "dcor2": {},
                    "information_imbalance": {"k": 1}},
        "model_metrics": {"intrinsic_dimension": [{"method": "twonn", "k": 10}]},
        "analyses": {"matrix": {"k": 5}, "calibration": {"fdr": 0.1}},
        "calibration": {"n_permutations": 19, "n_subsamples": 6},
    }
    res = Study.from_dict(cfg).run(progress=False)
    pairs = res.pairs
    assert len(pairs) == 5 * 9
    defined = pairs[np.isfinite(pairs["value"])]
    assert defined[["p_value", "ci_low", "ci_high", "null_tau", "calibrated"]].notna().all().all()
    undefined = pairs[~np.isfinite(pairs["value"])]
    assert all("undefined" in n for n in undefined["note"])
    assert ((pairs["p_value"] >= 1 / 20) & (pairs["p_value"] <= 1)).all()
    assert (pairs["n_permutations"] == 19).all() and (pairs["null_seed"] == 3).all()
    assert (defined["ci_low"] <= defined["value"] + 1e-12).all() and (defined["value"] <= defined["ci_high"] + 1e-12).all()
    off = pairs[pairs["model_a"] != pairs["model_b"]]
    assert off["p_adjusted"].notna().all() and (off["p_adjusted"] >= off["p_value"] - 1e-15).all()
    assert pairs.loc[pairs["model_a"] == pairs["model_b"], "p_adjusted"].isna().all()

    pm = res.per_model
    assert len(pm) == 3 and (pm["ci_low"] <= pm["value"]).all() and (pm["value"] <= pm["ci_high"]).all()
    assert pm["ci_method"].str.startswith("half-sampling").all()
    html = res.report.read_text()
    assert "Calibrated alignment and confounds" in html and "align beyond chance after FDR 0.1" in html
    figs = sorted((res.out / "report" / "figures" / "calibration").glob("calibrated_*.png"))
    assert len(figs) == 5
