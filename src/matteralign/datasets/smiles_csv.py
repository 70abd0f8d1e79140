"""SMILES CSV reader: one molecule per row, label columns, optional 3D conformers (ETKDGv3)."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from ..errors import DatasetError
from ..samples import Dataset, Sample
from ._common import Skipper, check_file, finish
from ._format import atoms_text

__all__ = ["read_smiles_csv"]

_ID_COLUMNS = ("id", "mol_id", "sample_id", "name", "compound_id")


def _find(header: list[str], wanted: str | None, candidates: Sequence[str], what: str, path: Path) -> str | None:
    lower = {h.lower(): h for h in header}
    if wanted is not None:
        if wanted not in header:
            raise DatasetError(f"{str(path)!r} has no {what} column {wanted!r}; columns are {header}")
        return wanted
    return next((lower[c] for c in candidates if c in lower), None)


def read_smiles_csv(
    path: str | Path,
    *,
    smiles_column: str | None = None,
    label_columns: Sequence[str] | None = None,
    id_column: str | None = None,
    conformers: bool = False,
    seed: int = 0,
    delimiter: str | None = None,
    name: str | None = None,
    skip_invalid: bool = False,
) -> Dataset:
    """Read a CSV of SMILES with label columns.

    Parameters
    ----------
    path : str or Path
    smiles_column : str, optional
        Column holding the SMILES (default: the first column named ``smiles``, case-insensitive).
    label_columns : sequence of str, optional
        Label columns (default: every other column whose non-empty values are all numbers).
    id_column : str, optional
        Column of ids (default: ``id``/``mol_id``/``sample_id``/``name``/``compound_id`` if present, else
        ``"<stem>:<row index>"``).
    conformers : bool
        Also build a 3D structure (RDKit ETKDGv3 with ``seed`` + MMFF94) for every molecule.
    delimiter : str, optional
        Field separator (default: sniffed among ``,``, ``;``, tab).
    skip_invalid : bool
        Skip and count rows with an unparsable SMILES, a non-numeric label or a failed embedding.

    Returns
    -------
    Dataset
        Views ``smiles`` (as given), ``selfies`` (when the encoder accepts it) and, with ``conformers``,
        ``atoms`` and ``text``; labels from the label columns (empty cells left out).
    """
    import selfies as sf
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    path = check_file(path, "SMILES CSV")
    skip = Skipper(path, skip_invalid=skip_invalid)
    with open(path, newline="") as fh:
        content = fh.read()
    if not content.strip():
        raise DatasetError(f"dataset file {str(path)!r} is empty")
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(content.splitlines()[0], delimiters=",;\t").delimiter
        except csv.Error:
            delimiter = ","
    rows = list(csv.reader(content.splitlines(), delimiter=delimiter))
    header = [h.strip() for h in rows[0]]
    body = [(i + 2, r) for i, r in enumerate(rows[1:]) if any(c.strip() for c in r)]
    smiles_col = _find(header, smiles_column, ("smiles", "canonical_smiles", "smi"), "SMILES", path)
    if smiles_col is None:
        raise DatasetError(f"{str(path)!r} has no SMILES column; columns are {header} (pass smiles_column=...)")
    id_col = _find(header, id_column, _ID_COLUMNS, "id", path)
    if label_columns is None:
        label_columns = []
        for col in header:
            if col in (smiles_col, id_col):
                continue
            j = header.index(col)
            values = [r[j].strip() for _, r in body if j < len(r) and r[j].strip()]
            try:
                [float(v) for v in values]
            except ValueError:
                continue
            if values:
                label_columns.append(col)
    else:
        for col in label_columns:
            if col not in header:
                raise DatasetError(f"{str(path)!r} has no label column {col!r}; columns are {header}")
    js, jid = header.index(smiles_col), (header.index(id_col) if id_col else None)
    jl = {c: header.index(c) for c in label_columns}
    samples = []
    for index, (line_no, row) in enumerate(body):
        if len(row) != len(header):
            skip.bad(f"line {line_no}", f"{len(row)} fields, expected {len(header)}")
            continue
        smi = row[js].strip()
        mol = Chem.MolFromSmiles(smi) if smi else None
        if mol is None:
            skip.bad(f"line {line_no}", f"invalid SMILES {smi!r}")
            continue
        labels = {}
        try:
            for col, j in jl.items():
                if row[j].strip():
                    value = float(row[j])
                    if math.isfinite(value):
                        labels[col] = value
        except ValueError:
            skip.bad(f"line {line_no}", f"non-numeric value {row[j]!r} in label column {col!r}")
            continue
        atoms = None
        if conformers:
            atoms = _conformer(mol, seed)
            if atoms is None:
                skip.bad(f"line {line_no}", f"3D embedding failed for {smi!r}")
                continue
        try:
            selfies = sf.encoder(smi) or None
        except Exception:  # noqa: BLE001 - selfies.EncoderError
            selfies = None
        sid = row[jid].strip() if jid is not None and row[jid].strip() else f"{path.stem}:{index}"
        samples.append(Sample(id=sid, smiles=smi, selfies=selfies, atoms=atoms,
                              text=atoms_text(atoms) if atoms is not None else None, labels=labels,
                              meta={"line": line_no}))
    meta = {"format": "smiles_csv", "smiles_column": smiles_col, "label_columns": list(label_columns),
            "id_column": id_col, "conformers": bool(conformers), "seed": seed, **skip.meta()}
    return finish(name or path.stem, samples, meta, path)


def _conformer(mol, seed: int):
    import ase
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mh = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    params.numThreads = 1
    if AllChem.EmbedMolecule(mh, params) != 0:
        return None
    if AllChem.MMFFHasAllMoleculeParams(mh):
        AllChem.MMFFOptimizeMolecule(mh, maxIters=2000)
    return ase.Atoms(numbers=[a.GetAtomicNum() for a in mh.GetAtoms()],
                     positions=mh.GetConformer().GetPositions())
