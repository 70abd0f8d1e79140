"""MACE adapters for local checkpoints (``mace-torch==0.3.16``, run in the ``mace`` environment).

MACE (Batatia et al., NeurIPS 2022, arXiv:2206.07697) builds many-body equivariant node features
``h_i^{(t)}`` with ``products[t]`` after each interaction ``t``. The layers are read with forward
hooks on ``model.products[t]`` (nothing is re-implemented):

* ``invariants`` (default): the scalar (``0e``) channels of every layer, concatenated,
  ``(n_atoms, C_0 · T)``: what ``MACECalculator.get_descriptors(invariants_only=True)`` returns;
* ``equivariant``: every channel of every layer (``get_descriptors(invariants_only=False)``);
  the ``l > 0`` components rotate with the structure, so this layer is not rotation invariant;
* ``readout_input``: the output of ``products[-1]``, the input of the last readout.

Checkpoints are whole-module pickles (``torch.save(model)``, the ``.model`` files of MACE-MP,
MACE-OFF and MACE-OMAT), so they load only with ``trust_checkpoint=True``. ``mace`` is imported
before ``e3nn``: under torch >= 2.6 e3nn 0.4.4 fails to import otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._hub import CheckpointExtractor
from ._registry import ModelSpec, register

__all__ = ["MACEExtractor", "LAYERS"]

LAYERS = ("invariants", "equivariant", "readout_input")


def _import_mace():
    import mace  # noqa: F401  - must come before e3nn (sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD)


class MACEExtractor(CheckpointExtractor):
    """Per-atom MACE descriptors from a local ``.model`` checkpoint.

    Parameters
    ----------
    checkpoint : path
        A MACE ``.model`` file (whole-module pickle).
    trust_checkpoint : bool
        Required (``True``): the file is unpickled with ``weights_only=False``.
    name : str, optional
    **options
        ``device``, ``seed``, ``num_threads``, ``batch_size``.
    """

    family = "mace"
    modality = "atoms"
    default_layer = "invariants"
    needs_trust = True
    package = "mace-torch"

    def _load(self) -> None:
        _import_mace()
        import torch

        model = torch.load(self.checkpoint, map_location=self.device, weights_only=False)
        if not isinstance(model, torch.nn.Module) or not hasattr(model, "products"):
            raise TypeError(f"expected a pickled MACE torch module; got {type(model).__name__}")
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.dtype = next(self.model.parameters()).dtype
        self.r_max = float(self.model.r_max)
        self.z = [int(z) for z in self.model.atomic_numbers]
        self.n_layers = len(self.model.products)
        self.n_scalars = [self._n_scalars(p) for p in self.model.products]
        self.heads = list(getattr(self.model, "heads", None) or ["Default"])

    @staticmethod
    def _n_scalars(product) -> int:
        from e3nn import o3

        irreps = o3.Irreps(str(product.linear.irreps_out))
        n = 0
        for mul, ir in irreps:
            if ir.l != 0:
                break
            n += mul
        return n

    def layers(self) -> list[str]:
        return list(LAYERS)

    def input_reason(self, obj: Any) -> str | None:
        from ._atoms import structure_reason

        return structure_reason(obj, allowed_z=set(self.z))

    def _batch(self, atoms_list):
        from mace import data
        from mace.tools import torch_geometric, utils

        table = utils.AtomicNumberTable(self.z)
        kw = {"heads": self.heads} if "heads" in data.AtomicData.from_config.__code__.co_varnames else {}
        configs = [data.config_from_atoms(a) for a in atoms_list]
        items = [data.AtomicData.from_config(c, z_table=table, cutoff=self.r_max, **kw) for c in configs]
        loader = torch_geometric.dataloader.DataLoader(dataset=items, batch_size=len(items), shuffle=False,
                                                       drop_last=False)
        return next(iter(loader)).to(self.device)

    def _forward(self, inputs, layers):
        """One forward pass: per-layer lists of per-atom arrays and the model's total energies (eV)."""
        import torch

        from ._atoms import capture

        old = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)
        try:
            mods = {str(i): p for i, p in enumerate(self.model.products)}
            with capture(mods) as got:
                batch = self._batch(inputs)
                with torch.enable_grad():  # MACE computes forces by autograd inside forward
                    out = self.model(batch.to_dict(), compute_force=False, compute_stress=False)
        finally:
            torch.set_default_dtype(old)
        outs = [got[str(i)][-1] for i in range(self.n_layers)]
        n = [len(a) for a in inputs]
        feats = {}
        for layer in layers:
            if layer == "readout_input":
                h = outs[-1]
            elif layer == "invariants":
                h = torch.cat([o[:, :k] for o, k in zip(outs, self.n_scalars, strict=True)], dim=1)
            else:
                h = torch.cat(outs, dim=1)
            feats[layer] = np.split(h.detach().cpu().numpy().astype(np.float32), np.cumsum(n)[:-1])
        energy = out["energy"].detach().cpu().numpy().astype(np.float64).reshape(-1)
        return feats, energy

    def _embed(self, inputs, layer):
        return self._forward(inputs, [layer])[0][layer]

    def embed_with_energy(self, inputs, layers) -> tuple[dict[str, list[np.ndarray]], np.ndarray]:
        """Features at ``layers`` and MACE's total energy (eV) per structure, from one forward pass."""
        inputs = self._checked_structures(inputs, "embed")
        layers = [self.resolve_layer(layer) for layer in layers]
        with self._runtime():
            return self._forward(inputs, layers)

    def predict_energy(self, atoms_list) -> np.ndarray:
        """MACE's total energy per structure, in eV (its own forward pass)."""
        return self.embed_with_energy(atoms_list, [self.default_layer])[1]

    def _hub_provenance(self) -> dict[str, Any]:
        return {"e3nn": _version("e3nn"), "r_max": self.r_max, "atomic_numbers": self.z,
                "n_interactions": self.n_layers, "scalars_per_layer": self.n_scalars,
                "dtype": str(self.dtype).replace("torch.", ""), "model_class": type(self.model).__name__}


def _version(dist):
    from .base import package_version

    return package_version(dist)


def _spec(name: str, description: str) -> ModelSpec:
    return ModelSpec(name=name, factory=f"{__name__}:MACEExtractor", family="mace", modality="atoms", kind="mlip",
                     embedding_type="invariant", layer_types={"equivariant": "equivariant"}, gpu=True,
                     properties=("energy",), energy_in_forward=True,
                     layers=LAYERS, default_layer="invariants", kwargs={"name": name},
                     requires=("mace", "e3nn", "torch", "ase"), requires_checkpoint=True,
                     description=description, env="mace")


register(_spec("mace-mp", "MACE-MP style checkpoint (.model, trusted pickle); scalar descriptors of every layer"))
register(_spec("mace-off", "MACE-OFF style checkpoint (.model, trusted pickle); scalar descriptors of every layer"))
register(_spec("mace-omat", "MACE-OMAT style checkpoint (.model, trusted pickle); scalar descriptors of every layer"))
