from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr

from matteralign.analysis import get_analysis


def _ii(ctx, ds, a, b):
    p = ctx.pairs
    return p[(p.dataset == ds) & (p.metric == "information_imbalance") & (p.model_a == a) & (p.model_b == b)][
        "value"].item()


def test_imbalance_analysis(ctx):
    res = get_analysis("imbalance")(ctx)
    assert len(res.figures) == 2 and all(p.exists() for p in res.figures)
    tab = res.tables["pairs"]
    assert len(tab) == 2 * 28 and set(tab.k) == {1}
    r = tab[(tab.dataset == "molecules") & (tab.model_a == "chemlm") & (tab.model_b == "orb-a")].iloc[0]
    assert r.delta_ab == _ii(ctx, "molecules", "chemlm", "orb-a")
    assert r.delta_ba == _ii(ctx, "molecules", "orb-a", "chemlm")
    p = ctx.pairs
    ck = p[(p.dataset == "molecules") & (p.metric == "cknna") & (p.model_a == "orb-a") & (p.model_b == "chemlm")]
    assert r.cknna == pytest.approx(ck["value"].item())
    mol = tab[tab.dataset == "molecules"]
    near = int(((mol.delta_ab < 0.2) & (mol.delta_ba < 0.2)).sum())
    assert near == 6  # the 3 + 3 same-family pairs of the synthetic study
    assert any(f.startswith("molecules (k = 1): 6 of 28 pairs") for f in res.findings)


def test_ood_analysis(ctx):
    res = get_analysis("ood")(ctx)
    assert len(res.figures) == 1 and res.figures[0].exists()
    tab = res.tables["pairs"]
    assert len(tab) == 15  # 6 MLIPs -> 15 pairs; chemlm and random excluded
    assert not ({"chemlm", "random"} & (set(tab.model_a) | set(tab.model_b)))
    r = pearsonr(tab["cknna_crystals"], tab["cknna_molecules"]).statistic
    assert any(f"Pearson r = {r:.3g}" in f for f in res.findings)
    lower = int((tab["cknna_molecules"] < tab["cknna_crystals"]).sum())
    assert any(f.startswith(f"{lower} of 15 pairs") for f in res.findings)
    np.testing.assert_allclose(tab["difference"], tab["cknna_molecules"] - tab["cknna_crystals"])
    # every headline gives the samples behind it (the fixture's pairs rest on all N samples)
    n = {ds: int(ctx.pairs[ctx.pairs.dataset == ds]["n"].iloc[0]) for ds in ("crystals", "molecules")}
    assert (tab["n_crystals"] == n["crystals"]).all() and (tab["n_molecules"] == n["molecules"]).all()
    phrase = f"n = {n['crystals']} samples per pair on crystals, n = {n['molecules']} on molecules"
    assert all(phrase in f for f in res.findings), res.findings


def test_ood_skipped_without_second_dataset(ctx):
    ctx.pairs = ctx.pairs[ctx.pairs.dataset == "crystals"]
    res = get_analysis("ood")(ctx)
    assert res.figures == [] and "Skipped" in res.findings[0] and "'molecules'" in res.findings[0]
