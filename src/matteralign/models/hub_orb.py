"""Orb adapters for local checkpoints (``orb-models==0.5.5``, run in the ``orb`` environment).

Orb (Neumann et al., arXiv:2410.22570; Rhodes et al., arXiv:2504.06231 for v3) is a graph network
simulator whose message-passing backbone (``model.model``) returns per-atom ``node_features``
(256-d) that the energy head reads. The default layer is that tensor, read from the backbone's
output with a forward hook. Checkpoints are plain state dicts loaded by the package's own named
loaders (``pretrained.orb_v3_conservative_inf_omat(weights_path=..., compile=False)``), which use
``weights_only=True``: no trust is needed. Compilation is always off.

Orb is not rotation invariant by construction (its features read edge vectors directly; trained
checkpoints learn approximate invariance from rotation-augmented data), so its features are
translation invariant but change under rotation, exactly and noticeably so for random weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._hub import CheckpointExtractor
from ._registry import ModelSpec, register

__all__ = ["OrbExtractor", "LOADERS"]

#: Registry name → the orb-models loader that builds the architecture and reads ``weights_path``.
LOADERS = {
    "orb-v2": "orb_v2",
    "orb-v3-direct": "orb_v3_direct_inf_omat",
    "orb-v3-conservative": "orb_v3_conservative_inf_omat",
}


class OrbExtractor(CheckpointExtractor):
    """Per-atom Orb node features from a local state-dict checkpoint.

    Parameters
    ----------
    checkpoint : path
        A state dict of the architecture named by ``loader`` (``.ckpt``/``.pt``).
    loader : str
        The ``orb_models.forcefield.pretrained`` function that builds the architecture.
    name : str, optional
    **options
        ``device``, ``seed``, ``num_threads``, ``batch_size``.
    """

    family = "orb"
    modality = "atoms"
    default_layer = "node_features"
    package = "orb-models"

    def __init__(self, *, loader: str = "orb_v3_conservative_inf_omat", **options: Any):
        self.loader = loader
        super().__init__(**options)

    def _load(self) -> None:
        from orb_models.forcefield import pretrained

        fn = getattr(pretrained, self.loader)
        self.model = fn(weights_path=self.checkpoint, device=self.device, compile=False).eval()
        self.system_config = self.model.system_config

    def layers(self) -> list[str]:
        return ["node_features"]

    def input_reason(self, obj: Any) -> str | None:
        from ._atoms import structure_reason

        return structure_reason(obj, max_z=118)

    def _graphs(self, atoms_list):
        import torch
        from orb_models.forcefield.atomic_system import ase_atoms_to_atom_graphs
        from orb_models.forcefield.base import batch_graphs

        dev = torch.device(self.device)
        return batch_graphs([ase_atoms_to_atom_graphs(a, system_config=self.system_config, device=dev)
                             for a in atoms_list])

    def _embed(self, inputs, layer):
        from ._atoms import capture

        with capture({"backbone": self.model.model}, take=lambda _n, out: out["node_features"]) as got:
            self.model.model(self._graphs(inputs))
        h = got["backbone"][-1].cpu().numpy().astype(np.float32)
        return np.split(h, np.cumsum([len(a) for a in inputs])[:-1])

    def embed_with_energy(self, inputs, layers) -> tuple[dict[str, list[np.ndarray]], np.ndarray]:
        """Node features and the model's total energy (eV) per structure, from one ``predict`` pass.

        The backbone's ``node_features`` are read by a hook while the package's own ``predict`` runs the
        heads (and, for conservative models, the autograd forces it always computes).
        """
        import torch

        from ._atoms import capture

        inputs = self._checked_structures(inputs, "embed")
        layers = [self.resolve_layer(layer) for layer in layers]
        conservative = "conservative" in type(self.model).__name__.lower()
        with self._runtime(), torch.set_grad_enabled(conservative):
            with capture({"backbone": self.model.model}, take=lambda _n, out: out["node_features"]) as got:
                pred = self.model.predict(self._graphs(inputs))
            h = got["backbone"][-1].detach().cpu().numpy().astype(np.float32)
            energy = pred["energy"].detach().cpu().numpy().astype(np.float64).reshape(-1)
        feats = np.split(h, np.cumsum([len(a) for a in inputs])[:-1])
        return {layer: list(feats) for layer in layers}, energy

    def predict_energy(self, atoms_list) -> np.ndarray:
        """The model's total energy per structure, in eV (the package's ``predict``)."""
        return self.embed_with_energy(atoms_list, [self.default_layer])[1]

    def _hub_provenance(self) -> dict[str, Any]:
        sc = self.system_config
        return {"loader": self.loader, "compile": False, "model_class": type(self.model).__name__,
                "radius": float(sc.radius), "max_num_neighbors": int(sc.max_num_neighbors)}


def _spec(name: str, description: str) -> ModelSpec:
    return ModelSpec(name=name, factory=f"{__name__}:OrbExtractor", family="orb", modality="atoms", kind="mlip",
                     embedding_type="equivariant" if name.startswith("orb-v3-conservative") else "vanilla", gpu=True,
                     properties=("energy",), energy_in_forward=True,
                     layers=("node_features",), default_layer="node_features",
                     kwargs={"name": name, "loader": LOADERS[name]}, requires=("orb_models", "torch", "ase"),
                     requires_checkpoint=True, description=description, env="orb")


register(_spec("orb-v2", "Orb v2 checkpoint (state dict); backbone node_features per atom, 256-d"))
register(_spec("orb-v3-direct", "Orb v3 direct (inf neighbours) checkpoint; backbone node_features, 256-d"))
register(_spec("orb-v3-conservative", "Orb v3 conservative (inf neighbours) checkpoint; node_features, 256-d"))
