"""Builders of the bundled datasets (``molecules`` and ``crystals``).

The scripts ``scripts/build_molecules.py`` and ``scripts/build_crystals.py`` call these functions; the
tests call them on a handful of inputs. Every step is seeded, single-threaded and ordered, so the same
inputs and seed give identical arrays.

* **molecules**: the NCI SMILES that RDKit ships (``RDConfig.RDDataDir/NCI/first_5K.smi``) → largest fragment
  → RDKit ETKDGv3 (seeded) + MMFF94 optimisation (UFF when MMFF lacks parameters) → positions rounded to
  float32 → GFN2-xTB single point with tblite (energy, HOMO, LUMO, gap, dipole) and RDKit descriptors.
* **crystals**: pymatgen's 288 AFLOW prototypes (≤ ``max_atoms`` atoms) plus seeded variants made by
  element substitution within a group (similar radii, cell rescaled by the radii), symmetric strain and
  rattle → density, volume per atom, mean Z, number of elements, and a GFN1-xTB Γ-point energy per atom
  for small cells.

References: GFN2-xTB, Bannwarth et al., JCTC 15, 1652 (2019), doi:10.1021/acs.jctc.8b01176; GFN1-xTB,
Grimme et al., JCTC 13, 1989 (2017), doi:10.1021/acs.jctc.7b00118; ETKDG, Riniker & Landrum, JCIM 55, 2562
(2015); AFLOW prototypes, Mehl et al., Comput. Mater. Sci. 136, S1 (2017).
"""

from __future__ import annotations

import gzip
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DatasetError

__all__ = [
    "HARTREE_EV",
    "BOHR_ANG",
    "EBOHR_DEBYE",
    "nci_smiles",
    "molecule_record",
    "build_molecules",
    "aflow_prototypes",
    "crystal_variants",
    "crystal_labels",
    "periodic_xtb_energy",
    "build_crystals",
    "package_versions",
]

HARTREE_EV = 27.211386245988  # CODATA 2018
BOHR_ANG = 0.529177210903  # CODATA 2018
EBOHR_DEBYE = 2.541746473  # e·Bohr in Debye
AMU_G = 1.66053906660e-24  # g


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of ``names`` (``"missing"`` for absent packages)."""
    import importlib.metadata as md

    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "missing"
    return out


# --------------------------------------------------------------------------------------------- molecules


def nci_smiles() -> list[tuple[str, str]]:
    """The ``(id, SMILES)`` pairs of RDKit's ``Data/NCI/first_5K.smi`` (4,999 NCI compounds)."""
    from rdkit import RDConfig

    path = os.path.join(RDConfig.RDDataDir, "NCI", "first_5K.smi")
    pairs = []
    with open(path) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2:
                pairs.append((f"nci{int(parts[1]):05d}", parts[0]))
    return pairs


def _largest_fragment(mol):
    from rdkit import Chem

    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=True)
    if len(frags) == 1:
        return frags[0]
    # most heavy atoms, then most atoms, then the canonical SMILES (deterministic tie-break)
    return max(frags, key=lambda f: (f.GetNumHeavyAtoms(), f.GetNumAtoms(), Chem.MolToSmiles(f)))


def _xtb_singlepoint(numbers, positions_ang, *, method, charge=0.0, uhf=0, cell_ang=None, temperature=None,
                     max_iter=None):
    from tblite.interface import Calculator
    from threadpoolctl import threadpool_limits

    kwargs = {"charge": float(charge), "uhf": int(uhf)}
    if cell_ang is not None:
        kwargs["lattice"] = np.asarray(cell_ang, dtype=float) / BOHR_ANG
        kwargs["periodic"] = np.array([True, True, True])
    calc = Calculator(method, np.asarray(numbers), np.asarray(positions_ang, dtype=float) / BOHR_ANG, **kwargs)
    calc.set("verbosity", 0)
    if temperature is not None:
        calc.set("temperature", float(temperature))
    if max_iter is not None:
        calc.set("max-iter", int(max_iter))
    with threadpool_limits(limits=1, user_api="openmp"):  # spinning OpenMP workers slow xTB down ~10x here
        return calc.singlepoint()


def _frontier_orbitals(res) -> tuple[float, float]:
    """HOMO and LUMO energies (eV) from a tblite result.

    The occupations are spin-summed and smeared (300 K), so the HOMO is orbital ``n - 1`` with
    ``n = ceil(sum(occupations) / 2)`` (for an odd electron count, the singly occupied orbital), never
    ``occ > 1``.
    """
    eps = np.asarray(res.get("orbital-energies"), dtype=float)
    occ = np.asarray(res.get("orbital-occupations"), dtype=float)
    n_occ = int(np.ceil(occ.sum() / 2 - 1e-6))
    if not 0 < n_occ < len(eps):
        return np.nan, np.nan
    return float(eps[n_occ - 1] * HARTREE_EV), float(eps[n_occ] * HARTREE_EV)


def molecule_record(
    smiles: str, *, seed: int = 0, max_atoms: int = 200, xtb_method: str = "GFN2-xTB"
) -> tuple[dict[str, Any] | None, str | None]:
    """3D structure and labels of one molecule, or the reason it was dropped.

    Parameters
    ----------
    smiles : str
    seed : int
        ETKDGv3 random seed.
    max_atoms : int
        Molecules with more atoms (hydrogens included) are dropped (reason ``"too_many_atoms"``).
    xtb_method : str
        tblite method name.

    Returns
    -------
    record : dict or None
        ``atoms`` (ase.Atoms, float32-exact positions, no cell), ``smiles`` (canonical, largest fragment),
        ``selfies`` ("" when the encoder refuses), ``labels`` (dict), ``optimizer`` (MMFF94 | UFF | none).
    reason : str or None
        Why the molecule was dropped: ``smiles_parse``, ``too_many_atoms``, ``embed``, ``xtb``.

    Notes
    -----
    HOMO is orbital ``n-1`` and LUMO orbital ``n`` with ``n = ceil(sum(occupations)/2)`` (the singly occupied
    orbital is the HOMO of a radical): Fermi smearing makes occupations fractional, so ``occ > 1`` would be
    wrong.
    """
    import ase
    import selfies as sf
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem, Crippen, Descriptors, Lipinski, rdMolDescriptors

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None, "smiles_parse"
    frag = _largest_fragment(mol)
    canonical = Chem.MolToSmiles(frag)
    mh = Chem.AddHs(frag)
    if mh.GetNumAtoms() > max_atoms:
        return None, "too_many_atoms"
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    params.numThreads = 1
    try:  # RDKit raises (Invariant Violation) on some bounds matrices instead of returning -1
        if AllChem.EmbedMolecule(mh, params) != 0:
            params.useRandomCoords = True
            if AllChem.EmbedMolecule(mh, params) != 0:
                return None, "embed"
    except RuntimeError:
        return None, "embed"
    optimizer = "none"
    try:
        if AllChem.MMFFHasAllMoleculeParams(mh):
            AllChem.MMFFOptimizeMolecule(mh, maxIters=2000)
            optimizer = "MMFF94"
        elif AllChem.UFFHasAllMoleculeParams(mh):
            AllChem.UFFOptimizeMolecule(mh, maxIters=2000)
            optimizer = "UFF"
    except Exception:  # force-field setup failures keep the ETKDG geometry
        optimizer = "none"
    numbers = np.array([a.GetAtomicNum() for a in mh.GetAtoms()], dtype=np.int64)
    positions = mh.GetConformer().GetPositions().astype(np.float32).astype(np.float64)
    if not np.all(np.isfinite(positions)):
        return None, "embed"
    charge = Chem.GetFormalCharge(mh)
    uhf = int(numbers.sum() - charge) % 2
    try:
        res = _xtb_singlepoint(numbers, positions, method=xtb_method, charge=charge, uhf=uhf)
    except Exception:  # tblite.exceptions.TBLiteRuntimeError (SCF not converged, unsupported element)
        return None, "xtb"
    energy = float(res.get("energy"))
    homo, lumo = _frontier_orbitals(res)
    if not (np.isfinite(homo) and np.isfinite(lumo) and np.isfinite(energy)):
        return None, "xtb"
    dipole = float(np.linalg.norm(np.asarray(res.get("dipole"), dtype=float))) * EBOHR_DEBYE
    try:
        selfies = sf.encoder(canonical) or ""
    except Exception:  # selfies.EncoderError on hypervalent atoms outside its constraints
        selfies = ""
    labels = {
        "energy_xtb_ev": energy * HARTREE_EV,
        "energy_xtb_per_atom_ev": energy * HARTREE_EV / len(numbers),
        "homo_xtb_ev": homo,
        "lumo_xtb_ev": lumo,
        "gap_xtb_ev": lumo - homo,
        "dipole_xtb_debye": dipole,
        "mol_weight": Descriptors.MolWt(frag),
        "tpsa": rdMolDescriptors.CalcTPSA(frag),
        "logp": Crippen.MolLogP(frag),
        "h_donors": float(Lipinski.NumHDonors(frag)),
        "h_acceptors": float(Lipinski.NumHAcceptors(frag)),
        "rotatable_bonds": float(rdMolDescriptors.CalcNumRotatableBonds(frag)),
        "ring_count": float(rdMolDescriptors.CalcNumRings(frag)),
        "heavy_atoms": float(frag.GetNumHeavyAtoms()),
        "n_atoms": float(len(numbers)),
        "formal_charge": float(charge),
    }
    atoms = ase.Atoms(numbers=numbers, positions=positions, pbc=False)
    return {"atoms": atoms, "smiles": canonical, "selfies": selfies, "labels": labels,
            "optimizer": optimizer}, None


#: Units of the molecule labels (stored in the metadata).
MOLECULE_UNITS = {
    "energy_xtb_ev": "eV (GFN2-xTB total energy)",
    "energy_xtb_per_atom_ev": "eV/atom",
    "homo_xtb_ev": "eV",
    "lumo_xtb_ev": "eV",
    "gap_xtb_ev": "eV",
    "dipole_xtb_debye": "Debye",
    "mol_weight": "g/mol (largest fragment, RDKit MolWt)",
    "tpsa": "Å² (RDKit CalcTPSA)",
    "logp": "dimensionless (Crippen)",
    "h_donors": "count (Lipinski)",
    "h_acceptors": "count (Lipinski)",
    "rotatable_bonds": "count",
    "ring_count": "count",
    "heavy_atoms": "count",
    "n_atoms": "count (with H)",
    "formal_charge": "e",
}


@dataclass
class BuildResult:
    """What a builder made: structures, ids, labels and string views, plus the dataset metadata."""

    structures: list = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    labels: dict[str, list[float]] = field(default_factory=dict)
    strings: dict[str, list[str]] = field(default_factory=dict)
    sample_meta: dict[str, list[str]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def add(self, sample_id: str, atoms, labels: dict[str, float], strings=None, sample_meta=None) -> None:
        n = len(self.ids)
        self.ids.append(sample_id)
        self.structures.append(atoms)
        for store, new in ((self.labels, labels), (self.strings, strings or {}), (self.sample_meta, sample_meta or {})):
            for key in set(store) | set(new):
                default = np.nan if store is self.labels else ""
                store.setdefault(key, [default] * n).append(new.get(key, default))

    def save(self, path) -> None:
        """Write the bundle (see :mod:`matteralign.datasets._format`)."""
        from ._format import save_bundle

        save_bundle(path, structures=self.structures, ids=self.ids,
                    labels={k: np.asarray(v, dtype=float) for k, v in self.labels.items()},
                    strings=self.strings, sample_meta=self.sample_meta, metadata=self.metadata)


def build_molecules(
    pairs: Iterable[tuple[str, str]],
    *,
    seed: int = 0,
    max_atoms: int = 100,
    xtb_method: str = "GFN2-xTB",
    processes: int = 1,
    chunk_size: int = 100,
    cache_dir: str | os.PathLike | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> BuildResult:
    """Build the ``molecules`` dataset from ``(id, SMILES)`` pairs (see :func:`molecule_record`).

    Dropped molecules are counted by reason in ``metadata["dropped"]`` and listed in
    ``metadata["dropped_ids"]``. The pairs are built in contiguous chunks of ``chunk_size`` (in ``processes``
    worker processes) and concatenated in order, so the result depends on neither. With ``cache_dir``, each
    finished chunk is pickled there and reused by a rerun with the same inputs (a resumable build).
    """
    pairs = list(pairs)
    t0 = time.perf_counter()
    chunks = [pairs[lo : lo + chunk_size] for lo in range(0, len(pairs), chunk_size)]
    jobs = [(c, seed, max_atoms, xtb_method, cache_dir) for c in chunks]
    parts = []
    if processes > 1 and len(chunks) > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(processes) as pool:
            for part in pool.imap(_molecule_chunk, jobs):  # in order
                parts.append(part)
                if progress is not None:
                    progress(sum(len(p.ids) + len(d) for p, d in parts), len(pairs), time.perf_counter() - t0)
    else:
        for job in jobs:
            parts.append(_molecule_chunk(job))
            if progress is not None:
                progress(sum(len(p.ids) + len(d) for p, d in parts), len(pairs), time.perf_counter() - t0)
    out = BuildResult()
    dropped: Counter = Counter()
    dropped_ids: dict[str, str] = {}
    for part, part_dropped in parts:
        for k, sid in enumerate(part.ids):
            out.add(sid, part.structures[k], {key: v[k] for key, v in part.labels.items()},
                    {key: v[k] for key, v in part.strings.items()},
                    {key: v[k] for key, v in part.sample_meta.items()})
        for sid, reason in part_dropped.items():
            dropped[reason] += 1
            dropped_ids[sid] = reason
    out.metadata = {
        "name": "molecules",
        "source": "RDKit RDConfig.RDDataDir/NCI/first_5K.smi (NCI open database subset, 4,999 SMILES)",
        "script": "scripts/build_molecules.py",
        "builder": "matteralign.datasets.build.build_molecules",
        "seed": int(seed),
        "n_input": len(pairs),
        "n_built": len(out.ids),
        "dropped": dict(sorted(dropped.items())),
        "dropped_ids": dropped_ids,
        "max_atoms": int(max_atoms),
        "geometry": "largest fragment; RDKit ETKDGv3 (randomSeed=seed, numThreads=1; retried with random "
        "coordinates) then MMFF94 (UFF when MMFF lacks parameters, maxIters=2000); positions rounded to float32",
        "xtb_method": xtb_method,
        "xtb": "tblite single point, neutral unless formal charge, uhf = n_electrons % 2, default 300 K smearing; "
        "HOMO/LUMO from n = ceil(sum(occupations)/2) (SOMO = HOMO for radicals)",
        "units": MOLECULE_UNITS,
        "versions": package_versions("rdkit", "tblite", "selfies", "ase", "numpy"),
        "build_seconds": round(time.perf_counter() - t0, 1),
        "chunks": len(parts),
        "chunks_from_cache": sum(bool(p.metadata.get("from_cache")) for p, _ in parts),
    }
    return out


def _molecule_chunk(args) -> tuple[BuildResult, dict[str, str]]:
    import hashlib
    import pickle

    from threadpoolctl import threadpool_limits

    pairs, seed, max_atoms, xtb_method, cache_dir = args
    cache = None
    if cache_dir is not None:
        key = hashlib.sha256(json.dumps([pairs, seed, max_atoms, xtb_method]).encode()).hexdigest()[:20]
        cache = os.path.join(cache_dir, f"molecules-{key}.pkl")
        if os.path.exists(cache):
            with open(cache, "rb") as fh:
                part, dropped = pickle.load(fh)
            if not getattr(part, "metadata", {}).get("frontier_ceil"):
                _refresh_open_shell(part, xtb_method)
            part.metadata["from_cache"] = True
            return part, dropped
    out, dropped = BuildResult(), {}
    with threadpool_limits(limits=1):  # OpenMP workers spinning on a shared CPU slow xTB down 10x
        for sid, smi in pairs:
            rec, reason = molecule_record(smi, seed=seed, max_atoms=max_atoms, xtb_method=xtb_method)
            if rec is None:
                dropped[sid] = reason
            else:
                out.add(sid, rec["atoms"], rec["labels"], {"smiles": rec["smiles"], "selfies": rec["selfies"]},
                        {"optimizer": rec["optimizer"], "source_smiles": smi})
    out.metadata["frontier_ceil"] = True
    if cache is not None:
        os.makedirs(cache_dir, exist_ok=True)
        with open(cache + ".tmp", "wb") as fh:
            pickle.dump((out, dropped), fh)
        os.replace(cache + ".tmp", cache)
    return out, dropped


def _refresh_open_shell(part: BuildResult, xtb_method: str) -> None:
    """Recompute HOMO/LUMO/gap of odd-electron molecules of a chunk cached before the ``ceil`` rule."""
    for k, atoms in enumerate(part.structures):
        charge = part.labels["formal_charge"][k]
        n_el = int(atoms.numbers.sum() - charge)
        if n_el % 2 == 0:
            continue
        res = _xtb_singlepoint(atoms.numbers, atoms.positions, method=xtb_method, charge=charge, uhf=1)
        homo, lumo = _frontier_orbitals(res)
        part.labels["homo_xtb_ev"][k], part.labels["lumo_xtb_ev"][k] = homo, lumo
        part.labels["gap_xtb_ev"][k] = lumo - homo
    part.metadata["frontier_ceil"] = True


# ---------------------------------------------------------------------------------------------- crystals


def aflow_prototypes() -> list[dict[str, Any]]:
    """pymatgen's AFLOW prototype library as ``[{"atoms", "aflow", "pearson", "strukturbericht", "mineral"}]``.

    The structures are read straight from the serialised pymatgen ``Structure`` dicts (lattice matrix and
    fractional coordinates; Cartesian = ``abc @ matrix``, as ``pymatgen`` computes them), which gives the same
    ``ase.Atoms`` as ``AseAtomsAdaptor.get_atoms(MontyDecoder().process_decoded(snl).structure)`` without
    importing pymatgen's structure machinery (seconds).
    """
    import importlib.util

    import ase
    from ase.data import atomic_numbers

    spec = importlib.util.find_spec("pymatgen")
    if spec is None or not spec.submodule_search_locations:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("pymatgen", "building the crystals dataset", "models")
    path = os.path.join(list(spec.submodule_search_locations)[0], "analysis", "prototypes",
                        "aflow_prototypes.json.gz")
    with gzip.open(path, "rt") as fh:
        entries = json.load(fh)
    out = []
    for entry in entries:
        snl = entry["snl"]
        matrix = np.array(snl["lattice"]["matrix"], dtype=float)
        symbols, frac = [], []
        for site in snl["sites"]:
            species = max(site["species"], key=lambda sp: sp["occu"])
            symbols.append(atomic_numbers[species["element"]])
            frac.append(site["abc"])
        atoms = ase.Atoms(numbers=symbols, positions=np.dot(np.array(frac, dtype=float), matrix), cell=matrix,
                          pbc=True)
        tags = entry.get("tags", {})
        out.append({"atoms": atoms, **{k: str(tags.get(k) or "") for k in ("aflow", "pearson",
                                                                              "strukturbericht", "mineral")}})
    return out


_RADIOACTIVE_OR_INERT = {43, 61, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 2, 10, 18, 36, 54}


def _substitution_candidates(z: int) -> list[int]:
    """Elements that may replace ``z``: same group, neighbouring period, radius within ±20 %."""
    from pymatgen.core import Element

    if z == 1 or z in _RADIOACTIVE_OR_INERT:
        return []
    el = Element.from_Z(z)
    r0 = el.atomic_radius
    out = []
    for z2 in range(3, 84):
        if z2 == z or z2 in _RADIOACTIVE_OR_INERT:
            continue
        e2 = Element.from_Z(z2)
        same_block = el.is_lanthanoid == e2.is_lanthanoid
        if el.is_lanthanoid:
            ok = same_block and abs(z2 - z) <= 2
        else:
            ok = same_block and e2.group == el.group and abs(e2.row - el.row) <= 1
        if ok and r0 is not None and e2.atomic_radius is not None:
            ok = 0.8 <= float(e2.atomic_radius) / float(r0) <= 1.25
        if ok:
            out.append(z2)
    return out


def _min_distance(atoms) -> float:
    if len(atoms) < 2:
        # distance to the nearest periodic image
        cell = atoms.cell[:]
        shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)
                           if (i, j, k) != (0, 0, 0)]) @ cell
        return float(np.linalg.norm(shifts, axis=1).min()) if len(atoms) else np.inf
    d = atoms.get_all_distances(mic=True)
    d[np.diag_indices_from(d)] = np.inf
    return float(d.min()) if d.size else np.inf


def crystal_variants(
    proto_atoms, *, n_variants: int, rng: np.random.Generator, p_substitute: float = 0.6,
    max_strain: float = 0.04, p_rattle: float = 0.7, max_rattle: float = 0.05
) -> list[tuple[Any, str]]:
    """Seeded variants of a prototype: ``[(atoms, transformation), ...]``, the prototype itself first.

    Each variant draws (i) with probability ``p_substitute`` an element substitution — every element with
    candidates (:func:`_substitution_candidates`) is replaced with probability 1/2, keeping elements distinct,
    and the cell is scaled isotropically by :math:`(\\sum r_{new}^3 / \\sum r_{old}^3)^{1/3}` (atomic radii,
    clipped to [0.85, 1.2]); (ii) a symmetric strain with components uniform in ±``max_strain``; (iii) with
    probability ``p_rattle`` a Gaussian rattle of σ uniform in [0.01, ``max_rattle``] Å. Variants whose shortest
    interatomic distance falls below 0.8 × that of the prototype (rescaled) are redrawn (at most 10 tries).
    """
    from pymatgen.core import Element

    base = proto_atoms.copy()
    out = [(base.copy(), "prototype")]
    zs = sorted(set(int(z) for z in base.numbers))
    cands = {z: _substitution_candidates(z) for z in zs}
    d0 = _min_distance(base)
    radius = {}

    def r(z):
        if z not in radius:
            radius[z] = Element.from_Z(z).atomic_radius
        return radius[z]

    while len(out) < n_variants:
        for _attempt in range(10):
            atoms = base.copy()
            parts = []
            scale = 1.0
            if rng.random() < p_substitute:
                mapping = {}
                taken = set(zs)
                for z in zs:
                    options = [c for c in cands[z] if c not in taken]
                    if options and rng.random() < 0.5:
                        new = int(options[rng.integers(len(options))])
                        mapping[z] = new
                        taken.add(new)
                if mapping:
                    numbers = np.array([mapping.get(int(z), int(z)) for z in atoms.numbers])
                    old = [r(int(z)) for z in atoms.numbers]
                    new = [r(int(z)) for z in numbers]
                    if all(x is not None for x in old + new):
                        scale = float(np.clip((np.sum(np.power(new, 3.0)) / np.sum(np.power(old, 3.0))) ** (1 / 3),
                                              0.85, 1.2))
                    atoms.numbers = numbers
                    atoms.set_cell(atoms.cell[:] * scale, scale_atoms=True)
                    from ase.data import chemical_symbols as sym

                    parts.append("subst(" + ",".join(f"{sym[a]}->{sym[b]}" for a, b in sorted(mapping.items()))
                                 + f";scale={scale:.4f})")
            eps = rng.uniform(-max_strain, max_strain, size=(3, 3))
            eps = (eps + eps.T) / 2
            atoms.set_cell(atoms.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
            parts.append(f"strain(max={np.abs(eps).max():.4f})")
            if rng.random() < p_rattle:
                sigma = float(rng.uniform(0.01, max_rattle))
                atoms.positions = atoms.positions + rng.normal(0.0, sigma, size=atoms.positions.shape)
                parts.append(f"rattle(sigma={sigma:.4f})")
            if _min_distance(atoms) >= 0.8 * d0 * scale:
                break
        else:
            continue  # all tries too compressed: draw again (keeps the rng stream deterministic)
        atoms.wrap()
        out.append((atoms, "+".join(parts)))
    return out


def crystal_labels(atoms) -> dict[str, float]:
    """Density (g/cm³), volume per atom (Å³), mean atomic number, number of elements and of atoms."""
    volume = float(atoms.get_volume())
    mass = float(atoms.get_masses().sum())
    return {
        "density_g_cm3": mass * AMU_G / (volume * 1e-24),
        "volume_per_atom_a3": volume / len(atoms),
        "mean_atomic_number": float(np.mean(atoms.numbers)),
        "n_elements": float(len(set(atoms.numbers.tolist()))),
        "n_atoms": float(len(atoms)),
    }


def periodic_xtb_energy(atoms, *, method: str = "GFN1-xTB", temperature: float = 9.5e-3,
                        max_iter: int = 250) -> float:
    """Γ-point periodic xTB total energy per atom (eV/atom); raises on SCF failure.

    ``temperature`` is the electronic (Fermi) smearing in Hartree (9.5e-3 Ha ≈ 3,000 K), which makes metals
    converge; the cell is neutral and closed-shell (``uhf=0``).
    """
    res = _xtb_singlepoint(atoms.numbers, atoms.positions, method=method, cell_ang=atoms.cell[:],
                           temperature=temperature, max_iter=max_iter)
    energy = float(res.get("energy")) * HARTREE_EV / len(atoms)
    if not np.isfinite(energy):
        raise DatasetError("periodic xTB returned a non-finite energy")
    return energy


def _free_atom_energies(elements, *, method: str) -> dict[int, float]:
    """xTB energy (eV) of each free atom (non-periodic, uhf = Z % 2); NaN where the SCF fails."""
    out = {}
    for z in sorted(elements):
        try:
            res = _xtb_singlepoint([z], np.zeros((1, 3)), method=method, uhf=z % 2)
            out[z] = float(res.get("energy")) * HARTREE_EV
        except Exception:  # noqa: BLE001 - tblite.exceptions.TBLiteRuntimeError
            out[z] = np.nan
    return out


def _xtb_worker(args):
    numbers, positions, cell, method, temperature = args
    import ase
    from threadpoolctl import threadpool_limits

    atoms = ase.Atoms(numbers=numbers, positions=positions, cell=cell, pbc=True)
    try:
        with threadpool_limits(limits=1):
            return periodic_xtb_energy(atoms, method=method, temperature=temperature), None
    except Exception as exc:
        return np.nan, type(exc).__name__


#: Units of the crystal labels (stored in the metadata).
CRYSTAL_UNITS = {
    "density_g_cm3": "g/cm³",
    "volume_per_atom_a3": "Å³/atom",
    "mean_atomic_number": "dimensionless",
    "n_elements": "count",
    "n_atoms": "count",
    "energy_xtb_per_atom_ev": "eV/atom (GFN1-xTB, Γ point, NaN where not computed, not converged or unphysical)",
    "cohesive_energy_xtb_ev": "eV/atom (energy_xtb_per_atom_ev minus the mean free-atom GFN1-xTB energy)",
    "has_xtb_energy": "1 when energy_xtb_per_atom_ev is present, else 0",
}


def build_crystals(
    prototypes: list[dict[str, Any]],
    *,
    seed: int = 0,
    n_variants: int = 11,
    max_atoms: int = 64,
    xtb: bool = True,
    xtb_method: str = "GFN1-xTB",
    xtb_max_atoms: int = 12,
    xtb_timeout_s: float = 30.0,
    xtb_budget_s: float = 1200.0,
    temperature: float = 9.5e-3,
    density_bounds: tuple[float, float] = (0.05, 25.0),
    cohesive_window: tuple[float, float] = (-15.0, 1.0),
    progress: Callable[[str, int, int, float], None] | None = None,
) -> BuildResult:
    """Build the ``crystals`` dataset from AFLOW prototypes (see :func:`crystal_variants`).

    Parameters
    ----------
    prototypes : list of dict
        As returned by :func:`aflow_prototypes`.
    seed : int
        Variant ``j`` of prototype ``i`` uses ``numpy.random.default_rng([seed, i])``, so a subset of
        prototypes gives the same variants as the full run.
    n_variants : int
        Structures per prototype (the prototype itself included).
    max_atoms : int
        Prototypes with more atoms are dropped (recorded).
    xtb_max_atoms, xtb_timeout_s, xtb_budget_s : int, float, float
        Periodic xTB runs only for cells with at most ``xtb_max_atoms`` atoms, each in a worker process killed
        after ``xtb_timeout_s``, in a seeded random order until ``xtb_budget_s`` seconds of xTB have been spent. Which
        structures got an energy is recorded (``has_xtb_energy``; the failures by reason in the metadata).
    density_bounds : (float, float)
        Structures whose density (g/cm³) falls outside are dropped (counted in the metadata).
    cohesive_window : (float, float)
        xTB energies whose cohesive energy per atom (against the free atoms, eV) falls outside this window are
        rejected as unphysical (Γ-point SCF on tiny or over-compressed cells) and counted.
    """
    import multiprocessing as mp

    t0 = time.perf_counter()
    out = BuildResult()
    dropped: Counter = Counter()
    for i, proto in enumerate(prototypes):
        atoms0 = proto["atoms"]
        if len(atoms0) > max_atoms:
            dropped["too_many_atoms"] += 1
            continue
        rng = np.random.default_rng([int(seed), i])
        for j, (atoms, how) in enumerate(crystal_variants(atoms0, n_variants=n_variants, rng=rng)):
            atoms.positions = atoms.positions.astype(np.float32).astype(np.float64)
            atoms.cell = atoms.cell[:].astype(np.float32).astype(np.float64)
            labels = crystal_labels(atoms)
            if not density_bounds[0] < labels["density_g_cm3"] < density_bounds[1]:
                dropped["density_out_of_bounds"] += 1
                continue
            out.add(f"aflow{i:03d}-{j:02d}", atoms, labels, None,
                    {"prototype": proto["aflow"], "pearson": proto["pearson"],
                     "strukturbericht": proto["strukturbericht"], "mineral": proto["mineral"],
                     "transformation": how})
        if progress is not None:
            progress("structures", i + 1, len(prototypes), time.perf_counter() - t0)

    n = len(out.ids)
    energy = np.full(n, np.nan)
    xtb_status: Counter = Counter()
    t_xtb = 0.0
    if xtb:
        ctx = mp.get_context("fork")
        pool = ctx.Pool(1)
        try:
            # a seeded random order, so that a budget cut leaves a random subset (not the first prototypes)
            order = np.random.default_rng([int(seed), 1 << 20]).permutation(n)
            xtb_status["skipped_too_many_atoms"] = sum(len(a) > xtb_max_atoms for a in out.structures)
            for k in order:
                atoms = out.structures[k]
                if len(atoms) > xtb_max_atoms:
                    continue
                if t_xtb > xtb_budget_s:
                    xtb_status["skipped_budget"] += 1
                    continue
                t1 = time.perf_counter()
                job = pool.apply_async(_xtb_worker, ((atoms.numbers, atoms.positions, atoms.cell[:],
                                                      xtb_method, temperature),))
                try:
                    value, err = job.get(timeout=xtb_timeout_s)
                except mp.TimeoutError:
                    pool.terminate()
                    pool = ctx.Pool(1)
                    value, err = np.nan, "timeout"
                t_xtb += time.perf_counter() - t1
                energy[k] = value
                xtb_status["ok" if err is None else f"failed_{err}"] += 1
                if progress is not None:
                    progress("xtb", sum(xtb_status.values()), n, t_xtb)
        finally:
            pool.terminate()
    # cohesive energy against the free atoms (same method, spin from electron parity); Γ-point xTB of tiny
    # or over-compressed cells sometimes "converges" to nonsense, caught by a physical window
    cohesive = np.full(n, np.nan)
    if xtb and np.isfinite(energy).any():
        atom_e = _free_atom_energies({int(z) for k in np.flatnonzero(np.isfinite(energy))
                                      for z in out.structures[k].numbers}, method=xtb_method)
        for k in np.flatnonzero(np.isfinite(energy)):
            ref = np.mean([atom_e.get(int(z), np.nan) for z in out.structures[k].numbers])
            cohesive[k] = energy[k] - ref
            if not cohesive_window[0] <= cohesive[k] <= cohesive_window[1]:
                energy[k] = cohesive[k] = np.nan
                xtb_status["ok"] -= 1
                xtb_status["rejected_unphysical_cohesive_energy"] += 1
    out.labels["energy_xtb_per_atom_ev"] = list(energy)
    out.labels["cohesive_energy_xtb_ev"] = list(cohesive)
    out.labels["has_xtb_energy"] = list(np.isfinite(energy).astype(float))
    out.metadata = {
        "name": "crystals",
        "source": "pymatgen/analysis/prototypes/aflow_prototypes.json.gz (288 AFLOW prototypes, "
        "Mehl et al. 2017) with seeded variants",
        "script": "scripts/build_crystals.py",
        "builder": "matteralign.datasets.build.build_crystals",
        "seed": int(seed),
        "n_prototypes": len(prototypes),
        "n_variants_per_prototype": int(n_variants),
        "n_built": n,
        "max_atoms": int(max_atoms),
        "dropped_prototypes": {k: v for k, v in dropped.items() if k == "too_many_atoms"},
        "dropped_structures": {k: v for k, v in dropped.items() if k != "too_many_atoms"},
        "density_bounds_g_cm3": list(density_bounds),
        "cohesive_window_ev": list(cohesive_window),
        "transformations": "variant 0 = prototype; others: element substitution within a group (neighbouring "
        "period, atomic radius ±20 %, elements kept distinct, no H/noble gases/radioactive, cell scaled by radii), "
        "symmetric strain ±4 %, Gaussian rattle σ∈[0.01, 0.05] Å (p=0.7); redrawn if the shortest distance "
        "drops below 0.8× the prototype's",
        "xtb_method": xtb_method if xtb else None,
        "xtb": {"periodic": "Γ point", "electronic_temperature_hartree": temperature, "max_iter": 250,
                "max_atoms": int(xtb_max_atoms), "timeout_s": float(xtb_timeout_s),
                "budget_s": float(xtb_budget_s), "seconds_spent": round(t_xtb, 1),
                "status": dict(sorted(xtb_status.items()))},
        "units": CRYSTAL_UNITS,
        "versions": package_versions("pymatgen", "ase", "tblite", "numpy"),
        "build_seconds": round(time.perf_counter() - t0, 1),
    }
    return out
