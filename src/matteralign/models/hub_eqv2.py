"""EquiformerV2 (Liao et al., ICLR 2024, arXiv:2306.12059): declared, not built on this machine.

EquiformerV2 exists only in fairchem-core 1.x (``fairchem.core.models.equiformer_v2``); 2.x keeps
a conversion script only. fairchem-core 1.10 pins ``torch~=2.4.0`` and ``numpy<2``; from PyPI that
is the CUDA build of torch 2.4.1 plus 11 ``nvidia-*-cu12`` wheels and triton 3.0 (several GB,
checked with ``pip install --dry-run``), and no torch 2.4 CPU wheel is on this machine. The model
is registered so that ``matteralign list models`` shows it with that reason (the ``eqv2``
environment in :mod:`matteralign.envs` is declared but refuses to build); no adapter is shipped.
"""

from __future__ import annotations

from typing import Any

from ..errors import ModelError
from ._registry import ModelSpec, register

__all__ = ["LAYERS"]

LAYERS = ("node_embedding_l0", "node_embedding")


def unavailable(**_options: Any):
    """Factory of the ``equiformer-v2`` entry: always raises (see the module docstring)."""
    from ..envs import FAMILIES

    raise ModelError(f"equiformer-v2 has no adapter here: {FAMILIES['eqv2'].unavailable}")


register(ModelSpec(name="equiformer-v2", factory=f"{__name__}:unavailable", family="equiformer_v2",
                   modality="atoms", layers=LAYERS, default_layer="node_embedding_l0",
                   requires=("fairchem", "torch", "ase"), requires_checkpoint=True, env="eqv2",
                   description="EquiformerV2 (fairchem-core 1.10, torch 2.4): declared, not built here"))
