"""SevenNet adapters (``sevenn==0.13.0``; the pretrained checkpoints ship inside the wheel).

SevenNet (Park et al., J. Chem. Theory Comput. 20, 4857 (2024), arXiv:2402.03789) is an
E(3)-equivariant NequIP-style network. Its modules exchange a dict of tensors; the node features
live under ``sevenn._keys.NODE_FEATURE``. Layers (forward hooks on the real modules):

``reduce_input_to_hidden`` (default)
    The invariant per-atom features entering the energy readout (``IrrepsLinear``, 64x0e).
``last_block.scalars``
    Output of the last interaction block's gate (``4_equivariant_gate``, 128x0e).
``last_block.equivariant``
    The l > 0 channels of the last block whose output carries any (``3_equivariant_gate``:
    64x1e + 32x2e for SevenNet-0, + 32x3e for l3i5), flattened in e3nn order: they rotate
    with the structure, so they are *not* invariant.
``last_block.equivariant_norms``
    The Euclidean norm of each of those l > 0 channels (invariant).
``block{i}.scalars``
    The l = 0 channels of interaction block ``i``'s output (``last_block.scalars`` is the last of them
    under another name).

:meth:`~SevenNetExtractor.layers` lists them in forward order (block by block, the readout input last);
several layers come from one forward pass (hooks on every module they need).

Non-periodic structures are used as they are (SevenNet builds its graph with the structure's
``pbc``). The multi-fidelity model ``7net-mf-0`` is run with ``modal="PBE"`` (recorded).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._atoms import (
    ForwardEnergyMixin,
    capture,
    count_parameters,
    relative_to_package,
    seeded,
    structure_reason,
)
from ._registry import ModelSpec, register
from .base import Extractor, file_sha256, package_version

__all__ = ["SevenNetExtractor"]

_CHECKPOINTS = {
    "7net-0": "pretrained_potentials/SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth",
    "7net-0_22May2024": "pretrained_potentials/SevenNet_0__22May2024/checkpoint_sevennet_0.pth",
    "7net-l3i5": "pretrained_potentials/SevenNet_l3i5/checkpoint_l3i5.pth",
    "7net-mf-0": "pretrained_potentials/SevenNet_MF_0/checkpoint_sevennet_mf_0.pth",
}
_N_BLOCKS = 5
_EQUIVARIANT_BLOCK = 3  # the last block whose output carries l > 0 channels (every bundled checkpoint)


def _forward_order(n_blocks: int, equivariant_block: int | None) -> list[tuple[str, int]]:
    """``(layer, depth)`` in forward order: block ``i`` at depth ``i``, the readout input after the last."""
    out = []
    for i in range(n_blocks):
        out.append((f"block{i}.scalars", i))
        if i == equivariant_block:
            out += [("last_block.equivariant", i), ("last_block.equivariant_norms", i)]
        if i == n_blocks - 1:
            out.append(("last_block.scalars", i))
    return out + [("reduce_input_to_hidden", n_blocks)]


#: Layers of the bundled checkpoints in forward order, with their depth index.
LAYERS = tuple(name for name, _ in _forward_order(_N_BLOCKS, _EQUIVARIANT_BLOCK))
_DEPTHS = tuple(depth for _, depth in _forward_order(_N_BLOCKS, _EQUIVARIANT_BLOCK))
#: Width of the l > 0 channels of the last equivariant block (flattened, and their norms) per checkpoint.
_EQUIVARIANT_WIDTHS = {"7net-0": (352, 96), "7net-0_22May2024": (352, 96), "7net-l3i5": (576, 128),
                       "7net-mf-0": (352, 96)}


def _checkpoint_path(checkpoint: str) -> str | None:
    import importlib.util

    spec = importlib.util.find_spec("sevenn")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], _CHECKPOINTS[checkpoint])


def _weights_check(checkpoint: str):
    def check() -> str | None:
        path = _checkpoint_path(checkpoint)
        if path is None or not os.path.isfile(path):
            return f"SevenNet checkpoint {checkpoint} not found in the sevenn package"
        return None

    return check


class SevenNetExtractor(ForwardEnergyMixin, Extractor):
    """Per-atom features of a SevenNet model.

    Parameters
    ----------
    checkpoint : {"7net-0", "7net-0_22May2024", "7net-l3i5", "7net-mf-0"}
        Bundled checkpoint (sevenn's pretrained name).
    modal : str, optional
        Fidelity of a multi-fidelity model (``"PBE"`` by default for ``7net-mf-0``; ignored otherwise).
    random_init : bool
        Build the same architecture with freshly initialised weights (seeded by ``seed``).
    name : str, optional
        Registry name recorded in the store.
    **options
        ``device``, ``seed``, ``num_threads``, ``batch_size`` (see :class:`Extractor`).
    """

    family = "sevennet"
    modality = "atoms"
    default_layer = "reduce_input_to_hidden"

    def __init__(self, *, checkpoint: str = "7net-0", modal: str | None = None, random_init: bool = False,
                 name: str | None = None, **options: Any):
        super().__init__(**options)
        from ..errors import ModelError

        if checkpoint not in _CHECKPOINTS:
            raise ModelError(f"unknown SevenNet checkpoint {checkpoint!r}; bundled: {sorted(_CHECKPOINTS)}")
        path = _checkpoint_path(checkpoint)
        if path is None or not os.path.isfile(path):
            raise ModelError(f"SevenNet checkpoint {checkpoint} not found: {path!r}")
        self.checkpoint, self.weights, self.random_init = checkpoint, path, bool(random_init)
        self.name = name or (checkpoint.lower().replace("7net", "sevennet") + ("-random" if random_init else ""))

        import warnings

        import sevenn._keys as KEY
        from sevenn.util import load_checkpoint

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No tensor product accelerator", unused keys
            cp = load_checkpoint(path)
            model = cp.build_model()
            if self.random_init:
                # Re-initialise every trainable parameter (seeded); keep the non-trainable
                # normalisation constants of the checkpoint (convolution denominators = sqrt of
                # the average neighbour count, per-species energy shift/scale), which a fresh
                # build leaves at zero.
                from sevenn.model_build import build_E3_equivariant_model

                with seeded(self.seed):
                    fresh = build_E3_equivariant_model(cp.config)
                state = model.state_dict()
                fresh_params = dict(fresh.named_parameters())
                for pname, param in model.named_parameters():
                    if param.requires_grad:
                        state[pname] = fresh_params[pname].detach().clone()
                model.load_state_dict(state)
        self._key = KEY
        self.config = cp.config
        self.cutoff = float(cp.config[KEY.CUTOFF])
        model.set_is_batch_data(True)
        if "force_output" in dict(model.named_children()):
            model.delete_module_by_key("force_output")  # energies only: no autograd pass
        self.model = model.to(self.device).eval()
        self.type_map = {int(z) for z in (model.type_map or {})}

        modal_map = getattr(model, "modal_map", None) or {}
        if modal_map:
            modal = "PBE" if modal is None else modal
            if modal not in modal_map:
                raise ModelError(f"{self.name}: unknown modal {modal!r}; available: {sorted(modal_map)}")
        self.modal = modal if modal_map else None

        children = dict(self.model.named_children())
        gates = sorted((k for k in children if k.endswith("_equivariant_gate")), key=lambda k: int(k.split("_")[0]))
        self._gates = gates
        self._irreps = {k: children[k].gate.irreps_out for k in gates}
        with_l = [k for k in gates if any(ir.l > 0 for _, ir in self._irreps[k])]
        self._equivariant_block = with_l[-1] if with_l else None

    # ------------------------------------------------------------------ protocol
    def layers(self) -> list[str]:
        eq = None if self._equivariant_block is None else self._gates.index(self._equivariant_block)
        return [name for name, _ in _forward_order(len(self._gates), eq)]

    def _embed_layers(self, inputs, layers):
        return self._forward(inputs, layers)[0]

    def input_reason(self, obj: Any) -> str | None:
        return structure_reason(obj, allowed_z=self.type_map or None)

    def _module_for(self, layer: str) -> str:
        if layer == "reduce_input_to_hidden":
            return layer
        if layer == "last_block.scalars":
            return self._gates[-1]
        if layer.startswith("last_block.equivariant"):
            return self._equivariant_block
        return self._gates[int(layer.split(".")[0][len("block"):])]

    def _select(self, layer: str, module: str, x):
        """Split a block's node features by l as the layer asks."""
        if layer == "reduce_input_to_hidden":
            return x
        irreps = self._irreps[module]
        parts = []
        for (mul, ir), sl in zip(irreps, irreps.slices(), strict=True):
            block = x[:, sl]
            if layer.endswith(".scalars") and ir.l == 0:
                parts.append(block)
            elif layer == "last_block.equivariant" and ir.l > 0:
                parts.append(block)
            elif layer == "last_block.equivariant_norms" and ir.l > 0:
                parts.append(block.reshape(len(x), mul, ir.dim).norm(dim=-1))
        import torch

        return torch.cat(parts, dim=1)

    def _graphs(self, atoms_list):
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph

        KEY = self._key
        graphs = []
        for a in atoms_list:
            g = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(a, self.cutoff))
            if self.modal is not None:
                g[KEY.DATA_MODALITY] = self.modal
            graphs.append(g)
        return graphs

    def _forward(self, atoms_list, layers):
        import torch
        from torch_geometric.loader import DataLoader

        KEY = self._key
        modules = {layer: self._module_for(layer) for layer in layers}
        named = dict(self.model.named_children())
        hooked = {m: named[m] for m in set(modules.values())}
        feats: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
        energies = []
        bs = self.batch_size
        with capture(hooked, take=lambda _n, out: out[KEY.NODE_FEATURE]) as got:
            for start in range(0, len(atoms_list), bs):
                chunk = atoms_list[start:start + bs]
                (batch,) = list(DataLoader(self._graphs(chunk), batch_size=len(chunk), shuffle=False))
                for v in got.values():
                    v.clear()
                with torch.no_grad():
                    out = self.model(batch.to(self.device))
                energies.append(out[KEY.PRED_TOTAL_ENERGY].detach().cpu().numpy().astype(np.float64).reshape(-1))
                n = np.cumsum([len(a) for a in chunk])[:-1]
                for layer, mod in modules.items():
                    (x,) = got[mod]
                    feats[layer].extend(np.split(self._select(layer, mod, x).cpu().numpy(), n))
        return feats, np.concatenate(energies)

    def _provenance(self) -> dict[str, Any]:
        return {
            "package": "sevenn",
            "package_version": package_version("sevenn"),
            "checkpoint": self.checkpoint,
            "weights": relative_to_package(self.weights, "sevenn"),
            "weights_sha256": file_sha256(self.weights),
            "random_init": self.random_init,
            "modal": self.modal,
            "n_parameters": count_parameters(self.model),
            "cutoff": self.cutoff,
            "e3nn": package_version("e3nn"),
            "torch_geometric": package_version("torch_geometric"),
            "irreps": {k: str(v) for k, v in self._irreps.items()},
            "last_block": self._gates[-1],
            "last_equivariant_block": self._equivariant_block,
            "molecules": "non-periodic structures are used as they are (graph built with the structure's pbc)",
        }


def _spec(name: str, checkpoint: str, random_init: bool, description: str) -> ModelSpec:
    eq, norms = _EQUIVARIANT_WIDTHS[checkpoint]
    widths = {"last_block.equivariant": eq, "last_block.equivariant_norms": norms, "reduce_input_to_hidden": 64}
    return ModelSpec(
        name=name,
        factory=f"{__name__}:SevenNetExtractor",
        family="sevennet", kind="mlip", embedding_type="invariant", control=random_init,
        random_init_of="sevennet-0" if random_init else None,
        layer_types={"last_block.equivariant": "equivariant", "last_block.equivariant_norms": "equivariant"},
        properties=("energy",), energy_in_forward=True, gpu=True,
        modality="atoms",
        layers=LAYERS,
        default_layer="reduce_input_to_hidden",
        depths=_DEPTHS,
        widths=tuple(widths.get(layer, 128) for layer in LAYERS),
        aliases={"last_block.scalars": f"block{_N_BLOCKS - 1}.scalars"},
        kwargs={"checkpoint": checkpoint, "random_init": random_init, "name": name},
        requires=("sevenn", "e3nn", "torch_geometric", "torch", "ase"),
        check=_weights_check(checkpoint),
        description=description,
    )


register(_spec("sevennet-0", "7net-0", False, "SevenNet-0 (11Jul2024, MPtrj), invariant readout input, 64-d"))
register(_spec("sevennet-0-22may2024", "7net-0_22May2024", False, "SevenNet-0 (22May2024), readout input, 64-d"))
register(_spec("sevennet-l3i5", "7net-l3i5", False, "SevenNet-l3i5 (l_max 3, 5 blocks), readout input, 64-d"))
register(_spec("sevennet-mf-0", "7net-mf-0", False, "SevenNet-MF-0, modal PBE, readout input, 64-d"))
register(_spec("sevennet-random", "7net-0", True, "control: SevenNet-0 architecture, seeded random weights"))
