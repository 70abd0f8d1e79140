"""Shared fixtures: the synthetic A/B/C data whose reference values are frozen in the tests."""

from __future__ import annotations

import numpy as np
import pytest


def make_abc(n: int = 500):
    """The synthetic triple of the reference tables (A, B related; C independent).

    ``rng = default_rng(0)``; checksums for n=500: A.sum()=474.3213937426868,
    B.sum()=209.17034189882077, C.sum()=-15.946391736292753.
    """
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((n, 5))
    W1 = rng.standard_normal((5, 64))
    W2 = rng.standard_normal((5, 32))
    A = Z @ W1 + 0.5 * rng.standard_normal((n, 64))
    B = np.tanh(Z @ W2) + 0.1 * rng.standard_normal((n, 32))
    C = rng.standard_normal((n, 48))
    return A, B, C


@pytest.fixture(scope="session")
def abc():
    A, B, C = make_abc()
    assert A.sum() == pytest.approx(474.3213937426868, abs=1e-9)
    assert B.sum() == pytest.approx(209.17034189882077, abs=1e-9)
    assert C.sum() == pytest.approx(-15.946391736292753, abs=1e-9)
    return A, B, C


@pytest.fixture(scope="session")
def abc_l2(abc):
    return tuple(x / np.linalg.norm(x, axis=1, keepdims=True) for x in abc)
