"""ESM-IF1 (Hsu et al., ICML 2022, doi:10.1101/2022.04.10.487779), the GVP-Transformer inverse-folding model of
fair-esm, on protein structures, from a local checkpoint, in the ``eqv2`` model environment (fair-esm 2.0.0
with torch-geometric and a compiled torch-scatter; its import name ``esm`` clashes with EvolutionaryScale's,
which lives in the ``esm3`` environment).

The checkpoint is the file fair-esm publishes (``esm_if1_gvp4_t16_142M_UR50.pt``: ``{"args": Namespace,
"model": state dict}``), read by the package's own ``esm.pretrained.load_model_and_alphabet_local``, which
builds ``GVPTransformerModel`` from the stored arguments and checks the keys. torch 2.13 loads with
``weights_only=True``; the one non-tensor type of that layout, ``argparse.Namespace``, is allowed explicitly,
so no trust is needed (a file holding anything else needs ``trust_checkpoint=True``).

The adapter reads a protein sample's ``atoms`` view (its backbone N, CA and C per residue, from the
``atom_name``/``residue_index`` arrays of :mod:`matteralign.datasets.protein`; a missing atom is NaN, which
the package treats as missing), batches the structures with the package's ``CoordBatchConverter`` and runs
the **encoder** only: its output (``encoder_out``, ``(L, 512)`` per chain for the released model, the
structure representation the sequence decoder reads; the package's own ``util.get_encoder_output``), without
the ``<bos>``/``<eos>`` padding positions, mean-pooled over residues by the store. The decoder is not run.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import ModelError
from ._hub import TRUST_HINT, CheckpointExtractor
from ._registry import ModelSpec, register

__all__ = ["EsmIF1Extractor"]


class EsmIF1Extractor(CheckpointExtractor):
    """Per-residue ESM-IF1 encoder output of protein structures (module docstring).

    Parameters
    ----------
    checkpoint : path
        ``esm_if1_gvp4_t16_142M_UR50.pt`` or a file of the same layout.
    trust_checkpoint : bool
        Load with ``weights_only=False`` (only needed for a file holding more than tensors and a Namespace).
    **options
        ``device``, ``seed``, ``num_threads``, ``batch_size``.
    """

    name = "esm-if1"
    family = "inverse_folding"
    modality = "atoms"
    default_layer = "encoder"
    package = "fair-esm"

    def __init__(self, **options: Any):
        options.setdefault("batch_size", 4)
        super().__init__(**options)

    def _load(self) -> None:
        import argparse
        import pickle

        import esm.pretrained
        import torch

        try:
            if self.trust_checkpoint:
                old = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
                os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
                try:
                    model, alphabet = esm.pretrained.load_model_and_alphabet_local(self.checkpoint)
                finally:
                    if old is None:
                        os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
                    else:
                        os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = old
            else:
                with torch.serialization.safe_globals([argparse.Namespace]):
                    model, alphabet = esm.pretrained.load_model_and_alphabet_local(self.checkpoint)
        except pickle.UnpicklingError as exc:
            raise ModelError(f"checkpoint {self.checkpoint!r} of model {self.name!r} holds objects other than "
                             f"tensors and an argparse.Namespace ({str(exc).splitlines()[0][:200]}); "
                             f"{TRUST_HINT}") from None
        if type(model).__name__ != "GVPTransformerModel":
            raise ModelError(f"checkpoint {self.checkpoint!r} is a {type(model).__name__}, not an ESM-IF1 "
                             "GVPTransformerModel")
        self.model = model.eval().to(self.device)
        self.alphabet = alphabet

    def layers(self) -> list[str]:
        return ["encoder"]

    def input_reason(self, obj: Any) -> str | None:
        from ._atoms import protein_structure_reason

        return protein_structure_reason(obj)

    def _embed(self, inputs, layer):
        from esm.inverse_folding.util import CoordBatchConverter

        from ..datasets.protein import backbone

        coords = [backbone(a)[:, :3].astype(np.float32) for a in inputs]  # N, CA, C
        batch = CoordBatchConverter(self.alphabet)([(c, None, None) for c in coords], device=self.device)
        bcoords, confidence, _strs, _tokens, padding_mask = batch
        out = self.model.encoder(bcoords, padding_mask, confidence, return_all_hiddens=False)
        h = out["encoder_out"][0]  # (T, B, D), T = L_max + 2
        feats = []
        for i, c in enumerate(coords):
            ok = np.isfinite(c).all(axis=(1, 2))
            if not ok.any():
                raise ModelError(f"{self.name}: structure {i} has no residue with a full N, CA, C backbone")
            feats.append(h[1:len(c) + 1, i].detach().float().cpu().numpy())
        return feats

    def _hub_provenance(self) -> dict[str, Any]:
        args = self.model.args if hasattr(self.model, "args") else None
        return {"encoder_embed_dim": int(self.model.encoder.embed_dim if hasattr(self.model.encoder, "embed_dim")
                                         else getattr(args, "encoder_embed_dim", 0)),
                "per_atom": False, "per_residue": True,
                "features": "encoder output (the package's get_encoder_output), <bos>/<eos> left out"}


register(ModelSpec(
    name="esm-if1", factory=f"{__name__}:EsmIF1Extractor", family="inverse_folding", modality="atoms",
    needs_views=("sequence",),
    kind="inverse_folding", embedding_type="structure", layers=("encoder",), default_layer="encoder", widths=(512,),
    kwargs={"name": "esm-if1"}, requires=("esm", "torch_geometric", "torch_scatter", "torch"),
    requires_checkpoint=True, gpu=True, env="eqv2",
    description="ESM-IF1 (142M) GVP-Transformer checkpoint (fair-esm, env eqv2); encoder output per residue, "
                "512-d",
))
