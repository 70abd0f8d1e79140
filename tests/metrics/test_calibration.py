"""Calibrated alignment: null routes against brute force, calibrated-similarity, uniform p-values, BH."""

from __future__ import annotations

import json

import numpy as np
import pytest

from matteralign.errors import InputError
from matteralign.metrics import METRICS, get_metric, prepare
from matteralign.metrics.calibration import (
    CALIBRATION_COLUMNS,
    adjust_table,
    bh_adjust,
    calibrate_pairs,
    null_values,
    permutations,
)

PAIR_METRICS = sorted(n for n, s in METRICS.items() if s.arity == 2)


def _unit(A):
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def _models(n, seed=1):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 5))
    return {
        "a": _unit(np.hstack([Z, rng.standard_normal((n, 3))])),
        "b": _unit(Z @ rng.standard_normal((5, 7)) + 0.3 * rng.standard_normal((n, 7))),
        "c": _unit(rng.standard_normal((n, 4))),
    }


def _params(spec, k=8):
    p = dict(spec.params)
    if "k" in p:
        p["k"] = min(p["k"], k)
    return p


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_cheap_null_equals_brute_force(metric, compiled, monkeypatch):
    """Every route gives s(X_a, X_b[perm]) recomputed from scratch, same permutations, to 1e-9."""
    from matteralign.metrics import _compiled

    if compiled:
        _compiled.warm()
    else:  # the numpy routes
        monkeypatch.setattr(_compiled, "IMPORT_WORTH", float("inf"))
        monkeypatch.delitem(__import__("sys").modules, "numba", raising=False)
    spec = get_metric(metric)
    reps = _models(60)
    p = _params(spec)
    caches = {m: prepare(X, k_max=p.get("k"), normalize=None, name=m) for m, X in reps.items()}
    pairs = [(a, b) for a in reps for b in reps][::-1]
    perms = permutations(60, 6, 3)
    cheap = null_values(spec, caches, pairs, p, perms)
    inv = np.argsort(perms, axis=1)
    for a, b in pairs:  # the documented convention: a <= b uses perms, the reverse order their inverses
        use = perms if a <= b else inv
        brute = [spec.function(reps[a], reps[b][q], **p) for q in use]
        np.testing.assert_allclose(cheap[(a, b)], brute, rtol=0, atol=1e-9, err_msg=f"{metric} {a}-{b}")


def test_factor_route_equals_brute_force_and_kernel_route():
    """Linear CKA's factor route (||F_a^T F_b[p]||^2) gives the brute-force null and the kernel route's, both
    orders of each pair, and is chosen where it is cheaper: one wide pair at large N, not many models."""
    from matteralign.metrics.calibration import _factor_pays

    spec = get_metric("cka")
    reps = _models(80, seed=4)
    caches = {m: prepare(X, k_max=None, normalize=None, name=m) for m, X in reps.items()}
    pairs = [(a, b) for a in reps for b in reps if a != b]
    perms = permutations(80, 7, 9)
    factor = null_values(spec, caches, pairs, {}, perms, route="factor")
    kernel = null_values(spec, caches, pairs, {}, perms, route="kernel")
    inv = np.argsort(perms, axis=1)
    for a, b in pairs:
        use = perms if a <= b else inv
        brute = [spec.function(reps[a], reps[b][q]) for q in use]
        np.testing.assert_allclose(factor[(a, b)], brute, rtol=0, atol=1e-12, err_msg=f"{a}-{b}")
        np.testing.assert_allclose(factor[(a, b)], kernel[(a, b)], rtol=0, atol=1e-12)

    rng = np.random.default_rng(0)
    wide = {m: prepare(rng.standard_normal((3000, 256)).astype(np.float32), k_max=None, normalize=None, name=m)
            for m in ("x", "y")}
    assert _factor_pays(spec, wide, [("x", "y")])
    many = {f"m{i}": prepare(rng.standard_normal((2048, 256)).astype(np.float32), k_max=None, normalize=None,
                             name=f"m{i}") for i in range(24)}
    assert not _factor_pays(spec, many, [(a, b) for a in many for b in many if a != b])
    assert not _factor_pays(get_metric("unbiased_cka"), wide, [("x", "y")])  # no factor: its kernel is U-centred
    df = calibrate_pairs(wide, "cka", n_permutations=5, seed=0, n_subsamples=0, null_max_n=3000)
    assert set(df.null_route) == {"factor"} and (df.null_n == 3000).all()


def test_kernel_matrices_are_stacked_once():
    """The kernel route's per-model matrices live once, in one stack: the caches' memoised matrices are views
    of it, and the next call (the null after the values at the identity) reuses it instead of copying."""
    from matteralign.metrics.calibration import _stack_kernels

    spec = get_metric("unbiased_cka")
    reps = _models(50, seed=2)
    caches = {m: prepare(X, k_max=None, normalize=None, name=m) for m, X in reps.items()}
    names = sorted(caches)
    first = _stack_kernels(spec, caches, names, {})
    assert all(np.shares_memory(spec.null_kernel(caches[m]), first) for m in names)
    assert _stack_kernels(spec, caches, names, {}) is first
    assert _stack_kernels(spec, caches, names[::-1], {}) is not first  # another order: a stack of its own
    df = calibrate_pairs(caches, "unbiased_cka", n_permutations=5, seed=0, n_subsamples=0)
    assert set(df.null_route) == {"kernel"} and df.p_value.notna().all()


def test_every_pair_metric_has_a_route():
    from matteralign.metrics.calibration import _route

    routes = {m: _route(get_metric(m)) for m in PAIR_METRICS}
    assert routes["cknna"] == routes["mutual_knn"] == "relabel"
    assert routes["cka"] == routes["unbiased_cka"] == routes["dcor2"] == "kernel"
    assert routes["information_imbalance"] == routes["idcor"] == "cache"
    assert set(routes.values()) <= {"relabel", "kernel", "cache", "recompute"}


@pytest.mark.parametrize("metric", ["cka", "unbiased_cka", "dcor2", "mutual_knn", "cknna", "idcor",
                                    "information_imbalance"])
def test_identical_data(metric):
    X = _models(80)["b"]
    B = 49
    caches = {"x": prepare(X, k_max=10, normalize=None, name="x"), "y": prepare(X.copy(), k_max=10, normalize=None,
                                                                              name="y")}
    spec = get_metric(metric)
    df = calibrate_pairs(caches, metric, _params(spec, 10), pairs=[("x", "y")], n_permutations=B, seed=2,
                         n_subsamples=0)
    row = df.iloc[0]
    assert row.p_value == pytest.approx(1 / (B + 1), abs=1e-15)
    if spec.higher_is_better:
        # CKNNA and unbiased CKA of identical inputs are h / (h + 1e-6), a little below 1
        assert row.calibrated == pytest.approx(1.0, abs=1e-4 if "eps" in spec.params or metric == "cknna" else 1e-12)
    else:  # information imbalance: its best value is (k + 1)/N, not the bound 0
        assert row.calibrated == pytest.approx(1 - (1 + 1) / 80 / row.null_tau, abs=1e-12)


@pytest.mark.parametrize("metric", ["cka", "mutual_knn", "cknna", "unbiased_cka"])
def test_independent_data_uniform_p_values(metric):
    from scipy import stats

    spec = get_metric(metric)
    ps, cal = [], []
    for seed in range(150):
        rng = np.random.default_rng(1000 + seed)
        caches = {m: prepare(_unit(rng.standard_normal((50, d))), k_max=10, normalize=None, name=m)
                  for m, d in (("x", 6), ("y", 4))}
        row = calibrate_pairs(caches, metric, _params(spec, 10), pairs=[("x", "y")], n_permutations=99, seed=seed,
                              n_subsamples=0).iloc[0]
        ps.append(row.p_value)
        cal.append(row.calibrated)
    ps, cal = np.asarray(ps), np.asarray(cal)
    # p-values live on the grid j / 100: compare with the uniform law of that grid (jitter within a step)
    jitter = np.random.default_rng(7).uniform(0, 0.01, ps.size)
    assert stats.kstest(ps - jitter, "uniform").pvalue > 0.01
    assert np.mean(cal == 0) >= 0.95


@pytest.mark.parametrize("metric", ["cka", "mutual_knn", "cknna"])
def test_equals_calibrated_similarity(metric):
    """Same permutations (perm_fn): same p-value, tau and calibrated score as calibrated-similarity 0.1.1."""
    torch = pytest.importorskip("torch")
    cs = pytest.importorskip("calibrated_similarity")
    spec = get_metric(metric)
    p = _params(spec, 6)
    reps = _models(40, seed=5)
    X, Y = reps["a"], reps["b"] + 0.5 * _models(40, seed=9)["b"]
    B = 39
    perms = permutations(40, B, 11)
    it = iter(perms)

    def perm_fn(n, device):
        return torch.as_tensor(next(it), dtype=torch.long)

    def sim(Xt, Yt):
        return float(spec.function(Xt.double().numpy(), Yt.double().numpy(), **p))

    score, pval, tau = cs.calibrate(torch.as_tensor(X), torch.as_tensor(Y), sim, K=B, alpha=0.05, perm_fn=perm_fn)
    caches = {"a": prepare(X, k_max=6, normalize=None, name="a"), "b": prepare(Y, k_max=6, normalize=None, name="b")}
    row = calibrate_pairs(caches, metric, p, pairs=[("a", "b")], n_permutations=B, alpha=0.05, seed=11,
                          n_subsamples=0).iloc[0]
    assert row.p_value == pytest.approx(float(pval), rel=1e-6)
    assert row.null_tau == pytest.approx(float(tau), rel=1e-6, abs=1e-7)  # theirs in float32
    assert row.calibrated == pytest.approx(float(score), rel=1e-5, abs=1e-6)
    assert 0 < row.calibrated < 1  # a case that tests the gated formula, not the clip


def test_bh_matches_scipy():
    from scipy import stats

    p = np.random.default_rng(0).uniform(0, 0.2, 40) ** 2
    np.testing.assert_allclose(bh_adjust(p), stats.false_discovery_control(p, method="bh"), rtol=1e-12)
    q = bh_adjust(np.array([0.01, np.nan, 0.04, 0.03]))
    assert np.isnan(q[1]) and q[0] == pytest.approx(0.03) and q[2] == q[3] == pytest.approx(0.04)


def test_table_and_adjustment():
    reps = _models(120)
    caches = {m: prepare(X, k_max=10, normalize=None, name=m) for m, X in reps.items()}
    df = calibrate_pairs(caches, "unbiased_cka", {}, n_permutations=19, seed=0, n_subsamples=10)
    assert list(df.columns) == CALIBRATION_COLUMNS and len(df) == 9
    assert df.params.iloc[0] == json.dumps({"eps": 1e-6}, sort_keys=True)
    ab = df[(df.model_a == "a") & (df.model_b == "b")].iloc[0]
    ba = df[(df.model_a == "b") & (df.model_b == "a")].iloc[0]
    assert ab.p_value == ba.p_value and ab.null_mean == ba.null_mean  # symmetric: one null per unordered pair
    assert (df.ci_low <= df.ci_high).all() and df[["p_value", "ci_low", "ci_high"]].notna().all().all()
    from matteralign.metrics import unbiased_cka

    v = unbiased_cka(reps["a"], reps["b"], normalize=None)
    assert ab.ci_low <= v <= ab.ci_high
    adj = adjust_table(df.assign(value=0.0))
    assert adj.p_adjusted[df.model_a == df.model_b].isna().all()
    off = adj[adj.model_a < adj.model_b]
    np.testing.assert_allclose(off.p_adjusted, bh_adjust(off.p_value))


def test_null_on_a_subset_is_recorded():
    reps = _models(300)
    caches = {m: prepare(X, k_max=10, normalize=None, name=m) for m, X in reps.items()}
    df = calibrate_pairs(caches, "dcor2", {}, pairs=[("a", "b")], n_permutations=9, null_max_n=100, n_subsamples=0)
    row = df.iloc[0]
    assert row.null_n == 100 and "subset of 100 of 300" in row.note and row.ci_method.startswith("off")


def test_bad_input():
    caches = {m: prepare(X, k_max=5, normalize=None, name=m) for m, X in _models(30).items()}
    with pytest.raises(InputError, match="alpha"):
        calibrate_pairs(caches, "cka", {}, alpha=1.5)
    with pytest.raises(InputError, match="no parameter"):
        calibrate_pairs(caches, "cka", {"k": 3})
    with pytest.raises(InputError, match="without a cache"):
        calibrate_pairs(caches, "cka", {}, pairs=[("a", "zz")])
    with pytest.raises(InputError, match="single representation"):
        calibrate_pairs(caches, "intrinsic_dimension", {})


def test_model_interval_intrinsic_dimension():
    """TwoNN of a 3-dimensional manifold: the interval holds the value and lies near 3."""
    from matteralign.metrics import intrinsic_dimension
    from matteralign.metrics.calibration import model_interval

    rng = np.random.default_rng(0)
    X = rng.standard_normal((800, 3)) @ rng.standard_normal((3, 12))
    v = intrinsic_dimension(X, method="twonn", normalize=None)  # the registry function: arrays as given
    lo, hi, how = model_interval(X, "intrinsic_dimension", {"method": "twonn"}, n_subsamples=30, seed=1)
    assert lo <= v <= hi and 2.5 < lo and hi < 3.5 and how.startswith("half-sampling")


@pytest.mark.parametrize("compiled", [False, True])
def test_mantel_matrix_equals_pairwise_sums(compiled, monkeypatch):
    """Every entry of the batched route equals <M_a, M_b[p][:, p]> summed directly, across tiles and groups."""
    from matteralign.metrics import _compiled
    from matteralign.metrics._nullkernels import _GROUP, mantel_matrix

    if compiled:
        _compiled.warm()
    else:
        monkeypatch.setattr(_compiled, "IMPORT_WORTH", float("inf"))
        monkeypatch.delitem(__import__("sys").modules, "numba", raising=False)
    rng = np.random.default_rng(4)
    n, B = 37, _GROUP + 3  # two groups of permutations, the second partial
    mats = []
    for d in (3, 5, 8):
        X = rng.standard_normal((n, d))
        X -= X.mean(axis=0)
        mats.append(X @ X.T)
    perms = permutations(n, B, 9)
    for tile_bytes in (1, 4096, 1 << 20):  # one row per tile, several rows, one tile
        out = mantel_matrix(mats, perms, tile_bytes=tile_bytes)
        assert out.shape == (B, 3, 3)
        for t, p in enumerate(perms):
            for a in range(3):
                for b in range(3):
                    direct = float(np.sum(mats[a] * mats[b][np.ix_(p, p)]))
                    assert out[t, a, b] == pytest.approx(direct, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("metric", ["unbiased_cka", "dcor2", "dcor2_unbiased", "idcor"])
def test_subsample_caches_slice_the_parent_matrices(metric):
    """Half-sample values from the parent's sliced Gram / distance matrices equal the metric on the subsample."""
    from matteralign.metrics._nullkernels import SLICEABLE
    from matteralign.metrics.calibration import _subsample_caches, _values

    spec = get_metric(metric)
    reps = _models(80)
    p = _params(spec)
    caches = {m: prepare(X, k_max=None, normalize=None, name=m) for m, X in reps.items()}
    pairs = [("a", "b"), ("b", "c"), ("c", "a")]
    _values(spec, caches, pairs, p, cheap=True)  # the parents now hold their matrices
    assert any(key in caches["a"].extras for key in SLICEABLE)
    idx = np.sort(np.random.default_rng(2).choice(80, 40, replace=False))
    subs = _subsample_caches(caches, ["a", "b", "c"], idx, ("test", metric))
    assert any(key in subs["a"].extras for key in SLICEABLE)  # sliced, not recomputed
    got = _values(spec, subs, pairs, p, cheap=True)
    for a, b in pairs:
        want = spec.function(reps[a][idx], reps[b][idx], **p)
        assert got[(a, b)] == pytest.approx(want, abs=1e-9)
