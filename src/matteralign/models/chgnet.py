"""CHGNet adapters (``chgnet==0.4.2``; the pretrained weights ship inside the wheel).

CHGNet (Deng et al., Nat. Mach. Intell. 5, 1031 (2023), arXiv:2302.14231) is a graph network
with atom, bond and angle message passing and a charge-informed (magnetic moment) head. The
default layer is the per-atom representation entering the energy readout: the output of
``readout_norm`` (a LayerNorm after the last atom convolution), 64-d per atom; CHGNet 0.2.0 has no
readout norm, so its default layer is ``atom_conv_layers.3``. Layers, in forward order: the outputs
of ``atom_embedding``, each ``atom_conv_layers[i]``, ``readout_norm`` and the readout MLP's last hidden
activation (``mlp.layers.5``); all 64-d. Several layers come from one forward pass
(:meth:`~matteralign.models.base.Extractor.embed_samples_layers`). Note that ``CHGNet.predict_structure(return_crystal_feas=True)``
returns the *sum* of ``readout_norm`` over atoms and ``return_atom_feas`` the features after conv
layer 3 of 4; we hook the modules directly instead.

CHGNet needs a periodic cell: non-periodic structures (molecules) are placed in an orthorhombic
vacuum box whose images are at least ``cutoff + 10 Å`` apart (recorded in the provenance), so no
atom sees a periodic image. Structures with an atom that has no neighbour within the 6 Å graph
cutoff (e.g. a single isolated atom) are skipped: CHGNet refuses them.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._atoms import (
    ForwardEnergyMixin,
    boxed,
    capture,
    count_parameters,
    n_isolated,
    relative_to_package,
    seeded,
    structure_reason,
)
from ._registry import ModelSpec, register
from .base import Extractor, file_sha256, package_version

__all__ = ["CHGNetExtractor", "VACUUM_BEYOND_CUTOFF"]

#: Vacuum (Å) added beyond the atom-graph cutoff between periodic images of a boxed molecule.
VACUUM_BEYOND_CUTOFF = 10.0

_CHECKPOINTS = {
    "0.3.0": "pretrained/0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar",
    "0.2.0": "pretrained/0.2.0/chgnet_0.2.0_e30f77s348m32.pth.tar",
    "r2scan": "pretrained/r2scan/chgnet_r2scan_transfer_learning_e15f36s161m23.pth.tar",
}
_N_CONV = 4
_GRAPH_CACHE_SIZE = 512  # graphs kept between the input check and the forward pass (≥ a shard)
#: Layers in forward order: embedding, each atom convolution, the readout norm, the readout MLP's last hidden.
LAYERS = ("atom_embedding", *(f"atom_conv_layers.{i}" for i in range(_N_CONV)), "readout_norm", "mlp.layers.5")
#: CHGNet 0.2.0 has no readout LayerNorm and a shorter readout MLP: the representation entering the
#: readout is the last atom convolution's output.
LAYERS_020 = ("atom_embedding", *(f"atom_conv_layers.{i}" for i in range(_N_CONV)), "mlp.layers.3")
_WIDTH = 64  # atom_fea_dim and the readout MLP's hidden width of every bundled checkpoint


def _checkpoint_path(version: str) -> str | None:
    import importlib.util

    spec = importlib.util.find_spec("chgnet")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], _CHECKPOINTS[version])


def _weights_check(version: str):
    def check() -> str | None:
        path = _checkpoint_path(version)
        if path is None or not os.path.isfile(path):
            return f"CHGNet {version} weights not found in the chgnet package ({_CHECKPOINTS[version]})"
        return None

    return check


class CHGNetExtractor(ForwardEnergyMixin, Extractor):
    """Per-atom features of a CHGNet model.

    Parameters
    ----------
    version : {"0.3.0", "0.2.0", "r2scan"}
        Bundled checkpoint.
    random_init : bool
        Build the same architecture with freshly initialised weights (seeded by ``seed``): the
        control for "alignment from the architecture alone".
    name : str, optional
        Registry name recorded in the store.
    **options
        ``device``, ``seed``, ``num_threads``, ``batch_size`` (see :class:`Extractor`).
    """

    family = "chgnet"
    modality = "atoms"
    default_layer = "readout_norm"

    def __init__(self, *, version: str = "0.3.0", random_init: bool = False, name: str | None = None,
                 **options: Any):
        super().__init__(**options)
        from ..errors import ModelError

        if version not in _CHECKPOINTS:
            raise ModelError(f"unknown CHGNet version {version!r}; bundled: {sorted(_CHECKPOINTS)}")
        self.version = version
        self.random_init = bool(random_init)
        self.name = name or (f"chgnet-{version}" + ("-random" if random_init else ""))
        path = _checkpoint_path(version)
        if path is None or not os.path.isfile(path):
            raise ModelError(f"CHGNet {version} weights not found: {path!r}")
        self.weights = path

        import contextlib
        import io

        import torch
        from chgnet.model import CHGNet

        with contextlib.redirect_stdout(io.StringIO()):  # "CHGNet initialized with ... parameters"
            if self.random_init:
                state = torch.load(path, map_location="cpu", weights_only=False)
                with seeded(self.seed):
                    model = CHGNet(**state["model"]["model_args"])
            else:
                model = CHGNet.from_file(path, mlp_out_bias=version == "0.2.0", version=version)
        self.model = model.to(self.device).eval()
        self.cutoff = float(self.model.graph_converter.atom_graph_cutoff)
        self._layers = list(LAYERS if self.model.readout_norm is not None else LAYERS_020)
        self.default_layer = "readout_norm" if self.model.readout_norm is not None else "atom_conv_layers.3"

    # ------------------------------------------------------------------ protocol
    def layers(self) -> list[str]:
        return list(self._layers)

    def input_reason(self, obj: Any) -> str | None:
        reason = structure_reason(obj, max_z=94)
        if reason is not None:
            return reason
        # CHGNet's own graph converter is the check (it refuses isolated atoms); the graph is kept
        # for the forward pass that usually follows, so the neighbour search runs once.
        try:
            self._graph(obj)
        except ValueError as exc:
            if "isolated" in str(exc):
                n = n_isolated(obj, self.cutoff)
                return f"{n} isolated atom(s) with no neighbour within {self.cutoff:g} Å (CHGNet refuses them)"
            return f"CHGNet cannot build its graph: {exc}"
        return None

    def _graph(self, atoms, *, consume: bool = False):
        """CHGNet's crystal graph of ``atoms`` (boxed when non-periodic), cached by content.

        The input check fills the cache; the forward pass takes the graph out (``consume``), so the
        cache only holds graphs of checked structures that are waiting to be embedded.
        """
        import hashlib

        from pymatgen.io.ase import AseAtomsAdaptor

        h = hashlib.blake2b(digest_size=16)
        for part in (atoms.get_positions(), atoms.cell.array, atoms.get_atomic_numbers(), atoms.get_pbc()):
            h.update(np.ascontiguousarray(part).tobytes())
        key = h.digest()
        cache = self.__dict__.setdefault("_graph_cache", {})
        if key in cache:
            return cache.pop(key) if consume else cache[key]
        graph = self.model.graph_converter(
            AseAtomsAdaptor.get_structure(boxed(atoms, gap=self.cutoff + VACUUM_BEYOND_CUTOFF)))
        if consume:
            return graph
        if len(cache) >= _GRAPH_CACHE_SIZE:
            cache.pop(next(iter(cache)))  # oldest first
        cache[key] = graph
        return graph

    def _graphs(self, atoms_list):
        return [self._graph(a, consume=True) for a in atoms_list]

    def _embed_layers(self, inputs, layers):
        return self._forward(inputs, layers)[0]

    def _modules(self, layers):
        return {layer: self.model.get_submodule(layer) for layer in layers}

    def _forward(self, atoms_list, layers):
        """One batched pass per ``batch_size`` chunk; returns (per-layer list of per-structure arrays, energies)."""
        import torch

        feats: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
        energies = []
        bs = self.batch_size
        with capture(self._modules(layers)) as got:
            for start in range(0, len(atoms_list), bs):
                chunk = atoms_list[start:start + bs]
                graphs = [g.to(self.device) for g in self._graphs(chunk)]
                for v in got.values():
                    v.clear()
                with torch.no_grad():
                    pred = self.model(graphs, task="e")
                n = [len(a) for a in chunk]
                energies.append(pred["e"].cpu().numpy().astype(np.float64) * np.asarray(n))  # eV/atom → eV
                for layer in layers:
                    (out,) = got[layer]
                    feats[layer].extend(np.split(out.cpu().numpy(), np.cumsum(n)[:-1]))
        return feats, np.concatenate(energies)

    def _provenance(self) -> dict[str, Any]:
        return {
            "package": "chgnet",
            "package_version": package_version("chgnet"),
            "model_version": self.version,
            "weights": relative_to_package(self.weights, "chgnet"),
            "weights_sha256": file_sha256(self.weights),
            "random_init": self.random_init,
            "n_parameters": count_parameters(self.model),
            "pymatgen": package_version("pymatgen"),
            "atom_graph_cutoff": self.cutoff,
            "molecules": (f"non-periodic structures placed in an orthorhombic box, periodic images "
                          f">= {self.cutoff + VACUUM_BEYOND_CUTOFF:g} A apart "
                          f"(cutoff {self.cutoff:g} A + {VACUUM_BEYOND_CUTOFF:g} A vacuum)"),
            "vacuum_beyond_cutoff": VACUUM_BEYOND_CUTOFF,
        }


def _spec(name: str, version: str, random_init: bool, description: str) -> ModelSpec:
    layers = LAYERS_020 if version == "0.2.0" else LAYERS
    return ModelSpec(
        name=name,
        factory=f"{__name__}:CHGNetExtractor",
        family="chgnet", kind="mlip", embedding_type="invariant", control=random_init,
        random_init_of=f"chgnet-{version}" if random_init else None,
        properties=("energy",), energy_in_forward=True, gpu=True,
        modality="atoms",
        layers=layers,
        default_layer="atom_conv_layers.3" if version == "0.2.0" else "readout_norm",
        depths=tuple(range(len(layers))),
        widths=(_WIDTH,) * len(layers),
        kwargs={"version": version, "random_init": random_init, "name": name},
        requires=("chgnet", "pymatgen", "torch", "ase"),
        check=_weights_check(version),
        description=description,
    )


register(_spec("chgnet-0.3.0", "0.3.0", False, "CHGNet 0.3.0 (MPtrj), readout_norm per atom, 64-d"))
register(_spec("chgnet-0.2.0", "0.2.0", False, "CHGNet 0.2.0 (MPtrj; no readout norm), last conv per atom, 64-d"))
register(_spec("chgnet-r2scan", "r2scan", False, "CHGNet r2SCAN transfer-learned, readout_norm, 64-d"))
register(_spec("chgnet-random", "0.3.0", True, "control: CHGNet 0.3.0 architecture, seeded random weights"))
