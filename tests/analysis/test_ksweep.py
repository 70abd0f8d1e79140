from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from matteralign.analysis import get_analysis

from .conftest import l2, ref_cknna


def test_ksweep_analysis(ctx):
    ctx.params = {"ks": [2, 10, 25, 50, 100, 500]}  # 500 >= n is skipped
    res = get_analysis("ksweep")(ctx)
    assert len(res.figures) == 2 and all(p.exists() for p in res.figures)
    stab = res.tables["rank_stability"]
    assert sorted(set(stab["k"])) == [2, 10, 25, 50, 100]
    ref = stab[stab.k == 25]
    assert np.allclose(ref["spearman_rho"], 1.0) and np.allclose(ref["kendall_tau"], 1.0)
    scores = res.tables["scores"]
    mol = scores[(scores.dataset == "molecules")]
    assert mol[mol.model == "random"]["rank"].isna().all()  # controls are not ranked
    # the score of a model = mean CKNNA (reference implementation) to the 6 other real models
    X = {m: l2(e.X.astype(np.float64)) for m, e in ctx.embeddings["molecules"].items()}
    real = [m for m in X if m != "random"]
    want = np.mean([ref_cknna(X["chemlm"], X[b], 10) for b in real if b != "chemlm"])
    got = mol[(mol.model == "chemlm") & (mol.k == 10)]["mean_cknna"].item()
    assert got == pytest.approx(want, abs=1e-4)
    # Spearman at k=2 recomputed from the table
    s2 = mol[mol.k == 2].set_index("model").loc[real, "mean_cknna"]
    s25 = mol[mol.k == 25].set_index("model").loc[real, "mean_cknna"]
    rho = spearmanr(s2, s25).statistic
    row = stab[(stab.dataset == "molecules") & (stab.k == 2)]
    assert row["spearman_rho"].item() == pytest.approx(rho)
    lo = stab[(stab.dataset == "molecules") & (stab.k != 25)]["spearman_rho"].min()
    assert any(f.startswith("molecules") and f"at least {lo:.3g}" in f for f in res.findings)


def test_ksweep_small_n_skips(ctx):
    for ds in ctx.embeddings:
        for m, e in ctx.embeddings[ds].items():
            ctx.embeddings[ds][m] = type(e)(ids=e.ids[:3], X=e.X[:3])
    res = get_analysis("ksweep")(ctx)
    assert res.figures == [] and all("no k sweep" in f for f in res.findings)


def test_ksweep_runs_on_the_core_set(ctx):
    """A model that embeds a few samples only is left out (and named) instead of capping k at its sample count."""
    e = ctx.embeddings["molecules"]["chemlm"]
    ctx.embeddings["molecules"]["chemlm"] = type(e)(ids=e.ids[:40], X=e.X[:40])
    ctx.params = {"ks": [2, 10, 25, 50, 100]}
    res = get_analysis("ksweep")(ctx)
    stab = res.tables["rank_stability"]
    mol = stab[stab.dataset == "molecules"]
    assert sorted(set(mol["k"])) == [2, 10, 25, 50, 100] and (mol["n"] > 40).all()
    assert any("left out" in f and "chemlm" in f for f in res.findings)
    assert "chemlm" not in set(res.tables["scores"].query("dataset == 'molecules'")["model"])
