"""Normalisation, per-model caches and the pairwise table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from matteralign.errors import InputError, MatterAlignError
from matteralign.metrics import (
    METRICS,
    MetricSpec,
    cka,
    cknna,
    cycle_knn,
    mutual_knn,
    normalize,
    pairwise,
    prepare,
    to_matrix,
)


def _reps(n=300, m=3, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 5))
    return {f"m{i}": (Z @ rng.standard_normal((5, 20 + i)) + 0.6 * rng.standard_normal((n, 20 + i))) for i in range(m)}


def test_normalize_methods():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 8)) * 3
    np.testing.assert_allclose(np.linalg.norm(normalize(X), axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.abs(normalize(X, method="max")).max(axis=1), 1.0, atol=1e-12)
    X[0, 0] = 1e4  # an outlier feature value
    q = np.quantile(np.abs(X), 0.95, axis=1).mean()
    expect = np.clip(X, -q, q)
    expect /= np.linalg.norm(expect, axis=1, keepdims=True)
    np.testing.assert_allclose(normalize(X, method="clamp95"), expect, atol=1e-12)
    np.testing.assert_array_equal(normalize(X, method=None), X)
    assert normalize(X.astype(np.float32)).dtype == np.float32


def test_normalize_zero_rows_and_unknown_method():
    X = np.ones((10, 3))
    X[[2, 7]] = 0
    with pytest.raises(InputError, match="2 all-zero row"):
        normalize(X)
    with pytest.raises(InputError, match="2 all-zero row"):
        pairwise({"a": X, "b": X + 1}, ["cka"])
    with pytest.raises(InputError, match="normalize must be one of"):
        normalize(X, method="l1")


def test_pairwise_equals_functions_and_mirrors():
    reps = _reps()
    t = pairwise(reps, ["cknna", "mutual_knn", "cycle_knn", "cka", ("cka_rbf", {"threshold": 0.5})], k=10)
    assert list(t.columns) == ["model_a", "model_b", "metric", "params", "n", "value", "normalize"]
    assert len(t) == 5 * 9
    assert set(t["normalize"]) == {"l2"} and set(t["n"]) == {300}
    normed = {k: normalize(v) for k, v in reps.items()}
    fns = {"cknna": cknna, "mutual_knn": mutual_knn, "cycle_knn": cycle_knn}
    for row in t.itertuples():
        params = json.loads(row.params)
        X, Y = normed[row.model_a], normed[row.model_b]
        if row.metric in fns:
            assert params == {"k": 10}
            assert row.value == pytest.approx(fns[row.metric](X, Y, k=10), abs=1e-12)
        elif row.metric == "cka":
            assert row.value == pytest.approx(cka(X, Y, normalize=None), abs=1e-12)
        else:
            assert params == {"threshold": 0.5}
            assert row.value == pytest.approx(cka(X, Y, kernel="rbf", threshold=0.5, normalize=None), abs=1e-12)
    m = to_matrix(t, "cka")
    np.testing.assert_allclose(m.values, m.values.T)
    c = to_matrix(t, "cycle_knn")
    assert not np.allclose(c.values, c.values.T)  # asymmetric metrics get both orders


def test_pairwise_accepts_caches_and_extends_k():
    reps = _reps(n=200, m=2)
    caches = {k: prepare(v, k_max=5, name=k) for k, v in reps.items()}
    t = pairwise(caches, [("mutual_knn", {"k": 15})])
    X, Y = (normalize(v) for v in reps.values())
    val = t[(t.model_a == "m0") & (t.model_b == "m1")]["value"].item()
    assert val == pytest.approx(mutual_knn(X, Y, k=15, normalize=None), abs=1e-12)
    assert caches["m0"].k_max == 15


def test_pairwise_fallback_to_function_and_arity_one():
    reps = _reps(n=120, m=2)
    calls = []

    def plain(X, Y, *, scale=1.0):
        calls.append(1)
        return float(scale * np.corrcoef(X[:, 0], Y[:, 0])[0, 1])

    def ncols(X):
        return float(X.shape[1])

    tmp = [
        MetricSpec("tmp_plain", plain, True, (-1, 1), True, frozenset(), "test", params={"scale": 1.0}),
        MetricSpec("tmp_arity1", ncols, True, (0, np.inf), None, frozenset(), "test", arity=1),
    ]
    try:
        for s in tmp:
            METRICS[s.name] = s
        t = pairwise(reps, ["tmp_plain", "tmp_arity1"], normalize=None)
    finally:
        for s in tmp:
            METRICS.pop(s.name, None)
    assert len(calls) == 3  # symmetric: (0,0), (0,1), (1,1)
    one = t[t.metric == "tmp_arity1"]
    assert list(one["model_b"]) == ["", ""] and list(one["value"]) == [20.0, 21.0]


def test_pairwise_errors():
    reps = _reps(n=100, m=2)
    with pytest.raises(InputError, match="same samples"):
        pairwise({"a": reps["m0"], "b": reps["m1"][:-1]}, ["cka"])
    with pytest.raises(MatterAlignError, match="unknown metric"):
        pairwise(reps, ["cknnaa"])
    with pytest.raises(InputError, match="no parameter"):
        pairwise(reps, [("cka", {"k": 3})])
    with pytest.raises(InputError, match="non-empty"):
        pairwise({}, ["cka"])
    with pytest.raises(InputError, match="k=100"):
        pairwise(reps, ["cknna"], k=100)


def test_prepare_records_and_memoises():
    X = _reps(n=80, m=1)["m0"].astype(np.float32)
    c = prepare(X, k_max=200, normalize="clamp95", name="m0")
    assert c.normalize == "clamp95" and c.k_max == 79 and c.features.dtype == np.float32
    assert c.knn_indices.dtype == np.int32 and c.knn_values.dtype == np.float64
    calls = []
    assert c.memo(("t", 1), lambda: calls.append(1) or 5) == 5
    assert c.memo(("t", 1), lambda: calls.append(1) or 6) == 5
    assert calls == [1]
    with pytest.raises(InputError, match="identical"):
        prepare(np.ones((10, 3)))


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("cols,elems", [(4096, 1 << 23), (45, 700)])
def test_stacked_linear_cka_equals_pair_route(monkeypatch, cols, elems, compiled):
    """All-pairs linear CKA (stacked syrk, column groups, row blocks; compiled or numpy centring) equals the
    pair-by-pair route."""
    import importlib

    from matteralign.metrics import unbiased_cka

    cka_module = importlib.import_module("matteralign.metrics.cka")
    if compiled:
        assert cka_module._centre_kernel(), "numba is part of the test environment"
    else:
        monkeypatch.setattr(cka_module, "_centre_kernel", lambda **_: False)
    monkeypatch.setattr(cka_module, "_STACK_COLS", cols)  # (45, 700): 3 groups, 31-row blocks
    monkeypatch.setattr(cka_module, "_STACK_ELEMS", elems)
    reps = _reps(n=257, m=4, seed=3)
    t = pairwise(reps, ["cka", "unbiased_cka"], k=5)
    normed = {k: normalize(v) for k, v in reps.items()}
    for row in t.itertuples():
        X, Y = normed[row.model_a], normed[row.model_b]
        ref = cka(X, Y, normalize=None) if row.metric == "cka" else unbiased_cka(X, Y, normalize=None)
        assert row.value == pytest.approx(ref, abs=1e-12)
    assert to_matrix(t, "cka").values[1, 2] < 0.999  # distinct models, not trivially 1


def test_compiled_pair_overlap_equals_numpy_route(monkeypatch):
    """All-pairs CKNNA / mutual kNN: the compiled one-pass overlap equals the numpy route (and the plain
    functions), in both orders of the asymmetric CKNNA."""
    import importlib

    knn_module = importlib.import_module("matteralign.metrics.knn")
    reps = _reps(n=240, m=4, seed=5)
    reps["dup"] = np.repeat(reps["m0"][:120], 2, axis=0)  # duplicated rows: ties in the graphs
    caches = {k: prepare(v, k_max=12, name=k) for k, v in reps.items()}
    fast = pairwise(caches, [("cknna", {"k": 12}), ("mutual_knn", {"k": 7})])
    assert knn_module._pair_kernel(), "numba is part of the test environment"
    monkeypatch.setattr(knn_module, "_pair_kernel", lambda **_: False)
    monkeypatch.setattr(knn_module, "_recip_kernel", lambda **_: False)
    caches = {k: prepare(v, k_max=12, name=k) for k, v in reps.items()}
    plain = pairwise(caches, [("cknna", {"k": 12}), ("mutual_knn", {"k": 7})])
    np.testing.assert_allclose(fast["value"].to_numpy(), plain["value"].to_numpy(), rtol=0, atol=1e-12)
    normed = {k: normalize(v) for k, v in reps.items()}
    for row in fast[fast.metric == "cknna"].itertuples():
        assert row.value == pytest.approx(cknna(normed[row.model_a], normed[row.model_b], k=12, normalize=None), abs=1e-12)
    m = to_matrix(fast, "cknna")
    assert not np.allclose(m.values, m.values.T)  # both orders present and different


@pytest.mark.parametrize("threads", ["1", "3"])
def test_run_rows_covers_every_row_once(monkeypatch, threads):
    """The compiled kernels' row splitter: every row exactly once, also for n below the chunk count."""
    from matteralign.metrics._compiled import run_rows

    monkeypatch.setenv("MATTERALIGN_THREADS", threads)
    for n in (1, 5, 1000):
        hits = np.zeros(n, dtype=int)

        def mark(lo, hi, out):
            out[lo:hi] += 1

        run_rows(mark, n, hits)
        np.testing.assert_array_equal(hits, 1)
