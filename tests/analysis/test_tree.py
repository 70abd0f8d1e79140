from __future__ import annotations

import numpy as np
import pytest

from matteralign.analysis import get_analysis
from matteralign.analysis.tree import family_clades, neighbour_joining, profiles, tree_distance
from matteralign.errors import InputError


def _jsd_bits(p, q):
    m = (p + q) / 2
    return 0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.sum(q * np.log2(q / m))


def test_distance_matches_hand_computation_3x3():
    C = np.array([[1.0, 0.6, 0.1], [0.5, 1.0, 0.2], [0.1, 0.3, 1.0]])  # asymmetric on purpose
    eps, alpha = 1e-3, 0.3
    R = (C + eps) / (C.sum(1, keepdims=True) + 3 * eps)
    K = (C.T + eps) / (C.T.sum(1, keepdims=True) + 3 * eps)
    np.testing.assert_allclose(profiles(C, eps=eps), R)
    D = tree_distance(C, alpha=alpha, eps=eps)
    for i in range(3):
        for j in range(3):
            want = 0.0 if i == j else alpha * np.sqrt(_jsd_bits(R[i], R[j])) + (1 - alpha) * np.sqrt(
                _jsd_bits(K[i], K[j])
            )
            assert D[i, j] == pytest.approx(want, abs=1e-12)
    # spot value, computed by hand once: D[0, 2]
    assert D[0, 2] == pytest.approx(0.3 * np.sqrt(_jsd_bits(R[0], R[2])) + 0.7 * np.sqrt(_jsd_bits(K[0], K[2])))
    assert np.all((D >= 0) & (D <= 1))


def test_distance_symmetric_zero_diagonal_and_validation():
    rng = np.random.default_rng(1)
    C = rng.uniform(0, 1, (6, 6))
    D = tree_distance(C)
    np.testing.assert_allclose(D, D.T)
    np.testing.assert_array_equal(np.diag(D), 0.0)
    with pytest.raises(InputError, match="non-negative"):
        tree_distance(C - 2)
    with pytest.raises(InputError, match="alpha"):
        tree_distance(C, alpha=2)
    with pytest.raises(InputError, match="at least 3"):
        neighbour_joining(D[:2, :2], ["a", "b"])


def test_nj_splits_two_clear_families():
    fam = {f"a{i}": "A" for i in range(4)} | {f"b{i}": "B" for i in range(4)}
    names = list(fam)
    rng = np.random.default_rng(0)
    C = np.where(np.equal.outer([fam[n] for n in names], [fam[n] for n in names]), 0.8, 0.1)
    C = np.clip(C + 0.05 * rng.standard_normal(C.shape), 0, None)
    np.fill_diagonal(C, 1.0)
    tree = neighbour_joining(tree_distance(C), names)
    assert family_clades(tree, fam) == {"A": True, "B": True}
    mixed = {n: ("A" if n in ("a0", "b0") else "B") for n in names}
    assert family_clades(tree, mixed) == {"A": False, "B": False}


def test_tree_analysis(ctx):
    res = get_analysis("tree")(ctx)
    assert len(res.figures) == 2 and all(p.exists() for p in res.figures)
    assert len(res.files) == 2
    nwk = res.files[0].read_text()
    assert nwk.strip().endswith(";") and "random" not in nwk and "orb-a" in nwk
    D = res.tables["crystals/distance"].set_index("model")
    assert D.shape == (7, 7) and "random" not in D.index
    np.testing.assert_allclose(D.to_numpy(), D.to_numpy().T)
    assert any("2 of 2 multi-model families form their own clade (mace, orb)" in f for f in res.findings)
    off = D.to_numpy() + np.diag(np.full(7, np.inf))
    assert any(f"(D = {off.min():.3g}; cknna profiles on n = 240)" in f and f.startswith("crystals") for f in res.findings)


def test_tree_from_calibrated_scores(ctx):
    """score = 'calibrated': the distances are those of the calibrated matrix (self pairs 1)."""
    from matteralign.analysis._common import pair_matrix

    v = ctx.pairs["value"].to_numpy(dtype=float)
    ctx.pairs["calibrated"] = np.clip((v - 0.3) / 0.7, 0.0, 1.0)
    ctx.params = {"score": "calibrated"}
    res = get_analysis("tree")(ctx)
    assert "calibrated" in res.title
    D = res.tables["crystals/distance"].set_index("model")
    names = list(D.index)
    rows = ctx.pairs[(ctx.pairs.dataset == "crystals") & (ctx.pairs.metric == "cknna")]
    rows = rows[rows.params == sorted(set(rows.params))[0]] if rows.params.nunique() > 1 else rows
    C = pair_matrix(rows.assign(value=rows["calibrated"]), names, symmetric=True, diagonal=1.0)
    np.testing.assert_allclose(D.to_numpy(), tree_distance(np.clip(C, 0, None)), atol=1e-12)
    raw = get_analysis("tree")(ctx.__class__(**{**ctx.__dict__, "params": {}}))
    assert not np.allclose(raw.tables["crystals/distance"].set_index("model").to_numpy(), D.to_numpy())
    assert any("calibrated cknna profiles" in f for f in res.findings)
    ctx.pairs = ctx.pairs.drop(columns=["calibrated"])
    with pytest.raises(InputError, match="calibration"):
        get_analysis("tree")(ctx)
