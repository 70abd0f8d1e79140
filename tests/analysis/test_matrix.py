from __future__ import annotations

import numpy as np
import pytest

from matteralign.analysis import get_analysis
from matteralign.analysis.matrix import condense

from .conftest import l2, ref_cknna


def test_condense_hand_computation():
    M = np.array(
        [
            [1.0, 0.8, 0.2, 0.1],
            [0.6, 1.0, 0.3, 0.0],
            [0.2, 0.4, 1.0, 0.5],
            [0.1, 0.2, 0.7, 1.0],
        ]
    )
    C, fams = condense(M, ["a", "a", "b", "b"])
    assert fams == ["a", "b"]
    # diagonal blocks exclude self pairs; asymmetric entries keep their direction
    assert C[0, 0] == pytest.approx((0.8 + 0.6) / 2)
    assert C[1, 1] == pytest.approx((0.5 + 0.7) / 2)
    assert C[0, 1] == pytest.approx((0.2 + 0.1 + 0.3 + 0.0) / 4)
    assert C[1, 0] == pytest.approx((0.2 + 0.4 + 0.1 + 0.2) / 4)
    C1, _ = condense(M[:3, :3], ["a", "a", "single"])
    assert np.isnan(C1[1, 1])  # one-model family: no off-diagonal pair


def test_matrix_analysis(ctx):
    res = get_analysis("matrix")(ctx)
    assert res.name == "matrix"
    assert len(res.figures) == 4 and all(p.exists() and p.stat().st_size > 10_000 for p in res.figures)
    for ds in ("molecules", "crystals"):
        for metric in ("cknna", "mutual_knn", "information_imbalance"):
            t = res.tables[f"{ds}/{metric}"].set_index("model")
            assert t.shape == (8, 8)
            assert list(t.index)[-1] == "random"  # control last
            assert list(t.index)[:3] == ["chemlm", "mace-l", "mace-m"]  # by family, then name
        cond = res.tables[f"{ds}/cknna/condensed"].set_index("family")
        assert list(cond.index) == ["chemlm", "mace", "orb", "random"]
    t = res.tables["molecules/cknna"].set_index("model")
    M = t.to_numpy()
    np.testing.assert_allclose(M, M.T, equal_nan=True)
    X = {m: l2(e.X.astype(np.float64)) for m, e in ctx.embeddings["molecules"].items()}
    assert t.loc["orb-a", "mace-s"] == pytest.approx(ref_cknna(X["orb-a"], X["mace-s"], 25), abs=1e-9)
    # condensed block = hand mean over the block's distinct pairs
    orb = ["orb-a", "orb-b", "orb-c"]
    mace = ["mace-s", "mace-m", "mace-l"]
    cond = res.tables["molecules/cknna/condensed"].set_index("family")
    assert cond.loc["orb", "orb"] == pytest.approx(np.mean([t.loc[a, b] for a in orb for b in orb if a != b]))
    assert cond.loc["orb", "mace"] == pytest.approx(t.loc[orb, mace].to_numpy().mean())
    assert np.isnan(cond.loc["random", "random"])
    # information imbalance keeps direction
    ii = res.tables["molecules/information_imbalance"].set_index("model")
    sub = ctx.pairs[(ctx.pairs.dataset == "molecules") & (ctx.pairs.metric == "information_imbalance")]
    row = sub[(sub.model_a == "chemlm") & (sub.model_b == "orb-a")].iloc[0]
    assert ii.loc["chemlm", "orb-a"] == pytest.approx(row.value)
    # findings carry the table's numbers
    ctrl = t.loc["random"].drop("random").abs().max()
    assert any(f"max |CKNNA| {ctrl:.3g}" in f and f.startswith("molecules") for f in res.findings)
    real = t.drop(index="random", columns="random")
    best = np.nanmax(np.where(np.eye(7, dtype=bool), np.nan, real.to_numpy()))
    assert any(f"(CKNNA {best:.3g})" in f for f in res.findings)


def test_matrix_empty_pairs(ctx):
    ctx.pairs = ctx.pairs.iloc[:0]
    res = get_analysis("matrix")(ctx)
    assert res.figures == [] and "No pair results" in res.findings[0]
