"""Permutation tests, calibrated scores and subsampling intervals."""

from __future__ import annotations

import numpy as np
import pytest

from matteralign.errors import InputError
from matteralign.metrics import METRICS, permutation_test, prepare, subsample_ci
from matteralign.metrics.knn import _graph_from_cache, _permuted_graph


def _pair(seed, n=200, related=True):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 16))
    Y = X @ rng.standard_normal((16, 12)) + 0.5 * rng.standard_normal((n, 12)) if related else rng.standard_normal(
        (n, 12)
    )
    return X / np.linalg.norm(X, axis=1, keepdims=True), Y / np.linalg.norm(Y, axis=1, keepdims=True)


PAIR_METRICS = sorted(n for n, s in METRICS.items() if s.arity == 2)


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_identical_data_is_significant(metric):
    X, _ = _pair(0, n=120)
    res = permutation_test(X, X.copy(), metric=metric, n_permutations=39, seed=1, normalize=None)
    assert res.p_value <= 0.05
    assert res.calibrated > 0.5
    assert 0 < res.p_value <= 1 and 0 <= res.calibrated <= 1
    assert res.null.shape == (39,)


def test_independent_data_p_values_not_small():
    ps = []
    for seed in range(12):
        X, Y = _pair(seed, n=150, related=False)
        ps.append(permutation_test(X, Y, metric="cknna", k=10, n_permutations=49, seed=seed, normalize=None).p_value)
    ps = np.asarray(ps)
    # under H0 p ~ U(0, 1): the rejection rate at 0.05 stays small and the mean near 1/2
    assert np.mean(ps <= 0.05) <= 0.25
    assert 0.25 < ps.mean() < 0.75


def test_seeded_reproducibility():
    X, Y = _pair(3)
    a = permutation_test(X, Y, metric="mutual_knn", n_permutations=20, seed=7, normalize=None)
    b = permutation_test(X, Y, metric="mutual_knn", n_permutations=20, seed=7, normalize=None)
    c = permutation_test(X, Y, metric="mutual_knn", n_permutations=20, seed=8, normalize=None)
    np.testing.assert_array_equal(a.null, b.null)
    assert not np.array_equal(a.null, c.null)
    s1 = subsample_ci(X, Y, metric="cka", n_subsamples=10, seed=2, normalize=None)
    s2 = subsample_ci(X, Y, metric="cka", n_subsamples=10, seed=2, normalize=None)
    np.testing.assert_array_equal(s1.samples, s2.samples)


@pytest.mark.parametrize("metric", ["cknna", "mutual_knn", "cycle_knn"])
def test_null_by_relabelling_equals_recomputation(metric):
    X, Y = _pair(4, n=180, related=False)
    spec = METRICS[metric]
    k = 12
    cx, cy = prepare(X, k_max=k, normalize=None), prepare(Y, k_max=k, normalize=None)
    rng = np.random.default_rng(0)
    for _ in range(5):
        perm = rng.permutation(X.shape[0])
        fast = spec.null_from_cache(cx, cy, perm, k=k)
        slow = spec.function(X, Y[perm], k=k)
        assert fast == pytest.approx(slow, abs=1e-13)
        # the relabelled graph is exactly the graph searched on the permuted data
        g = _permuted_graph(_graph_from_cache(cy, k), perm)
        g2 = _graph_from_cache(prepare(Y[perm], k_max=k, normalize=None), k)
        np.testing.assert_array_equal(g.idx, g2.idx)
        np.testing.assert_array_equal(g.vals, g2.vals)


def test_p_value_formula_and_direction():
    X, Y = _pair(5)
    res = permutation_test(X, Y, metric="cka", n_permutations=19, seed=0, normalize=None)
    expect = (1 + np.count_nonzero(res.null >= res.value)) / 20
    assert res.p_value == expect
    pool = np.sort(np.append(res.null, res.value))
    assert res.tau == pool[int(np.ceil(0.95 * 20)) - 1]
    assert res.calibrated == pytest.approx(np.clip((res.value - res.tau) / (1 - res.tau), 0, 1))


def test_subsample_ci_no_duplicates_and_covers_value():
    X, Y = _pair(6, n=300)
    res = subsample_ci(X, Y, metric="cknna", k=10, n_subsamples=30, fraction=0.5, seed=0, normalize=None)
    assert res.low <= res.high
    assert res.samples.shape == (30,)
    assert res.low - 0.1 < res.value < res.high + 0.1


def test_significance_bad_input():
    X, Y = _pair(7, n=50)
    with pytest.raises(InputError, match="n_permutations"):
        permutation_test(X, Y, metric="cka", n_permutations=0, normalize=None)
    with pytest.raises(InputError, match="fraction"):
        subsample_ci(X, Y, metric="cka", fraction=1.5, normalize=None)
    with pytest.raises(InputError, match="k=30"):
        subsample_ci(X, Y, metric="cknna", k=30, fraction=0.5, normalize=None)
    with pytest.raises(InputError, match="no parameter"):
        permutation_test(X, Y, metric="cka", k=3, normalize=None)
