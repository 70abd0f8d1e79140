"""Datasets: bundled samples of matter with physical labels, ASE's collections, and file readers.

>>> from matteralign import datasets
>>> ds = datasets.load("molecules", n=1000, seed=0)        # a bundled dataset, subsampled reproducibly
>>> ds = datasets.load("path/to/train.extxyz")              # a file: the format follows the extension
>>> datasets.names()
['crystals', 'dcdft', 'g2', 'molecules', 'proteins', 's22', 'weather']

Bundled: ``molecules`` (NCI SMILES → 3D, GFN2-xTB labels), ``crystals`` (AFLOW prototypes + variants),
and ASE's ``g2``, ``s22``, ``dcdft``. Readers (by extension): extxyz (``.xyz``, ``.extxyz``), ASE database
(``.db``), ``.aselmdb`` (OMat24/OMol25/sAlex), QM9 SDF + CSV (``.sdf``), SMILES CSV (``.csv``, ``.smi``),
FASTA (``.fasta``, ``.fa``, ``.faa``), PDB/mmCIF protein structures (``.pdb``, ``.cif``; bundled: ``proteins``),
gridded weather (ERA5-style ``.nc`` NetCDF or ``.zarr``; the bundled ``weather`` grid is synthetic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DatasetError, UnknownNameError
from ..samples import Dataset

__all__ = ["DatasetInfo", "load", "names", "describe", "readers", "READERS", "dataset_name"]


@dataclass(frozen=True)
class DatasetInfo:
    """One entry of the dataset listing (``matteralign list datasets``).

    Attributes
    ----------
    name : str
    kind : str
        ``"bundled"`` (ships with matteralign or ASE) or ``"reader"`` (reads a file).
    size : str
        Number of samples, or the file extensions a reader handles.
    labels : tuple of str
        Label names (bundled) or where labels come from (readers).
    source : str
    """

    name: str
    kind: str
    size: str
    labels: tuple[str, ...]
    source: str
    loader: Callable[..., Dataset] = field(repr=False, compare=False, default=None)
    extensions: tuple[str, ...] = ()


def _bundled(name: str) -> Callable[..., Dataset]:
    def loader(**options: Any) -> Dataset:
        from . import builtin

        if name == "molecules":
            return builtin.load_molecules(**options)
        if name == "crystals":
            return builtin.load_crystals(**options)
        if name == "weather":
            from .weather import load_weather

            return load_weather(**options)
        if name == "proteins":
            from .protein import load_proteins

            return load_proteins(**options)
        return builtin.load_ase_collection(name, **options)

    return loader


def _reader(module: str, func: str) -> Callable[..., Dataset]:
    def loader(path: Path, **options: Any) -> Dataset:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{module}"), func)(path, **options)

    return loader


_MOLECULE_LABELS = ("energy_xtb_ev", "energy_xtb_per_atom_ev", "homo_xtb_ev", "lumo_xtb_ev", "gap_xtb_ev",
                    "dipole_xtb_debye", "mol_weight", "tpsa", "logp", "h_donors", "h_acceptors",
                    "rotatable_bonds", "ring_count", "heavy_atoms", "n_atoms", "formal_charge")
_CRYSTAL_LABELS = ("density_g_cm3", "volume_per_atom_a3", "mean_atomic_number", "n_elements", "n_atoms",
                   "energy_xtb_per_atom_ev", "cohesive_energy_xtb_ev", "has_xtb_energy")

BUNDLED: dict[str, DatasetInfo] = {
    "molecules": DatasetInfo(
        "molecules", "bundled", "4,938", _MOLECULE_LABELS,
        "NCI SMILES shipped with RDKit → ETKDGv3 + MMFF94 3D → GFN2-xTB (tblite) + RDKit descriptors; "
        "views atoms, smiles, selfies, text", _bundled("molecules")),
    "crystals": DatasetInfo(
        "crystals", "bundled", "3,120", _CRYSTAL_LABELS,
        "pymatgen's 288 AFLOW prototypes × seeded substitution/strain/rattle variants; GFN1-xTB energy for "
        "small cells; views atoms (periodic), text", _bundled("crystals")),
    "weather": DatasetInfo(
        "weather", "bundled", "1,280",
        ("temperature_2m_k", "specific_humidity_g_kg", "mslp_hpa", "wind_speed_10m_m_s"),
        "SYNTHETIC ERA5-style grid (not real data): 32×64 cells, 4 pressure levels, 10 times 6 h apart, seeded "
        "simple physics (scripts/build_weather.py); a sample is a (time, 4×4-cell patch); view grid",
        _bundled("weather")),
    "proteins": DatasetInfo(
        "proteins", "bundled", "27", ("n_residues", "n_atoms", "radius_of_gyration_a", "resolution_a"),
        "REAL RCSB structures 2GTL + 7OK9 (mmCIF shipped in the tmtools wheel), one sample per protein chain "
        "(≥ 20 residues; scripts/build_proteins.py); views sequence, atoms (heavy atoms)", _bundled("proteins")),
    "g2": DatasetInfo("g2", "bundled", "162", ("n_atoms",), "ase.collections.g2: G2 molecules (1–14 atoms)",
                      _bundled("g2")),
    "s22": DatasetInfo("s22", "bundled", "22", ("interaction_energy_ev", "n_atoms"),
                       "ase.collections.s22: non-covalent dimers with CCSD(T) interaction energies", _bundled("s22")),
    "dcdft": DatasetInfo(
        "dcdft", "bundled", "71",
        ("volume_wien2k_a3", "bulk_modulus_wien2k_gpa", "bulk_modulus_deriv_wien2k", "volume_exp_a3",
         "bulk_modulus_exp_gpa", "bulk_modulus_deriv_exp", "n_atoms"),
        "ase.collections.dcdft: elemental crystals of the Delta benchmark (WIEN2k, experiment)", _bundled("dcdft")),
}

READERS: dict[str, DatasetInfo] = {
    "extxyz": DatasetInfo("extxyz", "reader", ".xyz .extxyz", ("numeric info keys", "energy"),
                          "extended XYZ via ase.io", _reader("extxyz", "read_extxyz"), (".xyz", ".extxyz")),
    "asedb": DatasetInfo("asedb", "reader", ".db", ("numeric key_value_pairs", "energy"),
                         "ASE SQLite database via ase.db", _reader("asedb", "read_asedb"), (".db",)),
    "aselmdb": DatasetInfo("aselmdb", "reader", ".aselmdb", ("numeric key_value_pairs", "energy"),
                           "OMat24 / OMol25 / sAlex LMDB shards via ase-db-backends",
                           _reader("asedb", "read_aselmdb"), (".aselmdb",)),
    "qm9": DatasetInfo("qm9", "reader", ".sdf (+ .sdf.csv)", ("the CSV targets: mu, homo, lumo, gap, u0, ...",),
                       "QM9 gdb9.sdf + gdb9.sdf.csv via RDKit (H and 3D kept)", _reader("qm9", "read_qm9"),
                       (".sdf",)),
    "smiles_csv": DatasetInfo("smiles_csv", "reader", ".csv .tsv", ("numeric columns",),
                              "CSV with a SMILES column; 3D conformers optional (ETKDGv3)",
                              _reader("smiles_csv", "read_smiles_csv"), (".csv", ".tsv")),
    "structure": DatasetInfo("structure", "reader", ".pdb .ent .cif .mmcif",
                             ("n_residues, n_atoms, radius_of_gyration_a, resolution_a",),
                             "PDB/mmCIF protein structures via gemmi; a sample per chain (or per file)",
                             _reader("protein", "read_structure"), (".pdb", ".ent", ".cif", ".mmcif")),
    "fasta": DatasetInfo("fasta", "reader", ".fasta .fa .faa", ("length",), "FASTA sequences",
                         _reader("fasta", "read_fasta"), (".fasta", ".fa", ".faa", ".fas")),
    "era5": DatasetInfo("era5", "reader", ".nc .zarr",
                           ("patch means: temperature_2m_k, specific_humidity_g_kg, mslp_hpa, wind_speed_10m_m_s",),
                           "ERA5-style NetCDF/zarr via xarray (surface 2t 10u 10v msl; static lsm z slt; "
                           "z u v t q on pressure levels); a sample is a (time, patch)",
                           _reader("weather", "read_weather"), (".nc", ".nc4", ".zarr")),
}


def names() -> list[str]:
    """Names of the bundled datasets, sorted."""
    return sorted(BUNDLED)


def readers() -> list[str]:
    """Names of the file readers (the values of ``format=`` in :func:`load`), sorted."""
    return sorted(READERS)


def describe() -> list[DatasetInfo]:
    """Every bundled dataset and reader, bundled first (used by ``matteralign list datasets``)."""
    return [BUNDLED[k] for k in names()] + [READERS[k] for k in readers()]


def _detect(path: Path) -> str:
    suffix = path.suffix.lower()
    for key, info in READERS.items():
        if suffix in info.extensions:
            return key
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head.startswith(b"SQLite format 3"):
        return "asedb"
    if head.lstrip().startswith(b">"):
        return "fasta"
    first = head.split(b"\n", 1)[0].strip()
    if first.isdigit():
        return "extxyz"
    known = sorted(e for info in READERS.values() for e in info.extensions)
    raise DatasetError(
        f"cannot tell the format of {str(path)!r} (extension {suffix or 'none'!r}); known extensions: "
        f"{', '.join(known)}; or pass format= one of {readers()}"
    )


def dataset_name(name_or_path: str | Path) -> str:
    """The name a dataset has in the store, the result tables and the report.

    A bundled dataset keeps its registered name. A file is named after its file name without the extension
    (``data/my_structures.extxyz`` -> ``my_structures``, ``mols.csv`` -> ``mols``, ``train.db`` -> ``train``,
    ``era5.zarr`` -> ``era5``), unless that is the name of a bundled dataset: then the extension stays
    (``molecules.csv`` -> ``molecules.csv``), so a file never shares a store group with a bundled dataset.
    The rule depends on the file name only, so the same file gives the same name from any folder; two
    different files of the same name in one study are refused by the study.
    """
    key = str(name_or_path)
    if not isinstance(name_or_path, Path) and key in BUNDLED:
        return key
    path = Path(key).expanduser()
    name = path.name[: -len(path.suffix)] if path.suffix else path.name
    return path.name if name in BUNDLED or not name else name


def load(name_or_path: str | Path, *, n: int | None = None, seed: int = 0, format: str | None = None,
         **options: Any) -> Dataset:
    """Load a bundled dataset by name, or a dataset file by path.

    Parameters
    ----------
    name_or_path : str or Path
        A bundled name (:func:`names`) or a file path; the file format follows the extension (or the content:
        SQLite header, ``>`` FASTA header, XYZ atom count), or ``format``.
    n : int, optional
        Reproducible random subset of ``n`` samples (:meth:`Dataset.subsample`); all when None.
    seed : int
        Seed of the subset.
    format : str, optional
        Force a reader (:func:`readers`) for a path.
    **options
        ``name=`` names a file's dataset (default: :func:`dataset_name`); the others go to the reader, e.g.
        ``skip_invalid=True``, ``smiles_column="smi"``, ``labels="gdb9.sdf.csv"``, ``conformers=True``,
        ``text=False``.

    Returns
    -------
    Dataset
        ``meta`` holds the provenance (source, script, versions, drop counts, units).

    Raises
    ------
    UnknownNameError
        ``name_or_path`` is neither a bundled name nor an existing path (close matches are listed).
    DatasetError
        Unreadable, corrupt or empty file.
    """
    key = str(name_or_path)
    if format is None and key in BUNDLED:
        ds = BUNDLED[key].loader(**options)
    else:
        path = Path(key).expanduser()
        looks_like_path = isinstance(name_or_path, Path) or path.suffix != "" or "/" in key or "\\" in key
        if not path.exists():
            if looks_like_path:
                raise DatasetError(f"dataset file {str(path)!r} does not exist")
            raise UnknownNameError("dataset", key, names())
        if path.is_dir() and not (path.suffix.lower() == ".zarr" or format == "era5"):
            raise DatasetError(f"dataset path {str(path)!r} is a directory; expected a file or a bundled name")
        if format is not None and format not in READERS:
            raise UnknownNameError("dataset format", format, readers())
        try:
            ds = READERS[format or _detect(path)].loader(path, **options)
        except UnicodeDecodeError as exc:
            raise DatasetError(f"dataset file {str(path)!r} is not UTF-8 text (byte {exc.start}: "
                               f"{exc.object[exc.start:exc.start + 1]!r}); a binary file given as a text format?") from None
        if "name" not in options:
            ds.name = dataset_name(path)
    if len(ds) == 0:
        raise DatasetError(f"dataset {key!r} is empty")
    return ds.subsample(n, seed=seed) if n is not None else ds
