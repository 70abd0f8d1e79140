"""Intrinsic dimension: scikit-dimension/DADApy fixtures, paper §5.2 values, duplicates, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from matteralign.errors import InputError
from matteralign.metrics.intrinsic_dim import intrinsic_dimension


def hyper_ball(n, d, seed):
    """scikit-dimension ``hyperBall`` re-implemented from its definition."""
    from scipy.special import gammainc

    x = np.random.RandomState(seed).normal(size=(n, d))
    ss = (x**2).sum(1)
    return x * (gammainc(d / 2, ss / 2) ** (1 / d) / np.sqrt(ss))[:, None]


def hyper_sphere(n, d, seed):
    x = np.random.RandomState(seed).randn(n, d + 1)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


BALL = np.c_[hyper_ball(300, 5, 0), np.zeros((300, 5))]
SPHERE = hyper_sphere(300, 4, 1)


def test_generators_match_skdim():
    skdim = pytest.importorskip("skdim")
    np.testing.assert_allclose(BALL[:, :5], skdim.datasets.hyperBall(300, 5, random_state=0), rtol=1e-12)
    np.testing.assert_allclose(SPHERE, skdim.datasets.hyperSphere(300, 4, random_state=1), rtol=1e-12)


@pytest.mark.parametrize(("X", "base", "ml"), [
    (BALL, 4.362176532655348, 4.113138917297787), (SPHERE, 3.2212051304386806, 3.3280716110069095)])
def test_dadapy_fixtures(X, base, ml):
    assert intrinsic_dimension(X, normalize=None) == pytest.approx(base, rel=1e-9)
    assert intrinsic_dimension(X, method="twonn-ml", normalize=None) == pytest.approx(ml, rel=1e-9)


@pytest.mark.parametrize(("i", "twonn", "mle50", "mle25"), [
    (0, 8.957356, 5.781129, 6.574671), (1, 5.198166, 4.693612, 4.927492), (2, 28.482204, 21.283332, 23.740945)])
def test_paper_reference_table(abc, i, twonn, mle50, mle25):
    X = abc[i]
    assert intrinsic_dimension(X, normalize=None) == pytest.approx(twonn, abs=1e-6)
    assert intrinsic_dimension(X, method="mle", k=50, normalize=None) == pytest.approx(mle50, abs=1e-6)
    assert intrinsic_dimension(X, method="mle", k=25, normalize=None) == pytest.approx(mle25, abs=1e-6)


def test_equals_skdim_on_random_data():
    skdim = pytest.importorskip("skdim")
    rng = np.random.default_rng(3)
    X = rng.standard_normal((800, 6)) @ rng.standard_normal((6, 40))
    assert intrinsic_dimension(X, normalize=None) == pytest.approx(skdim.id.TwoNN().fit(X).dimension_, rel=1e-9)


def test_ground_truth_and_invariance():
    X = hyper_sphere(2000, 5, 7)
    d = intrinsic_dimension(X, normalize=None)
    assert d == pytest.approx(5.0, rel=0.10)
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    assert intrinsic_dimension(2.5 * X @ Q - 1.0, normalize=None) == pytest.approx(d, rel=1e-9)


def test_duplicates_dropped_with_count():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((400, 5))
    X = np.r_[X, X[:30], X[:10] + 1e-7 * 0]
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        d = intrinsic_dimension(X, normalize=None)
        dm = intrinsic_dimension(X, method="mle", k=10, normalize=None)
    assert np.isfinite(d) and np.isfinite(dm)
    assert any("dropped 70 of 440" in str(w.message) for w in rec)


def test_bad_input():
    X = np.random.default_rng(0).standard_normal((20, 3))
    with pytest.raises(InputError, match="method"):
        intrinsic_dimension(X, method="pca", normalize=None)
    with pytest.raises(InputError, match="k=20"):
        intrinsic_dimension(X, method="mle", k=20, normalize=None)
    with pytest.raises(InputError, match="discard_fraction"):
        intrinsic_dimension(X, discard_fraction=1.0, normalize=None)
    with pytest.raises(InputError, match="identical"):
        intrinsic_dimension(np.zeros((20, 3)), normalize=None)
    with pytest.raises(InputError, match="non-finite"):
        intrinsic_dimension(np.full((20, 3), np.inf), normalize=None)


def test_mle_equidistant_neighbours_up_to_rounding_raise_instead_of_diverging():
    """One-hot rows (plus rounding noise) put every neighbour at sqrt(2): the MLE must not return ~1e6."""
    from matteralign.errors import InputError
    from matteralign.metrics import intrinsic_dimension

    rng = np.random.default_rng(0)
    X = (np.eye(80)[rng.permutation(80)] * (1 + 1e-7 * rng.standard_normal((80, 1)))).astype(np.float32)
    with pytest.raises(InputError, match="same distance"):
        intrinsic_dimension(X, method="mle", k=10, normalize=None)


def test_twonn_on_fewer_samples_than_the_default_k():
    """TwoNN uses two neighbours: 40 samples are enough with the default k = 50 (only the MLE needs k < N)."""
    skdim = pytest.importorskip("skdim")
    X = BALL[:40, :5]
    want = skdim.id.TwoNN().fit(X).dimension_
    assert intrinsic_dimension(X, normalize=None) == pytest.approx(want, rel=1e-9)
    assert intrinsic_dimension(X, normalize=None, k=3) == intrinsic_dimension(X, normalize=None)
    with pytest.raises(InputError, match="k=50 is too large for 40 samples"):
        intrinsic_dimension(X, method="mle", normalize=None)
    for bad in (0, 2.5, True):
        with pytest.raises(InputError, match="k must be"):
            intrinsic_dimension(X, normalize=None, k=bad)
