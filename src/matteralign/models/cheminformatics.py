"""Cheminformatics baselines from SMILES (RDKit): the Morgan fingerprint and the 2D descriptors.

Both read the ``smiles`` view and return one row ``(1, d)`` per molecule. They are the classic
"no learning" baselines of molecular machine learning: a chemical language model whose neighbourhoods
match Morgan's learned substructure counts at best.

* ``morgan``: ECFP4-like bit vector, radius 2, 2048 bits (``rdFingerprintGenerator``), as 0/1 floats.
* ``rdkit-2d``: every descriptor of ``rdkit.Chem.Descriptors._descList`` (217 in RDKit 2026.09), raw
  values, no standardisation. A descriptor that raises, returns NaN/inf, or overflows float32 is set to
  0 and **counted** per descriptor name in :meth:`provenance` (``replaced``), never silently.

References: Rogers & Hahn, J. Chem. Inf. Model. 50, 742 (2010), doi:10.1021/ci100050t (ECFP);
RDKit: Open-source cheminformatics, https://www.rdkit.org.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from ..errors import InputError
from ._registry import ModelSpec, register
from .base import Extractor, package_version

__all__ = ["MorganExtractor", "RDKit2DExtractor", "smiles_reason", "parse_smiles"]

_F32_MAX = float(np.finfo(np.float32).max)


def parse_smiles(smiles: str):
    """RDKit molecule for ``smiles`` (``None`` when RDKit cannot parse or sanitise it); logs silenced."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        return Chem.MolFromSmiles(smiles)
    finally:
        RDLogger.EnableLog("rdApp.*")


def smiles_reason(obj: Any) -> str | None:
    """Why ``obj`` is not a SMILES RDKit can read (``None`` when it is)."""
    if not isinstance(obj, str):
        return f"expected a SMILES string; got {type(obj).__name__}"
    if not obj.strip():
        return "empty SMILES"
    if parse_smiles(obj) is None:
        return f"RDKit cannot parse SMILES {obj[:60]!r}"
    return None


class _SmilesExtractor(Extractor):
    family = "cheminformatics"
    modality = "smiles"

    def __init__(self, **options):
        options.setdefault("batch_size", 256)
        super().__init__(**options)

    def input_reason(self, obj: Any) -> str | None:
        return smiles_reason(obj)


class MorganExtractor(_SmilesExtractor):
    """Morgan (circular) fingerprint bits of a molecule.

    .. math:: b_k = \\mathbb{1}\\big[\\exists\\ \\text{atom environment } e \\text{ of radius} \\le r:
              \\operatorname{hash}(e) \\bmod 2048 = k\\big]

    Parameters
    ----------
    radius : int
        Environment radius (2 = ECFP4).
    n_bits : int
        Fingerprint length.
    **options
        Passed to :class:`~matteralign.models.base.Extractor`.

    Returns (from :meth:`embed`) one ``(1, n_bits)`` float32 row of 0/1 per SMILES.
    """

    name = "morgan"
    default_layer = "bits"

    def __init__(self, *, radius: int = 2, n_bits: int = 2048, **options):
        if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
            raise InputError(f"morgan: radius must be a non-negative integer; got {radius!r}")
        if isinstance(n_bits, bool) or not isinstance(n_bits, int) or n_bits < 1:
            raise InputError(f"morgan: n_bits must be a positive integer; got {n_bits!r}")
        self.radius, self.n_bits = radius, n_bits
        super().__init__(**options)
        self._gen = None

    def _embed(self, inputs: list[Any], layer: str) -> list[np.ndarray]:
        if self._gen is None:
            from rdkit.Chem import rdFingerprintGenerator

            self._gen = rdFingerprintGenerator.GetMorganGenerator(radius=self.radius, fpSize=self.n_bits)
        return [self._gen.GetFingerprintAsNumPy(parse_smiles(s)).astype(np.float32)[None, :] for s in inputs]

    def _provenance(self) -> dict[str, Any]:
        return {"package": "rdkit", "package_version": package_version("rdkit"), "radius": self.radius,
                "n_bits": self.n_bits, "n_features": self.n_bits, "per_atom": False}


class RDKit2DExtractor(_SmilesExtractor):
    """RDKit's 2D molecular descriptors (``Descriptors._descList``), raw values.

    Non-finite values (a descriptor that raises, NaN, ±inf, or a magnitude beyond float32) are set to 0;
    how many were replaced, per descriptor, is kept in ``self.replaced`` and in :meth:`provenance`.

    Returns (from :meth:`embed`) one ``(1, n_descriptors)`` float32 row per SMILES, columns in the order of
    :attr:`descriptor_names`.

    Notes
    -----
    Unscaled: magnitudes differ by orders (molecular weight ~10², fractions ~1, Ipc up to ~10³⁰ which is
    replaced when it overflows float32). Metrics that depend on scale see this; standardise downstream if
    wanted. Cost ~5 ms per drug-like molecule.
    """

    name = "rdkit-2d"
    default_layer = "descriptors"

    def __init__(self, **options):
        super().__init__(**options)
        from rdkit.Chem import Descriptors

        self._functions = list(Descriptors._descList)
        self.descriptor_names: list[str] = [n for n, _ in self._functions]
        self.replaced: Counter[str] = Counter()
        self.n_molecules = 0
        self._warned = False

    def values(self, smiles: str) -> tuple[np.ndarray, list[str]]:
        """Raw float64 descriptor values of one molecule and the names of those that raised.

        Returns
        -------
        values : ndarray, shape (n_descriptors,), float64
            NaN where a descriptor raised.
        failed : list of str
        """
        mol = parse_smiles(smiles)
        if mol is None:
            raise InputError(f"rdkit-2d: RDKit cannot parse SMILES {smiles[:60]!r}")
        vals = np.empty(len(self._functions), dtype=np.float64)
        failed = []
        for j, (n, fn) in enumerate(self._functions):
            try:
                vals[j] = float(fn(mol))
            except Exception:  # RDKit descriptors raise on exotic molecules; counted below
                vals[j] = np.nan
                failed.append(n)
        return vals, failed

    def _embed(self, inputs: list[Any], layer: str) -> list[np.ndarray]:
        out = []
        for s in inputs:
            vals, _ = self.values(s)
            bad = ~np.isfinite(vals) | (np.abs(vals) > _F32_MAX)
            for j in np.flatnonzero(bad):
                self.replaced[self.descriptor_names[j]] += 1
            if bad.any() and not self._warned:
                import warnings

                self._warned = True
                names = ", ".join(self.descriptor_names[j] for j in np.flatnonzero(bad))
                warnings.warn(f"rdkit-2d: non-finite descriptor values replaced by 0 (first: {s[:40]!r}: {names}); "
                              "counts per descriptor are in provenance()['replaced']", RuntimeWarning, stacklevel=2)
            vals[bad] = 0.0
            self.n_molecules += 1
            out.append(vals.astype(np.float32)[None, :])
        return out

    def _provenance(self) -> dict[str, Any]:
        return {"package": "rdkit", "package_version": package_version("rdkit"),
                "descriptors": self.descriptor_names, "n_features": len(self.descriptor_names),
                "standardised": False, "nonfinite_policy": "replaced by 0 (NaN, inf, raised, |x| > float32 max)",
                "replaced": dict(sorted(self.replaced.items())), "n_replaced": int(sum(self.replaced.values())),
                "n_molecules": self.n_molecules, "per_atom": False}


register(ModelSpec(
    name="morgan", factory=f"{__name__}:MorganExtractor", family="cheminformatics", modality="smiles", kind="descriptor",
    embedding_type="descriptor",
    layers=("bits",), default_layer="bits", requires=("rdkit",),
    description="Morgan fingerprint from SMILES (RDKit; radius 2, 2048 bits), one row per molecule",
))
register(ModelSpec(
    name="rdkit-2d", factory=f"{__name__}:RDKit2DExtractor", family="cheminformatics", modality="smiles", kind="descriptor",
    embedding_type="descriptor",
    layers=("descriptors",), default_layer="descriptors", requires=("rdkit",),
    description="RDKit 2D descriptors (Descriptors._descList, raw; non-finite → 0, counted), one row per molecule",
))
