"""The ``probes`` and ``transfer`` analyses on a synthetic study whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from matteralign.analysis import get_analysis

from .synthetic_matter import make_context


@pytest.fixture(scope="module")
def probes_result(tmp_path_factory):
    ctx = make_context(tmp_path_factory.mktemp("probes"), n=150)
    return ctx, get_analysis("probes")(ctx)


@pytest.fixture(scope="module")
def transfer_result(tmp_path_factory):
    ctx = make_context(tmp_path_factory.mktemp("transfer"), n=150)
    return ctx, get_analysis("transfer")(ctx)


def _row(df, **kw):
    sel = np.ones(len(df), dtype=bool)
    for k, v in kw.items():
        sel &= (df[k] == v).to_numpy()
    assert sel.sum() == 1, kw
    return df[sel].iloc[0]


def test_probe_scores_follow_the_latent(probes_result):
    ctx, res = probes_result
    df = res.tables["probe_scores"]
    assert set(df["dataset"]) == {"molecules", "crystals"}
    # labels per dataset: wave exists only for molecules; chemlm only embedded molecules
    assert set(df[df.dataset == "crystals"]["label"]) == {"lin", "noise", "energy_ref_ev"}
    assert "chemlm" not in set(df[df.dataset == "crystals"]["model"])
    for ds in ("molecules", "crystals"):
        for m in ("lin-a", "lin-b"):
            r = _row(df, dataset=ds, label="lin", model=m)
            assert r.r2 > 0.95 and r.r2_low > 0.9 and r.beats_composition
        assert _row(df, dataset=ds, label="lin", model="tanh-c").r2 > 0.8
        assert _row(df, dataset=ds, label="lin", model="random").r2 < 0.1
        noise = df[(df.dataset == ds) & (df.label == "noise")]
        assert (noise["r2"] < 0.05).all() and (noise["r2_low"] < 0.0).all()
        assert not noise["beats_composition"].any()
        # energy is a function of composition: the composition baseline decodes it, the models do not
        e = df[(df.dataset == ds) & (df.label == "energy_ref_ev")]
        assert (e["r2_composition"] > 0.95).all()
        assert not e["beats_composition"].any()
    # the random-feature baseline never decodes anything
    assert df["r2_random"].max() < 0.1
    assert (df["n"] == 150).all() and (df["n_dropped"] == 0).all()


def test_probe_baselines_share_samples(probes_result):
    _, res = probes_result
    b = res.tables["probe_baselines"]
    assert set(b["baseline"]) >= {
        "composition (counts)",
        "composition (fractions)",
        "random (d=24)",
        "random (d=12)",
    }
    df = res.tables["probe_scores"]
    for kind in ("counts", "fractions"):
        comp = b[(b.baseline == f"composition ({kind})") & (b.dataset == "molecules")]
        assert sorted(comp["label"]) == ["energy_ref_ev", "lin", "noise", "wave"]
        assert (comp["dim"] == 4).all()
    # the score table carries the better of the two composition baselines, per label
    for lab in ("energy_ref_ev", "lin", "noise", "wave"):
        rows = b[(b.dataset == "molecules") & (b.label == lab) & b.baseline.str.startswith("composition")]
        best = rows.loc[rows["r2"].idxmax()]
        sel = df[(df.dataset == "molecules") & (df.label == lab)]
        assert (sel["r2_composition"] == best.r2).all()
        assert (sel["composition_kind"] == best.baseline.split("(")[1].rstrip(")")).all()
    # energy is linear in the element counts: the counts baseline wins there
    assert (df[df.label == "energy_ref_ev"]["composition_kind"] == "counts").all()


def test_probe_findings_and_figures(probes_result):
    ctx, res = probes_result
    assert len(res.figures) == 2 and all(p.exists() and p.stat().st_size > 5000 for p in res.figures)
    text = "\n".join(res.findings)
    assert "lin: lin-" in text  # best model for the linear label is a linear view
    assert "no model decodes" in text and "noise" in text
    assert "for 1 of 4 labels" in text  # molecules: only `lin` beats composition
    n = res.tables["probe_scores"].groupby("dataset")["n"]
    for f in res.findings:  # every headline gives the samples its probes rest on
        ds = f.split(":")[0]
        lo, hi = int(n.min()[ds]), int(n.max()[ds])
        assert "samples per probe" in f and (f"n = {lo}" in f or f"n = {lo}–{hi}" in f or f"–{hi}" in f), f


def test_probe_params_select_labels_and_validate(tmp_path):
    from matteralign.errors import ConfigError

    ctx = make_context(tmp_path, n=80, params={"labels": ["lin"], "cv": 3, "composition": "fractions"})
    res = get_analysis("probes")(ctx)
    df = res.tables["probe_scores"]
    assert set(df["label"]) == {"lin"}
    assert set(res.tables["probe_baselines"]["baseline"]) == {"composition (fractions)", "random (d=24)",
                                                               "random (d=16)", "random (d=20)", "random (d=12)",
                                                               "random (d=8)"}  # fmt: skip
    ctx.params = {"composition": "mass"}
    with pytest.raises(ConfigError, match="composition"):
        get_analysis("probes")(ctx)


def test_transfer_table(transfer_result):
    ctx, res = transfer_result
    t = res.tables["probe_transfer"]
    assert set(t.columns) >= {"dataset", "label", "source", "target", "r2_transfer", "r2_target_own",
                              "r2_source_own"}  # fmt: skip
    mol = t[t.dataset == "molecules"]
    assert len(mol) == 4 * 5 * 4  # labels x ordered pairs of 5 models
    r = _row(t, dataset="molecules", label="lin", source="lin-a", target="lin-b")
    assert r.r2_transfer > 0.95 and abs(r.r2_transfer - r.r2_target_own) < 0.03
    r = _row(t, dataset="crystals", label="lin", source="lin-b", target="tanh-c")
    assert abs(r.r2_transfer - r.r2_target_own) < 0.05
    ctrl = t[(t.label == "lin") & ((t.source == "random") | (t.target == "random"))]
    assert ctrl["r2_transfer"].max() < 0.1
    assert (t[t.label == "noise"]["r2_transfer"] < 0.05).all()
    assert len(res.figures) == 2 and all(p.exists() for p in res.figures)
    assert any("mean transfer R²" in f for f in res.findings)
    n_tr, n_te = int(t["n_train"].iloc[0]), int(t["n_test"].iloc[0])
    assert (t["n_train"] == n_tr).all() and (t["n_test"] == n_te).all()  # one split per dataset, all models
    assert n_tr + n_te == 150 and all(f"n = {n_tr} train / {n_te} test samples" in f for f in res.findings)


def test_transfer_skips_models_with_low_coverage(tmp_path):
    from matteralign.analysis import Embedding

    ctx = make_context(tmp_path, n=80, params={"labels": ["lin"]})
    e = ctx.embeddings["molecules"]["chemlm"]
    ctx.embeddings["molecules"]["chemlm"] = Embedding(ids=e.ids[:40], X=e.X[:40])
    res = get_analysis("transfer")(ctx)
    t = res.tables["probe_transfer"]
    assert "chemlm" not in set(t["source"]) | set(t["target"])
    assert "chemlm on molecules" in res.summary


def test_select_models_tiers_and_families(tmp_path):
    from matteralign.analysis._labels import select_models

    ctx = make_context(tmp_path, n=30)
    for m in ("lin-a", "lin-b", "tanh-c"):
        ctx.models[m]["kind"] = "mlip"
    names = ["random", "chemlm", "lin-b", "tanh-c", "lin-a"]
    assert select_models(ctx, names, None) == ["lin-a", "tanh-c", "lin-b", "chemlm", "random"]
    assert select_models(ctx, names, 2) == ["lin-a", "tanh-c"]


def test_transfer_max_models(tmp_path):
    ctx = make_context(tmp_path, n=60, params={"labels": ["lin"], "max_models": 3})
    res = get_analysis("transfer")(ctx)
    t = res.tables["probe_transfer"]
    assert set(t[t.dataset == "molecules"]["source"]) == {"lin-a", "lin-b", "tanh-c"}
    assert "not included: " in res.summary and "random on molecules" in res.summary
