"""The fast paths (sparse kNN metrics, feature-space / streamed CKA, blocked kNN) equal dense references."""

from __future__ import annotations

import numpy as np
import pytest

from matteralign.metrics import cka, cknna, cycle_knn, knn_graph, mutual_knn, prepare
from matteralign.metrics.cka import _exact_median_sqdist
from matteralign.metrics.knn import cknna_from_cache

from .dense_reference import (
    cka_dense,
    cknna_dense,
    cycle_knn_dense,
    gram_linear,
    gram_rbf,
    knn_dense,
    mutual_knn_dense,
)


def related(seed: int, n: int, dx: int = 24, dy: int = 16, l2: bool = True):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 6))
    X = Z @ rng.standard_normal((6, dx)) + 0.7 * rng.standard_normal((n, dx))
    Y = np.tanh(Z @ rng.standard_normal((6, dy))) + 0.3 * rng.standard_normal((n, dy))
    if l2:
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    return X, Y


@pytest.mark.parametrize("seed,n,k", [(0, 300, 5), (1, 300, 17), (2, 600, 25), (3, 1500, 10), (4, 200, 199)])
def test_knn_metrics_equal_dense(seed, n, k):
    X, Y = related(seed, n, l2=seed % 2 == 0)  # raw (unnormalised) inputs too
    assert cknna(X, Y, k=k, normalize=None) == pytest.approx(cknna_dense(X, Y, k), abs=1e-9)
    assert cknna(Y, X, k=k, normalize=None) == pytest.approx(cknna_dense(Y, X, k), abs=1e-9)
    assert mutual_knn(X, Y, k=k, normalize=None) == pytest.approx(mutual_knn_dense(X, Y, k), abs=1e-12)
    assert cycle_knn(X, Y, k=k, normalize=None) == pytest.approx(cycle_knn_dense(X, Y, k), abs=1e-12)
    assert cycle_knn(Y, X, k=k, normalize=None) == pytest.approx(cycle_knn_dense(Y, X, k), abs=1e-12)


def test_cknna_is_asymmetric_like_the_reference():
    X, Y = related(0, 300)
    assert abs(cknna_dense(X, Y, 10) - cknna_dense(Y, X, 10)) > 1e-7
    assert cknna(X, Y, k=10, normalize=None) - cknna(Y, X, k=10, normalize=None) == pytest.approx(
        cknna_dense(X, Y, 10) - cknna_dense(Y, X, 10), abs=1e-12
    )


@pytest.mark.parametrize("seed,n", [(0, 150), (1, 400), (2, 50)])
def test_cka_equals_dense(seed, n):
    X, Y = related(seed, n, dx=30 if n > 100 else 80, dy=12, l2=False)
    for debiased in (False, True):
        for eps in (0.0, 1e-6):
            ref = cka_dense(gram_linear(X - X.mean(0)), gram_linear(Y - Y.mean(0)), debiased, eps)
            if eps and not debiased:
                continue  # eps acts on different (unnormalised) scales in the two forms
            assert cka(X, Y, debiased=debiased, eps=eps, normalize=None) == pytest.approx(ref, abs=1e-9)
        for thr in (0.5, 1.0, 2.0):
            ref = cka_dense(gram_rbf(X, thr), gram_rbf(Y, thr), debiased)
            assert cka(X, Y, kernel="rbf", threshold=thr, debiased=debiased, normalize=None) == pytest.approx(ref, abs=1e-9)
            assert cka(X, Y, kernel="rbf", threshold=thr, debiased=debiased, block_size=37, normalize=None) == pytest.approx(
                ref, abs=1e-9
            )


@pytest.mark.parametrize("n,block", [(301, 64), (1000, 128), (40, 7)])
def test_streamed_median_is_exact(n, block, monkeypatch):
    import importlib

    cka_mod = importlib.import_module("matteralign.metrics.cka")
    monkeypatch.setattr(cka_mod, "_MEDIAN_CANDIDATES", 200)  # force several refinement passes
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, 5))
    X[: n // 4] = X[0]  # many zero distances and duplicate values
    sq = (X * X).sum(1)
    D2 = np.maximum(sq[:, None] + sq[None, :] - 2 * X @ X.T, 0)
    np.fill_diagonal(D2, 0)
    assert _exact_median_sqdist(X, block) == np.median(D2)


@pytest.fixture
def small_tiles(monkeypatch):
    """The symmetric search cut into many tiles and panels (not multiples of its 128-entry chunks)."""
    import importlib

    knn_impl = importlib.import_module("matteralign.metrics._knn")
    monkeypatch.setattr(knn_impl, "_TILE", 150)
    monkeypatch.setattr(knn_impl, "_PANEL", 200)


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("backend", ["numpy", "faiss", "blas"])
def test_knn_graph_equals_dense(metric, backend, small_tiles):
    X, _ = related(5, 700, l2=False)
    Xin = X if backend == "numpy" else X.astype(np.float32)
    idx, vals = knn_graph(Xin, k=12, metric=metric, backend=backend)
    ref = knn_dense(Xin.astype(np.float64), 12, metric)
    np.testing.assert_array_equal(idx, ref)
    X64 = Xin.astype(np.float64)
    if metric == "ip":
        expect = np.take_along_axis(X64 @ X64.T, ref, axis=1)
    else:
        expect = np.sqrt(((X64[:, None, :] - X64[ref]) ** 2).sum(-1))
    np.testing.assert_allclose(vals, expect, rtol=0, atol=1e-12)
    assert idx.dtype == np.int32 and vals.dtype == np.float64


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("backend", ["faiss", "blas"])
def test_knn_float32_near_ties_below_float32_resolution(metric, backend):
    """Candidates closer than float32 can tell apart: FAISS's order may be wrong, the float64 re-scoring
    (all candidates in those rows, only the first k elsewhere) must still give the exact graph."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((400, 24)).astype(np.float32)
    # row 0's neighbours: 12 points at float32-indistinguishable inner products / distances, in shuffled order
    direction = X[0] / np.linalg.norm(X[0])
    for t, j in enumerate(rng.permutation(np.arange(1, 13))):
        X[j] = X[0] * np.float32(0.9) + direction * np.float32(1e-7 * t)
    idx, vals = knn_graph(X, k=6, metric=metric, backend=backend)
    ref = knn_dense(X.astype(np.float64), 6, metric)
    np.testing.assert_array_equal(idx, ref)


def test_knn_l2_distances_exact_for_near_duplicates():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 8)) * 1e3
    X[1] = X[0] + 1e-9  # |x|^2 - 2 x.y + |y|^2 would cancel to ~0 or garbage
    idx, vals = knn_graph(X, k=1, metric="l2")
    assert idx[0, 0] == 1
    assert vals[0, 0] == pytest.approx(np.linalg.norm(X[0] - X[1]), rel=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "faiss", "blas"])
def test_knn_tie_rule_lower_index_and_duplicates(backend):
    """Exact ties (integer coordinates, exact arithmetic): best first, ties by lower index; self never listed
    even among duplicates."""
    base = np.array([[1, 0], [0, 1], [1, 1], [2, 0]], dtype=np.float64)
    X = np.repeat(base, 6, axis=0)  # 4 groups of 6 identical rows
    Xin = X if backend == "numpy" else X.astype(np.float32)
    idx, vals = knn_graph(Xin, k=8, metric="l2", backend=backend)
    n = X.shape[0]
    assert not (idx == np.arange(n)[:, None]).any()
    ref = knn_dense(X, 8, "l2")
    np.testing.assert_array_equal(idx, ref)
    # within each equal-value run the indices increase
    for row_i, row_v in zip(idx, vals, strict=True):
        for a in range(7):
            if row_v[a] == row_v[a + 1]:
                assert row_i[a] < row_i[a + 1]


def test_all_duplicates_do_not_crash():
    X = np.tile(np.array([[1.0, 2.0, 3.0]]), (30, 1))
    X[:15] *= -1
    for Xin in (X, X.astype(np.float32)):
        idx, _ = knn_graph(Xin, k=20)
        assert not (idx == np.arange(30)[:, None]).any()
        assert np.isfinite(cknna(Xin, Xin[::-1].copy(), k=5, normalize=None))


def test_cache_path_equals_function_and_slicing():
    X, Y = related(7, 500)
    cx, cy = prepare(X, k_max=30, normalize=None), prepare(Y, k_max=30, normalize=None)
    for k in (3, 10, 30):
        assert cknna_from_cache(cx, cy, k=k) == pytest.approx(cknna(X, Y, k=k, normalize=None), abs=1e-14)
    # extending beyond k_max searches again
    assert cknna_from_cache(cx, cy, k=40) == pytest.approx(cknna_dense(X, Y, 40), abs=1e-9)


def test_cknna_can_exceed_one_exactly_as_the_dense_reference():
    """Real embeddings where CKNNA leaves [0, 1]: g2 molecules (54 with >1 atom), element fractions vs CHGNet.

    The composition vectors hold duplicated rows (isomers), so its kNN mask differs strongly from CHGNet's
    and the cross term is not bounded by the self terms. The registry therefore claims no bound for CKNNA;
    the sparse path equals the dense formula (same tie rule) also here.
    """
    from pathlib import Path

    from matteralign.metrics import cknna

    from .dense_reference import cknna_dense

    z = np.load(Path(__file__).parent.parent / "data" / "g2_composition_chgnet.npz")
    X, Y = z["composition"], z["chgnet"].astype(np.float64)
    assert cknna(X, Y, k=25, normalize=None) == pytest.approx(1.1614885, abs=1e-6)
    for k in (5, 10, 25):
        assert cknna(X, Y, k=k, normalize=None) == pytest.approx(cknna_dense(X, Y, k), abs=1e-9)


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("backend", ["faiss", "blas", "numpy"])
def test_knn_compiled_selection_equals_numpy_route(monkeypatch, metric, backend):
    """Self removal, float64 re-scoring and the (score, lower index) order: compiled kernel == numpy route,
    also with exact duplicates (ties at every position) and rows of many duplicates (self not returned)."""
    import importlib

    knn_impl = importlib.import_module("matteralign.metrics._knn")
    X, _ = related(3, 600, l2=False)
    X[100:140] = X[7]  # 41 copies of one row: more than k + 1 + margin
    X[300:303] = X[301]
    X = X.astype(np.float64 if backend == "numpy" else np.float32)
    assert knn_impl._select_kernel(), "numba is part of the test environment"  # imports it: compiled route
    idx, vals = knn_graph(X, k=9, metric=metric, backend=backend)
    monkeypatch.setattr(knn_impl, "_select_kernel", lambda **_: False)
    idx2, vals2 = knn_graph(X, k=9, metric=metric, backend=backend)
    np.testing.assert_array_equal(idx, idx2)
    np.testing.assert_allclose(vals, vals2, rtol=1e-14, atol=1e-15)
    if metric == "l2":  # the copies of row 7 tie at distance 0: lower indices first, self excluded
        assert list(idx[120]) == [7] + list(range(100, 108))
        assert list(idx[7]) == list(range(100, 109))
