"""The float32 candidate searches behind ``knn_graph``: the symmetric BLAS search, its pre-filter and the
completeness proof, the CUDA route; each against a dense computation of the same float32 keys."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from matteralign.errors import InputError
from matteralign.metrics import knn_graph

from .dense_reference import knn_dense

knn_impl = importlib.import_module("matteralign.metrics._knn")


def dense_topc_keys(X: np.ndarray, c: int, metric: str) -> np.ndarray:
    """Per row, the ``c`` largest keys (ip: x.y; l2: 2 x.y - |y|^2) from the float32 product, descending."""
    S = (X @ X.T).astype(np.float64)
    if metric == "l2":
        S = 2.0 * S - np.einsum("ij,ij->i", X, X, dtype=np.float64)[None, :]
    return -np.sort(-S, axis=1)[:, :c]


def data(seed: int, n: int, d: int, offset: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) + offset).astype(np.float32)


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("n,tile,panel", [(700, 64, 200), (333, 100, 100), (50, 2048, 2048), (1000, 256, 300),
                                          (900, 128, 1000)])
def test_blas_candidates_are_the_top_c(metric, n, tile, panel):
    """Every row's candidates are its c best float32 keys (self included), whatever the tiling; the chunks of
    the pre-filter (128 entries) do not divide the panels, so short last chunks are covered too."""
    X = data(n, n, 12, offset=2.0 if metric == "l2" else 0.0)
    c = 15
    ids, scores = knn_impl._blas_candidates(X, c, metric, tile, panel)
    ref = dense_topc_keys(X, c, metric)
    sq = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    got = scores.astype(np.float64) if metric == "ip" else sq[:, None] - scores.astype(np.float64)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-5 * sq.max())
    # the ids hold those keys: recompute them from the ids
    key = np.einsum("id,icd->ic", X.astype(np.float64), X[ids].astype(np.float64))
    if metric == "l2":
        key = 2.0 * key - sq[ids]
    np.testing.assert_allclose(key, ref, rtol=1e-5, atol=1e-5 * sq.max())
    assert (np.diff(got, axis=1) <= 1e-5 * sq.max()).all()  # best first
    assert ids.dtype == np.int64 and ((ids >= 0) & (ids < n)).all()
    assert all(len(set(r)) == c for r in ids.tolist())  # no candidate twice


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_blas_exact_with_ties_and_near_ties_at_the_threshold(metric):
    """Many exact ties and sub-float32 near-ties around rows' k-th neighbour, with small tiles: the whole blas
    route (candidates, proof, float64 re-scoring) gives the dense graph and its tie rule."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((600, 16)).astype(np.float32)
    # 60 points at the same float32 inner product with row 0 and with each other's direction: many exact ties
    X[1:61] = X[0] * np.float32(0.7)
    X[61:121] = X[0] * np.float32(0.7) + np.float32(1e-7) * rng.standard_normal((60, 16)).astype(np.float32)
    idx, _ = knn_impl._blas_exact(X, 20, metric, 64)
    np.testing.assert_array_equal(idx, knn_dense(X.astype(np.float64), 20, metric))


@pytest.mark.parametrize("by_column", [False, True])
def test_topc_kernel_prefilter_keeps_keys_below_float32_resolution(by_column):
    """The kernel on one crafted l2 block: keys ``2 x.y - |y|^2`` that differ by less than a float32 ulp of
    ``|y|^2`` (large norms). The float32 pre-filter rounds them together; its slack must let every key that
    beats an owner's worst reach the float64 check, so the kept keys equal a float64 top-c of the same
    block (a slack of 0 or below loses some)."""
    rng = np.random.default_rng(4)
    nr, nc, c = 256, 640, 12
    base = np.float32(1.5e7)  # 2 x.y near 3e7, where float32's grid is 2 apart
    S = (base + rng.integers(-8, 8, size=(nr, nc))).astype(np.float32)  # exact float32 products
    n = max(nr, nc)
    sq = 2.0 * float(base) + rng.uniform(-16.0, 16.0, n)  # |y|^2 of the candidates, off float32's grid
    if by_column:  # owners are the columns, candidates the rows
        key = 2.0 * S.astype(np.float64).T - sq[:nr][None, :]
        lo, hi = 0, -(-nc // 128)
    else:
        key = 2.0 * S.astype(np.float64) - sq[:nc][None, :]
        lo, hi = 0, nr
    ref = -np.sort(-key, axis=1)[:, :c]
    keys = np.full((n, c), -np.inf)
    ids = np.full((n, c), -1, dtype=np.int64)
    worst = np.full(n, -np.inf)
    low = np.full(n, -np.inf, dtype=np.float32)
    wpos = np.zeros(n, dtype=np.int64)
    update = knn_impl._topc_kernel()
    update(lo, hi, S, by_column, 0, 0, True, sq, sq.astype(np.float32), knn_impl._prefilter_slack(sq), keys, ids,
           worst, low, wpos)
    got = -np.sort(-keys[: ref.shape[0]], axis=1)
    np.testing.assert_array_equal(got, ref)


def test_proof_searches_again_until_complete(monkeypatch):
    """Rows whose last float32 candidate is not provably worse than the k-th are searched again with a larger
    margin; with a margin of 1 and many ties that happens, and the result is still the exact graph."""
    monkeypatch.setattr(knn_impl, "_MARGIN", 1)
    calls = []
    real = knn_impl._rows_candidates

    def spy(X, rows, c, metric, block=None):
        calls.append((rows.size, c))
        return real(X, rows, c, metric, block)

    monkeypatch.setattr(knn_impl, "_rows_candidates", spy)
    base = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [2, 0, 1]], dtype=np.float32)
    X = np.repeat(base, 10, axis=0) + np.float32(0.0)
    idx, vals = knn_impl._blas_exact(X, 5, "l2", None)
    assert calls and calls[0][1] > 5 + 2  # searched again, with a larger margin
    np.testing.assert_array_equal(idx, knn_dense(X.astype(np.float64), 5, "l2"))


def test_blas_equals_faiss_on_related_data():
    """The two CPU float32 routes give the same exact graph and the same float64 values."""
    rng = np.random.default_rng(11)
    Z = rng.standard_normal((3000, 8))
    X = (Z @ rng.standard_normal((8, 64)) + 0.3 * rng.standard_normal((3000, 64))).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    for metric in ("ip", "l2"):
        a = knn_graph(X, k=25, metric=metric, backend="blas")
        b = knn_graph(X, k=25, metric=metric, backend="faiss")
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_blas_backend_without_numba_is_refused(monkeypatch):
    monkeypatch.setattr(knn_impl, "_topc_kernel", lambda **_: False)
    with pytest.raises(InputError, match="numba"):
        knn_graph(data(0, 50, 4), k=3, backend="blas")
    idx, _ = knn_graph(data(0, 50, 4), k=3)  # auto falls back to FAISS
    np.testing.assert_array_equal(idx, knn_dense(data(0, 50, 4).astype(np.float64), 3))


def test_unknown_backend_is_refused():
    with pytest.raises(InputError, match="backend"):
        knn_graph(data(0, 50, 4), k=3, backend="annoy")


def _cuda() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs CUDA")
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_torch_cuda_route_equals_dense_and_cpu(metric):
    """On CUDA: the torch route (float32 matmul + topk, TF32 off, completeness proven) gives the exact graph,
    equal to the CPU route, also with exact ties and when TF32 is switched on globally."""
    import torch

    X, _ = np.random.default_rng(5).standard_normal((2, 1500, 48)).astype(np.float32)
    X[100:130] = X[7]
    ref = knn_dense(X.astype(np.float64), 12, metric)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        idx, vals = knn_graph(X, k=12, metric=metric, backend="torch", block_size=256)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    np.testing.assert_array_equal(idx, ref)
    cidx, cvals = knn_graph(X, k=12, metric=metric, backend="blas")
    np.testing.assert_array_equal(idx, cidx)
    np.testing.assert_array_equal(vals, cvals)


@pytest.mark.parametrize("route", ["blas", "faiss"])
def test_exact_knn_l2_routes_equal_dense(monkeypatch, route):
    """The Euclidean search behind TwoNN, MLE, IdCor and information imbalance: both float32 candidate
    routes give the exact neighbours and float64 distances, with duplicates and a large common offset."""
    from matteralign.metrics._blocked import exact_knn_l2

    if route == "faiss":
        monkeypatch.setattr(knn_impl, "_blas_worth", lambda n, d: False)
    rng = np.random.default_rng(8)
    X = rng.standard_normal((800, 10)) + 50.0
    X[200:215] = X[3]
    X32 = X.astype(np.float32)
    dist, idx = exact_knn_l2(X32, 6)
    X64 = X32.astype(np.float64)
    ref = knn_dense(X64, 6, "l2")
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(dist, np.sqrt(((X64[:, None, :] - X64[ref]) ** 2).sum(-1)), rtol=1e-12, atol=1e-12)
