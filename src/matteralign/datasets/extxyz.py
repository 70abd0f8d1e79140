"""Extended-XYZ reader (``.xyz``, ``.extxyz``) via ``ase.io``."""

from __future__ import annotations

from pathlib import Path

from ..samples import Dataset, Sample
from ._common import Skipper, check_file, finish, numeric_labels
from ._format import atoms_text

__all__ = ["read_extxyz"]

#: ``atoms.info`` keys used as the sample id, in order of preference.
ID_KEYS = ("id", "sample_id", "sid", "mol_id", "name")


def _frames(path: Path):
    """Yield ``(line, atoms_or_exception)`` per frame; the line is where the frame starts (1-based)."""
    from ase.io.extxyz import read_xyz

    with open(path) as fh:
        lines = fh.readlines()
    line = 0
    index = 0
    while line < len(lines):
        if not lines[line].strip():
            line += 1
            continue
        start = line + 1
        try:
            n = int(lines[line].split()[0])
            if n < 0 or line + 2 + n > len(lines):
                raise ValueError(f"frame declares {n} atoms but the file ends after {len(lines) - line - 2} lines")
            chunk = lines[line : line + 2 + n]
            from io import StringIO

            atoms = next(read_xyz(StringIO("".join(chunk)), index=0))
            yield start, index, atoms
            line += 2 + n
        except Exception as exc:  # noqa: BLE001 - any parse failure is reported with its line
            yield start, index, exc
            # resynchronise: skip to the next line that is a bare integer
            line += 1
            while line < len(lines) and not lines[line].strip().isdigit():
                line += 1
        index += 1


def read_extxyz(path: str | Path, *, name: str | None = None, skip_invalid: bool = False,
                text: bool = True) -> Dataset:
    """Read an extended-XYZ file: one sample per frame.

    Parameters
    ----------
    path : str or Path
    name : str, optional
        Dataset name (default: the file stem).
    skip_invalid : bool
        Skip and count unreadable frames instead of raising.
    text : bool
        Build the plain-text view.

    Returns
    -------
    Dataset
        Ids from the frame's ``id``/``sample_id``/``sid``/``mol_id``/``name`` info key, else ``"<stem>:<index>"``;
        labels from the numeric ``info`` keys plus ``energy`` (and ``energy_per_atom``) when the frame carries one.

    Raises
    ------
    DatasetError
        Missing file, an unreadable frame (naming its line) unless ``skip_invalid``, or no frame at all.
    """
    path = check_file(path, "extxyz")
    skip = Skipper(path, skip_invalid=skip_invalid)
    samples = []
    for line, index, atoms in _frames(path):
        if isinstance(atoms, Exception):
            skip.bad(f"frame {index} at line {line}", f"not a valid extended-XYZ frame ({atoms})")
            continue
        info = dict(atoms.info)
        sid = next((str(info[k]) for k in ID_KEYS if k in info and str(info[k])), f"{path.stem}:{index}")
        labels = numeric_labels(info, exclude=ID_KEYS)
        if atoms.calc is not None:
            try:
                energy = float(atoms.get_potential_energy())
                labels.setdefault("energy", energy)
                labels.setdefault("energy_per_atom", energy / len(atoms))
            except Exception:  # noqa: BLE001 - frames without an energy
                pass
        if not atoms.pbc.any():
            atoms.cell = None
        samples.append(Sample(id=sid, atoms=atoms, text=atoms_text(atoms) if text else None, labels=labels,
                              meta={"frame": index}))
    return finish(name or path.stem, samples, {"format": "extxyz", **skip.meta()}, path)
