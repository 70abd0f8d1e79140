"""Physics-based reference descriptors: SOAP, ACSF (dscribe) and the element composition.

These are the *hand-made* baselines of the study: a learned representation that agrees with SOAP
no better than with the composition vector has learned little beyond chemistry. All three read the
``atoms`` view and return per-atom features ``(n_atoms, d)``; the store's mean pooling turns them into
one row per structure (for :class:`CompositionExtractor` that row is exactly the element-fraction vector).

Species lists are **fixed** (not taken from the data), so features of different datasets live in the
same space. A structure with an element outside the list is skipped with a reason, never embedded with a
silently dropped atom.

Choices (recorded in :meth:`~matteralign.models.base.Extractor.provenance`):

* ``soap``: every element Z = 1..94, ``r_cut`` = 5 Å, ``n_max`` = 3, ``l_max`` = 3, Gaussian width
  ``sigma`` = 0.5 Å, GTO radial basis, with the "mu1nu1" species compression of Darby et al. (2022)
  so that d = 94 · n_max² · (l_max + 1) = 3,384 grows linearly with the number of species
  (uncompressed, 94 species would give ~180,000 features per atom).
* ``acsf``: the 12 elements of organic chemistry and the NCI/QM9 sets (H, B, C, N, O, F, Si, P, S, Cl,
  Br, I), ``r_cut`` = 6 Å, 8 radial G2 (R_s = 0, η from 0.003 to 1.4 Å⁻²) and 6 angular G4
  (η = 0.005 Å⁻², ζ ∈ {1, 2, 4}, λ = ±1): d = 12·(1 + 8) + 78·6 = 576. ACSF grows with the square of the
  number of species, so crystals with other elements are skipped.
* ``composition``: one-hot of Z over Z = 1..94 per atom; its mean over atoms is the element fraction.

References: Bartók, Kondor & Csányi, PRB 87, 184115 (2013), doi:10.1103/PhysRevB.87.184115 (SOAP);
Behler, J. Chem. Phys. 134, 074106 (2011), doi:10.1063/1.3553717 (ACSF); Darby, Kermode & Csányi,
npj Comput. Mater. 8, 166 (2022), doi:10.1038/s41524-022-00847-y (compression); Himanen et al.,
Comput. Phys. Commun. 247, 106949 (2020), doi:10.1016/j.cpc.2019.106949 (dscribe).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError, MissingDependencyError
from ._registry import ModelSpec, register
from .base import Extractor, package_version

__all__ = [
    "SoapExtractor",
    "AcsfExtractor",
    "CompositionExtractor",
    "SOAP_SPECIES",
    "ACSF_SPECIES",
    "COMPOSITION_MAX_Z",
    "atoms_reason",
    "clean_atoms",
]

#: Highest atomic number of the composition vector and of the SOAP species (Pu).
COMPOSITION_MAX_Z = 94
#: SOAP species: every element from H to Pu.
SOAP_SPECIES: tuple[int, ...] = tuple(range(1, COMPOSITION_MAX_Z + 1))
#: ACSF species: H, B, C, N, O, F, Si, P, S, Cl, Br, I.
ACSF_SPECIES: tuple[int, ...] = (1, 5, 6, 7, 8, 9, 14, 15, 16, 17, 35, 53)

_ACSF_G2 = ((0.003214, 0.0), (0.035711, 0.0), (0.071421, 0.0), (0.124987, 0.0),
            (0.214264, 0.0), (0.357106, 0.0), (0.714213, 0.0), (1.428426, 0.0))
_ACSF_G4 = tuple((0.005, zeta, lam) for zeta in (1.0, 2.0, 4.0) for lam in (1.0, -1.0))


def atoms_reason(atoms: Any, species: tuple[int, ...] | None = None) -> str | None:
    """Why ``atoms`` is not a structure a descriptor can read (``None`` when it is).

    Parameters
    ----------
    atoms : object
        Expected: a non-empty ``ase.Atoms`` with finite positions and, in periodic directions, a cell
        of non-zero volume.
    species : tuple of int, optional
        Allowed atomic numbers; ``None`` allows any Z ≥ 1.

    Returns
    -------
    str or None
        A one-line reason naming the offending value.
    """
    import ase

    if not isinstance(atoms, ase.Atoms):
        return f"expected an ase.Atoms; got {type(atoms).__name__}"
    if len(atoms) == 0:
        return "structure has no atoms"
    if not np.all(np.isfinite(atoms.positions)):
        return "structure has non-finite positions"
    numbers = np.asarray(atoms.numbers)
    if numbers.min() < 1:
        return f"structure has atomic number {int(numbers.min())}; expected Z >= 1"
    if species is not None:
        bad = sorted(set(numbers.tolist()) - set(species))
        if bad:
            from ase.data import chemical_symbols

            names = ", ".join(chemical_symbols[z] if z < len(chemical_symbols) else str(z) for z in bad)
            return f"element(s) {names} outside the species list of this descriptor"
    if atoms.pbc.any():
        cell = np.asarray(atoms.cell[:])
        lengths = np.linalg.norm(cell, axis=1)
        if np.any(lengths[atoms.pbc] == 0) or (atoms.pbc.all() and abs(np.linalg.det(cell)) < 1e-8):
            return "periodic structure has a degenerate cell"
    return None


def clean_atoms(atoms):
    """A bare copy of ``atoms`` (numbers, positions, cell, pbc) without calculator, momenta or info.

    dscribe reads momenta, constraints and the calculator of the object it is given (and fails on some
    of them with ase ≥ 3.26); features depend only on these four arrays.
    """
    import ase

    return ase.Atoms(numbers=np.asarray(atoms.numbers), positions=np.asarray(atoms.positions, dtype=float),
                     cell=np.asarray(atoms.cell[:], dtype=float), pbc=np.asarray(atoms.pbc))


class _DscribeExtractor(Extractor):
    """Shared machinery: one dscribe descriptor for molecules and one for periodic structures."""

    family = "descriptor"
    modality = "atoms"
    species: tuple[int, ...] = ()

    def __init__(self, **options):
        super().__init__(**options)
        try:
            import dscribe  # noqa: F401
        except ImportError:  # pragma: no cover - guarded by the registry
            raise MissingDependencyError("dscribe", f"model {self.name!r}", extra="models") from None
        self._cache: dict[bool, Any] = {}

    def _build(self, periodic: bool):  # pragma: no cover - abstract
        raise NotImplementedError

    def descriptor(self, periodic: bool):
        """The dscribe descriptor used for periodic (``True``) or isolated (``False``) structures."""
        if periodic not in self._cache:
            self._cache[periodic] = self._build(periodic)
        return self._cache[periodic]

    @property
    def n_features(self) -> int:
        """Number of features per atom."""
        return int(self.descriptor(False).get_number_of_features())

    def input_reason(self, obj: Any) -> str | None:
        return atoms_reason(obj, self.species)

    def _embed(self, inputs: list[Any], layer: str) -> list[np.ndarray]:
        out = []
        for atoms in inputs:
            desc = self.descriptor(bool(atoms.pbc.any()))
            x = np.asarray(desc.create(clean_atoms(atoms), n_jobs=1), dtype=np.float64)
            out.append(x.reshape(len(atoms), -1).astype(np.float32))
        return out

    def _settings(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _provenance(self) -> dict[str, Any]:
        return {
            "package": "dscribe",
            "package_version": package_version("dscribe"),
            "ase": package_version("ase"),
            "n_features": self.n_features,
            "species": list(self.species),
            "settings": self._settings(),
            "per_atom": True,
        }


class SoapExtractor(_DscribeExtractor):
    """Smooth Overlap of Atomic Positions power spectrum per atom (dscribe).

    .. math:: p^{Z_1}_{n n' l}(i) = \\pi \\sqrt{\\tfrac{8}{2l+1}} \\sum_m
              \\big(c^{Z_1}_{nlm}(i)\\big)^{*} \\sum_{Z_2} c^{Z_2}_{n'lm}(i)

    where :math:`c^{Z}_{nlm}(i)` expands the Gaussian-smeared density of species ``Z`` around atom ``i``
    on radial basis ``n`` and spherical harmonic ``(l, m)`` ("mu1nu1" compression).

    Parameters
    ----------
    species : sequence of int
        Allowed atomic numbers (default: Z = 1..94).
    r_cut, n_max, l_max, sigma : float, int, int, float
        Cutoff [Å], radial and angular basis sizes, Gaussian width [Å].
    compression : {"mu1nu1", "crossover", "off", "mu2"}
        dscribe's species compression.
    **options
        Passed to :class:`~matteralign.models.base.Extractor`.

    Notes
    -----
    Invariant to rotation, translation and permutation of atoms (features follow their atom).
    Molecules (no periodic direction) use a non-periodic descriptor; crystals a periodic one with the
    same basis. Cost ~0.1 s per 100 small molecules; memory d·4 bytes per atom.
    """

    name = "soap"
    default_layer = "soap"

    def __init__(self, *, species=SOAP_SPECIES, r_cut: float = 5.0, n_max: int = 3, l_max: int = 3,
                 sigma: float = 0.5, compression: str = "mu1nu1", **options):
        self.species = tuple(int(z) for z in species)
        if not self.species:
            raise InputError("soap: species must list at least one atomic number")
        self.r_cut, self.n_max, self.l_max, self.sigma = float(r_cut), int(n_max), int(l_max), float(sigma)
        self.compression = compression
        super().__init__(**options)

    def _build(self, periodic: bool):
        from dscribe.descriptors import SOAP

        return SOAP(species=list(self.species), r_cut=self.r_cut, n_max=self.n_max, l_max=self.l_max,
                    sigma=self.sigma, rbf="gto", periodic=periodic, compression={"mode": self.compression},
                    sparse=False, dtype="float64")

    def _settings(self) -> dict[str, Any]:
        return {"r_cut": self.r_cut, "n_max": self.n_max, "l_max": self.l_max, "sigma": self.sigma,
                "rbf": "gto", "compression": self.compression}


class AcsfExtractor(_DscribeExtractor):
    """Atom-centred symmetry functions per atom (dscribe): radial G2 and angular G4.

    .. math:: G^2_i = \\sum_{j} e^{-\\eta (R_{ij} - R_s)^2} f_c(R_{ij}), \\qquad
              G^4_i = 2^{1-\\zeta} \\sum_{j,k \\neq i} (1 + \\lambda \\cos\\theta_{ijk})^{\\zeta}
              e^{-\\eta (R_{ij}^2 + R_{ik}^2 + R_{jk}^2)} f_c(R_{ij}) f_c(R_{ik}) f_c(R_{jk})

    resolved by neighbour species (G2) and species pair (G4), plus one G1 (cutoff sum) per species.

    Parameters
    ----------
    species : sequence of int
        Allowed atomic numbers (default :data:`ACSF_SPECIES`).
    r_cut : float
        Cutoff [Å].
    g2_params, g4_params : sequence of tuples
        ``(eta, R_s)`` and ``(eta, zeta, lambda)``.
    **options
        Passed to :class:`~matteralign.models.base.Extractor`.

    Notes
    -----
    Invariant to rotation, translation and permutation. d = S(1 + n_G2) + S(S+1)/2 · n_G4 for S species.
    """

    name = "acsf"
    default_layer = "acsf"

    def __init__(self, *, species=ACSF_SPECIES, r_cut: float = 6.0, g2_params=_ACSF_G2, g4_params=_ACSF_G4,
                 **options):
        self.species = tuple(int(z) for z in species)
        if not self.species:
            raise InputError("acsf: species must list at least one atomic number")
        self.r_cut = float(r_cut)
        self.g2_params = tuple(tuple(float(v) for v in p) for p in g2_params)
        self.g4_params = tuple(tuple(float(v) for v in p) for p in g4_params)
        super().__init__(**options)

    def _build(self, periodic: bool):
        from dscribe.descriptors import ACSF

        return ACSF(species=list(self.species), r_cut=self.r_cut,
                    g2_params=[list(p) for p in self.g2_params] or None,
                    g4_params=[list(p) for p in self.g4_params] or None,
                    periodic=periodic, sparse=False, dtype="float64")

    def _settings(self) -> dict[str, Any]:
        return {"r_cut": self.r_cut, "g2_params": [list(p) for p in self.g2_params],
                "g4_params": [list(p) for p in self.g4_params]}


class CompositionExtractor(Extractor):
    """Element composition: a one-hot of the atomic number per atom, Z = 1..94.

    .. math:: h_i = e_{Z_i} \\in \\{0, 1\\}^{94}, \\qquad
              \\bar h = \\frac{1}{n}\\sum_i h_i = (x_1, \\dots, x_{94}),\\ x_Z = n_Z / n

    Per-atom rows (the atoms-model contract), so the store's mean pooling gives the element-fraction
    vector exactly; sum pooling gives element counts.

    Notes
    -----
    Invariant to every geometric transformation; blind to structure. Structures with Z > 94 are skipped.
    """

    name = "composition"
    family = "descriptor"
    modality = "atoms"
    default_layer = "fraction"

    def input_reason(self, obj: Any) -> str | None:
        return atoms_reason(obj, SOAP_SPECIES)

    def _embed(self, inputs: list[Any], layer: str) -> list[np.ndarray]:
        out = []
        for atoms in inputs:
            x = np.zeros((len(atoms), COMPOSITION_MAX_Z), dtype=np.float32)
            x[np.arange(len(atoms)), np.asarray(atoms.numbers) - 1] = 1.0
            out.append(x)
        return out

    def _provenance(self) -> dict[str, Any]:
        return {"n_features": COMPOSITION_MAX_Z, "features": "one-hot Z=1..94 per atom; mean = element fraction",
                "per_atom": True}


register(ModelSpec(
    name="soap", factory=f"{__name__}:SoapExtractor", family="descriptor", modality="atoms", kind="descriptor",
    embedding_type="descriptor",
    layers=("soap",), default_layer="soap", requires=("dscribe", "ase"),
    description="SOAP power spectrum per atom (dscribe; Z=1..94, r_cut 5 Å, n_max 3, l_max 3, mu1nu1; d=3384)",
))
register(ModelSpec(
    name="acsf", factory=f"{__name__}:AcsfExtractor", family="descriptor", modality="atoms", kind="descriptor",
    embedding_type="descriptor",
    layers=("acsf",), default_layer="acsf", requires=("dscribe", "ase"),
    description="Behler-Parrinello symmetry functions per atom (dscribe; 12 organic elements, r_cut 6 Å; d=576)",
))
register(ModelSpec(
    name="composition", factory=f"{__name__}:CompositionExtractor", family="descriptor", modality="atoms", kind="descriptor",
    embedding_type="descriptor",
    layers=("fraction",), default_layer="fraction", requires=("ase",),
    description="Element one-hot per atom over Z=1..94; mean-pooled = element fractions",
))
