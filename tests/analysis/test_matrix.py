from __future__ import annotations

import numpy as np
import pytest

from matteralign.analysis import get_analysis
from matteralign.analysis.matrix import condense
from matteralign.errors import InputError

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
    ctx.pairs["n"] = 300  # >= 10 k: every pair may make a headline
    res = get_analysis("matrix")(ctx)
    assert res.name == "matrix"
    # one figure per dataset and metric, full and condensed, each with a caption
    assert len(res.figures) == 2 * 3 * 2 and all(p.exists() and p.stat().st_size > 10_000 for p in res.figures)
    assert {p.name for p in res.figures} == set(res.captions)
    assert "n = " in res.captions["matrix_molecules_cknna.png"]
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
    n = int(ctx.pairs[(ctx.pairs.dataset == "molecules")]["n"].iloc[0])
    assert any(f"(CKNNA {best:.3g}, n = {n}, k = 25)" in f for f in res.findings)


def test_matrix_figures_are_legible_and_thin_pairs_marked(ctx):
    from PIL import Image

    from matteralign.analysis.matrix import THIN_FACTOR

    ctx.pairs["n"] = 300
    sub = ctx.pairs
    thin = (sub.dataset == "molecules") & (sub.model_a.isin(["orb-a"]) | sub.model_b.isin(["orb-a"])) & (
        sub.model_a != sub.model_b)
    ctx.pairs.loc[thin, "n"] = THIN_FACTOR * 25 - 1  # orb-a embeds only part of the samples
    res = get_analysis("matrix")(ctx)
    with Image.open(ctx.out_dir / "matrix_molecules_cknna.png") as im:
        width, pt, dpi = im.width, float(im.info["matteralign:min_font_pt"]), float(im.info["matteralign:dpi"])
    assert pt >= 8 and width <= 1116  # 8 models: shown at its own size within the report's 1116 px column
    assert (ctx.out_dir / "matrix_molecules_cknna.svg").is_file()  # small enough for an SVG beside it
    assert "* marks 14 value(s)" in res.captions["matrix_molecules_cknna.png"]
    heads = [f for f in res.findings if f.startswith("molecules")]
    assert any("7 pair(s) rest on fewer than 10·k = 250 samples" in f for f in heads)
    best = next(f for f in heads if "most aligned pair" in f)
    assert "orb-a" not in best.split("(")[0]  # a thin pair never makes a headline
    assert dpi > 0


def test_matrix_empty_pairs(ctx):
    ctx.pairs = ctx.pairs.iloc[:0]
    res = get_analysis("matrix")(ctx)
    assert res.figures == [] and "No pair results" in res.findings[0]


def test_matrix_all_pairs_thin_gives_no_headline(ctx):
    res = get_analysis("matrix")(ctx)  # the synthetic study has n = 240 < 10 k = 250 for every pair
    heads = [f for f in res.findings if f.startswith("molecules")]
    assert not any("most aligned pair" in f for f in heads)
    assert any("every pair rests on fewer than 10·k = 250 samples (n = 240, k = 25)" in f for f in heads)


def _calibrated_scores(ctx):
    """A calibrated column that differs from the raw one (gated: below 0.3 raw is chance)."""
    v = ctx.pairs["value"].to_numpy(dtype=float)
    ctx.pairs["calibrated"] = np.clip((v - 0.3) / 0.7, 0.0, 1.0)
    return ctx


def test_matrix_from_calibrated_scores(ctx):
    """score = 'calibrated': full and condensed matrices and the headlines read the calibrated column."""
    ctx.pairs["n"] = 300
    _calibrated_scores(ctx)
    ctx.params = {"score": "calibrated"}
    res = get_analysis("matrix")(ctx)
    assert "calibrated" in res.title and "calibrated" in res.summary
    sub = ctx.pairs[(ctx.pairs.dataset == "molecules") & (ctx.pairs.metric == "cknna")]
    t = res.tables["molecules/cknna"].set_index("model")
    for a, b in (("orb-a", "mace-s"), ("orb-a", "orb-b"), ("chemlm", "random")):
        row = sub[(sub.model_a == a) & (sub.model_b == b)].iloc[0]
        assert t.loc[a, b] == pytest.approx(row.calibrated) and row.calibrated != pytest.approx(row.value)
    orb, mace = ["orb-a", "orb-b", "orb-c"], ["mace-s", "mace-m", "mace-l"]
    cond = res.tables["molecules/cknna/condensed"].set_index("family")
    assert cond.loc["orb", "orb"] == pytest.approx(np.mean([t.loc[a, b] for a in orb for b in orb if a != b]))
    assert cond.loc["orb", "mace"] == pytest.approx(t.loc[orb, mace].to_numpy().mean())
    assert np.nanmin(t.to_numpy(dtype=float)) >= 0  # gated scores
    real = t.drop(index="random", columns="random")
    best = np.nanmax(np.where(np.eye(7, dtype=bool), np.nan, real.to_numpy()))
    assert any(f"(calibrated CKNNA {best:.3g}, n = 300, k = 25)" in f for f in res.findings)
    assert "calibrated" in res.captions["condensed_molecules_cknna.png"]


def test_matrix_calibrated_needs_calibration(ctx):
    ctx.params = {"score": "calibrated"}
    with pytest.raises(InputError, match="calibration"):
        get_analysis("matrix")(ctx)
    ctx.params = {"score": "bogus"}
    with pytest.raises(InputError, match="score must be one of"):
        get_analysis("matrix")(ctx)


def test_every_registered_family_has_its_own_fixed_colour():
    from matteralign import models
    from matteralign.analysis._plot import CONTROL_COLOR, FAMILY_COLORS, family_colors

    specs = [models.get_spec(n) for n in models.names()]
    families = {s.family for s in specs if not s.control}
    assert families <= set(FAMILY_COLORS), sorted(families - set(FAMILY_COLORS))
    assert len(set(FAMILY_COLORS.values())) == len(FAMILY_COLORS)  # no two families share a colour
    assert CONTROL_COLOR not in FAMILY_COLORS.values()
    meta = {s.name: {"family": s.family, "control": s.control} for s in specs}
    got = family_colors(meta)
    assert got["inverse_folding"] == FAMILY_COLORS["inverse_folding"] and got["pet"] == FAMILY_COLORS["pet"]
