"""ANI-1x adapter (``torchani==2.2.4``, whose wheel bundles the ANI-1x ensemble in NeuroChem format).

ANI-1x (Smith et al., J. Chem. Phys. 148, 241733 (2018), arXiv:1801.09319) maps each atom's
atomic environment vector (AEV, 384-d) through an element-specific MLP to an atomic energy.
We use the **first** ensemble member (``train0``): hidden features of different members are not
aligned with one another. Layers (forward hooks on the real modules):

``penultimate`` (default)
    The 96-d output of each element network's ``[-2]`` module (CELU after the last hidden
    Linear), i.e. the features entering the final ``Linear(96 → 1)``.
``aev``
    The AEV computed by ``aev_computer`` (384-d).

Only H, C, N and O are known; other elements are skipped with a reason. Only non-periodic
structures (molecules) are embedded. The model is built from the resource files inside the wheel
(the wheel's ``ani-1x_8x.info`` is empty, so ``torchani.models.ANI1x()`` would try to download).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from ._atoms import capture, count_parameters, relative_to_package, structure_reason
from ._registry import ModelSpec, register
from .base import Extractor, package_version

__all__ = ["ANIExtractor"]

_RES = "resources/ani-1x_8x"
_CONST = "rHCNO-5.2R_16-3.5A_a4-8.params"
_SAE = "sae_linfit.dat"
_Z = {1: "H", 6: "C", 7: "N", 8: "O"}
#: Layers in forward order (the AEV enters the element networks; ``penultimate`` enters their last Linear).
LAYERS = ("aev", "penultimate")


def _resource_dir() -> str | None:
    import importlib.util

    spec = importlib.util.find_spec("torchani")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], _RES)


def _check() -> str | None:
    res = _resource_dir()
    if res is None or not os.path.isfile(os.path.join(res, _CONST)) or not os.path.isdir(
        os.path.join(res, "train0", "networks")
    ):
        return "ANI-1x resources not found in the torchani package (torchani==2.2.4 bundles them)"
    try:
        import importlib.util

        if importlib.util.find_spec("pkg_resources") is None:
            return "torchani 2.2.4 needs pkg_resources (setuptools<81)"
    except (ImportError, ValueError):  # pragma: no cover
        return "torchani 2.2.4 needs pkg_resources (setuptools<81)"
    return None


def _import_torchani():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "cuaev not installed", pkg_resources deprecation
        import torchani
        from torchani import neurochem
    return torchani, neurochem


class ANIExtractor(Extractor):
    """Per-atom features of one ANI-1x ensemble member.

    Parameters
    ----------
    member : int
        Ensemble member (0–7); 0 by default.
    name : str, optional
        Registry name recorded in the store.
    **options
        ``device``, ``seed``, ``num_threads``, ``batch_size`` (see :class:`Extractor`).
    """

    family = "ani"
    modality = "atoms"
    default_layer = "penultimate"

    def __init__(self, *, member: int = 0, name: str | None = None, **options: Any):
        super().__init__(**options)
        from ..errors import ModelError

        reason = _check()
        if reason:
            raise ModelError(reason)
        if not isinstance(member, int) or not 0 <= member < 8:
            raise ModelError(f"ANI-1x ensemble member must be an integer in [0, 7]; got {member!r}")
        self.member = member
        self.name = name or ("ani-1x" if member == 0 else f"ani-1x-m{member}")
        res = _resource_dir()
        self.const_file = os.path.join(res, _CONST)
        self.sae_file = os.path.join(res, _SAE)
        self.network_dir = os.path.join(res, f"train{member}", "networks")

        torchani, neurochem = _import_torchani()
        from torchani.models import BuiltinModel

        consts = neurochem.Constants(self.const_file)
        energy_shifter, sae_dict = neurochem.load_sae(self.sae_file, return_dict=True)
        model = BuiltinModel(
            torchani.nn.SpeciesConverter(consts.species),
            torchani.AEVComputer(**consts),
            neurochem.load_model(consts.species, self.network_dir),
            energy_shifter,
            consts.species_to_tensor,
            consts,
            sae_dict,
            periodic_table_index=True,
        )
        self.model = model.to(self.device).eval()
        self.species = list(consts.species)  # ['H', 'C', 'N', 'O']

    # ------------------------------------------------------------------ protocol
    def layers(self) -> list[str]:
        return list(LAYERS)

    def input_reason(self, obj: Any) -> str | None:
        reason = structure_reason(obj, allowed_z=set(_Z))
        if reason is not None:
            return reason
        if obj.get_pbc().any():
            return "ANI-1x adapter embeds non-periodic structures (molecules) only"
        return None

    def _forward(self, atoms_list, layers: list[str]):
        """Padded batches of ``batch_size`` molecules; returns (per-layer per-structure features, energies in Ha)."""
        import torch

        nets = list(self.model.neural_networks.values())
        modules = {}
        if "aev" in layers:
            modules["aev"] = self.model.aev_computer
        if "penultimate" in layers:
            modules.update({str(i): net[-2] for i, net in enumerate(nets)})
        take = lambda n, out: out[1] if n == "aev" else out  # noqa: E731 - the AEV computer returns (species, aev)
        feats: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
        energies = []
        bs = self.batch_size
        with capture(modules, take=take) as got:
            for start in range(0, len(atoms_list), bs):
                chunk = atoms_list[start:start + bs]
                n_max = max(len(a) for a in chunk)
                Z = torch.zeros((len(chunk), n_max), dtype=torch.long)
                R = torch.zeros((len(chunk), n_max, 3), dtype=torch.float32)
                for j, a in enumerate(chunk):
                    Z[j, : len(a)] = torch.as_tensor(a.get_atomic_numbers())
                    R[j, : len(a)] = torch.as_tensor(a.get_positions(), dtype=torch.float32)
                Z[Z == 0] = -1  # padding
                for v in got.values():
                    v.clear()
                with torch.no_grad():
                    out = self.model((Z.to(self.device), R.to(self.device)))
                energies.append(out.energies.detach().cpu().numpy().astype(np.float64))
                if not layers:
                    continue
                species = self.model.species_converter((Z, R)).species.flatten()
                for layer in layers:
                    if layer == "aev":
                        (x,) = got["aev"]
                        flat = x.flatten(0, 1)
                    else:
                        flat = None
                        for i in range(len(nets)):
                            if not got[str(i)]:
                                continue
                            (h,) = got[str(i)]
                            if flat is None:
                                flat = h.new_zeros((species.numel(), h.shape[1]))
                            # ANIModel evaluates net i on the atoms with species == i, in flattened order
                            flat[species == i] = h
                    flat = flat.view(len(chunk), n_max, -1).cpu().numpy()
                    feats[layer].extend(flat[j, : len(a)] for j, a in enumerate(chunk))
        return feats, np.concatenate(energies)

    def _embed(self, inputs, layer):
        return self._forward(inputs, [layer])[0][layer]

    def _embed_layers(self, inputs, layers):
        return self._forward(inputs, layers)[0]

    def predict_energy(self, atoms_list, *, unit: str = "eV") -> np.ndarray:
        """ANI-1x (this member's) total energy per molecule.

        Parameters
        ----------
        atoms_list : sequence of ase.Atoms
        unit : {"eV", "Ha"}

        Returns
        -------
        ndarray, shape (n_structures,), float64
        """
        from ..errors import InputError

        if unit not in ("eV", "Ha"):
            raise InputError(f"unit must be 'eV' or 'Ha'; got {unit!r}")
        atoms_list = self._checked_structures(atoms_list)
        with self._runtime():
            e = self._forward(atoms_list, [])[1]
        if unit == "eV":
            from ase.units import Hartree

            e = e * Hartree
        return e

    def _provenance(self) -> dict[str, Any]:
        import hashlib

        h = hashlib.sha256()
        files = [self.const_file, self.sae_file] + sorted(
            os.path.join(self.network_dir, f) for f in os.listdir(self.network_dir)
        )
        for f in files:
            h.update(os.path.basename(f).encode() + b"\0")
            with open(f, "rb") as fh:
                h.update(fh.read())
        return {
            "package": "torchani",
            "package_version": package_version("torchani"),
            "ensemble_member": self.member,
            "weights": relative_to_package(self.network_dir, "torchani"),
            "weights_sha256": h.hexdigest(),
            "weights_hash_of": "the .params and sae files and every file of the member's networks/ folder",
            "n_parameters": count_parameters(self.model),
            "elements": self.species,
            "energy_unit": "Hartree (predict_energy converts to eV by default)",
        }


register(
    ModelSpec(
        name="ani-1x",
        factory=f"{__name__}:ANIExtractor",
        family="ani", kind="mlip", embedding_type="invariant", properties=("energy",), gpu=True,
        modality="atoms",
        layers=LAYERS,
        default_layer="penultimate",
        widths=(384, 96),
        kwargs={"member": 0, "name": "ani-1x"},
        requires=("torchani", "torch", "ase"),
        check=_check,
        description="ANI-1x (member 0; H, C, N, O molecules), penultimate per atom, 96-d",
    )
)
