"""The bundled-dataset file format and the text view of a structure.

A bundled dataset is one compressed ``.npz`` file (no pickles, so it loads the same with any numpy ≥ 1.26):

* ``numbers`` (ΣN,) uint8 and ``positions`` (ΣN, 3) float32 [Å]: all atoms, concatenated;
* ``offsets`` (n+1,) int64: the atoms of sample ``i`` are ``offsets[i]:offsets[i+1]``;
* ``cells`` (n, 3, 3) float32 [Å] and ``pbc`` (n, 3) bool: only in periodic datasets;
* ``ids`` (n,) str, and optional string views ``smiles``, ``selfies``;
* ``label__<name>`` (n,) float64: one array per label, NaN where a sample has none;
* ``meta__<key>`` (n,) str: per-sample metadata (prototype, transformation...);
* ``metadata``: a 0-d str array holding the dataset's JSON metadata (source, script, versions, drops, units).

Positions are stored as float32 and the labels were computed *on the float32 geometry*, so the stored
structure and its labels agree exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DatasetError

if TYPE_CHECKING:  # pragma: no cover
    import ase

__all__ = ["atoms_text", "pack_atoms", "save_bundle", "read_bundle"]

_FORMAT_VERSION = 1


def atoms_text(atoms: ase.Atoms, *, decimals: int = 4) -> str:
    """Plain-text dump of a structure: atomic numbers, positions, and cell and pbc when periodic.

    This is the "Blank Atomistic" text view of arXiv 2512.03750: a language model sees the raw numbers of
    the ``ase.Atoms`` object, nothing else.

    Parameters
    ----------
    atoms : ase.Atoms
    decimals : int
        Decimals of positions and cell vectors (Å).

    Returns
    -------
    str
        Lines ``numbers: ...``, ``positions: x y z; ...``, then ``cell: ...`` and ``pbc: ...``.
    """
    triple = f"%.{int(decimals)}f %.{int(decimals)}f %.{int(decimals)}f"
    numbers = " ".join(map(str, atoms.numbers.tolist()))
    pos = "; ".join([triple] * len(atoms)) % tuple(np.asarray(atoms.positions).ravel().tolist())
    lines = [f"numbers: {numbers}", f"positions: {pos}"]
    if atoms.pbc.any():
        cell = "; ".join([triple] * 3) % tuple(np.asarray(atoms.cell[:]).ravel().tolist())
        lines += [f"cell: {cell}", "pbc: " + " ".join(str(bool(p)) for p in atoms.pbc)]
    return "\n".join(lines)


def pack_atoms(structures: list[ase.Atoms]) -> dict[str, np.ndarray]:
    """Concatenate structures into the arrays of the bundle format (see the module docstring)."""
    counts = np.array([len(a) for a in structures], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    out = {
        "numbers": np.concatenate([a.numbers for a in structures]).astype(np.uint8),
        "positions": np.concatenate([a.positions for a in structures]).astype(np.float32),
        "offsets": offsets,
    }
    if any(a.pbc.any() for a in structures):
        out["cells"] = np.stack([np.asarray(a.cell[:]) for a in structures]).astype(np.float32)
        out["pbc"] = np.stack([a.pbc for a in structures]).astype(bool)
    return out


def save_bundle(
    path: str | Path,
    *,
    structures: list[ase.Atoms],
    ids: list[str],
    labels: dict[str, np.ndarray],
    strings: dict[str, list[str]] | None = None,
    sample_meta: dict[str, list[str]] | None = None,
    metadata: dict[str, Any],
) -> Path:
    """Write a bundled dataset as one compressed ``.npz`` (format in the module docstring).

    Returns the path written. The file is written to a temporary name and renamed, so a crash leaves no
    half-written bundle.
    """
    n = len(ids)
    if len(structures) != n:
        raise DatasetError(f"save_bundle: {len(structures)} structures for {n} ids")
    arrays: dict[str, np.ndarray] = pack_atoms(structures)
    arrays["ids"] = np.array(ids, dtype=str)
    for key, values in (strings or {}).items():
        arrays[key] = np.array(values, dtype=str)
    for key, values in labels.items():
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (n,):
            raise DatasetError(f"save_bundle: label {key!r} has shape {values.shape}, expected ({n},)")
        arrays[f"label__{key}"] = values
    for key, values in (sample_meta or {}).items():
        arrays[f"meta__{key}"] = np.array(values, dtype=str)
    arrays["metadata"] = np.array(json.dumps({"format_version": _FORMAT_VERSION, **metadata}, sort_keys=True))
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def read_bundle(path: str | Path) -> dict[str, Any]:
    """Read a bundle written by :func:`save_bundle` into plain arrays (no ``ase.Atoms`` built yet).

    Returns
    -------
    dict
        ``numbers``, ``positions``, ``offsets``, optional ``cells``/``pbc``, ``ids``, string views,
        ``labels`` (dict name → array), ``sample_meta`` (dict key → str array) and ``metadata`` (dict).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            raw = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DatasetError(f"bundled dataset file {str(path)!r} does not exist") from None
    except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError
        raise DatasetError(f"bundled dataset file {str(path)!r} is not a readable .npz bundle: {exc}") from None
    missing = {"numbers", "positions", "offsets", "ids", "metadata"} - raw.keys()
    if missing:
        raise DatasetError(f"bundled dataset file {str(path)!r} lacks the arrays {sorted(missing)}")
    out: dict[str, Any] = {"labels": {}, "sample_meta": {}}
    for key, value in raw.items():
        if key.startswith("label__"):
            out["labels"][key[len("label__") :]] = value
        elif key.startswith("meta__"):
            out["sample_meta"][key[len("meta__") :]] = value
        elif key == "metadata":
            out["metadata"] = json.loads(str(value))
        else:
            out[key] = value
    return out
