"""Protein structures: the PDB/mmCIF reader (gemmi) and the bundled ``proteins`` set."""

from __future__ import annotations

import numpy as np
import pytest

from matteralign import datasets
from matteralign.errors import DatasetError, InputError

# Two alanines and a glycine (backbone + CB), a hydrogen, an alternative location and a water; REMARK 2
# gives the resolution.
PDB = """\
HEADER    TEST PROTEIN                            01-JAN-00   1TST
REMARK   2 RESOLUTION.    1.80 ANGSTROMS.
ATOM      1  N   ALA A   1       0.000   0.000   0.000  1.00  0.00           N
ATOM      2  CA  ALA A   1       1.458   0.000   0.000  1.00  0.00           C
ATOM      3  C   ALA A   1       2.009   1.420   0.000  1.00  0.00           C
ATOM      4  O   ALA A   1       1.251   2.390   0.000  1.00  0.00           O
ATOM      5  CB  ALA A   1       1.988  -0.773  -1.199  1.00  0.00           C
ATOM      6  H   ALA A   1      -0.500   0.800   0.000  1.00  0.00           H
ATOM      7  N   GLY A   2       3.332   1.536   0.000  1.00  0.00           N
ATOM      8  CA AGLY A   2       3.988   2.839   0.000  0.60  0.00           C
ATOM      9  CA BGLY A   2       3.900   2.900   0.100  0.40  0.00           C
ATOM     10  C   GLY A   2       5.504   2.693   0.000  1.00  0.00           C
ATOM     11  O   GLY A   2       6.030   1.580   0.000  1.00  0.00           O
ATOM     12  N   ALA A   3       6.200   3.800   0.000  1.00  0.00           N
ATOM     13  CA  ALA A   3       7.650   3.800   0.000  1.00  0.00           C
ATOM     14  C   ALA A   3       8.200   5.200   0.000  1.00  0.00           C
ATOM     15  O   ALA A   3       7.450   6.170   0.000  1.00  0.00           O
HETATM   16  O   HOH A 101      10.000  10.000  10.000  1.00  0.00           O
END
"""


@pytest.fixture
def pdb_file(tmp_path):
    p = tmp_path / "1tst.pdb"
    p.write_text(PDB)
    return p


def test_radius_of_gyration_reference_values():
    import ase

    from matteralign.datasets.protein import radius_of_gyration

    # two equal masses d apart: Rg = d / 2; a C and an O: the centre of mass lies nearer the O
    assert radius_of_gyration(ase.Atoms("C2", positions=[[0, 0, 0], [3.0, 0, 0]])) == pytest.approx(1.5, abs=1e-12)
    m_c, m_o = ase.data.atomic_masses[6], ase.data.atomic_masses[8]
    d = 2.0
    expected = d * np.sqrt(m_c * m_o) / (m_c + m_o)
    assert radius_of_gyration(ase.Atoms("CO", positions=[[0, 0, 0], [0, 0, d]])) == pytest.approx(expected, abs=1e-12)
    assert radius_of_gyration(ase.Atoms("N", positions=[[1, 2, 3]])) == 0.0
    with pytest.raises(InputError, match="no atoms"):
        radius_of_gyration(ase.Atoms())


def test_reader_gives_sequence_heavy_atoms_labels(pdb_file):
    pytest.importorskip("gemmi")
    from matteralign.datasets.protein import backbone, radius_of_gyration

    ds = datasets.load(pdb_file, min_residues=1)
    assert len(ds) == 1
    s = ds[0]
    assert s.id == "1tst:A" and s.sequence == "AGA"  # entry id: the file's name when no _entry.id is given
    # 13 heavy atoms (15 atoms - 1 H - 1 altloc B); the water is gone
    assert len(s.atoms) == 13
    assert sorted(s.atoms.numbers.tolist()) == [6] * 7 + [7] * 3 + [8] * 3
    assert list(s.atoms.arrays["atom_name"][:5]) == ["N", "CA", "C", "O", "CB"]
    assert s.atoms.arrays["residue_index"].tolist() == [0] * 5 + [1] * 4 + [2] * 4
    np.testing.assert_allclose(s.atoms.positions[6], [3.988, 2.839, 0.0], atol=1e-3)  # altloc A kept
    assert s.labels["resolution_a"] == pytest.approx(1.8)
    assert s.labels["n_residues"] == 3 and s.labels["n_atoms"] == 13
    assert s.labels["radius_of_gyration_a"] == pytest.approx(radius_of_gyration(s.atoms))
    bb = backbone(s.atoms)
    assert bb.shape == (3, 4, 3) and not np.isnan(bb).any()
    np.testing.assert_allclose(bb[2, 1], [7.650, 3.800, 0.0], atol=1e-3)


def test_reader_mmcif_equals_pdb_and_per_structure(pdb_file, tmp_path):
    gemmi = pytest.importorskip("gemmi")
    st = gemmi.read_structure(str(pdb_file))
    st.setup_entities()
    cif = tmp_path / "1tst.cif"
    st.make_mmcif_document().write_file(str(cif))
    a = datasets.load(pdb_file, min_residues=1)[0]
    b = datasets.load(cif, min_residues=1)[0]
    assert a.sequence == b.sequence
    for key in ("n_residues", "n_atoms", "radius_of_gyration_a"):
        assert a.labels[key] == pytest.approx(b.labels[key])
    np.testing.assert_allclose(a.atoms.positions, b.atoms.positions)
    whole = datasets.load(pdb_file, per="structure", min_residues=1)
    assert whole.ids == ["1tst"] and whole[0].sequence == "AGA" and whole[0].labels["n_chains"] == 1


def test_reader_errors(pdb_file, tmp_path):
    pytest.importorskip("gemmi")
    from matteralign.datasets.protein import read_structure

    with pytest.raises(DatasetError, match="no protein chain with at least 20"):
        datasets.load(pdb_file)
    with pytest.raises(InputError, match="per must be"):
        read_structure(pdb_file, per="residue")
    with pytest.raises(DatasetError, match="does not exist"):
        datasets.load(tmp_path / "missing.pdb")
    bad = tmp_path / "bad.cif"
    bad.write_text("data_x\nloop_\n_atom_site.id\n")
    with pytest.raises(DatasetError):
        datasets.load(bad)


def test_bundled_proteins():
    ds = datasets.load("proteins")
    assert "proteins" in datasets.names()
    assert len(ds) == 27
    assert ds.ids[:2] == ["2GTL:A", "2GTL:B"] and ds.ids[-1] == "7OK9:L"
    for s in ds:
        assert len(s.sequence) == s.labels["n_residues"] == s.atoms.arrays["residue_index"].max() + 1
        assert s.labels["n_atoms"] == len(s.atoms) and set(s.atoms.numbers) <= {6, 7, 8, 16, 34}
        assert 10.0 < s.labels["radius_of_gyration_a"] < 60.0
    res = {s.meta["entry"]: s.labels["resolution_a"] for s in ds}
    assert res == {"2GTL": pytest.approx(3.5), "7OK9": pytest.approx(3.36)}
    assert ds.by_id("2GTL:A").sequence.startswith("DCCSYEDRREIRHIWDDVWSSSFTDRRVAI")
    assert ds.meta["script"] == "scripts/build_proteins.py"


def test_bundled_proteins_equal_a_fresh_read_of_the_tmtools_files():
    pytest.importorskip("gemmi")
    pytest.importorskip("tmtools")
    from importlib import resources

    fresh = datasets.load(str(resources.files("tmtools").joinpath("data", "7ok9.cif")))
    bundled = datasets.load("proteins")
    for s in fresh:
        b = bundled.by_id(s.id)
        assert b.sequence == s.sequence
        np.testing.assert_allclose(b.atoms.positions, s.atoms.positions, atol=1e-3)  # float32 storage
        assert b.labels["radius_of_gyration_a"] == pytest.approx(s.labels["radius_of_gyration_a"], abs=1e-3)
