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


def test_ksweep_per_pair_intersections_when_the_core_set_is_too_small(ctx):
    """Each model skips a different quarter of the samples: the common set is too small for k = 100, so each
    pair is measured on its own shared samples (every model kept), and the figure says so."""
    from matteralign.analysis.ksweep import cknna_sweep_pairs

    embs = ctx.embeddings["molecules"]
    n_all = len(next(iter(embs.values())).ids)
    for i, (m, e) in enumerate(sorted(embs.items())):
        keep = [r for r in range(n_all) if (r + 13 * i) % 4 != 0]  # a different quarter left out per model
        embs[m] = type(e)(ids=[e.ids[r] for r in keep], X=e.X[keep])
    common = set.intersection(*(set(e.ids) for e in embs.values()))
    ctx.params = {"ks": [2, 10, 25, 100]}
    res = get_analysis("ksweep")(ctx)
    stab = res.tables["rank_stability"]
    mol = stab[stab.dataset == "molecules"]
    assert len(common) - 1 <= 100  # the core set cannot hold k = 100 ...
    assert sorted(set(mol["k"])) == [2, 10, 25, 100] and set(mol["samples"]) == {"per-pair intersections"}
    pairs = res.tables["pairs"].query("dataset == 'molecules'")
    a, b = "orb-a", "mace-s"
    shared = [s for s in embs[a].ids if s in set(embs[b].ids)]
    row = pairs[(pairs.model_a == a) & (pairs.model_b == b) & (pairs.k == 10)].iloc[0]
    assert row.n == len(shared) > len(common)  # ... each pair keeps its own shared samples
    Xa = l2(embs[a].aligned(shared).astype(np.float64))
    Xb = l2(embs[b].aligned(shared).astype(np.float64))
    assert row.value == pytest.approx(ref_cknna(Xa, Xb, 10), abs=1e-4)
    # the model score is the mean over its real partners' per-pair values
    scores = res.tables["scores"].query("dataset == 'molecules' and k == 10").set_index("model")
    real = [m for m in embs if m != "random"]
    k10 = pairs[pairs.k == 10].set_index(["model_a", "model_b"])["value"]
    want = np.mean([(k10[("chemlm", p)] + k10[(p, "chemlm")]) / 2 for p in real if p != "chemlm"])
    assert scores.loc["chemlm", "mean_cknna"] == pytest.approx(want, abs=1e-12)  # both orders, then partners
    cap = res.captions["ksweep_molecules.png"]
    assert "each pair on the samples both of its models embedded" in cap and f"({len(common)})" in cap
    assert any("too few for k up to 100" in f for f in res.findings)
    direct = cknna_sweep_pairs(embs, [a, b], [10], normalize="l2")
    assert direct.value.iloc[0] == pytest.approx(row.value, abs=1e-12)
    # the core set when asked
    ctx.params = {"ks": [2, 10, 25, 100], "samples": "core"}
    core = get_analysis("ksweep")(ctx)
    mol = core.tables["rank_stability"].query("dataset == 'molecules'")
    n_core = len(common)
    assert sorted(mol["k"]) == [k for k in (2, 10, 25) if k < n_core - 1]
    assert mol.empty or set(mol["samples"]) == {"core set"}
