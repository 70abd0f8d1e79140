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
    w = width[width.score == "value"].iloc[0]
    assert w.pairs == 15 and -1 <= w.spearman_rho <= 1
