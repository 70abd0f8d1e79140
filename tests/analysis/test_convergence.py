"""Composition-corrected energy MAE (arXiv 2512.03750 Eqs. 1–4) and the accuracy-vs-alignment analysis."""

from __future__ import annotations

import numpy as np
import pytest

from matteralign.analysis import get_analysis
from matteralign.analysis.convergence import (
    composition_residual,
    corrected_errors,
    energy_regression_mae,
    reference_energies,
    reference_label,
)
from matteralign.errors import ConfigError, InputError

from .synthetic_matter import SIGMA, make_context


def test_offsets_per_element_give_zero_error():
    rng = np.random.default_rng(0)
    C = rng.integers(1, 6, size=(40, 3)).astype(float)
    e_ref = rng.normal(size=40) * 3 + C @ [-13.6, -1030.0, -2040.0]
    e_model = e_ref + C @ [1.0, -2.0, 3.5] + 5.0  # another level of theory: per-element offsets + constant
    out = energy_regression_mae(e_ref, e_model, C)
    assert out["mae_ev"] == pytest.approx(0.0, abs=1e-8)
    assert out["mae_ev_per_atom"] == pytest.approx(0.0, abs=1e-8)
    assert out["n"] == 40


def test_hand_example_same_composition():
    """All structures share one composition: the composition model is a constant, so errors are centred."""
    C = np.tile([2.0, 1.0], (4, 1))  # rank-deficient design (columns collinear with the intercept)
    e_ref = np.array([-10.0, -11.0, -9.5, -10.5])
    noise = np.array([1.0, -1.0, 2.0, -2.0])  # mean 0
    out = energy_regression_mae(e_ref, e_ref + noise + 7.0, C)
    assert out["mae_ev"] == pytest.approx(1.5, abs=1e-12)  # mean(|1|, |-1|, |2|, |-2|)
    assert out["mae_ev_per_atom"] == pytest.approx(0.5, abs=1e-12)  # 3 atoms each
    np.testing.assert_allclose(corrected_errors(e_ref, e_ref + noise, C), -noise, atol=1e-12)


def test_noise_gives_the_projected_mae():
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(1)
    C = rng.integers(1, 5, size=(60, 4)).astype(float)
    e_ref = C @ [-3.0, -5.0, -7.0, -1.0] + 0.3 * rng.normal(size=60)
    noise = 0.1 * rng.normal(size=60)
    e_model = e_ref + C @ [0.2, 0.1, -0.3, 0.0] + noise
    # reference: residual of an independent least-squares fit of each side
    res_ref = e_ref - LinearRegression().fit(C, e_ref).predict(C)
    res_mod = e_model - LinearRegression().fit(C, e_model).predict(C)
    expected = np.abs(res_ref - res_mod)
    out = energy_regression_mae(e_ref, e_model, C)
    assert out["mae_ev"] == pytest.approx(expected.mean(), rel=1e-9)
    assert out["mae_ev_per_atom"] == pytest.approx((expected / C.sum(1)).mean(), rel=1e-9)
    # equals the composition-projected noise, and is below the raw noise MAE
    np.testing.assert_allclose(np.abs(composition_residual(noise, C)), expected, atol=1e-10)
    assert out["mae_ev"] < np.abs(noise).mean()


def test_input_errors():
    with pytest.raises(InputError, match="match"):
        composition_residual(np.zeros(3), np.zeros((4, 2)))
    with pytest.raises(InputError, match="finite"):
        composition_residual(np.array([1.0, np.nan, 2.0]), np.ones((3, 1)))
    with pytest.raises(InputError, match="atoms"):
        energy_regression_mae(np.arange(3.0), np.arange(3.0), np.array([[1.0], [0.0], [2.0]]))


def test_reference_label_and_per_atom(tmp_path):
    ctx = make_context(tmp_path, n=30)
    ds = ctx.datasets["molecules"]
    assert reference_label(ds) == "energy_ref_ev"
    with pytest.raises(ConfigError, match="not a label"):
        reference_label(ds, "energy_dft")
    for s in ds:
        s.labels["energy_ref_per_atom_ev"] = s.labels["energy_ref_ev"] / s.n_atoms
    ids = ds.ids[:5]
    np.testing.assert_allclose(reference_energies(ds, ids, "energy_ref_per_atom_ev"),
                               reference_energies(ds, ids, "energy_ref_ev"), rtol=1e-12)  # fmt: skip


def test_convergence_analysis(tmp_path):
    ctx = make_context(tmp_path, n=150)
    res = get_analysis("convergence")(ctx)
    t = res.tables["energy_mae"]
    mol = t[t.dataset == "molecules"].set_index("model")
    assert set(mol.index) == set(SIGMA)
    assert (mol["best_model"] == "lin-a").all()
    for m, s in SIGMA.items():  # Gaussian error: MAE ≈ sigma sqrt(2/pi), slightly reduced by the projection
        assert mol.loc[m, "mae_ev"] == pytest.approx(s * np.sqrt(2 / np.pi), rel=0.25)
    assert mol.loc["lin-a", "cknna_to_best"] == 1.0
    assert mol.loc["tanh-c", "cknna_to_best"] == 0.5 and mol.loc["chemlm", "cknna_to_best"] == 0.3
    assert (mol["n_params"].tolist()) and mol.loc["lin-a", "n_params"] == 5_000_000
    text = "\n".join(res.findings)
    assert (
        "molecules: Spearman correlation between MAE and cknna to lin-a over the other 3 models is -1" in text
    )
    assert len(res.figures) == 2 and all(p.exists() for p in res.figures)


def test_convergence_with_per_atom_reference_matches(tmp_path):
    a = get_analysis("convergence")(make_context(tmp_path / "a", n=60)).tables["energy_mae"]
    ctx = make_context(tmp_path / "b", n=60, params={"reference_label": "energy_ref_per_atom_ev"})
    for ds in ctx.datasets.values():
        for s in ds:
            s.labels["energy_ref_per_atom_ev"] = s.labels.pop("energy_ref_ev") / s.n_atoms
    b = get_analysis("convergence")(ctx).tables["energy_mae"]
    np.testing.assert_allclose(a["mae_ev"], b["mae_ev"], rtol=1e-9)
    assert (b["reference_label"] == "energy_ref_per_atom_ev").all()


def test_convergence_without_energies(tmp_path):
    res = get_analysis("convergence")(make_context(tmp_path, n=30, energies=False))
    assert res.tables == {} and "No dataset" in res.summary


def test_models_share_structures(tmp_path):
    """Models covering most structures are scored on the ones they share; a sparse model on its own."""
    from matteralign.analysis.convergence import model_errors

    ctx = make_context(tmp_path, n=60)
    ids, e = ctx.energies["molecules"]["lin-b"]
    ctx.energies["molecules"]["lin-b"] = (ids[2:], e[2:])  # 58 of 60: still a core model
    ids, e = ctx.energies["molecules"]["chemlm"]
    ctx.energies["molecules"]["chemlm"] = (ids[:20], e[:20])  # sparse: scored on its own 20
    errs = model_errors(ctx, "molecules", "energy_ref_ev")
    assert errs["lin-a"][0] == errs["lin-b"][0] == errs["tanh-c"][0] == ids[2:]
    assert errs["chemlm"][0] == ids[:20]
    t = get_analysis("convergence")(ctx).tables["energy_mae"]
    res = t[t.dataset == "molecules"].set_index("model")
    assert res.loc["lin-a", "n"] == 58 and res.loc["chemlm", "n"] == 20
