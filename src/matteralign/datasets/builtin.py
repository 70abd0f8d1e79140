"""Datasets that ship with matteralign (``molecules``, ``crystals``) or with ASE (``g2``, ``s22``, ``dcdft``).

The bundled files live in ``matteralign/data/`` and are made by ``scripts/build_molecules.py`` and
``scripts/build_crystals.py`` (see :mod:`matteralign.datasets.build` for the recipe and the units).
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..samples import Dataset, Sample
from ._format import atoms_text, read_bundle

__all__ = ["data_path", "load_bundle", "load_molecules", "load_crystals", "load_ase_collection"]


def data_path(filename: str) -> Path:
    """Path of a file in the package's ``data/`` folder."""
    return Path(str(resources.files("matteralign").joinpath("data", filename)))


def load_bundle(path: str | Path, *, name: str | None = None, text: bool = True) -> Dataset:
    """Load a bundle written by :func:`matteralign.datasets._format.save_bundle` as a :class:`Dataset`.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` bundle.
    name : str, optional
        Dataset name (default: the name stored in the bundle, else the file stem).
    text : bool
        Whether to build the plain-text view (``Sample.text``) of every structure.

    Returns
    -------
    Dataset
        Samples with ``atoms`` (periodic when the bundle has cells), ``smiles``/``selfies`` when stored,
        ``text``, ``labels`` (NaN labels are left out) and ``meta``; ``Dataset.meta`` is the bundle metadata.
    """
    import ase

    raw = read_bundle(path)
    numbers, positions, offsets = raw["numbers"], raw["positions"].astype(np.float64), raw["offsets"]
    ids = raw["ids"].tolist()
    cells, pbc = raw.get("cells"), raw.get("pbc")
    strings = {k: raw[k].tolist() for k in ("smiles", "selfies", "sequence") if k in raw}
    label_names = sorted(raw["labels"])
    label_rows = np.column_stack([raw["labels"][k] for k in label_names]).tolist() if label_names else None
    meta_keys = sorted(raw["sample_meta"])
    meta_cols = [raw["sample_meta"][k].tolist() for k in meta_keys]
    samples = []
    for i, sid in enumerate(ids):
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        if cells is not None:
            atoms = ase.Atoms(numbers=numbers[lo:hi], positions=positions[lo:hi],
                              cell=cells[i].astype(np.float64), pbc=pbc[i])
        else:
            atoms = ase.Atoms(numbers=numbers[lo:hi], positions=positions[lo:hi])
        labels = {}
        if label_rows is not None:
            labels = {k: v for k, v in zip(label_names, label_rows[i], strict=True) if not math.isnan(v)}
        views = {k: (v[i] or None) for k, v in strings.items()}
        samples.append(Sample(
            id=str(sid), atoms=atoms, text=atoms_text(atoms) if text else None, labels=labels,
            meta={k: col[i] for k, col in zip(meta_keys, meta_cols, strict=True)}, **views,
        ))
    meta: dict[str, Any] = dict(raw["metadata"])
    meta["file"] = str(path)
    return Dataset(name or meta.get("name") or Path(path).stem, samples, meta)


def load_molecules(*, text: bool = True) -> Dataset:
    """The bundled ``molecules`` dataset: ~5,000 NCI molecules with GFN2-xTB and RDKit labels."""
    return load_bundle(data_path("molecules.npz"), name="molecules", text=text)


def load_crystals(*, text: bool = True) -> Dataset:
    """The bundled ``crystals`` dataset: AFLOW prototypes and seeded variants with physical labels."""
    return load_bundle(data_path("crystals.npz"), name="crystals", text=text)


_COLLECTION_LABELS = {
    "g2": {},
    "s22": {"cc_energy": "interaction_energy_ev"},
    "dcdft": {"wien2k_volume": "volume_wien2k_a3", "wien2k_B": "bulk_modulus_wien2k_gpa",
              "wien2k_Bp": "bulk_modulus_deriv_wien2k", "exp_volume": "volume_exp_a3",
              "exp_B": "bulk_modulus_exp_gpa", "exp_Bp": "bulk_modulus_deriv_exp"},
}


def load_ase_collection(name: str, *, text: bool = True) -> Dataset:
    """One of ASE's bundled collections as a dataset: ``g2``, ``s22`` or ``dcdft``.

    Labels: ``n_atoms`` for all; s22 ``interaction_energy_ev`` (CCSD(T)/CBS, eV); dcdft WIEN2k (and, where ASE
    carries them, experimental) volume per atom (Å³), bulk modulus B (GPa) and its pressure derivative B′.
    Ids are ``<collection>:<name>`` (e.g. ``g2:CH3CHO``).
    """
    import ase.collections as coll

    collection = getattr(coll, name)
    renames = _COLLECTION_LABELS[name]
    samples = []
    for key in collection.names:
        atoms = collection[key]
        data = collection.data.get(key, {}) if isinstance(collection.data, dict) else {}
        labels = {"n_atoms": float(len(atoms))}
        for src, dst in renames.items():
            value = data.get(src)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                labels[dst] = float(value)
        if not atoms.pbc.any():
            atoms.cell = None
        samples.append(Sample(id=f"{name}:{key}", atoms=atoms, text=atoms_text(atoms) if text else None,
                              labels=labels, meta={"name": key}))
    units = {"n_atoms": "count", "interaction_energy_ev": "eV (CCSD(T)/CBS, negative = bound)",
             "volume_wien2k_a3": "Å³/atom", "bulk_modulus_wien2k_gpa": "GPa", "bulk_modulus_deriv_wien2k": "-",
             "volume_exp_a3": "Å³/atom", "bulk_modulus_exp_gpa": "GPa", "bulk_modulus_deriv_exp": "-"}
    import ase

    return Dataset(name, samples, {"name": name, "source": f"ase.collections.{name} (ase {ase.__version__})",
                                   "units": {k: v for k, v in units.items() if k == "n_atoms"
                                             or k in renames.values()}})
