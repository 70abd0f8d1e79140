"""Reference values: platonic-rep on the A/B/C data (paper notes 5.2) and the google-research CKA demo."""

from __future__ import annotations

import numpy as np
import pytest

from matteralign.metrics import cka, cknna, cycle_knn, mutual_knn, unbiased_cka

# platonic-rep metrics.py, float64, rows L2-normalised, no outlier clamp.
PRH = {
    ("A", "B"): dict(mutual_knn=0.644600, cknna10=0.642016, cknna25=0.733196, cka=0.928788, ucka=0.927984, cycle=0.984),
    ("A", "C"): dict(mutual_knn=0.019600, cknna10=0.014023, cknna25=0.046253, cka=0.031980, ucka=0.001417, cycle=0.192),
    ("B", "C"): dict(mutual_knn=0.019400, cknna10=0.017490, cknna25=0.046688, cka=0.033150, ucka=0.001108, cycle=0.194),
    ("A", "A"): dict(mutual_knn=1.000000, cknna10=0.999905, cknna25=0.999959, cka=1.000000, ucka=0.999995, cycle=0.980),
}


@pytest.mark.parametrize("pair", list(PRH))
def test_platonic_rep_table(abc_l2, pair):
    data = dict(zip("ABC", abc_l2, strict=True))
    X, Y = data[pair[0]], data[pair[1]]
    ref = PRH[pair]
    tol = 5e-7 + 1e-12  # the table is rounded to 6 decimals
    assert mutual_knn(X, Y, k=10, normalize=None) == pytest.approx(ref["mutual_knn"], abs=tol)
    assert cknna(X, Y, k=10, normalize=None) == pytest.approx(ref["cknna10"], abs=tol)
    assert cknna(X, Y, k=25, normalize=None) == pytest.approx(ref["cknna25"], abs=tol)
    assert cka(X, Y, normalize=None) == pytest.approx(ref["cka"], abs=tol)
    assert unbiased_cka(X, Y, normalize=None) == pytest.approx(ref["ucka"], abs=tol)
    assert cycle_knn(X, Y, k=10, normalize=None) == pytest.approx(ref["cycle"], abs=tol)


@pytest.fixture(scope="module")
def gr_data():
    rs = np.random.RandomState(1337)  # the demo's legacy global seed, same stream  # noqa: NPY002
    X = rs.randn(100, 10)
    Y = rs.randn(100, 10) + X
    return X, Y


def test_google_research_demo_values(gr_data):
    X, Y = gr_data
    assert cka(X, Y, normalize=None) == pytest.approx(0.55761, abs=1e-5)
    assert cka(X, Y, kernel="rbf", threshold=0.5, normalize=None) == pytest.approx(0.65483, abs=1e-5)
    assert cka(X, Y, debiased=True, normalize=None) == pytest.approx(0.51346, abs=1e-5)
    # the streamed RBF route (forced with block_size) gives the same number
    assert cka(X, Y, kernel="rbf", threshold=0.5, block_size=17, normalize=None) == pytest.approx(
        cka(X, Y, kernel="rbf", threshold=0.5, normalize=None), abs=1e-12
    )


def test_cknna_full_k_is_unbiased_cka(gr_data):
    X, Y = gr_data
    assert cknna(X, Y, k=X.shape[0] - 1, normalize=None) == pytest.approx(unbiased_cka(X, Y, normalize=None), abs=1e-12)
    assert unbiased_cka(X, Y, normalize=None) == pytest.approx(0.5134565, abs=1e-7)
    # platonic-rep's +1e-6: unbiased_cka differs from the exact debiased CKA only at the 1e-6 level
    assert abs(unbiased_cka(X, Y, normalize=None) - cka(X, Y, debiased=True, normalize=None)) < 1e-6


def test_gram_route_equals_feature_route(gr_data):
    X, Y = gr_data
    wide_X = np.hstack([X, np.zeros((100, 120))])  # N <= D: Gram route; zero columns change nothing
    wide_Y = np.hstack([Y, np.zeros((100, 95))])
    for debiased in (False, True):
        assert cka(wide_X, wide_Y, debiased=debiased, normalize=None) == pytest.approx(cka(X, Y, debiased=debiased, normalize=None), abs=1e-12)


def test_cka_invariance_examples(gr_data):
    X, Y = gr_data
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((10, 10)))
    T = np.random.default_rng(1).standard_normal((10, 10))
    base = cka(X, Y, normalize=None)
    assert cka(X @ Q, Y, normalize=None) == pytest.approx(base, abs=1e-12)
    assert cka(1.337 * X, Y, normalize=None) == pytest.approx(base, abs=1e-12)
    assert abs(cka(X @ T, Y, normalize=None) - base) > 1e-3  # not invariant to a general linear map


def test_null_behaviour_independent_data():
    """Independent L2-normalised data, N=500, k=10 (5 seeds): mutual kNN ~ k/(N-1); debiased CKA ~ 0;
    CKNNA small and positive (0.015-0.018 in the notes)."""
    n, k = 500, 10
    mk, ck, uc = [], [], []
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        X = rng.standard_normal((n, 32))
        Y = rng.standard_normal((n, 32))
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        Y /= np.linalg.norm(Y, axis=1, keepdims=True)
        mk.append(mutual_knn(X, Y, k=k, normalize=None))
        ck.append(cknna(X, Y, k=k, normalize=None))
        uc.append(unbiased_cka(X, Y, normalize=None))
    mk, ck, uc = map(np.asarray, (mk, ck, uc))
    # per-row overlap ~ hypergeometric(k draws, k successes, N-1): sd of the mean ~ sqrt(k/(N-1))/ (k sqrt(N))
    se = np.sqrt(k / (n - 1)) / k / np.sqrt(n) / np.sqrt(len(mk))
    assert abs(mk.mean() - k / (n - 1)) < 4 * se + 1e-3
    assert np.all(np.abs(uc) < 0.01)
    assert 0.0 < ck.mean() < 0.05


def test_debiased_vs_biased_under_independence_wide():
    """D >> N inflates biased CKA (0.83 at N=200, D=1000 in the notes); the debiased one stays near 0."""
    vals_b, vals_u = [], []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        X, Y = rng.standard_normal((200, 1000)), rng.standard_normal((200, 1000))
        vals_b.append(cka(X, Y, normalize=None))
        vals_u.append(cka(X, Y, debiased=True, normalize=None))
    assert np.mean(vals_b) == pytest.approx(0.833, abs=0.03)
    assert abs(np.mean(vals_u)) < 0.01
