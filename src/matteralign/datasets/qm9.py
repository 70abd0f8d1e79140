"""QM9 in its common distribution format: ``gdb9.sdf`` (3D molecules with H) + ``gdb9.sdf.csv`` (19 targets).

The CSV has one row per molecule keyed by ``mol_id`` (``gdb_1``, ...) with the columns
``A, B, C`` (GHz), ``mu`` (Debye), ``alpha`` (Bohr³), ``homo, lumo, gap`` (Hartree), ``r2`` (Bohr²),
``zpve, u0, u298, h298, g298`` (Hartree), ``cv`` (cal/mol/K), and the atomisation versions ``u0_atom`` ...
Labels keep those names and units. Ramakrishnan et al., Sci. Data 1, 140022 (2014), doi:10.1038/sdata.2014.22.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from ..errors import DatasetError
from ..samples import Dataset, Sample
from ._common import Skipper, check_file, finish
from ._format import atoms_text

__all__ = ["read_qm9", "QM9_UNITS"]

QM9_UNITS = {
    "A": "GHz", "B": "GHz", "C": "GHz", "mu": "Debye", "alpha": "Bohr^3", "homo": "Hartree", "lumo": "Hartree",
    "gap": "Hartree", "r2": "Bohr^2", "zpve": "Hartree", "u0": "Hartree", "u298": "Hartree", "h298": "Hartree",
    "g298": "Hartree", "cv": "cal/(mol K)", "u0_atom": "kcal/mol", "u298_atom": "kcal/mol",
    "h298_atom": "kcal/mol", "g298_atom": "kcal/mol",
}


def _read_targets(path: Path, skip: Skipper) -> dict[str, dict[str, float]]:
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DatasetError(f"QM9 label file {str(path)!r} is empty") from None
        header = [h.strip() for h in header]
        if "mol_id" not in header:
            raise DatasetError(f"QM9 label file {str(path)!r} has no 'mol_id' column; columns are {header}")
        key = header.index("mol_id")
        out: dict[str, dict[str, float]] = {}
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                skip.bad(f"{path.name} line {line_no}", f"{len(row)} fields, expected {len(header)}")
                continue
            try:
                values = {h: float(v) for i, (h, v) in enumerate(zip(header, row, strict=True)) if i != key}
            except ValueError as exc:
                skip.bad(f"{path.name} line {line_no}", f"non-numeric target ({exc})")
                continue
            out[row[key].strip()] = {k: v for k, v in values.items() if math.isfinite(v)}
    return out


def read_qm9(path: str | Path, *, labels: str | Path | None = None, name: str | None = None,
             skip_invalid: bool = False, text: bool = True) -> Dataset:
    """Read QM9 from an SDF (hydrogens and 3D coordinates kept) and its CSV of targets.

    Parameters
    ----------
    path : str or Path
        The SDF (e.g. ``gdb9.sdf``).
    labels : str or Path, optional
        The CSV of targets; default ``<path>.csv`` (``gdb9.sdf.csv``) when it exists, else no labels.
    name : str, optional
        Dataset name (default: the SDF stem).
    skip_invalid : bool
        Skip and count unreadable records instead of raising.
    text : bool
        Build the plain-text view.

    Returns
    -------
    Dataset
        Ids = the SDF molecule names (``gdb_1``...), else ``"<stem>:<index>"``; views ``atoms`` (no cell)
        and ``smiles`` (canonical, when RDKit can sanitise the molecule); labels = the CSV row of that id.
    """
    import ase
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    path = check_file(path, "QM9 SDF")
    skip = Skipper(path, skip_invalid=skip_invalid)
    label_path = Path(labels) if labels is not None else Path(str(path) + ".csv")
    if labels is not None:
        check_file(label_path, "QM9 label")
    targets = _read_targets(label_path, skip) if label_path.is_file() else {}
    supplier = Chem.SDMolSupplier(str(path), removeHs=False, sanitize=False)
    samples = []
    missing_labels = 0
    for index in range(len(supplier)):
        mol = supplier[index]
        if mol is None or mol.GetNumConformers() == 0:
            skip.bad(f"record {index}", "not a valid SDF molecule block")
            continue
        sid = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
        sid = sid or f"{path.stem}:{index}"
        numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
        atoms = ase.Atoms(numbers=numbers, positions=mol.GetConformer().GetPositions())
        smiles = None
        try:
            m = Chem.Mol(mol)
            Chem.SanitizeMol(m)
            smiles = Chem.MolToSmiles(Chem.RemoveHs(m))
        except Exception:  # noqa: BLE001 - a few QM9 records do not sanitise; keep the atoms
            smiles = None
        row = targets.get(sid)
        if targets and row is None:
            missing_labels += 1
        samples.append(Sample(id=sid, atoms=atoms, smiles=smiles, text=atoms_text(atoms) if text else None,
                              labels=dict(row or {}), meta={"record": index}))
    meta = {"format": "qm9", "labels_file": str(label_path) if targets else None, "units": QM9_UNITS,
            "without_labels": missing_labels, **skip.meta()}
    return finish(name or path.stem, samples, meta, path)
