"""The builders of the bundled datasets: deterministic, physically sane, and round-tripping through a bundle."""

from __future__ import annotations

import numpy as np
import pytest

from matteralign.datasets import build
from matteralign.datasets._format import pack_atoms
from matteralign.datasets.builtin import load_bundle

pytest.importorskip("tblite")
pytest.importorskip("rdkit")


@pytest.fixture(scope="module")
def nci_pairs():
    pairs = build.nci_smiles()
    assert len(pairs) == 4999 and pairs[0] == ("nci00001", "CC1=CC(=O)C=CC1=O")
    return pairs[:12]


def _arrays(result):
    out = pack_atoms(result.structures)
    out.update({f"label:{k}": np.asarray(v) for k, v in result.labels.items()})
    return out


def test_molecules_deterministic_and_sane(nci_pairs):
    a = build.build_molecules(nci_pairs, seed=7)
    b = build.build_molecules(nci_pairs, seed=7)
    assert a.ids == b.ids and a.strings == b.strings
    for key, value in _arrays(a).items():
        if key.startswith("label:"):  # xTB: equal up to the summation order of its linear algebra
            np.testing.assert_allclose(value, _arrays(b)[key], rtol=1e-12, err_msg=key)
        else:
            np.testing.assert_array_equal(value, _arrays(b)[key], err_msg=key)
    assert a.metadata["n_input"] == 12
    assert a.metadata["n_built"] + sum(a.metadata["dropped"].values()) == 12
    gap = np.asarray(a.labels["gap_xtb_ev"])
    assert np.all(np.isfinite(a.labels["energy_xtb_ev"])) and np.all(gap > 0)
    np.testing.assert_allclose(gap, np.subtract(a.labels["lumo_xtb_ev"], a.labels["homo_xtb_ev"]))
    assert all(not s.pbc.any() and s.cell.rank == 0 for s in a.structures)
    # positions are float32-exact, so the bundle reproduces the geometry the labels were computed on
    pos = np.concatenate([s.positions for s in a.structures])
    np.testing.assert_array_equal(pos, pos.astype(np.float32).astype(np.float64))


def test_molecule_record_reference_values():
    """Benzene: GFN2-xTB gap ≈ 4.9 eV (notes), no dipole, 12 atoms, MW 78.11, TPSA 0."""
    rec, reason = build.molecule_record("c1ccccc1.Cl", seed=0)
    assert reason is None and rec["smiles"] == "c1ccccc1"  # largest fragment kept
    lab = rec["labels"]
    assert lab["gap_xtb_ev"] == pytest.approx(4.9, abs=0.3)
    assert lab["dipole_xtb_debye"] < 0.05
    assert lab["n_atoms"] == 12 and lab["heavy_atoms"] == 6 and lab["ring_count"] == 1
    assert lab["mol_weight"] == pytest.approx(78.114, abs=1e-2) and lab["tpsa"] == 0.0
    assert lab["energy_xtb_ev"] == pytest.approx(lab["energy_xtb_per_atom_ev"] * 12)
    # GFN2 benzene total energy is about -15.87 Hartree
    assert lab["energy_xtb_ev"] / build.HARTREE_EV == pytest.approx(-15.87, abs=0.05)
    assert rec["selfies"] == "[C][=C][C][=C][C][=C][Ring1][=Branch1]"
    assert build.molecule_record("C1CC", seed=0) == (None, "smiles_parse")
    assert build.molecule_record("CCCCCCCCCC", max_atoms=10) == (None, "too_many_atoms")


@pytest.fixture(scope="module")
def prototypes():
    protos = build.aflow_prototypes()
    assert len(protos) == 288
    return protos


@pytest.mark.slow
def test_crystals_deterministic_and_sane(prototypes):
    small = [p for p in prototypes if len(p["atoms"]) <= 3][:3]
    big = next(p for p in prototypes if len(p["atoms"]) > 64)
    kw = dict(seed=3, n_variants=4, xtb_max_atoms=3, xtb_budget_s=60.0)
    a = build.build_crystals(small + [big], **kw)
    b = build.build_crystals(small + [big], **kw)
    assert a.ids == b.ids and a.sample_meta == b.sample_meta and len(a.ids) == 12
    for key, value in _arrays(a).items():
        np.testing.assert_allclose(value, _arrays(b)[key], rtol=1e-12, err_msg=key)
    np.testing.assert_array_equal(np.concatenate([s.positions for s in a.structures]),
                                  np.concatenate([s.positions for s in b.structures]))
    assert a.metadata["dropped_prototypes"] == {"too_many_atoms": 1}
    assert a.sample_meta["transformation"][0] == "prototype"
    assert all(s.pbc.all() for s in a.structures)
    density = np.asarray(a.labels["density_g_cm3"])
    assert np.all((density > 0.05) & (density < 25))
    energy = np.asarray(a.labels["energy_xtb_per_atom_ev"])
    has = np.asarray(a.labels["has_xtb_energy"])
    np.testing.assert_array_equal(has, np.isfinite(energy))
    assert has.sum() >= 6 and np.all(energy[has == 1] < 0)
    cohesive = np.asarray(a.labels["cohesive_energy_xtb_ev"])
    np.testing.assert_array_equal(np.isfinite(cohesive), has == 1)
    assert np.all((cohesive[has == 1] >= -15) & (cohesive[has == 1] <= 1))
    # a subset of prototypes gives the same variants (per-prototype seeds)
    c = build.build_crystals(small[:1], **kw)
    np.testing.assert_array_equal(c.structures[3].positions, a.structures[3].positions)


def test_variants_are_physical(prototypes):
    rng = np.random.default_rng(0)
    proto = next(p for p in prototypes if p["aflow"] == "AB_hP4_186_b_b")  # wurtzite ZnS
    variants = build.crystal_variants(proto["atoms"], n_variants=30, rng=rng)
    subst = [how for _, how in variants if how.startswith("subst")]
    assert subst and all(("Zn->Cd" in h) or ("S->Se" in h) for h in subst)
    d0 = build._min_distance(proto["atoms"])
    for atoms, how in variants:
        assert build._min_distance(atoms) > 0.7 * d0, how
        assert len(atoms) == len(proto["atoms"])
    assert build._substitution_candidates(1) == [] and 86 not in build._substitution_candidates(54)


def test_bundle_round_trip(tmp_path, prototypes):
    result = build.build_crystals(prototypes[:2], seed=0, n_variants=2, xtb=False)
    result.metadata["note"] = "test"
    path = tmp_path / "c.npz"
    result.save(path)
    ds = load_bundle(path)
    assert ds.name == "crystals" and ds.ids == result.ids and ds.meta["note"] == "test"
    for s, atoms in zip(ds, result.structures, strict=True):
        np.testing.assert_array_equal(s.atoms.positions, atoms.positions)
        np.testing.assert_array_equal(s.atoms.cell[:], atoms.cell[:])
        assert s.atoms.pbc.all() and "cell: " in s.text
    assert "energy_xtb_per_atom_ev" not in ds[0].labels  # NaN labels are left out
    assert ds[0].labels["has_xtb_energy"] == 0.0
    assert ds[1].meta["prototype"] == prototypes[0]["aflow"]


def test_molecules_chunked_parallel_and_cached_builds_agree(nci_pairs, tmp_path):
    serial = build.build_molecules(nci_pairs[:6], seed=1)
    parallel = build.build_molecules(nci_pairs[:6], seed=1, processes=2, chunk_size=2, cache_dir=tmp_path)
    cached = build.build_molecules(nci_pairs[:6], seed=1, processes=1, chunk_size=2, cache_dir=tmp_path)
    assert serial.ids == parallel.ids == cached.ids
    assert cached.metadata["chunks_from_cache"] == 3 and parallel.metadata["chunks_from_cache"] == 0
    for other in (parallel, cached):
        np.testing.assert_array_equal(_arrays(serial)["positions"], _arrays(other)["positions"])
        for key, value in serial.labels.items():
            np.testing.assert_allclose(value, other.labels[key], rtol=1e-12, err_msg=key)


def test_radical_homo_is_the_singly_occupied_orbital():
    ethyl, _ = build.molecule_record("C[CH2]", seed=0)  # 17 electrons
    methyl, _ = build.molecule_record("[CH3]", seed=0)  # 9 electrons
    for rec in (ethyl, methyl):
        lab = rec["labels"]
        # the SOMO of an alkyl radical lies well above a C-H bonding orbital and the gap is large
        assert -10 < lab["homo_xtb_ev"] < -7 and lab["gap_xtb_ev"] > 8
