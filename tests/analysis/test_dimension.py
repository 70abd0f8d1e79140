from __future__ import annotations

import numpy as np
import pytest

from matteralign.analysis import get_analysis


def test_dimension_analysis(ctx):
    res = get_analysis("dimension")(ctx)
    assert len(res.figures) == 2 and all(p.exists() for p in res.figures)
    tab = res.tables["intrinsic_dimension"]
    assert tab.shape == (16, 6)
    assert list(tab.columns[-2:]) == ["twonn", "mle (k=50)"]
    mol = tab[tab.dataset == "molecules"]
    assert list(mol["embedding_type"].drop_duplicates()) == ["invariant", "equivariant", "vanilla", "text", "random"]
    pm = ctx.per_model
    want = pm[(pm.dataset == "molecules") & (pm.model == "orb-b") & pm.params.str.contains("twonn")]["value"].item()
    assert mol.set_index("model").loc["orb-b", "twonn"] == want
    med = res.tables["median_by_type"]
    v = med[(med.dataset == "molecules") & (med.estimator == "twonn") & (med.embedding_type == "vanilla")]
    hand = np.median(mol[mol.embedding_type == "vanilla"]["twonn"])
    assert v["median_id"].item() == pytest.approx(hand)
    assert any(f.startswith("molecules") and f"vanilla {hand:.3g} (n=2)" in f for f in res.findings)


def test_dimension_without_results(ctx):
    ctx.per_model = ctx.per_model.iloc[:0]
    res = get_analysis("dimension")(ctx)
    assert res.figures == [] and "No intrinsic-dimension" in res.findings[0]
