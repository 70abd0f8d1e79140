"""Information imbalance: paper §5.2 (DADApy) values, a dense reference with ties, properties, subsets."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from matteralign.errors import InputError
from matteralign.metrics.imbalance import (
    information_imbalance,
    information_imbalance_matrix,
    information_imbalance_subsets,
)


def dense_ii(X, Y, k):
    """Dense reference: rank = 1 + #{l != i : d_Y(i, l) < d_Y(i, j)}."""
    n = len(X)
    dx, dy = cdist(X, X), cdist(Y, Y)
    np.fill_diagonal(dx, np.inf)
    np.fill_diagonal(dy, np.inf)
    nn = np.argsort(dx, axis=1, kind="stable")[:, :k]
    t = dy[np.arange(n)[:, None], nn]
    ranks = 1 + (dy[:, :, None] < t[:, None, :]).sum(axis=1)
    return 2.0 * ranks.mean() / n


REF = {  # pair: (X->Y k=1, Y->X k=1, X->Y k=5, Y->X k=5), DADApy subset=N
    (0, 1): (0.016152, 0.029680, 0.033522, 0.054064),
    (0, 2): (0.974680, 0.959880, 0.989691, 0.992627),
    (1, 2): (0.956880, 0.983176, 0.990605, 0.991349),
}


@pytest.mark.parametrize("pair", sorted(REF))
def test_paper_reference_table(abc, pair):
    X, Y = abc[pair[0]], abc[pair[1]]
    ref = REF[pair]
    assert information_imbalance(X, Y, k=1, normalize=None) == pytest.approx(ref[0], abs=1e-6)
    assert information_imbalance(Y, X, k=1, normalize=None) == pytest.approx(ref[1], abs=1e-6)
    assert information_imbalance(X, Y, k=5, normalize=None) == pytest.approx(ref[2], abs=1e-6)
    assert information_imbalance(Y, X, k=5, normalize=None) == pytest.approx(ref[3], abs=1e-6)


def test_matrix_one_pass_equals_pairs(abc):
    mat = information_imbalance_matrix(list(abc), k=1, normalize=None)
    for a in range(3):
        for b in range(3):
            assert mat[a, b] == pytest.approx(information_imbalance(abc[a], abc[b], normalize=None), abs=1e-15)
    np.testing.assert_allclose(np.diag(mat), 2 / 500)


@pytest.mark.parametrize("k", [1, 3, 12])
def test_dense_reference_with_ties(k):
    rng = np.random.default_rng(k)
    X = rng.standard_normal((150, 4))
    Y = np.round(3 * (rng.standard_normal((150, 2)) + X[:, :2]))  # integers: many exact distance ties
    Y[10] = Y[11]  # a duplicate
    ref = dense_ii(X, Y, k)
    assert information_imbalance(X, Y, k=k, normalize=None) == pytest.approx(ref, abs=1e-15)
    assert information_imbalance(X, Y, k=k, precision="float64", block_rows=7, normalize=None) == pytest.approx(ref, abs=1e-15)


def test_near_ties_decided_in_float64():
    rng = np.random.default_rng(9)
    base = rng.standard_normal((300, 16)) * 100.0
    Y = base + 1e-5 * rng.standard_normal(base.shape)  # large norms, tiny differences: float32 cannot decide
    X = rng.standard_normal((300, 3))
    assert information_imbalance(X, Y, k=2, normalize=None) == pytest.approx(dense_ii(X, Y, 2), abs=1e-15)


def test_properties(abc):
    A, B, _ = abc
    rng = np.random.default_rng(0)
    for k in (1, 4):
        assert information_imbalance(A, A, k=k, normalize=None) == pytest.approx((k + 1) / 500, abs=1e-15)
    Q, _ = np.linalg.qr(rng.standard_normal((32, 32)))
    ref = information_imbalance(A, B, normalize=None)
    assert information_imbalance(0.3 * A + 7.0, 5.0 * B @ Q - 2.0, normalize=None) == pytest.approx(ref, abs=1e-15)
    perm = rng.permutation(500)
    assert information_imbalance(A[perm], B[perm], normalize=None) == pytest.approx(ref, abs=1e-15)


def test_subsets():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((1000, 3))
    Y = X[:, :1] + 0.1 * rng.standard_normal((1000, 1))
    est = information_imbalance_subsets(X, Y, subset_size=250, seed=0, normalize=None)
    assert est.n_subsets == 4 and est.subset_size == 250 and est.sem > 0
    perm = np.random.default_rng(0).permutation(1000)
    vals = [information_imbalance(X[perm[s * 250:(s + 1) * 250]], Y[perm[s * 250:(s + 1) * 250]], normalize=None) for s in range(4)]
    assert est.value == pytest.approx(np.mean(vals), abs=1e-15)
    assert est.sem == pytest.approx(np.std(vals, ddof=1) / 2, abs=1e-15)
    full = information_imbalance_subsets(X, Y, subset_size=5000, normalize=None)
    assert full.n_subsets == 1 and full.value == pytest.approx(information_imbalance(X, Y, normalize=None)) and full.sem == 0


def test_bad_input():
    X = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(InputError, match="k=10"):
        information_imbalance(X, X, k=10, normalize=None)
    with pytest.raises(InputError, match="rows"):
        information_imbalance(X, X[:8], normalize=None)
    with pytest.raises(InputError, match="identical"):
        information_imbalance(X, np.zeros((10, 2)), normalize=None)
    with pytest.raises(InputError, match="subset_size"):
        information_imbalance_subsets(X, X, subset_size=0, normalize=None)


def test_pairwise_geometry_equals_single_pairs(abc):
    from matteralign.metrics import distance_correlation, pairwise_geometry

    out = pairwise_geometry({"A": abc[0], "B": abc[1], "C": abc[2]}, k=5, block_rows=64, normalize=None)
    assert out["names"] == ["A", "B", "C"]
    for a in range(3):
        for b in range(3):
            assert out["information_imbalance"][a, b] == pytest.approx(
                information_imbalance(abc[a], abc[b], k=5, normalize=None), abs=1e-15)
            assert out["dcor2"][a, b] == pytest.approx(distance_correlation(abc[a], abc[b], squared=True, normalize=None), abs=1e-12)
            assert out["dcor2_unbiased"][a, b] == pytest.approx(
                distance_correlation(abc[a], abc[b], squared=True, unbiased=True, normalize=None), abs=1e-12)
    assert out["dcor"][0, 1] == pytest.approx(0.947654, abs=1e-6)


def test_pairwise_table_uses_all_pairs_path(abc):
    from matteralign.metrics import pairwise, to_matrix

    reps = {"A": abc[0], "B": abc[1], "C": abc[2]}
    table = pairwise(reps, ["dcor2", ("information_imbalance", {"k": 1}), "intrinsic_dimension"], normalize="none")
    ii = table[table.metric == "information_imbalance"].set_index(["model_a", "model_b"])["value"]
    assert ii[("A", "B")] == pytest.approx(0.016152, abs=1e-6)
    assert ii[("B", "A")] == pytest.approx(0.029680, abs=1e-6)
    d = table[table.metric == "dcor2"].set_index(["model_a", "model_b"])["value"]
    assert d[("A", "C")] == pytest.approx(0.320167**2, abs=1e-6)
    ids = table[table.metric == "intrinsic_dimension"].set_index("model_a")["value"]
    assert ids["C"] == pytest.approx(28.482204, abs=1e-6)
    assert to_matrix(table, "dcor2").shape == (3, 3)


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_fused_exact_counting_equals_two_pass_route(monkeypatch, precision):
    """The fused counting pass (numba: band settled in float64 inside the pass) gives the same ranks as the
    two-pass numpy route, on data full of exact distance ties (integer coordinates) and duplicates."""
    from matteralign.metrics import imbalance as mod

    rng = np.random.default_rng(4)
    X = rng.integers(0, 4, size=(180, 3)).astype(np.float64)
    Y = X[:, :2] + rng.integers(0, 2, size=(180, 2))
    fused = mod.information_imbalance_matrix([X, Y], k=3, precision=precision, block_rows=41, normalize=None)
    assert mod._exact_kernel(), "numba is part of the test environment"
    monkeypatch.setattr(mod, "_exact_kernel", lambda **_: False)
    plain = mod.information_imbalance_matrix([X, Y], k=3, precision=precision, block_rows=41, normalize=None)
    np.testing.assert_array_equal(fused, plain)
    # and both equal ranks counted directly from float64 distances (ties share the smallest rank)
    dx, dy = cdist(X, X), cdist(Y, Y)
    np.fill_diagonal(dx, np.inf)
    nn = np.lexsort((np.broadcast_to(np.arange(180), dx.shape), dx), axis=1)[:, :3]
    dyy = dy.copy()
    np.fill_diagonal(dyy, np.inf)
    ranks = np.array([[1 + np.sum(dyy[i] < dy[i, j]) for j in nn[i]] for i in range(180)])
    assert fused[0, 1] == pytest.approx(2.0 * ranks.mean() / 180, abs=1e-12)
