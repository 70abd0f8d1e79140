"""Chemical language models on SMILES and SELFIES: ChemBERTa, MoLFormer and ChemGPT.

Each loads a local checkpoint folder (a ``save_pretrained`` snapshot; see :mod:`matteralign.models._hf`)
and mean-pools a layer's token states over the molecule's tokens (special tokens and padding left out).
As in the study, every SMILES is first **canonicalised** with RDKit (``Chem.MolToSmiles`` of the parsed
molecule, isomeric); a SMILES RDKit cannot parse is skipped with the reason. The canonical form is what
the model sees (recorded in the provenance as ``canonical_smiles``).

* ``chemberta`` (Chithrananda et al., arXiv:2010.09885; ChemBERTa-2, Ahmad et al., arXiv:2209.01712):
  a ``RobertaModel`` folder such as ``DeepChem/ChemBERTa-77M-MLM``, on canonical SMILES.
* ``molformer`` (Ross et al., Nat. Mach. Intell. 4, 1256 (2022), doi:10.1038/s42256-022-00580-7):
  ``ibm/MoLFormer-XL-both-10pct``. Its modelling and tokenizer code live in the checkpoint folder
  (``trust_remote_code``), so loading it needs ``trust_checkpoint=True``; ``transformers`` has no
  MoLFormer class of its own.
* ``chemgpt`` (Frey et al., Nat. Mach. Intell. 5, 1297 (2023), doi:10.1038/s42256-023-00740-3): a
  ``GPTNeoModel`` folder such as ``ncfrey/ChemGPT-1.2B``, on the SELFIES (``selfies.encoder``) of the
  canonical SMILES.
"""

from __future__ import annotations

from typing import Any

from ..errors import MissingDependencyError, ModelError
from ._hf import LocalHFExtractor, hf_layers
from ._registry import ModelSpec, register

__all__ = ["ChemBertaExtractor", "MolFormerExtractor", "ChemGPTExtractor", "canonical_smiles"]


def canonical_smiles(smiles: str) -> str | None:
    """RDKit's canonical isomeric SMILES of ``smiles`` (``None`` when RDKit cannot parse it)."""
    try:
        from rdkit import Chem, RDLogger
    except ImportError:
        raise MissingDependencyError("rdkit", "canonicalising SMILES for the chemical language models",
                                     extra="models") from None
    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


class _ChemicalLM(LocalHFExtractor):
    family = "chemical_lm"
    modality = "smiles"
    model_types: tuple[str, ...] = ()

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._canonical: dict[str, str | None] = {}

    def check_config(self, config) -> None:
        if self.model_types and getattr(config, "model_type", None) not in self.model_types:
            raise ModelError(f"checkpoint {str(self.model_dir)!r} is a {config.model_type!r} model; model "
                             f"{self.name!r} reads {' or '.join(self.model_types)}")

    def canonical(self, smiles: str) -> str | None:
        if smiles not in self._canonical:
            self._canonical[smiles] = canonical_smiles(smiles)
        return self._canonical[smiles]

    def input_reason(self, obj: Any) -> str | None:
        reason = super().input_reason(obj)
        if reason is None and self.canonical(obj) is None:
            return f"RDKit cannot parse SMILES {obj[:60]!r}"
        return reason

    def prepare(self, text: str) -> str:
        return self.canonical(text)

    def _provenance(self) -> dict[str, Any]:
        from .base import package_version

        return {**super()._provenance(), "canonical_smiles": "RDKit MolToSmiles(MolFromSmiles(s)), isomeric",
                "rdkit": package_version("rdkit")}


class ChemBertaExtractor(_ChemicalLM):
    """ChemBERTa (``RobertaModel``) on canonical SMILES; mean over the SMILES tokens."""

    name = "chemberta"
    model_types = ("roberta",)

    @staticmethod
    def default_max_length(config) -> int:
        return min(512, int(config.max_position_embeddings) - 2)


class MolFormerExtractor(_ChemicalLM):
    """MoLFormer from its hub folder (own modelling code: ``trust_checkpoint=True``) on canonical SMILES.

    The folder's own classes run: ``AutoModel`` and ``AutoTokenizer`` resolve its ``auto_map``
    (``modeling_molformer.MolformerModel``, ``tokenization_molformer(_fast)``). One setting differs from a
    plain load: ``deterministic_eval=True`` is set on the configuration. The published ``config.json``
    stores False, with which the linear attention draws fresh random features at every forward pass (two
    calls on one SMILES give two vectors); with True it uses the feature matrix stored in the checkpoint.

    Layer ``hidden_L`` / ``last`` is the model's ``last_hidden_state`` (after its final LayerNorm, which its
    own ``hidden_states`` leave out); the mean is over the SMILES tokens, ``<bos>``/``<eos>`` and padding
    left out (the checkpoint's own ``pooler_output`` averages them in).
    """

    name = "molformer"
    remote_code = True
    model_types = ("molformer",)

    @staticmethod
    def default_max_length(config) -> int:
        return 202  # the checkpoint's training limit (200 tokens + <bos>/<eos>)

    def _load(self):
        import copy

        from transformers import AutoModel

        config = copy.deepcopy(self.config)
        config.deterministic_eval = True  # the stored random features, not fresh ones at every forward
        return AutoModel.from_pretrained(str(self.model_dir), config=config, local_files_only=True,
                                         dtype=self.torch_dtype(), trust_remote_code=True)

    def _provenance(self) -> dict[str, Any]:
        return {**super()._provenance(), "deterministic_eval": True}


class ChemGPTExtractor(_ChemicalLM):
    """ChemGPT (``GPTNeoModel``) on the SELFIES of the canonical SMILES; mean over the SELFIES tokens."""

    name = "chemgpt"
    model_types = ("gpt_neo",)

    @property
    def tokenizer(self):
        tok = super().tokenizer
        if tok.pad_token is None:  # GPT-style tokenizers have none; padded positions are masked out anyway
            tok.pad_token = tok.eos_token or tok.unk_token
        return tok

    def input_reason(self, obj: Any) -> str | None:
        reason = super().input_reason(obj)
        if reason is None and self.prepare(obj) is None:
            return f"SMILES {obj[:60]!r} has no SELFIES encoding"
        return reason

    def prepare(self, text: str) -> str | None:
        import selfies

        canon = self.canonical(text)
        try:
            return selfies.encoder(canon)
        except Exception:  # selfies.EncoderError
            return None

    def _provenance(self) -> dict[str, Any]:
        from .base import package_version

        return {**super()._provenance(), "input": "SELFIES of the canonical SMILES (selfies.encoder)",
                "selfies": package_version("selfies")}


def _spec(name: str, factory: str, n: int, width: int | None, description: str,
          requires=("transformers", "torch", "rdkit"), **kwargs) -> ModelSpec:
    return ModelSpec(
        name=name, factory=f"{__name__}:{factory}", family="chemical_lm", modality="smiles", kind="chemical_lm",
        embedding_type="text", widths=(width,) * (n + 2), kwargs={"name": name, "expected_layers": n, **kwargs},
        requires=requires, requires_checkpoint=True, gpu=True, description=description, **hf_layers(n))


register(_spec("chemberta", "ChemBertaExtractor", 3, 384,
               "ChemBERTa-77M-MLM checkpoint folder (RobertaModel, 3 layers, 384-d) on canonical SMILES; "
               "mean over tokens"))
register(_spec("molformer", "MolFormerExtractor", 12, 768,
               "MoLFormer-XL checkpoint folder (its own code: trust_checkpoint) on canonical SMILES; "
               "mean over tokens"))
register(_spec("chemgpt", "ChemGPTExtractor", 24, 2048,
               "ChemGPT-1.2B checkpoint folder (GPTNeoModel, 24 layers, 2048-d) on SELFIES of canonical "
               "SMILES; mean over tokens", requires=("transformers", "torch", "rdkit", "selfies")))
