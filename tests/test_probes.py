"""Linear probes, baselines and probe transfer on synthetic latents with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from matteralign.errors import InputError
from matteralign.probes import (
    LinearMap,
    LinearProbe,
    TransferProbe,
    composition_matrix,
    cross_validated_probe,
    random_features,
    train_test_indices,
    transfer_matrix,
)


@pytest.fixture(scope="module")
def latent():
    """Latent Z (n, 5); linear view A, nonlinear view B, second linear view A2, random C; labels."""
    rng = np.random.default_rng(7)
    n = 500
    Z = rng.standard_normal((n, 5))
    A = Z @ rng.standard_normal((5, 40)) + 0.3 * rng.standard_normal((n, 40))
    A2 = Z @ rng.standard_normal((5, 24)) + 0.3 * rng.standard_normal((n, 24))
    B = np.tanh(Z @ rng.standard_normal((5, 32))) + 0.1 * rng.standard_normal((n, 32))
    C = rng.standard_normal((n, 30))
    y_lin = Z @ np.array([1.0, -2.0, 0.5, 0.0, 1.5])
    noise = rng.standard_normal(n)
    return {"Z": Z, "A": A, "A2": A2, "B": B, "C": C, "y": y_lin, "noise": noise, "rng": rng}


def test_linear_label_is_decoded(latent):
    res = cross_validated_probe(latent["A"], latent["y"], cv=5, seed=0)
    assert res.r2 > 0.95
    lo, hi = res.r2_ci
    assert lo < res.r2 < hi <= 1.0
    assert len(res.r2_folds) == 5 and res.n == 500 and res.n_dropped == 0
    # MAE is in label units and consistent with the out-of-fold predictions
    assert res.mae == pytest.approx(np.mean(res.mae_folds))
    assert np.isfinite(res.y_pred).all()


def test_noise_label_is_not_decoded(latent):
    res = cross_validated_probe(latent["A"], latent["noise"], cv=5, seed=0)
    lo, hi = res.r2_ci
    assert abs(res.r2) < 0.05
    assert lo <= 0.01  # zero (or the tiny negative bias of held-out R²) is inside the interval
    assert res.alpha_folds.min() >= 1e3  # CV chooses heavy shrinkage when there is nothing to fit


def test_random_representation_does_not_decode(latent):
    R = random_features(500, 40, seed=3)
    assert R.shape == (500, 40)
    np.testing.assert_array_equal(R, random_features(500, 40, seed=3))
    assert cross_validated_probe(R, latent["y"]).r2 < 0.05


def test_cv_alpha_grows_with_label_noise(latent):
    rng = np.random.default_rng(1)
    y = latent["y"]
    e = rng.standard_normal(len(y)) * y.std()
    alphas = [LinearProbe().fit(latent["A"], y + s * e).alpha_ for s in (0.01, 1.0, 10.0)]
    assert alphas[0] < alphas[1] < alphas[2]


def test_probe_equals_scaled_ridge_reference(latent):
    """With a single alpha the probe is ridge on standardised features (target scaling cancels)."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = latent["B"], latent["y"]
    probe = LinearProbe(alphas=[3.0]).fit(X, y)
    ref = make_pipeline(StandardScaler(), Ridge(alpha=3.0)).fit(X, y)
    np.testing.assert_allclose(probe.predict(X), ref.predict(X), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(X @ probe.coef_ + probe.intercept_, probe.predict(X))
    assert probe.score(X, y) == pytest.approx(ref.score(X, y), abs=1e-10)


def test_probe_inner_kfold_and_invariance(latent):
    X, y = latent["A"], latent["y"]
    p1 = LinearProbe(cv=4).fit(X, y)
    # standardisation: rescaling and shifting features changes nothing
    p2 = LinearProbe(cv=4).fit(X * 1000.0 + 7.0, y)
    assert p1.alpha_ == p2.alpha_
    np.testing.assert_allclose(p1.predict(X), p2.predict(X * 1000.0 + 7.0), rtol=1e-6, atol=1e-8)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_probe_passes_sklearn_estimator_checks():
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(LinearProbe(), on_fail=None)
    failed = [r["check_name"] for r in results if r["status"] == "failed"]
    assert failed == []


def test_nan_labels_are_dropped_and_counted(latent):
    y = latent["y"].copy()
    y[:37] = np.nan
    res = cross_validated_probe(latent["A"], y)
    assert res.n == 463 and res.n_dropped == 37
    assert res.mask.sum() == 463 and np.isnan(res.y_pred).sum() == 0
    full = cross_validated_probe(latent["A"][37:], latent["y"][37:])
    # same kept rows and seed -> identical folds -> identical scores
    np.testing.assert_allclose(res.r2_folds, full.r2_folds)


def test_same_folds_for_all_representations(latent):
    y = latent["y"]
    a = cross_validated_probe(latent["A"], y, seed=4)
    b = cross_validated_probe(latent["A"][:, :10], y, seed=4)
    # out-of-fold predictions cover the same rows in the same folds: recompute fold MAE from predictions
    from sklearn.model_selection import KFold

    for k, (_, te) in enumerate(KFold(5, shuffle=True, random_state=4).split(np.zeros((500, 1)))):
        assert a.mae_folds[k] == pytest.approx(np.abs(y[te] - a.y_pred[te]).mean())
        assert b.mae_folds[k] == pytest.approx(np.abs(y[te] - b.y_pred[te]).mean())


def test_probe_input_errors(latent):
    with pytest.raises(InputError, match="labels"):
        cross_validated_probe(latent["A"], latent["y"][:10])
    with pytest.raises(InputError, match="NaN"):
        LinearProbe().fit(latent["A"], np.full(500, np.nan))
    X = latent["A"].copy()
    X[3, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        cross_validated_probe(X, latent["y"])
    with pytest.raises(InputError, match="alphas"):
        LinearProbe(alphas=[-1.0]).fit(latent["A"], latent["y"])
    with pytest.raises(InputError, match="non-NaN"):
        y = np.full(500, np.nan)
        y[:5] = 1.0
        cross_validated_probe(latent["A"], y)


def test_composition_matrix_counts_and_fractions():
    from ase import Atoms

    h2o = Atoms("H2O", positions=np.zeros((3, 3)))
    ch4 = Atoms("CH4", positions=np.zeros((5, 3)))
    C, el = composition_matrix([h2o, ch4])
    assert el == [1, 6, 8]
    np.testing.assert_array_equal(C, [[2, 0, 1], [4, 1, 0]])
    F, _ = composition_matrix([h2o, ch4], kind="fractions")
    np.testing.assert_allclose(F, [[2 / 3, 0, 1 / 3], [0.8, 0.2, 0]])
    C2, el2 = composition_matrix([[8, 1, 1]], elements=[1, 6, 8])
    np.testing.assert_array_equal(C2, [[2, 0, 1]])
    with pytest.raises(InputError, match="Z=8"):
        composition_matrix([h2o], elements=[1, 6])
    with pytest.raises(InputError, match="atoms"):
        composition_matrix([None])


# ----------------------------------------------------------------------------- transfer
def test_transfer_between_linear_views_matches_own(latent):
    df = transfer_matrix({"A": latent["A"], "A2": latent["A2"], "C": latent["C"]}, latent["y"], seed=0)
    assert set(df.columns) >= {"source", "target", "r2_transfer", "r2_target_own", "r2_source_own"}
    assert len(df) == 6
    row = df[(df.source == "A") & (df.target == "A2")].iloc[0]
    assert row.r2_source_own > 0.95 and row.r2_target_own > 0.95
    assert row.r2_transfer > 0.93
    assert abs(row.r2_transfer - row.r2_target_own) < 0.03
    # to / from a random representation nothing transfers
    for src, tgt in (("A", "C"), ("C", "A")):
        r = df[(df.source == src) & (df.target == tgt)].iloc[0]
        assert r.r2_transfer < 0.05


def test_transfer_probe_api(latent):
    tr, te = train_test_indices(500, test_size=0.3, seed=2)
    assert len(te) == 150 and np.intersect1d(tr, te).size == 0 and len(tr) + len(te) == 500
    A, A2, y = latent["A"], latent["A2"], latent["y"]
    tp = TransferProbe().fit(A[tr], A2[tr], y[tr])
    assert tp.score(A2[te], y[te]) > 0.93
    # the map alone reproduces A from A2 well (same latent, both linear)
    M = LinearMap().fit(A2[tr], A[tr])
    resid = A[te] - M.predict(A2[te])
    assert 1 - resid.var() / A[te].var() > 0.9


def test_transfer_cannot_see_test_rows(latent):
    """Corrupting every test row of every representation and label leaves all fitted maps and probes unchanged."""
    reps = {"A": latent["A"], "B": latent["B"], "C": latent["C"]}
    y = latent["y"]
    df1, m1 = transfer_matrix(reps, y, seed=5, return_models=True)
    te = m1["test_index"]
    rng = np.random.default_rng(99)
    bad = {k: v.copy() for k, v in reps.items()}
    for v in bad.values():
        v[te] = rng.standard_normal((len(te), v.shape[1])) * 1e6
    ybad = y.copy()
    ybad[te] = rng.standard_normal(len(te)) * 1e6
    df2, m2 = transfer_matrix(bad, ybad, seed=5, return_models=True)
    np.testing.assert_array_equal(m1["test_index"], m2["test_index"])
    for key, M in m1["maps"].items():
        np.testing.assert_array_equal(M.coef_, m2["maps"][key].coef_)
        np.testing.assert_array_equal(M.intercept_, m2["maps"][key].intercept_)
        assert M.alpha_ == m2["maps"][key].alpha_
    for key, P in m1["probes"].items():
        np.testing.assert_array_equal(P.coef_, m2["probes"][key].coef_)
        assert P.alpha_ == m2["probes"][key].alpha_
    # ... while the scores, which are computed on the test rows, do change
    assert not np.allclose(df1["r2_transfer"], df2["r2_transfer"])


def test_transfer_explicit_train_index_and_multiple_labels(latent):
    reps = {"A": latent["A"], "A2": latent["A2"]}
    y2 = latent["noise"].copy()
    y2[::7] = np.nan
    tr = np.arange(350)
    df, m = transfer_matrix(reps, {"lin": latent["y"], "noise": y2}, train_index=tr, return_models=True)
    np.testing.assert_array_equal(m["test_index"], np.arange(350, 500))
    assert sorted(df["label"].unique()) == ["lin", "noise"]
    noise = df[df.label == "noise"]
    assert (noise["r2_transfer"] < 0.05).all()
    assert (noise["n_train"] == 300).all()  # 350 train rows minus the 50 NaN labels among them


def test_transfer_input_errors(latent):
    with pytest.raises(InputError, match="at least two"):
        transfer_matrix({"A": latent["A"]}, latent["y"])
    with pytest.raises(InputError, match="same samples"):
        transfer_matrix({"A": latent["A"], "B": latent["B"][:100]}, latent["y"])
    with pytest.raises(InputError, match="test_size"):
        transfer_matrix({"A": latent["A"], "B": latent["B"]}, latent["y"], test_size=1.5)


def test_batched_probes_equal_single_label_probes(latent):
    from matteralign.probes import cross_validated_probes

    y_nan = latent["y"] * 0.5 + latent["noise"]
    y_nan[::9] = np.nan
    labels = {"lin": latent["y"], "noise": latent["noise"], "mixed_nan": y_nan, "sq": latent["Z"][:, 0] ** 2}
    for inner in (None, 3):
        batch = cross_validated_probes(latent["B"], labels, cv=4, seed=2, inner_cv=inner)
        assert list(batch) == list(labels)
        for k, y in labels.items():
            one = cross_validated_probe(latent["B"], y, cv=4, seed=2, inner_cv=inner)
            np.testing.assert_allclose(batch[k].r2_folds, one.r2_folds, rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(batch[k].mae_folds, one.mae_folds, rtol=1e-8)
            np.testing.assert_array_equal(batch[k].alpha_folds, one.alpha_folds)
            assert batch[k].n == one.n and batch[k].n_dropped == one.n_dropped
    assert batch["mixed_nan"].n_dropped == 56
    with pytest.raises(InputError, match="'few'"):
        few = np.full(500, np.nan)
        few[:3] = 1.0
        cross_validated_probes(latent["A"], {"few": few})


def test_transfer_probes_equal_individually_fitted_probes(latent):
    """The batched probes inside transfer_matrix are exactly LinearProbe fits on the training rows."""
    y2 = latent["noise"].copy()
    y2[::5] = np.nan
    reps = {"A": latent["A"], "B": latent["B"]}
    _, m = transfer_matrix(reps, {"lin": latent["y"], "n": y2}, seed=1, return_models=True)
    tr = m["train_index"]
    for (lab, a), P in m["probes"].items():
        y = (latent["y"] if lab == "lin" else y2)[tr]
        ok = ~np.isnan(y)
        ref = LinearProbe().fit(reps[a][tr][ok], y[ok])
        assert P.alpha_ == ref.alpha_
        np.testing.assert_allclose(P.coef_, ref.coef_, rtol=1e-8, atol=1e-12)
        assert P.intercept_ == pytest.approx(ref.intercept_, rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("standardize", [True, False])
def test_leave_one_out_ridge_equals_sklearn_ridgecv(latent, standardize):
    """The Gram-eigendecomposition leave-one-out path picks the same alpha and weights as sklearn's RidgeCV."""
    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import StandardScaler

    from matteralign.probes import DEFAULT_ALPHAS

    X = latent["B"] * np.linspace(0.5, 3.0, latent["B"].shape[1]) + 2.0
    for y in (latent["y"], latent["y"] + 2 * latent["noise"], latent["noise"]):
        probe = LinearProbe(standardize=standardize).fit(X, y)
        Xs = StandardScaler().fit_transform(X) if standardize else X
        ref = RidgeCV(alphas=DEFAULT_ALPHAS).fit(Xs, (y - y.mean()) / y.std())
        assert probe.alpha_ == ref.alpha_
        ref_pred = ref.predict(Xs) * y.std() + y.mean()
        np.testing.assert_allclose(probe.predict(X), ref_pred, rtol=1e-7, atol=1e-8)
    # multi-output map with one shared alpha, as RidgeCV(alpha_per_target=False)
    M = LinearMap().fit(latent["A"], latent["B"])
    Xs = StandardScaler().fit_transform(latent["A"])
    ref = RidgeCV(alphas=DEFAULT_ALPHAS).fit(Xs, latent["B"])
    assert M.alpha_ == ref.alpha_
    np.testing.assert_allclose(M.predict(latent["A"]), ref.predict(Xs), rtol=1e-7, atol=1e-8)


def test_probe_wide_features_use_sklearn_path():
    """d > n goes through RidgeCV directly and still fits."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 120))
    y = X[:, 0] * 2 + 0.01 * rng.standard_normal(40)
    p = LinearProbe().fit(X, y)
    assert p.coef_.shape == (120,) and p.score(X, y) > 0.5


def test_transfer_to_a_rotated_rescaled_copy_loses_nothing(latent):
    """B = 3.7 * A Q (Q orthogonal): the map B -> A is exact, so transfer equals A's own probe."""
    A = latent["A"]
    rng = np.random.default_rng(5)
    Q, _ = np.linalg.qr(rng.standard_normal((A.shape[1], A.shape[1])))
    df = transfer_matrix({"A": A, "B": 3.7 * A @ Q}, latent["y"], seed=0)
    row = df[(df.source == "A") & (df.target == "B")].iloc[0]
    assert row.r2_transfer == pytest.approx(row.r2_source_own, abs=2e-3)
    assert row.r2_transfer == pytest.approx(row.r2_target_own, abs=2e-3)
