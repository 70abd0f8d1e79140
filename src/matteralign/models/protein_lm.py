"""Protein language models on the ``sequence`` view: ESM2, ESM C (``transformers`` port) and ProstT5.

Each loads a local checkpoint folder (a ``save_pretrained`` snapshot; see :mod:`matteralign.models._hf`)
and returns the per-residue hidden states of a layer **mean-pooled over the residues**: the tokenizer's
special tokens (``<cls>``/``<eos>`` for ESM, ``</s>`` and the ``<AA2fold>`` prefix for ProstT5) are left
out, which is the pooling of ESM's own ``extract.py`` and of ProstT5's per-protein embeddings.

* ``esm2-t6-8m``, ``esm2-t30-150m``, ``esm2-t33-650m`` (Lin et al., Science 379, 1123 (2023),
  doi:10.1126/science.ade2574): ``EsmModel`` folders such as ``facebook/esm2_t33_650M_UR50D``. The last
  hidden state is after ESM's final layer norm (``emb_layer_norm_after``), the representation its LM
  head reads. Sequences are upper-cased; residues outside ESM's alphabet become ``<unk>``.
* ``esmc-300m``, ``esmc-600m``: ``transformers``' ``EsmcModel`` port of ESM Cambrian (EvolutionaryScale,
  2024). EvolutionaryScale's own ``.pth`` files are read by their ``esm`` package, not by this adapter.
* ``prostt5``: the encoder of ProstT5 (Heinzinger et al., NAR Genom. Bioinform. 6, lqae150 (2024),
  doi:10.1093/nargab/lqae150), ``T5EncoderModel`` of ``Rostlab/ProstT5``. Input as its authors feed an
  amino-acid sequence: rare residues U, Z, O, B → X, residues separated by spaces, prefixed by
  ``<AA2fold>``; its tokenizer needs ``sentencepiece``.

The study's ESM3 (sequence and structure tracks), ProstT5's structure (3Di) input, and EvolutionaryScale's
native ESM C files are not covered here (``matteralign list models`` says why).
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import ModelError
from ._hf import LocalHFExtractor, hf_layers
from ._registry import ModelSpec, register

__all__ = ["Esm2Extractor", "EsmcExtractor", "ProstT5Extractor", "ESM2_SIZES"]

#: Registry name → (layers, hidden size, parameters) of the ESM2 checkpoints the study used.
ESM2_SIZES = {"esm2-t6-8m": (6, 320, "8M"), "esm2-t30-150m": (30, 640, "150M"), "esm2-t33-650m": (33, 1280, "650M")}
ESMC_SIZES = {"esmc-300m": (30, 960, "300M"), "esmc-600m": (36, 1152, "600M")}

_PROTEIN = re.compile(r"^[A-Za-z]+$")


def _sequence_reason(obj: Any) -> str | None:
    if not isinstance(obj, str):
        return f"expected a protein sequence string; got {type(obj).__name__}"
    if not obj:
        return "empty sequence"
    if not _PROTEIN.match(obj):
        return f"sequence {obj[:40]!r} holds characters other than one-letter residue codes"
    return None


class _ProteinLM(LocalHFExtractor):
    family = "protein_lm"
    modality = "sequence"
    model_types: tuple[str, ...] = ()

    def check_config(self, config) -> None:
        if self.model_types and getattr(config, "model_type", None) not in self.model_types:
            raise ModelError(f"checkpoint {str(self.model_dir)!r} is a {config.model_type!r} model; model "
                             f"{self.name!r} reads {' or '.join(self.model_types)}")

    def input_reason(self, obj: Any) -> str | None:
        return _sequence_reason(obj)

    def prepare(self, text: str) -> str:
        return text.upper()


class Esm2Extractor(_ProteinLM):
    """ESM2 (``EsmModel``) from a local checkpoint folder; residues mean-pooled (module docstring)."""

    name = "esm2"
    model_types = ("esm",)

    @staticmethod
    def default_max_length(config) -> int:
        return 1024  # ESM2's training crop (1022 residues + <cls> + <eos>)


class EsmcExtractor(_ProteinLM):
    """ESM C in ``transformers``' ``EsmcModel`` layout from a local folder; residues mean-pooled."""

    name = "esmc"
    model_types = ("esmc",)

    @staticmethod
    def default_max_length(config) -> int:
        return 2048


class ProstT5Extractor(_ProteinLM):
    """The ProstT5 encoder (``T5EncoderModel``) on amino-acid sequences; residues mean-pooled.

    The first token (``<AA2fold>``) and ``</s>`` are left out of the mean, as in the authors' example.
    """

    name = "prostt5"
    auto_class = "T5EncoderModel"
    model_types = ("t5",)
    prefix = "<AA2fold>"

    @staticmethod
    def default_max_length(config) -> int:
        return 1024

    def prepare(self, text: str) -> str:
        return f"{self.prefix} " + " ".join(re.sub(r"[UZOB]", "X", text.upper()))

    def content_mask(self, enc: dict, texts: list[str]):
        """Positions 1 … L of each row: the prefix (position 0) and the final ``</s>`` are left out whether or
        not the tokenizer flags them as special (one token per residue, as in ProstT5's vocabulary)."""
        import torch

        mask = enc["attention_mask"].clone()
        mask[:, 0] = 0
        mask[torch.arange(mask.shape[0]), enc["attention_mask"].sum(dim=1) - 1] = 0
        return mask


def _spec(name: str, factory: str, n: int, width: int, description: str, requires=("transformers", "torch"),
          **extra) -> ModelSpec:
    return ModelSpec(
        name=name, factory=f"{__name__}:{factory}", family="protein_lm", modality="sequence", kind="protein_lm",
        embedding_type="sequence", widths=(width,) * (n + 2), kwargs={"name": name, "expected_layers": n},
        requires=requires, requires_checkpoint=True, gpu=True, description=description, **hf_layers(n), **extra)


for _name, (_n, _w, _p) in ESM2_SIZES.items():
    register(_spec(_name, "Esm2Extractor", _n, _w,
                   f"ESM2 {_p} checkpoint folder (EsmModel, {_n} layers, {_w}-d); mean over residues"))
for _name, (_n, _w, _p) in ESMC_SIZES.items():
    register(_spec(_name, "EsmcExtractor", _n, _w,
                   f"ESM C {_p} in transformers' EsmcModel layout ({_n} layers, {_w}-d); mean over residues"))
register(_spec("prostt5", "ProstT5Extractor", 24, 1024,
               "ProstT5 encoder checkpoint folder (T5EncoderModel, 24 layers, 1024-d) on <AA2fold> sequences; "
               "mean over residues", requires=("transformers", "torch", "sentencepiece")))
