"""Registry-wide property tests: every claim a MetricSpec makes is checked, for every registered metric.

Driven only by the spec fields (arity, symmetric, bounds, higher_is_better, invariances, self_value,
params), so a new metric is covered as soon as it is registered -- and the completeness assertion below
fails until its name is added to ``KNOWN_METRICS`` (a deliberate reminder to look at its results here).

Invariance harness (after wrongu/repsim): for each transformation T, a claimed invariance must hold
(``f(T X, Y) == f(X, Y)`` and, for arity 1, ``f(T X) == f(X)``); an unclaimed one must visibly fail on
some test data / transformation strength.
"""

from __future__ import annotations

import numpy as np
import pytest

from matteralign.errors import MatterAlignError
from matteralign.metrics import INVARIANCES, METRICS

#: Every metric this file knows about. Add new names here when registering a metric.
KNOWN_METRICS = {"cknna", "mutual_knn", "cycle_knn", "cka", "unbiased_cka", "cka_rbf"}
KNOWN_METRICS |= {"dcor", "dcor2", "dcor2_unbiased", "intrinsic_dimension", "idcor", "information_imbalance"}

N = 160
RTOL, ATOL = 1e-7, 1e-9


def test_registry_is_complete():
    assert set(METRICS) == KNOWN_METRICS, (
        "registered metrics and the names known to the property tests differ: "
        f"unknown here {sorted(set(METRICS) - KNOWN_METRICS)}, missing from the registry "
        f"{sorted(KNOWN_METRICS - set(METRICS))}"
    )


def _data(seed: int = 0, n: int = N):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 4))
    X = Z @ rng.standard_normal((4, 12)) + 0.5 * rng.standard_normal((n, 12)) + 0.8
    Y = np.tanh(Z @ rng.standard_normal((4, 10))) + 0.2 * rng.standard_normal((n, 10)) - 0.3
    W = rng.standard_normal((n, 9)) + 0.5  # independent of X, Y
    return X, Y, W


DATA = [_data(0), _data(1)]


def _call(spec, *arrays):
    return float(spec.function(*arrays, **dict(spec.params)))


def _close(a, b, rtol=RTOL, atol=ATOL):
    return np.isclose(a, b, rtol=rtol, atol=atol)


def _transforms(d: int, rng):
    """name -> list of transformations of a (n, d) array, strongest last."""
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    perm = rng.permutation(d)
    shift = rng.standard_normal(d)
    return {
        "orthogonal": [lambda A: A @ Q],
        "isotropic_scale": [lambda A: 3.7 * A, lambda A: 1e-3 * A, lambda A: 1e3 * A],
        "translation": [lambda A: A + shift, lambda A: A + 25.0 * shift],
        "feature_permutation": [lambda A: A[:, perm]],
    }


SPECS = sorted(METRICS.values(), key=lambda s: s.name)
IDS = [s.name for s in SPECS]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_symmetry_flag(spec):
    if spec.arity == 1:
        pytest.skip("arity-1 measure: symmetry does not apply")
    diffs = []
    for X, Y, W in DATA:
        for A, B in ((X, Y), (X, W), (Y, W)):
            diffs.append(abs(_call(spec, A, B) - _call(spec, B, A)))
    if spec.symmetric:
        assert max(diffs) <= 1e-9 + RTOL
    else:
        assert max(diffs) > 1e-9, f"{spec.name} is registered as asymmetric but is symmetric on all test data"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_bounds_and_finite(spec):
    lo, hi = spec.bounds
    for X, Y, W in DATA:
        cases = [(X,), (Y,), (W,)] if spec.arity == 1 else [(X, Y), (Y, X), (X, W), (X, X), (W, W)]
        for args in cases:
            v = _call(spec, *args)
            assert np.isfinite(v), f"{spec.name} returned {v}"
            assert lo - 1e-9 <= v <= hi + 1e-9, f"{spec.name} = {v} outside {spec.bounds}"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_self_similarity(spec):
    if spec.arity == 1:
        pytest.skip("arity-1 measure")
    X, Y, W = DATA[0]
    vxx = _call(spec, X, X)
    if spec.self_value is not None:
        assert vxx == pytest.approx(spec.self_value, abs=1e-9)
    if spec.higher_is_better is True:
        assert vxx >= _call(spec, X, W) and vxx >= _call(spec, X, Y)
    elif spec.higher_is_better is False:
        assert vxx <= _call(spec, X, W) and vxx <= _call(spec, X, Y)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("inv", sorted(INVARIANCES - {"sample_permutation"}))
def test_invariance_claims(spec, inv):
    claimed = inv in spec.invariances
    observed_change = 0.0
    for seed, (X, Y, _) in enumerate(DATA):
        rng = np.random.default_rng(100 + seed)
        for T in _transforms(X.shape[1], rng)[inv]:
            if spec.arity == 1:
                pairs = [(_call(spec, T(X)), _call(spec, X))]
            else:
                pairs = [(_call(spec, T(X), Y), _call(spec, X, Y))]
                if not spec.symmetric:
                    TY = _transforms(Y.shape[1], rng)[inv][-1]
                    pairs.append((_call(spec, X, TY(Y)), _call(spec, X, Y)))
            for got, base in pairs:
                if claimed:
                    assert _close(got, base), f"{spec.name} claims {inv} invariance: {got} != {base}"
                observed_change = max(observed_change, abs(got - base))
    if not claimed:
        assert observed_change > 1e-6, f"{spec.name} does not claim {inv} invariance but shows it on all data"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_joint_sample_permutation(spec):
    assert "sample_permutation" in spec.invariances, f"{spec.name}: every metric must be sample-order free"
    X, Y, _ = DATA[0]
    p = np.random.default_rng(5).permutation(X.shape[0])
    if spec.arity == 1:
        assert _close(_call(spec, X[p]), _call(spec, X))
    else:
        assert _close(_call(spec, X[p], Y[p]), _call(spec, X, Y))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_float32_agrees_with_float64(spec):
    X, Y, _ = DATA[1]
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    if spec.arity == 1:
        a, b = _call(spec, X32), _call(spec, X32.astype(np.float64))
    else:
        a, b = _call(spec, X32, Y32), _call(spec, X32.astype(np.float64), Y32.astype(np.float64))
    assert a == pytest.approx(b, rel=1e-3, abs=1e-3)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_bad_input_raises_named_error(spec):
    X, Y, _ = DATA[0]
    nan = X.copy()
    nan[3, 2] = np.nan
    inf = X.copy()
    inf[5, 0] = np.inf
    identical = np.tile(X[:1], (X.shape[0], 1))
    cases = {
        "non-finite": [nan, inf],
        "1-D": [X[:, 0]],
        "N < 4": [X[:3]],
        "identical rows": [identical],
    }
    for what, bad_list in cases.items():
        for bad in bad_list:
            args = (bad,) if spec.arity == 1 else (bad, Y[: len(bad)] if bad.ndim == 2 else Y)
            with pytest.raises(MatterAlignError) as err:
                _call(spec, *args)
            assert "X" in str(err.value), f"{spec.name}: message for {what} does not name the argument"
    if spec.arity == 2:
        with pytest.raises(MatterAlignError, match="rows"):
            _call(spec, X, Y[:-1])
    if "k" in spec.params:
        n = X.shape[0]
        for k in (0, -1, n, n + 5):
            args = (X,) if spec.arity == 1 else (X, Y)
            params = {**spec.params, "k": k}
            if k >= n and spec.name == "intrinsic_dimension":
                params["method"] = "mle"  # TwoNN uses two neighbours whatever k is; the MLE uses k of them
            with pytest.raises(MatterAlignError, match=f"k.*{k}|{k}.*k"):
                spec.function(*args, **params)
