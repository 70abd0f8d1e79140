"""Grid baselines: the standardised raw patch and its random projection, against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("xarray")

from matteralign import datasets, models  # noqa: E402
from matteralign.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def weather():
    return datasets.load("weather", n=40, seed=2)


def test_grid_patch_is_the_standardised_patch(weather):
    ex = models.load("grid-patch")
    ids, arrays, skipped = ex.embed_samples(weather)
    assert ids == weather.ids and not skipped
    X = np.concatenate(arrays)
    g = weather[0].grid.grid
    names = g.variables()
    assert X.shape == (40, len(names) * 16) == (40, 27 * 16)
    # by hand for one sample: 2 m temperature standardised over every time and cell of the grid
    s = weather[7]
    t2m = g.surf["2t"].astype(np.float64)
    want = (np.asarray(s.grid)[names.index("surf:2t")] - t2m.mean()) / t2m.std()
    k = names.index("surf:2t")
    np.testing.assert_allclose(X[7].reshape(len(names), 4, 4)[k], want, rtol=1e-5, atol=1e-5)
    q = g.atmos["q"][:, 2].astype(np.float64)  # q on the third level (500 hPa)
    k = names.index("atmos:q@500")
    np.testing.assert_allclose(X[7].reshape(len(names), 4, 4)[k],
                               (np.asarray(s.grid)[k] - q.mean()) / q.std(), rtol=1e-4, atol=1e-5)


def test_grid_random_is_a_seeded_projection(weather):
    patch = np.concatenate(models.load("grid-patch").embed_samples(weather)[1]).astype(np.float64)
    a = np.concatenate(models.load("grid-random", seed=3).embed_samples(weather)[1])
    b = np.concatenate(models.load("grid-random", seed=3).embed_samples(weather)[1])
    c = np.concatenate(models.load("grid-random", seed=4).embed_samples(weather)[1])
    np.testing.assert_array_equal(a, b)
    assert a.shape == (40, 64) and not np.allclose(a, c)
    R = np.random.default_rng(3).standard_normal((64, patch.shape[1])) / np.sqrt(patch.shape[1])
    np.testing.assert_allclose(a, patch @ R.T, rtol=1e-4, atol=1e-4)


def test_grid_models_skip_atoms_samples():
    g2 = datasets.load("g2", n=3)
    ids, arrays, skipped = models.load("grid-patch").embed_samples(g2)
    assert ids == [] and set(skipped) == set(g2.ids) and all("grid" in r for r in skipped.values())
    with pytest.raises(InputError, match="dim must be a positive integer"):
        models.load("grid-random", dim=0)
