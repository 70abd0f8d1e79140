"""PET-MAD (Mazitov et al., arXiv:2503.14118), a Point Edge Transformer interatomic potential, from a local
metatrain checkpoint, in the ``pet`` model environment (upet 0.3.1 with metatrain 2026.4 and metatomic-torch,
on torch 2.13.0; pet-mad 1.4.4 pins metatrain==2025.12, whose metatensor-torch 0.8.x requires torch<2.12).

The checkpoint is a metatrain ``.ckpt`` such as ``pet-mad-s-v1.1.0.ckpt`` (what ``upet`` downloads from the
``lab-cosmo/upet`` hub repository), read by ``metatrain.utils.io.load_model``, the loader upet itself uses.
That loader unpickles the file (``weights_only=False``), so it needs ``trust_checkpoint=True``. Exported
TorchScript models (``.pt``) are not read: they cannot return the auxiliary outputs below.

Structures become metatomic ``System`` objects with the neighbour lists the model requests (metatrain's
``get_system_with_neighbor_lists``); features come from the model's own outputs, per atom:

* ``last_layer_features`` (default): ``mtt::aux::energy_last_layer_features``, the node and cutoff-weighted
  edge features every readout layer of the energy head feeds to its final linear layer: the representation
  entering the readout.
* ``features``: the model's standard ``feature`` output (the backbone's internal node and edge features,
  before the heads).

PET is not rotation invariant by construction (its trained weights learn approximate invariance from
rotation-augmented data): its features are translation invariant only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ModelError
from ._hub import CheckpointExtractor
from ._registry import ModelSpec, register

__all__ = ["PetExtractor", "OUTPUTS"]

#: Layer name → the model output that gives it.
OUTPUTS = {"features": "feature", "last_layer_features": "mtt::aux::energy_last_layer_features"}


class PetExtractor(CheckpointExtractor):
    """Per-atom PET features from a local metatrain checkpoint (module docstring).

    Parameters
    ----------
    checkpoint : path
        A metatrain ``.ckpt`` of a PET model.
    trust_checkpoint : bool
        Required: the file is a pickle.
    **options
        ``device``, ``seed``, ``num_threads``, ``batch_size``.
    """

    name = "pet-mad"
    family = "pet"
    modality = "atoms"
    default_layer = "last_layer_features"
    package = "metatrain"
    needs_trust = True

    def _load(self) -> None:
        import warnings

        from metatrain.utils.io import load_model

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="PET assumes that Cartesian tensors")
            model = load_model(self.checkpoint)
        if not hasattr(model, "requested_neighbor_lists") or "energy" not in getattr(model, "outputs", {}):
            raise ModelError(f"checkpoint {self.checkpoint!r} is a {type(model).__name__} without an energy output; "
                             f"model {self.name!r} reads metatrain checkpoints of an energy model")
        missing = [o for o in OUTPUTS.values() if o not in model.outputs]
        if missing:
            raise ModelError(f"checkpoint {self.checkpoint!r}: the model has no {missing} output")
        self.model = model.eval().to(self.device)
        self.dtype = next(self.model.parameters()).dtype
        self.atomic_types = {int(z) for z in self.model.atomic_types}

    def layers(self) -> list[str]:
        return ["features", "last_layer_features"]

    def input_reason(self, obj: Any) -> str | None:
        from ._atoms import structure_reason

        reason = structure_reason(obj, max_z=118)
        if reason:
            return reason
        extra = sorted(set(int(z) for z in obj.numbers) - self.atomic_types)
        if extra:
            return f"elements {extra} are not among the model's {len(self.atomic_types)} atomic types"
        return None

    def _systems(self, atoms_list):
        import torch
        from metatomic.torch import System
        from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

        out = []
        for a in atoms_list:
            s = System(types=torch.tensor(a.numbers, dtype=torch.int32, device=self.device),
                       positions=torch.tensor(a.positions, dtype=self.dtype, device=self.device),
                       cell=torch.tensor(np.asarray(a.cell[:]) * a.pbc[:, None], dtype=self.dtype, device=self.device),
                       pbc=torch.tensor(a.pbc, device=self.device))
            out.append(get_system_with_neighbor_lists(s, self.model.requested_neighbor_lists()))
        return out

    def _run_outputs(self, atoms_list, names: dict[str, bool]):
        """The model's outputs ``names`` (name → per atom) on ``atoms_list``, as ``{name: values}``."""
        from metatomic.torch import ModelOutput

        outs = self.model(self._systems(atoms_list), {n: ModelOutput(per_atom=p) for n, p in names.items()})
        return {n: outs[n].block().values.detach() for n in names}

    def _embed_layers(self, inputs, layers):
        got = self._run_outputs(inputs, {OUTPUTS[lay]: True for lay in layers})
        cuts = np.cumsum([len(a) for a in inputs])[:-1]
        return {lay: np.split(got[OUTPUTS[lay]].float().cpu().numpy(), cuts) for lay in layers}

    def _embed(self, inputs, layer):
        return self._embed_layers(inputs, [layer])[layer]

    def predict_energy(self, atoms_list) -> np.ndarray:
        """The model's total energy per structure (eV), from its ``energy`` output."""
        atoms_list = self._checked_structures(atoms_list, "predict")
        with self._runtime():
            e = self._run_outputs(atoms_list, {"energy": False})["energy"]
        return e.double().cpu().numpy().reshape(-1)

    def _hub_provenance(self) -> dict[str, Any]:
        hy = getattr(self.model, "hypers", {}) or {}
        keep = ("cutoff", "d_pet", "d_head", "num_gnn_layers", "num_attention_layers", "featurizer_type")
        return {"outputs": dict(OUTPUTS), "model_class": type(self.model).__name__,
                **{k: hy[k] for k in keep if k in hy}, "n_atomic_types": len(self.atomic_types)}


register(ModelSpec(
    name="pet-mad", factory=f"{__name__}:PetExtractor", family="pet", modality="atoms", kind="mlip",
    embedding_type="vanilla", layers=("features", "last_layer_features"), default_layer="last_layer_features",
    kwargs={"name": "pet-mad"}, requires=("metatrain", "metatomic", "torch", "ase"), requires_checkpoint=True,
    gpu=True, properties=("energy",), env="pet",
    description="PET-MAD metatrain checkpoint (upet/metatrain, env pet; trust_checkpoint): the energy head's "
                "last-layer features per atom",
))
