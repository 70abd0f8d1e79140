"""EquiformerV2 adapter for local fairchem-core 1.x checkpoints (``eqv2`` environment).

EquiformerV2 (Liao, Wood, Das & Smidt, ICLR 2024, arXiv:2306.12059) is an equivariant graph
attention transformer whose node features are spherical-harmonic coefficients
``x_i ∈ R^{Σ_r (l_r + 1)^2 × C}`` (one block per resolution ``r`` of ``lmax_list``). After the last
block a layer norm (``norm``) is applied and the energy readout (``energy_block``, an S2 feed-forward
network) reads the result. Layers, read with a forward hook on that final ``norm``:

* ``node_embedding_l0`` (default): the ``l = 0`` coefficient of every resolution, ``(n_atoms, C · R)``
  (``(n_atoms, C)`` for the usual single resolution), invariant to rotations and translations;
* ``node_embedding``: every coefficient, flattened to ``(n_atoms, Σ_r (l_r + 1)^2 · C)``; the
  ``l > 0`` parts rotate with the structure.

Each edge's local frame is rolled about the edge by a random angle (``init_edge_rot_mat`` draws a
random vector) and the S2 activations are evaluated on a finite grid, so the model is equivariant
only up to the grid's resolution: features change slightly with the random draw (with the random
test weights, about 1e-6 relative on ``l = 0`` and 1e-4 on the full embedding). Every forward pass
is therefore seeded with ``seed``, which makes a batch's features reproducible. The graph keeps
at most ``max_neighbors`` neighbours within the cutoff (20 within 12 Å for the released
checkpoints); on a perfect crystal that cut runs through a shell of equidistant neighbours, so
which ones are kept depends on floating-point ties, and a rotated copy of such a crystal can get
(slightly) different features. On a centrosymmetric site of a perfect crystal the ``l > 0``
coefficients cancel to float-rounding residue, which the equivariant layer norms rescale by its
own size: there ``node_embedding`` is noise of order 1e-2 (a rigid translation of NaCl, changing
the edge vectors by 2e-7 Å, moves it by 3e-2 with the random test weights), while
``node_embedding_l0`` is stable to 1e-6.

EquiformerV2 exists only in fairchem-core 1.x (2.x keeps a conversion script only). The
checkpoint is a fairchem-1.x trainer checkpoint (a ``.pt`` dict with ``config`` and
``state_dict``), loaded by the package's own ASE calculator
``fairchem.core.common.relaxation.ase_utils.OCPCalculator(checkpoint_path=..., cpu=True)``, which
builds the trainer and model from the stored config. Features and energy come from one pass of the
trainer's own ``predict`` (the calculator's route: normalisers undone, EMA weights where the checkpoint
has them), the features read by a hook on ``norm``. Both layouts load:

* OC20 S2EF checkpoints: the single ``equiformer_v2`` model class (direct forces);
* OMat24 / MPtrj / Alexandria checkpoints: the ``hydra`` model, an ``equiformer_v2_backbone`` (or
  ``equiformer_v2_dens_backbone``) with energy, force and stress heads; only the backbone runs.

The loader calls ``torch.load`` without ``weights_only``, which means ``weights_only=True`` under the
environment's torch 2.13: a checkpoint holding only tensors and plain config values loads without
trust; one that needs unpickling of other objects is refused with a clear message unless
``trust_checkpoint=True`` (then it is loaded with ``weights_only=False``).

fairchem's ``setup_imports`` (called by the calculator) would import every model of the package,
and some need ``torch_sparse`` (not installed); the trainer and EquiformerV2 modules are imported
explicitly instead and the registry is marked as set up. The environment runs fairchem-core 1.10.0
(installed ``--no-deps``) under torch 2.13.0 although the package declares ``torch~=2.4.0`` (see
:mod:`matteralign.envs`): building, saving, loading through the calculator and the forward pass of
both layouts are exercised by ``tests/envs/test_families.py``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..errors import ModelError
from ._atoms import ForwardEnergyMixin
from ._hub import TRUST_HINT, CheckpointExtractor
from ._registry import ModelSpec, register

__all__ = ["EquiformerV2Extractor", "LAYERS", "register_fairchem_modules"]

LAYERS = ("node_embedding_l0", "node_embedding")

#: fairchem-core 1.x modules whose import registers the trainers, the EquiformerV2 models and heads.
_MODULES = ("trainers.ocp_trainer", "models.base", "models.equiformer_v2.equiformer_v2",
            "models.equiformer_v2.equiformer_v2_deprecated", "models.equiformer_v2.equiformer_v2_dens",
            "models.equiformer_v2.heads", "models.equiformer_v2.trainers.forces_trainer",
            "models.equiformer_v2.trainers.energy_trainer", "models.equiformer_v2.trainers.dens_trainer")


def register_fairchem_modules() -> None:
    """Register fairchem-1.x's trainers and EquiformerV2 classes without importing every model.

    ``fairchem.core.common.utils.setup_imports`` imports all of ``fairchem/core/{trainers,models,...}``;
    several models there import ``torch_sparse`` at import time. Importing only the modules above and
    marking the registry as set up makes ``OCPCalculator`` skip that step.
    """
    import importlib

    from fairchem.core.common.registry import registry

    if registry.get("imports_setup", no_warning=True):
        return
    for mod in _MODULES:
        importlib.import_module("fairchem.core." + mod)
    registry.register("imports_setup", True)


@contextmanager
def _environ(**values: str | None):
    """Set (or, with ``None``, unset) environment variables inside the block."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class EquiformerV2Extractor(ForwardEnergyMixin, CheckpointExtractor):
    """Per-atom EquiformerV2 node embeddings from a local fairchem-core 1.x checkpoint.

    Parameters
    ----------
    checkpoint : path
        A fairchem-1.x trainer checkpoint (``.pt``: a dict with ``config`` and ``state_dict``), e.g.
        ``eq2_31M_ec4_allmd.pt`` (OC20), ``eqV2_31M_omat.pt`` or ``eqV2_31M_mp.pt``.
    trust_checkpoint : bool
        Allow ``weights_only=False`` (needed only if the file holds pickled objects beyond tensors
        and plain values).
    name : str, optional
    **options
        ``device``, ``seed``, ``num_threads``, ``batch_size``.
    """

    family = "equiformer_v2"
    modality = "atoms"
    default_layer = "node_embedding_l0"
    package = "fairchem-core"

    def _load(self) -> None:
        import logging
        import pickle
        import warnings

        register_fairchem_modules()
        from fairchem.core.common.relaxation.ase_utils import OCPCalculator

        force = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "TORCH_FORCE_WEIGHTS_ONLY_LOAD": None} \
            if self.trust_checkpoint else {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": None, "TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1"}
        root = logging.getLogger()
        level = root.level
        try:
            with _environ(LOGLEVEL="WARNING", **force), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", category=UserWarning)
                self.calc = OCPCalculator(checkpoint_path=self.checkpoint, cpu=self.device == "cpu", seed=self.seed)
        except pickle.UnpicklingError as exc:
            msg = str(exc)
            if "unsupported global" not in msg.lower():  # not a pickled object: a corrupt or foreign file
                why = msg.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()[0][:200]
                raise ModelError(f"could not load checkpoint {self.checkpoint!r} as a {self.name!r} model: "
                                 f"not a readable torch checkpoint ({why})") from exc
            if self.trust_checkpoint:
                raise
            raise ModelError(f"checkpoint {self.checkpoint!r} of model {self.name!r} holds pickled objects beyond "
                             f"tensors and plain values; {TRUST_HINT}") from exc
        except (KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"checkpoint {self.checkpoint!r} is not a fairchem-1.x trainer checkpoint "
                             f"(a dict with 'config' and 'state_dict'): {type(exc).__name__}: {exc}") from exc
        finally:
            root.setLevel(level)
            logging.getLogger("fairchem").setLevel(logging.WARNING)
        trainer = self.calc.trainer
        self.model = trainer._unwrapped_model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.net = getattr(self.model, "backbone", None) or self.model  # the module holding ``norm``
        if not hasattr(self.net, "norm") or not hasattr(self.net, "lmax_list"):
            raise ModelError(f"checkpoint {self.checkpoint!r} holds a {type(self.net).__name__}, "
                             f"not an EquiformerV2 model")
        self.lmax_list = [int(v) for v in self.net.lmax_list]
        self.l0_rows = np.cumsum([0] + [(lm + 1) ** 2 for lm in self.lmax_list])[:-1].tolist()
        self.trainer_name = str(self.calc.config.get("trainer", ""))
        self.model_name = str(self.calc.config["model"].get("name", ""))

    def layers(self) -> list[str]:
        return list(LAYERS)

    def input_reason(self, obj: Any) -> str | None:
        from ._atoms import structure_reason

        return structure_reason(obj, max_z=int(self.net.max_num_elements) - 1)

    def _predict_batch(self, atoms_list):
        """One pass of the package's own ``trainer.predict`` (as its ASE calculator runs it, normalisers
        and element references undone): the final ``norm`` output ``(n_atoms, Σ (l+1)^2, C)`` read by a
        hook, and the energy (eV) per structure."""
        import torch
        from fairchem.core.datasets import data_list_collater

        from ._atoms import capture, seeded

        batch = data_list_collater([self.calc.a2g.convert(a) for a in atoms_list], otf_graph=True)
        batch = batch.to(torch.device(self.device))
        with seeded(self.seed), capture({"norm": self.net.norm}) as got:  # seeded: the edge frames' random roll
            pred = self.calc.trainer.predict(batch, per_image=False, disable_tqdm=True)
        energy = pred["energy"].detach().cpu().numpy().astype(np.float64).reshape(-1)
        return got["norm"][-1], energy

    def _forward(self, inputs, layers):
        """Features at ``layers`` and energies (eV) of ``inputs``: one ``trainer.predict`` per periodicity
        (fairchem-1.x graphs need one PBC setting per batch), put back in input order.
        :class:`ForwardEnergyMixin` builds ``embed``, ``embed_with_energy`` and ``predict_energy`` on it."""
        groups: dict[bool, list[int]] = {}
        for i, a in enumerate(inputs):
            groups.setdefault(bool(a.get_pbc().all()), []).append(i)
        feats: dict[str, list] = {layer: [None] * len(inputs) for layer in layers}
        energy = np.empty(len(inputs), dtype=np.float64)
        for idx in groups.values():
            emb, e = self._predict_batch([inputs[i] for i in idx])  # (n_atoms, Σ (l+1)^2, C)
            energy[idx] = e
            splits = np.cumsum([len(inputs[i]) for i in idx])[:-1]
            for layer in layers:
                h = emb[:, self.l0_rows, :] if layer == "node_embedding_l0" else emb
                h = h.reshape(emb.shape[0], -1).detach().cpu().numpy().astype(np.float32)
                for i, part in zip(idx, np.split(h, splits), strict=True):
                    feats[layer][i] = part
        return feats, energy

    def _hub_provenance(self) -> dict[str, Any]:
        n = self.net
        return {"model_name": self.model_name, "model_class": type(self.model).__name__,
                "backbone_class": type(n).__name__, "trainer": self.trainer_name, "lmax_list": self.lmax_list,
                "mmax_list": [int(v) for v in n.mmax_list], "sphere_channels": int(n.sphere_channels),
                "num_layers": int(n.num_layers), "cutoff": float(n.cutoff), "max_neighbors": int(n.max_neighbors),
                "use_pbc": bool(n.use_pbc), "e3nn": _version("e3nn"), "torch_geometric": _version("torch-geometric")}


def _version(dist):
    from .base import package_version

    return package_version(dist)


register(ModelSpec(name="equiformer-v2", factory=f"{__name__}:EquiformerV2Extractor", family="equiformer_v2", kind="mlip",
                   embedding_type="invariant", layer_types={"node_embedding": "equivariant"}, gpu=True,
                   properties=("energy",), energy_in_forward=True, modality="atoms", layers=LAYERS,
                   default_layer="node_embedding_l0", kwargs={"name": "equiformer-v2"},
                   requires=("fairchem", "torch", "ase"), requires_checkpoint=True, env="eqv2",
                   description="EquiformerV2 checkpoint (fairchem-core 1.x: OC20, OMat24, MPtrj); l=0 node embedding"))
