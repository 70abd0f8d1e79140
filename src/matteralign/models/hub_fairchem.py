"""fairchem 2.x adapters for local checkpoints: UMA and eSEN (``fairchem-core==2.24.0``, ``fairchem`` env).

eSEN (Fu et al., arXiv:2502.12147) is ``fairchem.core.models.uma.escn_md.eSCNMDBackbone``; UMA
(Wood et al., arXiv:2506.23971) is its mixture-of-linear-experts version ``eSCNMDMoeBackbone``. The
backbone returns ``node_embedding`` of shape ``(n_atoms, (lmax + 1)^2, C)`` (spherical-harmonic
coefficients × channels); the energy head reads its ``l = 0`` slice. Layers, read with a forward
hook on the backbone:

* ``node_embedding_l0`` (default): ``node_embedding[:, 0, :]``, ``(n_atoms, C)``, invariant;
* ``node_embedding``: the full irreps embedding flattened to ``(n_atoms, (lmax + 1)^2 · C)``
  (rotates with the structure for ``l > 0``).

The checkpoint is read by the package's own local loader,
``fairchem.core.calculate.pretrained_mlip.get_predict_unit(path, inference_settings="batch", device="cpu")``
(the ``batch`` settings: no compilation, no merging of UMA's experts, full float32)
(an ``MLIPInferenceCheckpoint`` pickle: it needs ``trust_checkpoint=True``). The task head (which
dataset embedding the model conditions on) is chosen per dataset: ``omat`` when every structure is
periodic (crystals), ``omol`` when none is (molecules, charge 0 and spin multiplicity 1 unless the
structure's ``info`` says otherwise), per structure for a mixed dataset; ``task=`` fixes it. The
choice is recorded in the provenance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._atoms import ForwardEnergyMixin
from ._hub import CheckpointExtractor
from ._registry import ModelSpec, register

__all__ = ["FairchemExtractor", "LAYERS", "TASK_FOR"]

LAYERS = ("node_embedding_l0", "node_embedding")

#: Task head used for periodic / non-periodic structures when ``task="auto"``.
TASK_FOR = {"periodic": "omat", "molecule": "omol"}


def _get_predict_unit():
    try:
        from fairchem.core.calculate.pretrained_mlip import get_predict_unit
    except ImportError:  # older 2.x layout
        from fairchem.core.pretrained_mlip import get_predict_unit
    return get_predict_unit


class FairchemExtractor(ForwardEnergyMixin, CheckpointExtractor):
    """Per-atom UMA / eSEN node embeddings from a local fairchem inference checkpoint.

    Parameters
    ----------
    checkpoint : path
        An ``MLIPInferenceCheckpoint`` file (``.pt``), e.g. ``uma-s-1p1.pt`` or ``esen_sm_*.pt``.
    trust_checkpoint : bool
        Required (``True``): fairchem unpickles the checkpoint with ``weights_only=False``.
    task : {"auto", "omat", "omol", "oc20", "odac", "omc"}
        Task head / dataset embedding; ``"auto"`` picks ``omat`` for periodic and ``omol`` for
        non-periodic structures.
    name : str, optional
    **options
        ``device``, ``seed``, ``num_threads``, ``batch_size``.
    """

    family = "fairchem"
    modality = "atoms"
    default_layer = "node_embedding_l0"
    needs_trust = True
    package = "fairchem-core"

    def __init__(self, *, task: str = "auto", **options: Any):
        self.task = task
        self.tasks_used: dict[str, int] = {}
        super().__init__(**options)

    def _load(self) -> None:
        import logging

        logging.getLogger("fairchem").setLevel(logging.WARNING)
        self.predict_unit = _get_predict_unit()(self.checkpoint, inference_settings="batch", device=self.device)
        module = self.predict_unit.model
        self.model = getattr(module, "module", module)
        self.backbone = self.model.backbone
        self.cutoff = float(self.backbone.cutoff)
        self.max_neighbors = int(self.backbone.max_neighbors)
        self.dataset_list = list(getattr(self.backbone, "dataset_list", []) or [])
        if self.task != "auto" and self.dataset_list and self.task not in self.dataset_list:
            from ..errors import ModelError

            raise ModelError(f"task {self.task!r} is not a task of checkpoint {self.checkpoint!r}; "
                             f"it knows {self.dataset_list}")

    def layers(self) -> list[str]:
        return list(LAYERS)

    def input_reason(self, obj: Any) -> str | None:
        from ._atoms import structure_reason

        return structure_reason(obj, max_z=int(getattr(self.backbone, "max_num_elements", 100)) - 1)

    def task_of(self, atoms) -> str:
        """The task head used for one structure (see the module docstring)."""
        if self.task != "auto":
            return self.task
        return TASK_FOR["periodic" if atoms.get_pbc().all() else "molecule"]

    def _batch(self, atoms_list):
        from fairchem.core.datasets.atomic_data import AtomicData, atomicdata_list_to_batch

        items = []
        for a in atoms_list:
            task = self.task_of(a)
            self.tasks_used[task] = self.tasks_used.get(task, 0) + 1
            if task == "omol" and ("charge" not in a.info or "spin" not in a.info):
                a = a.copy()
                a.info.setdefault("charge", 0)
                a.info.setdefault("spin", 1)
            items.append(AtomicData.from_ase(a, task_name=task, r_edges=False, r_data_keys=["spin", "charge"],
                                             max_neigh=self.max_neighbors, radius=self.cutoff))
        return atomicdata_list_to_batch(items)

    def _forward(self, inputs, layers):
        """One ``predict`` pass of the package's own predict unit: the backbone's node embedding at ``layers``
        (read by a hook) and the energy (eV) per structure, as its ASE calculator reports it (the task head
        of each structure as :meth:`task_of` picks it). :class:`ForwardEnergyMixin` builds ``embed``,
        ``embed_with_energy`` and ``predict_energy`` on it."""
        from ._atoms import capture

        with capture({"backbone": self.backbone}, take=lambda _n, out: out["node_embedding"]) as got:
            pred = self.predict_unit.predict(self._batch(inputs))
        emb = got["backbone"][-1]
        splits = np.cumsum([len(a) for a in inputs])[:-1]
        feats = {}
        for layer in layers:
            h = emb[:, 0, :] if layer == "node_embedding_l0" else emb.reshape(emb.shape[0], -1)
            feats[layer] = np.split(h.detach().cpu().numpy().astype(np.float32), splits)
        energy = pred["energy"].detach().cpu().numpy().astype(np.float64).reshape(-1)
        return feats, energy

    def _hub_provenance(self) -> dict[str, Any]:
        rule = (f"fixed: {self.task}" if self.task != "auto"
                else f"auto: {TASK_FOR['periodic']} for periodic, {TASK_FOR['molecule']} for non-periodic structures")
        return {"task": self.task, "task_rule": rule, "tasks_known": self.dataset_list,
                "backbone_class": type(self.backbone).__name__, "cutoff": self.cutoff,
                "max_neighbors": self.max_neighbors, "lmax": int(getattr(self.backbone, "lmax", -1)),
                "sphere_channels": int(getattr(self.backbone, "sphere_channels", -1)),
                "e3nn": _version("e3nn")}


def _version(dist):
    from .base import package_version

    return package_version(dist)


def _spec(name: str, description: str) -> ModelSpec:
    return ModelSpec(name=name, factory=f"{__name__}:FairchemExtractor", family="fairchem", modality="atoms", kind="mlip",
                     embedding_type="invariant", layer_types={"node_embedding": "equivariant"}, gpu=True,
                     properties=("energy",), energy_in_forward=True, layers=LAYERS, default_layer="node_embedding_l0", kwargs={"name": name},
                     requires=("fairchem", "torch", "ase"), requires_checkpoint=True, description=description,
                     env="fairchem")


register(_spec("uma-s", "UMA small checkpoint (fairchem 2.x, trusted pickle); l=0 node embedding, task per dataset"))
register(_spec("uma-m", "UMA medium checkpoint (fairchem 2.x, trusted pickle); l=0 node embedding, task per dataset"))
register(_spec("esen", "eSEN checkpoint (fairchem 2.x, trusted pickle); l=0 node embedding, task per dataset"))
