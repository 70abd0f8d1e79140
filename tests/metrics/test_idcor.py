"""IdCor: paper §5.2 values (lorenzobasile/IDCorrelation), p-value convention, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from matteralign.errors import InputError
from matteralign.metrics.idcor import id_correlation


@pytest.mark.parametrize(("i", "j", "value", "ids"), [
    (0, 1, 0.761453, (8.5719, 5.1315, 7.1763)),
    (0, 2, 0.345800, (8.5719, 27.1582, 26.3388)),
    (1, 2, 0.322963, (5.1315, 27.1582, 23.5186)),
])
def test_paper_reference_table(abc, i, j, value, ids):
    res = id_correlation(abc[i], abc[j], n_permutations=0, normalize=None)
    assert res.value == pytest.approx(value, abs=1e-5)
    assert (res.id_x, res.id_y, res.id_joint) == pytest.approx(ids, abs=1e-4)
    assert res.p_value is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.value = 0.0


def test_p_value_add_one(abc):
    A, B, _ = abc
    res = id_correlation(A[:200], B[:200], n_permutations=9, seed=1, normalize=None)
    assert res.p_value == pytest.approx(0.1)  # related data: no shuffle reaches the joint Id -> 1/(9+1)
    again = id_correlation(A[:200], B[:200], n_permutations=9, seed=1, normalize=None)
    assert again == res


def test_invariance(abc):
    A, B, _ = abc
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((64, 64)))
    ref = id_correlation(A, B, n_permutations=0, normalize=None).value
    assert id_correlation(4.0 * A @ Q, B, n_permutations=0, normalize=None).value == pytest.approx(ref, abs=1e-9)


def test_bad_input():
    X = np.random.default_rng(0).standard_normal((20, 3))
    with pytest.raises(InputError, match="zero rows"):
        id_correlation(np.r_[X, np.zeros((1, 3))], np.r_[X, X[:1]], normalize=None)
    with pytest.raises(InputError, match="n_permutations"):
        id_correlation(X, X, n_permutations=-1, normalize=None)
