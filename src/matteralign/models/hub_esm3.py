"""ESM3 (Hayes et al., Science 387, 850 (2025), doi:10.1126/science.ads0018), sequence track, and ESM C
(EvolutionaryScale, 2024) in EvolutionaryScale's own format, from local checkpoints, in the ``esm3`` model
environment (EvolutionaryScale's ``esm`` package, whose import name clashes with fair-esm's; see
:data:`matteralign.envs.FAMILIES`).

ESM C's native files (``esmc_300m_2024_12_v0.pth``, ``esmc_600m_2024_12_v0.pth``, or their snapshot folders)
are read the same way into the package's ``esm.models.esmc.ESMC`` (``esmc-300m-native``, ``esmc-600m-native``;
``esmc-300m``/``esmc-600m`` read transformers' ``EsmcModel`` port instead); its hooks are the token embedding
(``hidden_0``), the blocks and the final norm (``last``, what its sequence head reads).

The checkpoint is the state dict EvolutionaryScale publishes (``esm3_sm_open_v1.pth``), given as the file or
as the folder of the ``EvolutionaryScale/esm3-sm-open-v1`` snapshot that holds it at
``data/weights/esm3_sm_open_v1.pth`` (where the package's own ``ESM3_sm_open_v0`` loader reads it). It is
loaded with ``weights_only=True`` (no trust needed) into the package's own ``esm.models.esm3.ESM3``, whose
shape is read from the state dict: ``d_model`` from the sequence embedding, the number of blocks, and
``v_heads`` from the geometric attention; the number of attention heads is ``d_model / 64`` (64-d heads,
as in ESM3-open: 1536 = 24 x 64) unless ``n_heads`` is given. The structure, function and residue-annotation
tracks are left at the package's defaults (masked / padded), as in a sequence-only call of the model.

Each protein runs alone (the package's own inference runs one protein at a time; no padding enters the
attention), tokenised by the package's ``EsmSequenceTokenizer`` (``<cls>`` sequence ``<eos>``). Forward
hooks read the encoder output (``hidden_0``), each block's output (``hidden_i``) and the final layer norm
(``last``: the representation every output head reads, the default). Features are mean-pooled over the
residues, ``<cls>`` and ``<eos>`` left out (the study's pooling).
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from ..errors import ModelError
from ._hub import CheckpointExtractor
from ._registry import ModelSpec, register
from .protein_lm import _sequence_reason

__all__ = ["Esm3SequenceExtractor", "EsmcNativeExtractor", "WEIGHTS_IN_SNAPSHOT", "N_LAYERS", "WIDTH",
           "ESMC_NATIVE"]

#: Where the ESM3-open snapshot keeps its weights (relative to the snapshot folder).
WEIGHTS_IN_SNAPSHOT = os.path.join("data", "weights", "esm3_sm_open_v1.pth")
#: ESM3-open (1.4B): 48 blocks of width 1536.
N_LAYERS, WIDTH = 48, 1536
#: ESM C registry name → (weights file in its snapshot, blocks, width, size).
ESMC_NATIVE = {"esmc-300m-native": ("esmc_300m_2024_12_v0.pth", 30, 960, "300M"),
               "esmc-600m-native": ("esmc_600m_2024_12_v0.pth", 36, 1152, "600M")}

class _Done(Exception):
    """Raised by the hook on the final norm: the output heads are not needed."""


class Esm3SequenceExtractor(CheckpointExtractor):
    """Per-protein ESM3 sequence-track features (module docstring).

    Parameters
    ----------
    checkpoint : path
        ``esm3_sm_open_v1.pth`` (a state dict) or the snapshot folder holding it at ``data/weights/``.
    n_heads : int, optional
        Attention heads (default ``d_model // 64``).
    max_length : int
        Longest protein in residues (longer ones are skipped, with the reason recorded).
    **options
        ``device``, ``seed``, ``num_threads``, ``batch_size`` (see :class:`~matteralign.models.base.Extractor`).
    """

    name = "esm3-sequence"
    family = "protein_lm"
    modality = "sequence"
    default_layer = "last"
    package = "esm"

    weights_in_snapshot = WEIGHTS_IN_SNAPSHOT
    embed_key = "encoder.sequence_embed.weight"

    def __init__(self, *, n_heads: int | None = None, max_length: int = 2046, weights_in_snapshot: str | None = None,
                 **options: Any):
        self.n_heads_option = n_heads
        if weights_in_snapshot:
            self.weights_in_snapshot = os.path.join("data", "weights", weights_in_snapshot)
        self.max_length = int(max_length)
        super().__init__(**options)

    def _check_checkpoint(self, path, model: str) -> str:
        """The weights file: ``path`` itself, or ``path/data/weights/<weights file>`` for a snapshot folder."""
        if path is not None and os.path.isdir(os.fspath(path)):
            inner = os.path.join(os.fspath(path), self.weights_in_snapshot)
            if not os.path.isfile(inner):
                raise ModelError(f"checkpoint folder {os.fspath(path)!r} of model {model!r} holds no "
                                 f"{self.weights_in_snapshot}; expected the model's snapshot folder or the .pth file")
            return inner
        return CheckpointExtractor._check_checkpoint(path, model)

    def _load(self) -> None:
        import torch
        from esm.tokenization import EsmSequenceTokenizer

        sd = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        if not isinstance(sd, dict) or self.embed_key not in sd:
            raise ModelError(f"checkpoint {self.checkpoint!r} is not a state dict of model {self.name!r} (no "
                             f"{self.embed_key})")
        d_model = int(sd[self.embed_key].shape[1])
        blocks = {int(m.group(1)) for k in sd if (m := re.match(r"transformer\.blocks\.(\d+)\.", k))}
        n_heads = int(self.n_heads_option or d_model // 64)
        if d_model % n_heads:
            raise ModelError(f"model {self.name!r}: d_model {d_model} is not divisible by n_heads {n_heads}")
        self.tokenizer = EsmSequenceTokenizer()
        self.shape = {"d_model": d_model, "n_layers": max(blocks) + 1, "n_heads": n_heads}
        with torch.device(self.device):
            model = self._build(sd)
        model.load_state_dict(sd, strict=True)
        self.model = model.eval()

    def _build(self, sd):
        from esm.models.esm3 import ESM3
        from esm.tokenization import TokenizerCollection

        def _not_needed(*_a, **_k):  # the sequence track needs no structure/function codec
            raise ModelError("the structure and function decoders are not loaded by the sequence-track adapter")

        self.shape["v_heads"] = int(sd["transformer.blocks.0.geom_attn.distance_scale_per_head"].shape[0])
        tokenizers = TokenizerCollection(sequence=self.tokenizer, structure=None, secondary_structure=None,
                                         sasa=None, function=None, residue_annotations=None)
        return ESM3(**self.shape, structure_encoder_fn=_not_needed, structure_decoder_fn=_not_needed,
                    function_decoder_fn=_not_needed, tokenizers=tokenizers)

    def _input_module(self):
        return self.model.encoder

    def layers(self) -> list[str]:
        return [*(f"hidden_{i}" for i in range(self.shape["n_layers"] + 1)), "last"]

    def input_reason(self, obj: Any) -> str | None:
        reason = _sequence_reason(obj)
        if reason is None and len(obj) > self.max_length:
            return f"sequence of {len(obj)} residues is longer than max_length = {self.max_length}"
        return reason

    def _forward(self, seq: str, layers: list[str]) -> dict[str, np.ndarray]:
        import torch

        ids = self.tokenizer(seq.upper())["input_ids"]
        tokens = torch.tensor([ids], dtype=torch.long, device=self.device)
        got: dict[str, Any] = {}
        mods = {"hidden_0": self._input_module(),
                **{f"hidden_{i + 1}": b for i, b in enumerate(self.model.transformer.blocks)}}
        handles = [mods[lay].register_forward_hook(lambda _m, _i, out, lay=lay: got.__setitem__(lay, out))
                   for lay in layers if lay != "last"]

        def last(_m, _i, out):
            got["last"] = out
            raise _Done

        handles.append(self.model.transformer.norm.register_forward_hook(last))
        try:
            self.model(sequence_tokens=tokens)
        except _Done:
            pass
        finally:
            for h in handles:
                h.remove()
        return {lay: got[lay][0, 1:-1].float().mean(dim=0, keepdim=True).cpu().numpy() for lay in layers}

    def _embed_layers(self, inputs, layers):
        outs = [self._forward(s, list(layers)) for s in inputs]
        return {lay: [o[lay] for o in outs] for lay in layers}

    def _embed(self, inputs, layer):
        return self._embed_layers(inputs, [layer])[layer]

    def _hub_provenance(self) -> dict[str, Any]:
        return {**self.shape, "tracks": "sequence only (structure, function, annotations at the package defaults)",
                "pooling": "mean over residues (<cls>, <eos> left out)", "per_residue": False}


class EsmcNativeExtractor(Esm3SequenceExtractor):
    """ESM C from EvolutionaryScale's own ``.pth`` (or its snapshot folder) in the package's ``ESMC`` class;
    per-protein mean over residues of the final norm (or a block). Parameters as
    :class:`Esm3SequenceExtractor`, plus ``weights_in_snapshot`` (the file name under ``data/weights/``)."""

    name = "esmc-native"
    embed_key = "embed.weight"

    def _build(self, sd):
        from esm.models.esmc import ESMC

        return ESMC(**self.shape, tokenizer=self.tokenizer, use_flash_attn=False)

    def _input_module(self):
        return self.model.embed

    def _hub_provenance(self) -> dict[str, Any]:
        return {**self.shape, "pooling": "mean over residues (<cls>, <eos> left out)", "per_residue": False}


register(ModelSpec(
    name="esm3-sequence", factory=f"{__name__}:Esm3SequenceExtractor", family="protein_lm", modality="sequence",
    kind="protein_lm", embedding_type="sequence",
    layers=(*(f"hidden_{i}" for i in range(N_LAYERS + 1)), "last"), default_layer="last",
    depths=(*range(N_LAYERS + 1), N_LAYERS + 1), widths=(WIDTH,) * (N_LAYERS + 2),
    kwargs={"name": "esm3-sequence"}, requires=("esm", "torch"), requires_checkpoint=True, gpu=True, env="esm3",
    description="ESM3-open (1.4B) sequence track: esm3_sm_open_v1.pth or its snapshot folder (EvolutionaryScale "
                "esm, env esm3); final norm, mean over residues, 1536-d",
))
for _name, (_file, _n, _w, _size) in ESMC_NATIVE.items():
    register(ModelSpec(
        name=_name, factory=f"{__name__}:EsmcNativeExtractor", family="protein_lm", modality="sequence",
        kind="protein_lm", embedding_type="sequence",
        layers=(*(f"hidden_{i}" for i in range(_n + 1)), "last"), default_layer="last",
        depths=(*range(_n + 1), _n + 1), widths=(_w,) * (_n + 2),
        kwargs={"name": _name, "weights_in_snapshot": _file}, requires=("esm", "torch"), requires_checkpoint=True,
        gpu=True, env="esm3",
        description=f"ESM C {_size} in EvolutionaryScale's format: {_file} or its snapshot folder (esm, env esm3); "
                    f"final norm, mean over residues, {_w}-d",
    ))
