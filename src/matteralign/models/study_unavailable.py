"""Models of the study's table that matteralign cannot run yet, listed with the exact reason.

They appear in ``matteralign list models`` (as unavailable, with the reason) so a study file naming the
full table validates its names; loading one raises :class:`~matteralign.errors.ModelError` with the
same reason.
"""

from __future__ import annotations

from typing import Any

from ..errors import ModelError
from ._registry import ModelSpec, register

__all__ = ["REASONS"]

#: name → (family, kind, modality, embedding type, description, reason).
REASONS: dict[str, tuple[str, str, str, str, str, str]] = {
    "esm3-structure": (
        "protein_lm", "protein_lm", "atoms", "structure", "ESM3 open (1.4B), structure track",
        "no adapter yet: `esm3-sequence` runs the sequence track in the esm3 environment; the structure track "
        "also needs ESM3's VQ-VAE structure encoder (esm3_structure_encoder_v0.pth) to turn coordinates into "
        "structure tokens, which no adapter reads yet"),
    "prostt5-structure": (
        "protein_lm", "protein_lm", "atoms", "structure", "ProstT5 encoder on 3Di structure tokens",
        "no adapter yet: the 3Di alphabet of a structure comes from Foldseek (or the mini3di port on PyPI), "
        "not installed here; `prostt5` covers the sequence input"),
    "geom2vec": (
        "geom2vec", "mlip", "atoms", "vanilla", "Geom2Vec (5M) pretrained geometric GNN",
        "no PyPI package ships Geom2Vec (arXiv:2409.19838): its loader (geom2vec.create_model), its own copies "
        "of TorchMD-ET, TensorNet and ViSNet with the scalar + vector readout it pretrains, and its checkpoints "
        "are only in the authors' source repository (zpengmei/geom2vec, installed from a clone); torchmd-net "
        "3.1.0 on PyPI has the upstream ET and TensorNet but neither that wrapper nor its weights, so no "
        "installable loader reads a Geom2Vec checkpoint faithfully"),
}


def _unavailable(name: str):
    def factory(**_options: Any):
        raise ModelError(f"model {name!r} cannot run: {REASONS[name][5]}")

    return factory


def _check(name: str):
    return lambda: REASONS[name][5]


for _name, (_family, _kind, _modality, _etype, _desc, _reason) in REASONS.items():
    register(ModelSpec(
        name=_name, factory=_unavailable(_name), family=_family, modality=_modality, kind=_kind,
        embedding_type=_etype, layers=("last",), default_layer="last",
        check=_check(_name), description=f"{_desc} (not available: see the reason)",
    ))
