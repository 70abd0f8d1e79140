"""GraphCast (Lam et al., Science 2023, doi:10.1126/science.adi2336): registered, not runnable yet.

Two routes exist, neither established here:

1. DeepMind's released parameters (``params/GraphCast*.npz``, haiku names) in an implementation of the
   encoder–processor–decoder on the icosahedral multimesh: DeepMind's JAX package is not on PyPI (the PyPI
   name ``graphcast`` is an unrelated tool), so the mesh construction, grid↔mesh graphs, feature
   normalisation and the 16-step interaction-network processor must be written here and checked against
   the published parameters — not done yet.
2. NVIDIA's PyTorch ``GraphCastNet`` (``nvidia-physicsnemo`` 2.2.2 on PyPI, torch ≥ 2.10, torchvision ≥ 0.25,
   so compatible with the ``aurora`` environment's torch 2.14.1): its graph backend needs ``torch_geometric``
   with the compiled ``torch_scatter`` and ``torch_sparse`` (sdists only on PyPI; about 20 min of compiling on
   2 cores), and it reads its own ``.mdlus`` checkpoints (physicsnemo-trained weights, not DeepMind's) —
   not built yet.
"""

from __future__ import annotations

from typing import Any

from ..errors import ModelError
from ._registry import ModelSpec, register

__all__: list[str] = []

_GRAPHCAST = ("GraphCast is not runnable yet: DeepMind's JAX graphcast is not on PyPI (PyPI 'graphcast' is an "
              "unrelated tool) and no implementation of its multimesh encoder-processor-decoder for the released "
              "params/*.npz exists here; physicsnemo's PyTorch GraphCastNet (nvidia-physicsnemo 2.2.2) needs "
              "torch_geometric with compiled torch_scatter/torch_sparse and reads its own .mdlus weights, and "
              "no environment for it is built")


def _unavailable(**_options: Any):
    raise ModelError(_GRAPHCAST)


register(ModelSpec(
    name="graphcast", factory=_unavailable, family="graphcast", modality="grid", kind="weather",
    embedding_type="grid", layers=("latent",), default_layer="latent", check=lambda: _GRAPHCAST,
    description="GraphCast (weather GNN): not runnable yet (see the reason)"))
