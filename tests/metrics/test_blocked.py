"""The blocked distance engine: sums equal dense float64, float32 within its bound, exact kNN."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from matteralign.metrics._blocked import (
    distance_sums,
    exact_knn_l2,
    prepare_workspace,
    sq_dist_block,
    sq_dist_error_bound,
)


def test_sums_equal_dense_float64():
    rng = np.random.default_rng(0)
    reps = [rng.standard_normal((203, d)) + 3.0 for d in (5, 17, 2)]
    sums = distance_sums([prepare_workspace(r, precision="float64") for r in reps], block_rows=50)
    dists = [cdist(r, r) for r in reps]
    np.testing.assert_allclose(sums.row_sums, np.array([d.sum(1) for d in dists]), rtol=1e-12)
    cross = np.array([[(a * b).sum() for b in dists] for a in dists])
    np.testing.assert_allclose(sums.cross, cross, rtol=1e-12)


def test_float32_blocks_within_bound():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 64)) * 10 + 50.0
    ws = prepare_workspace(X, precision="float32")
    d2 = sq_dist_block(ws, 0, 300).numpy().astype(np.float64)
    ref = cdist(X, X, "sqeuclidean")
    bound = sq_dist_error_bound(64, "float32") * (ws.sqn[:, None] + ws.sqn[None, :])
    assert np.all(np.abs(d2 - ref) <= bound)
    assert np.all(np.diag(d2) == 0.0)


def test_exact_knn():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((500, 8))
    X[7] = X[3]  # duplicate: distance 0, never self
    dist, idx = exact_knn_l2(X, 5)
    D = cdist(X, X)
    np.fill_diagonal(D, np.inf)
    ref_idx = np.argsort(D, axis=1, kind="stable")[:, :5]
    np.testing.assert_allclose(dist, np.take_along_axis(D, ref_idx, 1), rtol=1e-12, atol=1e-12)
    assert idx[3, 0] == 7 and idx[7, 0] == 3 and dist[3, 0] == 0.0
    assert not np.any(idx == np.arange(500)[:, None])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_knn_near_ties_below_float32_resolution(dtype):
    """Neighbours whose distances float32 cannot tell apart: only the float64 re-check orders them."""
    rng = np.random.default_rng(5)
    X = (rng.standard_normal((300, 16)) * 4.0).astype(dtype)
    u = rng.standard_normal(16)
    u /= np.linalg.norm(u)
    for t, j in enumerate(rng.permutation(np.arange(1, 11))):  # 10 points at radius 0.5 + t * 1e-7 from X[0]
        X[j] = (X[0].astype(np.float64) + (0.5 + 1e-7 * t) * u).astype(dtype)
    dist, idx = exact_knn_l2(X, 4)
    X64 = X.astype(np.float64)
    D = np.sqrt(((X64[:, None, :] - X64[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(D, np.inf)
    ref_idx = np.lexsort((np.broadcast_to(np.arange(300), D.shape), D), axis=1)[:, :4]
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, np.take_along_axis(D, ref_idx, 1), rtol=1e-13, atol=0)


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_error_bound_is_tiny_for_float64(precision):
    assert sq_dist_error_bound(256, precision) < (1e-4 if precision == "float32" else 1e-12)
