"""``matteralign run`` on one's own files: extxyz, SMILES CSV and ASE database, end to end."""

from __future__ import annotations

import pandas as pd
import pytest

from matteralign import datasets
from matteralign.cli import main

pytestmark = pytest.mark.slow

SMILES = [
    "CCO",
    "CCN",
    "CCC",
    "c1ccccc1",
    "CC(=O)O",
    "CCOC",
    "CNC",
    "C=CC",
    "CC#N",
    "OCCO",
    "CC(C)O",
    "CCCl",
    "c1ccncc1",
    "CCS",
    "NCCO",
    "COC=O",
    "CC(N)=O",
    "C1CC1",
    "C1CCCC1",
    "CCCCO",
]


def _files(tmp_path):
    from ase.collections import g2
    from ase.db import connect
    from ase.io import write

    atoms = [a for a in g2][:24]
    write(tmp_path / "my_structures.extxyz", atoms)
    with connect(tmp_path / "my_db.db") as db:
        for a in atoms:
            db.write(a)
    (tmp_path / "my_mols.csv").write_text("smiles\n" + "\n".join(SMILES) + "\n")
    return {
        "my_structures": ("my_structures.extxyz", ["composition", "element-random"]),
        "my_db": ("my_db.db", ["composition", "element-random"]),
        "my_mols": ("my_mols.csv", ["morgan", "rdkit-2d"]),
    }


def test_dataset_names_of_files(tmp_path):
    assert datasets.dataset_name("molecules") == "molecules"
    assert datasets.dataset_name("data/my_structures.extxyz") == "my_structures"
    assert datasets.dataset_name(tmp_path / "x" / "train.db") == "train"
    assert datasets.dataset_name("molecules.csv") == "molecules.csv"  # never the bundled dataset's group
    paths = _files(tmp_path)
    for name, (file, _) in paths.items():
        assert datasets.load(tmp_path / file).name == name


def test_run_on_own_files_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, (file, models) in _files(tmp_path).items():
        out = tmp_path / f"run-{name}"
        args = ["run", "--dataset", file, "--out", str(out)]
        for m in models:
            args += ["--model", m]
        study = tmp_path / f"{name}.toml"
        models_toml = ", ".join(f'"{m}"' for m in models)
        study.write_text(
            f"models = [{models_toml}]\nmetrics = {{ cknna = {{ k = 5 }}, mutual_knn = {{ k = 5 }} }}\n"
            'model_metrics = {}\nanalyses = { matrix = { k = 5 } }\n[[datasets]]\nname = "x"\n'
        )
        main([args[0], str(study), *args[1:]])
        printed = capsys.readouterr().out
        assert str(out / "report" / "index.html") in printed
        pairs = pd.read_parquet(out / "results" / "pairs.parquet")
        assert set(pairs["dataset"]) == {name} and set(pairs["metric"]) == {"cknna", "mutual_knn"}
        assert pairs["value"].notna().all()
        assert (out / "store" / name).is_dir()
        assert name in (out / "report" / "index.html").read_text()
