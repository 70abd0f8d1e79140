"""The bundled datasets: counts, label sanity, views, provenance; ASE collections; registry and CLI."""

from __future__ import annotations

import numpy as np
import pytest

from matteralign import datasets
from matteralign.datasets.builtin import data_path


@pytest.fixture(scope="module")
def molecules():
    return datasets.load("molecules")


@pytest.fixture(scope="module")
def crystals():
    return datasets.load("crystals")


def test_molecules_counts_and_labels(molecules):
    meta = molecules.meta
    assert len(molecules) >= 4500
    assert meta["n_built"] == len(molecules)
    assert meta["n_input"] == 4999 and meta["n_built"] + sum(meta["dropped"].values()) == 4999
    assert set(meta["dropped_ids"].values()) <= {"smiles_parse", "too_many_atoms", "embed", "xtb"}
    assert meta["xtb_method"] == "GFN2-xTB" and meta["versions"]["tblite"] == "0.8.0"
    energy, gap = molecules.labels("energy_xtb_ev"), molecules.labels("gap_xtb_ev")
    assert np.all(np.isfinite(energy)) and np.all(energy < 0)
    assert np.all(gap > 0) and np.all(gap < 25)
    np.testing.assert_allclose(gap, molecules.labels("lumo_xtb_ev") - molecules.labels("homo_xtb_ev"))
    dip = molecules.labels("dipole_xtb_debye")
    assert np.all(np.isfinite(dip)) and np.all(dip >= 0) and np.all(dip < 100)
    assert np.all(molecules.labels("n_atoms") == [s.n_atoms for s in molecules])
    for name in ("mol_weight", "tpsa", "logp", "h_donors", "h_acceptors", "rotatable_bonds", "ring_count",
                 "heavy_atoms"):
        assert np.all(np.isfinite(molecules.labels(name))), name
    assert set(meta["units"]) >= set(molecules.label_names())


def test_molecules_views(molecules):
    from rdkit import Chem

    s = molecules.by_id("nci00001")  # 2-methyl-1,4-benzoquinone
    assert s.smiles == Chem.MolToSmiles(Chem.MolFromSmiles("CC1=CC(=O)C=CC1=O"))
    assert s.atoms.get_chemical_formula() == "C7H6O2"
    assert not s.atoms.pbc.any() and s.atoms.cell.rank == 0
    assert s.selfies and s.selfies.startswith("[C]")
    assert s.text.startswith("numbers: 6 6 6") and "cell" not in s.text
    assert all(x.smiles for x in molecules[:200]) and all(x.atoms is not None for x in molecules[:200])
    assert s.meta["optimizer"] in {"MMFF94", "UFF", "none"}


def test_crystals_counts_and_labels(crystals):
    meta = crystals.meta
    assert len(crystals) >= 3000 and meta["max_atoms"] == 64
    assert max(s.n_atoms for s in crystals) <= 64
    density = crystals.labels("density_g_cm3")
    assert np.all((density > 0.05) & (density < 25))
    vpa = crystals.labels("volume_per_atom_a3")
    assert np.all((vpa > 2) & (vpa < 200))
    energy, has = crystals.labels("energy_xtb_per_atom_ev"), crystals.labels("has_xtb_energy")
    np.testing.assert_array_equal(np.isfinite(energy), has == 1)
    assert has.sum() >= 100 and np.all(energy[has == 1] < 0)
    cohesive = crystals.labels("cohesive_energy_xtb_ev")
    np.testing.assert_array_equal(np.isfinite(cohesive), has == 1)
    assert np.all((cohesive[has == 1] >= -15) & (cohesive[has == 1] <= 1))
    assert np.median(cohesive[has == 1]) < -1
    assert meta["xtb_method"] == "GFN1-xTB" and meta["xtb"]["status"]["ok"] == has.sum()
    assert all(s.n_atoms <= meta["xtb"]["max_atoms"] for s in crystals if s.labels["has_xtb_energy"])


def test_crystals_views(crystals):
    s = crystals[0]
    assert s.atoms.pbc.all() and s.atoms.get_volume() > 0
    assert s.meta["transformation"] == "prototype" and s.meta["prototype"]
    assert "cell: " in s.text and "pbc: True True True" in s.text
    density = s.atoms.get_masses().sum() * 1.66053906660 / s.atoms.get_volume()
    assert s.labels["density_g_cm3"] == pytest.approx(density, rel=1e-6)
    kinds = {x.meta["transformation"].split("(")[0] for x in crystals}
    assert {"prototype", "subst", "strain"} <= kinds


def test_bundle_files_are_small():
    for name in ("molecules.npz", "crystals.npz"):
        size = data_path(name).stat().st_size
        assert 100_000 < size < 10_000_000, (name, size)


def test_subsample_reproducible(molecules):
    a = datasets.load("molecules", n=100, seed=5, text=False)
    b = molecules.subsample(100, seed=5)
    c = molecules.subsample(100, seed=6)
    assert a.ids == b.ids and a.ids != c.ids and len(a) == 100
    assert a.meta["subsample"] == {"n": 100, "seed": 5}
    assert set(a.ids) <= set(molecules.ids)
    np.testing.assert_array_equal(a.labels("gap_xtb_ev"), molecules.select(a.ids).labels("gap_xtb_ev"))


def test_ase_collections():
    g2, s22, dcdft = (datasets.load(n) for n in ("g2", "s22", "dcdft"))
    assert (len(g2), len(s22), len(dcdft)) == (162, 22, 71)
    water = s22.by_id("s22:Water_dimer")
    assert water.labels["interaction_energy_ev"] == pytest.approx(-0.218, abs=0.01)  # −5.0 kcal/mol
    assert np.all(s22.labels("interaction_energy_ev") < 0)
    cu = dcdft.by_id("dcdft:Cu")
    assert cu.atoms.pbc.all() and cu.labels["bulk_modulus_wien2k_gpa"] == pytest.approx(141, abs=5)
    assert cu.labels["volume_wien2k_a3"] == pytest.approx(11.95, abs=0.2)
    ch4 = g2.by_id("g2:CH4")
    assert ch4.atoms.get_chemical_formula() == "CH4" and not ch4.atoms.pbc.any() and ch4.text


def test_registry_listing():
    assert datasets.names() == ["crystals", "dcdft", "g2", "molecules", "proteins", "s22", "weather"]
    info = {i.name: i for i in datasets.describe()}
    assert {i.kind for i in info.values()} == {"bundled", "reader"}
    assert set(datasets.readers()) == {"extxyz", "asedb", "aselmdb", "qm9", "smiles_csv", "fasta", "era5", "structure"}
    assert "gap_xtb_ev" in info["molecules"].labels


def test_cli_list_datasets(capsys):
    from matteralign.cli import main

    main(["list", "datasets"])
    out = capsys.readouterr().out
    for name in ("molecules", "crystals", "g2", "s22", "dcdft", "aselmdb", "qm9", "fasta"):
        assert name in out


def test_subsample_nested(molecules):
    """Subsets of one seed are nested (the first n of one seeded permutation), in dataset order."""
    perm = np.random.default_rng(3).permutation(len(molecules))
    for n in (1, 20, 300, 1000):
        sub = molecules.subsample(n, seed=3)
        assert sub.ids == [molecules[int(i)].id for i in np.sort(perm[:n])]
    small, large = molecules.subsample(300, seed=3), molecules.subsample(1000, seed=3)
    assert set(small.ids) < set(large.ids)
    assert [i for i in large.ids if i in set(small.ids)] == small.ids  # the same order inside the larger one
    assert not set(molecules.subsample(300, seed=4).ids) <= set(large.ids)


def test_seeded_order_prefixes_are_nested(molecules):
    """The first m of a subsample's seeded order are the same samples for every larger subsample of the seed and
    for the whole dataset subsampled with it; the study's energy subset (first usable in that order) is nested."""
    from matteralign.study import Study
    from matteralign.study_runner import _energy_subset

    perm = np.random.default_rng(3).permutation(len(molecules))
    whole = molecules.subsample(None, seed=3)
    assert [whole[int(i)].id for i in whole.seeded_order()] == [molecules[int(i)].id for i in perm]
    for n in (50, 300, 1000):
        sub = molecules.subsample(n, seed=3)
        assert [sub[int(i)].id for i in sub.seeded_order()] == [molecules[int(i)].id for i in perm[:n]]
    study = Study.from_dict({"name": "e", "seed": 3, "models": ["composition"], "energy_samples": 40,
                             "datasets": [{"name": "molecules", "n": 300}]})
    subsets = [[s.id for s in _energy_subset(study, molecules.subsample(n, seed=3))] for n in (300, 1000, None)]
    assert len(subsets[0]) == 40 and subsets[0] == subsets[1] == subsets[2]
    labels = molecules.subsample(300, seed=3)
    assert all(np.isfinite(labels[labels.ids.index(i)].labels["energy_xtb_ev"]) for i in subsets[0])
