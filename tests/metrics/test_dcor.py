"""Distance correlation: R ``energy`` / dcor values, the reference table of paper §5.2, a dense float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from matteralign.errors import InputError
from matteralign.metrics._blocked import distance_sums, prepare_workspace
from matteralign.metrics.dcor import distance_correlation, distance_correlation_matrix


def dense_dcor2(X, Y, unbiased=False):
    """Dense float64 reference: double- (or U-) centred distance matrices."""
    n = len(X)

    def centre(a):
        if unbiased:
            r = a.sum(1)
            A = a - r[:, None] / (n - 2) - r[None, :] / (n - 2) + a.sum() / ((n - 1) * (n - 2))
            np.fill_diagonal(A, 0.0)
            return A
        return a - a.mean(0) - a.mean(1)[:, None] + a.mean()

    A, B = centre(cdist(X, X)), centre(cdist(Y, Y))
    return (A * B).sum() / np.sqrt((A * A).sum() * (B * B).sum())


M1 = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9.0]])
M2 = np.array([[7, 3, 6], [2, 1, 4], [3, 8, 1.0]])
M3 = np.array([[1, 1, 1], [2, 1, 1], [1, 1, 1.0]])
A1 = np.arange(1, 7.0)[:, None]
A2 = np.array([1, 7, 5, 5, 6, 2.0])[:, None]


def _engine_dcor2(X, Y):
    """The streamed engine below the public function (which asks for N >= 4)."""
    sums = distance_sums([prepare_workspace(X, precision="float64"), prepare_workspace(Y, precision="float64")])
    cov = sums.dcov2()
    return cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])


def test_energy_reference_values():
    assert _engine_dcor2(M1, M2) == pytest.approx(0.93387, abs=1e-5)
    assert _engine_dcor2(M1, M3) == pytest.approx(0.31623, abs=1e-5)
    assert _engine_dcor2(M1, M1) == pytest.approx(1.0, abs=1e-12)
    assert distance_correlation(A1, A2, squared=True, normalize=None) == pytest.approx(0.30661, abs=1e-5)
    assert distance_correlation(A1, A2, squared=True, unbiased=True, normalize=None) == pytest.approx(-0.41613, abs=1e-5)


def test_matches_dcor_package():
    dcor = pytest.importorskip("dcor")
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 20))
    Y = X[:, :8] ** 2 + rng.standard_normal((300, 8))
    assert distance_correlation(X, Y, squared=True, normalize=None) == pytest.approx(dcor.distance_correlation_sqr(X, Y), abs=1e-9)
    assert distance_correlation(X, Y, normalize=None) == pytest.approx(dcor.distance_correlation(X, Y), abs=1e-9)
    assert distance_correlation(X, Y, squared=True, unbiased=True, normalize=None) == pytest.approx(
        dcor.u_distance_correlation_sqr(X, Y), abs=1e-9
    )


@pytest.mark.parametrize(("i", "j", "idcor_repo", "szekely"), [
    (0, 1, 0.929354, 0.947654), (0, 2, 0.097988, 0.320167), (1, 2, 0.102278, 0.322155)])
def test_paper_reference_table(abc, abc_l2, i, j, idcor_repo, szekely):
    assert distance_correlation(abc_l2[i], abc_l2[j], squared=True, normalize=None) == pytest.approx(idcor_repo, abs=1e-6)
    assert distance_correlation(abc[i], abc[j], normalize=None) == pytest.approx(szekely, abs=1e-6)


@pytest.mark.parametrize("unbiased", [False, True])
def test_dense_reference_and_blocks(unbiased):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((257, 7)) + 5.0
    Y = np.sin(X[:, :3]) + 0.3 * rng.standard_normal((257, 3))
    ref = dense_dcor2(X, Y, unbiased=unbiased)
    for block_rows in (1, 16, 100, None):
        got = distance_correlation(X, Y, squared=True, unbiased=unbiased, block_rows=block_rows, normalize=None)
        assert got == pytest.approx(ref, abs=1e-12)
    got32 = distance_correlation(X, Y, squared=True, unbiased=unbiased, precision="float32", normalize=None)
    assert got32 == pytest.approx(ref, abs=1e-6)


def test_matrix_equals_pairs(abc):
    mat = distance_correlation_matrix(list(abc), squared=True, normalize=None)
    assert mat.shape == (3, 3)
    np.testing.assert_allclose(np.diag(mat), 1.0, atol=1e-12)
    np.testing.assert_allclose(mat, mat.T, atol=1e-15)
    assert mat[0, 2] == pytest.approx(distance_correlation(abc[0], abc[2], squared=True, normalize=None), abs=1e-13)
    u = distance_correlation_matrix(list(abc), squared=True, unbiased=True, normalize=None)
    assert u[1, 2] == pytest.approx(dense_dcor2(abc[1], abc[2], unbiased=True), abs=1e-12)


def test_invariances(abc):
    A, B, _ = abc
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((64, 64)))
    ref = distance_correlation(A, B, normalize=None)
    assert distance_correlation(3.7 * A @ Q + 2.0, B, normalize=None) == pytest.approx(ref, abs=1e-10)
    perm = rng.permutation(len(A))
    assert distance_correlation(A[perm], B[perm], normalize=None) == pytest.approx(ref, abs=1e-12)


def test_independent_unbiased_near_zero():
    rng = np.random.default_rng(5)
    vals = [distance_correlation(rng.standard_normal((200, 50)), rng.standard_normal((200, 50)),
                                 squared=True, unbiased=True, normalize=None) for _ in range(3)]
    assert abs(np.mean(vals)) < 0.01


def test_bad_input():
    X = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(InputError, match="squared=True"):
        distance_correlation(X, X, unbiased=True, normalize=None)
    with pytest.raises(InputError, match="rows"):
        distance_correlation(X, X[:9], normalize=None)
    bad = X.copy()
    bad[2, 1] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        distance_correlation(X, bad, normalize=None)
    with pytest.raises(InputError, match="at least 4"):
        distance_correlation(X[:3], X[:3], squared=True, unbiased=True, normalize=None)
    with pytest.raises(InputError, match="identical"):
        distance_correlation(X, np.ones((10, 2)), normalize=None)
    with pytest.raises(InputError, match="precision"):
        distance_correlation(X, X, precision="float16", normalize=None)
