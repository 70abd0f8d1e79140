"""Round trips and bad input for every file reader (files written in tmp_path by the tests)."""

from __future__ import annotations

import numpy as np
import pytest

from matteralign import datasets
from matteralign.errors import DatasetError, UnknownNameError


@pytest.fixture
def frames():
    from ase import Atoms
    from ase.build import bulk, molecule
    from ase.calculators.singlepoint import SinglePointCalculator

    water = molecule("H2O")
    water.info.update({"id": "water", "dipole_d": 1.85, "tag": "text is not a label"})
    cu = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    cu.info["bandgap"] = 0.0
    cu.calc = SinglePointCalculator(cu, energy=-7.5, forces=np.zeros((2, 3)))
    h2 = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    return [water, cu, h2]


def _same_structure(a, b):
    assert a.get_chemical_symbols() == b.get_chemical_symbols()
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-6)
    assert list(a.pbc) == list(b.pbc)
    if a.pbc.any():
        np.testing.assert_allclose(a.cell[:], b.cell[:], atol=1e-6)


# --------------------------------------------------------------------------------------------- extxyz


def test_extxyz_round_trip(tmp_path, frames):
    from ase.io import write

    path = tmp_path / "mix.extxyz"
    write(path, frames, format="extxyz")
    ds = datasets.load(path)
    assert ds.ids == ["water", "mix:1", "mix:2"]
    for s, a in zip(ds, frames, strict=True):
        _same_structure(s.atoms, a)
    assert ds[0].labels == {"dipole_d": 1.85}
    assert ds[1].labels["energy"] == pytest.approx(-7.5)
    assert ds[1].labels["energy_per_atom"] == pytest.approx(-3.75)
    assert ds[1].labels["bandgap"] == 0.0
    assert ds[0].atoms.cell.rank == 0 and not ds[0].atoms.pbc.any()
    assert ds[1].text.startswith("numbers: 29 29\npositions: ") and "pbc: True True True" in ds[1].text
    assert ds.meta["format"] == "extxyz" and ds.meta["skipped"] == 0
    assert datasets.load(path, n=2, seed=3).ids == datasets.load(path, n=2, seed=3).ids


def test_extxyz_corrupt_frame_names_line(tmp_path, frames):
    from ase.io import write

    path = tmp_path / "bad.xyz"
    write(path, frames, format="extxyz")
    lines = path.read_text().splitlines()
    # frame 1 (Cu) starts at line 6: corrupt one of its atom lines
    assert lines[5].strip() == "2"
    lines[7] = "Cu not-a-number 0.0 0.0"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"bad\.xyz.*frame 1 at line 6"):
        datasets.load(path)
    ds = datasets.load(path, skip_invalid=True)
    assert ds.ids == ["water", "bad:2"]
    assert ds.meta["skipped"] == 1 and "line 6" in ds.meta["skipped_records"][0]


# ------------------------------------------------------------------------------------------ ASE db


@pytest.mark.parametrize("ext", [".db", ".aselmdb"])
def test_ase_database_round_trip(tmp_path, frames, ext):
    from ase.db import connect

    path = tmp_path / f"shard{ext}"
    with connect(str(path)) as db:
        db.write(frames[0], sample_id="w1", homo=-7.1, note="skip me")
        db.write(frames[1], data={"sid": "cu-42"})
        db.write(frames[2], energy_ref=-31.5)
    ds = datasets.load(path)
    assert ds.ids == ["w1", "cu-42", "shard:3"]
    for s, a in zip(ds, frames, strict=True):
        _same_structure(s.atoms, a)
    assert ds[0].labels == {"homo": -7.1}
    assert ds[1].labels["energy"] == pytest.approx(-7.5)
    assert ds[2].labels == {"energy_ref": -31.5}
    assert ds.meta["format"] == ext[1:] and ds.meta["n_rows"] == 3


def test_aselmdb_is_written_by_the_lmdb_backend(tmp_path, frames):
    from ase.db import connect
    from ase_db_backends.aselmdb import LMDBDatabase

    path = tmp_path / "omat.aselmdb"
    db = connect(str(path))
    assert isinstance(db, LMDBDatabase)
    db.write(frames[1])
    db.close()
    assert datasets.load(path, format="aselmdb").ids == ["omat:1"]


def test_corrupt_database(tmp_path):
    path = tmp_path / "broken.db"
    path.write_bytes(b"SQLite format 3\0" + b"\x13" * 300)
    with pytest.raises(DatasetError, match="broken.db"):
        datasets.load(path)


# ---------------------------------------------------------------------------------------------- QM9

_SDF_BLOCK = """{name}
     RDKit          3D

  {n}  {m}  0  0  0  0  0  0  0  0999 V2000
{atoms}
{bonds}
M  END
$$$$
"""


def _sdf_water(name, shift=0.0):
    atoms = "\n".join(
        f"{x + shift:10.4f}{y:10.4f}{z:10.4f} {el:<3} 0  0  0  0  0  0  0  0  0  0  0  0"
        for el, x, y, z in [("O", 0.0, 0.0, 0.1173), ("H", 0.0, 0.7572, -0.4692), ("H", 0.0, -0.7572, -0.4692)]
    )
    bonds = "  1  2  1  0\n  1  3  1  0"
    return _SDF_BLOCK.format(name=name, n=3, m=2, atoms=atoms, bonds=bonds)


_QM9_HEADER = ("mol_id,A,B,C,mu,alpha,homo,lumo,gap,r2,zpve,u0,u298,h298,g298,cv,u0_atom,u298_atom,h298_atom,"
               "g298_atom")


def test_qm9_round_trip(tmp_path):
    sdf = tmp_path / "gdb9.sdf"
    sdf.write_text(_sdf_water("gdb_3") + _sdf_water("gdb_7", shift=1.0))
    rows = [
        "gdb_3,799.58,437.9,282.9,1.8511,6.31,-0.2928,0.0687,0.3615,19.0002,0.021375,-76.404702,-76.401867,"
        "-76.400922,-76.422349,6.002,-230.8,-232.0,-232.6,-219.0",
        "gdb_7,80.0,19.9,19.9,0.0,23.95,-0.3385,0.1041,0.4426,109.5,0.0748,-79.764152,-79.760666,-79.759722,"
        "-79.787269,10.098,-670.8,-675.0,-676.9,-628.1",
    ]
    (tmp_path / "gdb9.sdf.csv").write_text(_QM9_HEADER + "\n" + "\n".join(rows) + "\n")
    ds = datasets.load(sdf)
    assert ds.ids == ["gdb_3", "gdb_7"]
    assert ds[0].atoms.get_chemical_symbols() == ["O", "H", "H"]  # hydrogens kept
    np.testing.assert_allclose(ds[1].atoms.positions[:, 0] - ds[0].atoms.positions[:, 0], 1.0)
    assert ds[0].smiles == "O"
    assert ds[0].labels["homo"] == pytest.approx(-0.2928) and ds[1].labels["u0"] == pytest.approx(-79.764152)
    assert len(ds[0].labels) == 19
    assert ds.meta["units"]["gap"] == "Hartree"


def test_qm9_corrupt_record(tmp_path):
    sdf = tmp_path / "gdb9.sdf"
    broken = _sdf_water("gdb_9").replace("  3  2  0", "  9  2  0")
    sdf.write_text(_sdf_water("gdb_1") + broken)
    with pytest.raises(DatasetError, match=r"gdb9\.sdf.*record 1"):
        datasets.load(sdf)
    assert datasets.load(sdf, skip_invalid=True).ids == ["gdb_1"]


# ----------------------------------------------------------------------------------------- SMILES CSV


def test_smiles_csv_round_trip(tmp_path):
    path = tmp_path / "esol.csv"
    path.write_text("compound_id,SMILES,logS,source\nm1,CCO,0.5,lab\nm2,c1ccccc1,-1.6,lab\nm3,CC(=O)O,,lab\n")
    ds = datasets.load(path)
    assert ds.ids == ["m1", "m2", "m3"]
    assert [s.smiles for s in ds] == ["CCO", "c1ccccc1", "CC(=O)O"]
    assert ds[0].selfies == "[C][C][O]"
    assert ds.labels("logS").tolist()[:2] == [0.5, -1.6] and np.isnan(ds.labels("logS")[2])
    assert ds.meta["label_columns"] == ["logS"] and ds[0].atoms is None
    ds3 = datasets.load(path, conformers=True, seed=1)
    assert ds3[1].atoms.get_chemical_formula() == "C6H6" and not ds3[1].atoms.pbc.any()
    again = datasets.load(path, conformers=True, seed=1)
    np.testing.assert_array_equal(ds3[1].atoms.positions, again[1].atoms.positions)


def test_smiles_csv_options_and_errors(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("smi;y\nCCN;1\nnot_a_smiles;2\n")
    with pytest.raises(DatasetError, match=r"x\.csv.*line 3.*not_a_smiles"):
        datasets.load(path, smiles_column="smi")
    ds = datasets.load(path, smiles_column="smi", label_columns=["y"], skip_invalid=True)
    assert ds.ids == ["x:0"] and ds[0].labels == {"y": 1.0} and ds.meta["skipped"] == 1
    with pytest.raises(DatasetError, match="no SMILES column 'smiles_x'"):
        datasets.load(path, smiles_column="smiles_x")


# --------------------------------------------------------------------------------------------- FASTA


def test_fasta_round_trip(tmp_path):
    path = tmp_path / "prot.fasta"
    path.write_text(">sp|P1|A first protein\nMKV\nLLA\n\n>second\nacgt\n>\nGG\n")
    ds = datasets.load(path)
    assert ds.ids == ["sp|P1|A", "second", "prot:2"]
    assert [s.sequence for s in ds] == ["MKVLLA", "ACGT", "GG"]
    assert ds[0].meta["description"] == "first protein" and ds[0].labels["length"] == 6.0


def test_fasta_errors(tmp_path):
    path = tmp_path / "bad.fa"
    path.write_text("MKV\n>a\nMK1V\n>b\nMKV\n")
    with pytest.raises(DatasetError, match=r"bad\.fa.*line 1"):
        datasets.load(path)
    path.write_text(">a\nMK1V\n>b\nMKV\n")
    with pytest.raises(DatasetError, match=r"bad\.fa.*record 0 \(line 1\).*'1'"):
        datasets.load(path)
    ds = datasets.load(path, skip_invalid=True)
    assert ds.ids == ["b"] and ds.meta["skipped"] == 1


# ------------------------------------------------------------------------------------ registry errors


def test_unknown_name_suggests_close_match():
    with pytest.raises(UnknownNameError, match="Did you mean 'molecules'") as info:
        datasets.load("molecule")
    assert "crystals" in str(info.value)


def test_missing_and_empty_and_undetectable_files(tmp_path):
    with pytest.raises(DatasetError, match="nope.xyz' does not exist"):
        datasets.load(tmp_path / "nope.xyz")
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    with pytest.raises(DatasetError, match="empty.xyz' holds no samples"):
        datasets.load(empty)
    (tmp_path / "e.fasta").write_text("; only a comment\n")
    with pytest.raises(DatasetError, match="e.fasta' holds no samples"):
        datasets.load(tmp_path / "e.fasta")
    odd = tmp_path / "data.bin"
    odd.write_bytes(b"\x00\x01binary")
    with pytest.raises(DatasetError, match="cannot tell the format of .*data.bin"):
        datasets.load(odd)
    with pytest.raises(UnknownNameError, match="dataset format 'xyzz'.*Did you mean 'extxyz'"):
        datasets.load(empty, format="xyzz")


def test_content_detection(tmp_path):
    path = tmp_path / "seqs.txt"
    path.write_text(">a\nMKV\n")
    assert datasets.load(path).ids == ["a"]
