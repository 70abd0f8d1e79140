"""General causal language models (Llama, Qwen3, Qwen3-MoE, GPT-OSS, ...) with the study's three prompts.

Any ``transformers`` causal LM in a local checkpoint folder (``config.json``, weights, a fast tokenizer
with a chat template) is read with ``AutoModel`` (the decoder without its LM head). Each molecule is put
in a chat, the checkpoint's chat template is applied (with the generation prompt, as before generating),
and the hidden states of the prompt are pooled:

* ``pooling="content"`` (default): the mean over the tokens of the molecule's own string (its SMILES,
  or its text dump) inside the templated prompt, found through the tokenizer's character offsets;
* ``pooling="prompt"``: the mean over every token of the templated prompt;
* ``pooling="last_token"``: the state of the prompt's last token, the one generation starts from.

The prompt variants of arXiv 2512.03750 (§1.2 of the study notes):

* ``long``: a long "domain-agnostic scientific encoder" system prompt, user message ``SMILES: <smiles>``
  (the study does not publish its exact wording; :data:`LONG_SYSTEM_PROMPT` is ours, written to its
  description, and recorded in the provenance);
* ``blank``: the system prompt "You are a domain-agnostic scientific encoder.", user ``SMILES: <smiles>``;
* ``blank_atomistic``: the same minimal system prompt, user message the plain-text dump of the ASE Atoms
  (the sample's ``text`` view: atomic numbers, positions, cell and pbc).

SMILES are canonicalised with RDKit first, as for the chemical language models. ``dtype`` selects float32
(default; exact on a CPU) or bfloat16; ``device_map="auto"`` spreads a large model over the GPUs present
(``accelerate``).

Registered: the study's three LLMs × three prompts (``r1-llama-8b-<prompt>``, ``qwen3-30b-a3b-<prompt>``,
``gpt-oss-20b-<prompt>``) and ``causal-lm-<prompt>`` for any other causal LM folder.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError, ModelError
from ._hf import LocalHFExtractor, hf_layers
from ._registry import ModelSpec, register

__all__ = ["CausalLMExtractor", "PROMPTS", "POOLINGS", "LONG_SYSTEM_PROMPT", "BLANK_SYSTEM_PROMPT", "STUDY_LLMS"]

BLANK_SYSTEM_PROMPT = "You are a domain-agnostic scientific encoder."

LONG_SYSTEM_PROMPT = (
    "You are a domain-agnostic scientific encoder. Your task is to read the description of a piece of "
    "matter given by the user and to form an internal representation of it that captures everything a "
    "scientist would need to know about it: its composition, the connectivity and geometry of its atoms, "
    "its symmetry, its electronic structure, its likely stability and reactivity, and its physical and "
    "chemical properties. Do not assume a particular field: the input may be a small organic molecule, an "
    "inorganic crystal, a biomolecule or any other system. Read the input carefully and completely, reason "
    "about the structure it encodes, and represent it as faithfully and as precisely as you can. You do not "
    "need to produce an answer: the representation itself is what matters."
)

#: Prompt variant → (system prompt, view read, user-message template).
PROMPTS: dict[str, tuple[str, str, str]] = {
    "long": (LONG_SYSTEM_PROMPT, "smiles", "SMILES: {content}"),
    "blank": (BLANK_SYSTEM_PROMPT, "smiles", "SMILES: {content}"),
    "blank_atomistic": (BLANK_SYSTEM_PROMPT, "text", "{content}"),
}

POOLINGS = ("content", "prompt", "last_token")

#: Registry prefix → (description, model_type, layers, hidden size, parameters) of the study's LLMs.
STUDY_LLMS = {
    "r1-llama-8b": ("DeepSeek-R1-Distill-Llama-8B", "llama", 32, 4096, "8.0B"),
    "qwen3-30b-a3b": ("Qwen3-30B-A3B-Thinking-2507 (MoE)", "qwen3_moe", 48, 2048, "30.5B"),
    "gpt-oss-20b": ("GPT-OSS-20B (MoE)", "gpt_oss", 24, 2880, "20.9B"),
}


class CausalLMExtractor(LocalHFExtractor):
    """A causal LM from a local folder on one molecule per chat (module docstring).

    Parameters
    ----------
    prompt : {"long", "blank", "blank_atomistic"}
        The prompt variant; it fixes the view read (``smiles`` or ``text``).
    pooling : {"content", "prompt", "last_token"}
    device_map : str or dict, optional
        Passed to ``from_pretrained`` (``"auto"``: spread over the GPUs present; needs ``accelerate``).
    model_type : str, optional
        Expected ``config.model_type`` (the registered study models check theirs).
    **options
        See :class:`~matteralign.models._hf.LocalHFExtractor` (``checkpoint``, ``dtype``, ``max_length``, ...).
    """

    name = "causal-lm"
    family = "llm"

    def __init__(self, *, prompt: str = "blank", pooling: str = "content", device_map: Any = None,
                 model_type: str | None = None, **options: Any):
        if prompt not in PROMPTS:
            raise InputError(f"causal LM: prompt must be one of {tuple(PROMPTS)}; got {prompt!r}")
        if pooling not in POOLINGS:
            raise InputError(f"causal LM: pooling must be one of {POOLINGS}; got {pooling!r}")
        self.prompt = prompt
        self.pooling = pooling
        self.device_map = device_map
        self.expected_model_type = model_type
        self.system_prompt, self.modality, self.template = PROMPTS[prompt]
        options.setdefault("batch_size", 4)
        super().__init__(**options)
        self._canonical: dict[str, str | None] = {}

    def check_config(self, config) -> None:
        mt = getattr(config, "model_type", None)
        if self.expected_model_type and mt != self.expected_model_type:
            raise ModelError(f"checkpoint {str(self.model_dir)!r} is a {mt!r} model; model {self.name!r} "
                             f"reads {self.expected_model_type!r}")

    @staticmethod
    def default_max_length(config) -> int:
        return 4096

    def _load(self):
        import transformers

        kwargs: dict[str, Any] = {"local_files_only": True, "dtype": self.torch_dtype()}
        if self.device_map is not None:
            kwargs["device_map"] = self.device_map
        return transformers.AutoModel.from_pretrained(str(self.model_dir), **kwargs)

    @property
    def tokenizer(self):
        tok = super().tokenizer
        if not getattr(tok, "is_fast", False):
            raise ModelError(f"{self.name}: the tokenizer of {str(self.model_dir)!r} is not a fast tokenizer; "
                             "character offsets (needed to find the molecule's tokens) come from fast ones")
        if not getattr(tok, "chat_template", None):
            raise ModelError(f"{self.name}: the tokenizer of {str(self.model_dir)!r} has no chat template")
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token or tok.unk_token
        return tok

    def canonical(self, smiles: str) -> str | None:
        from .chemical_lm import canonical_smiles

        if smiles not in self._canonical:
            self._canonical[smiles] = canonical_smiles(smiles)
        return self._canonical[smiles]

    def input_reason(self, obj: Any) -> str | None:
        reason = super().input_reason(obj)
        if reason is None and self.modality == "smiles" and self.canonical(obj) is None:
            return f"RDKit cannot parse SMILES {obj[:60]!r}"
        return reason

    def content(self, obj: str) -> str:
        """The molecule's string as it appears in the prompt (canonical SMILES, or the text dump)."""
        return self.canonical(obj) if self.modality == "smiles" else obj

    def messages(self, obj: str) -> list[dict[str, str]]:
        """The chat for one input: the variant's system prompt and the user message."""
        return [{"role": "system", "content": self.system_prompt},
                {"role": "user", "content": self.template.format(content=self.content(obj))}]

    def prompt_text(self, obj: str) -> tuple[str, int, int]:
        """The templated prompt of one input and the character span ``[start, end)`` of its content."""
        text = self.tokenizer.apply_chat_template(self.messages(obj), tokenize=False, add_generation_prompt=True)
        content = self.content(obj)
        start = text.rfind(content)
        if start < 0:
            raise ModelError(f"{self.name}: the chat template dropped or altered the input {content[:40]!r}")
        return text, start, start + len(content)

    def _batch(self, inputs: list[str]) -> dict[str, Any]:
        import torch

        prompts = [self.prompt_text(s) for s in inputs]
        tok = self.tokenizer
        texts = [p[0] for p in prompts]
        full = tok(texts, add_special_tokens=False)["input_ids"]
        self._count_truncated(sum(len(x) > self.max_length for x in full))
        tok.padding_side = "right"
        enc = dict(tok(texts, padding=True, truncation=True, max_length=self.max_length, add_special_tokens=False,
                       return_offsets_mapping=True, return_tensors="pt"))
        offsets = enc.pop("offset_mapping")
        mask = enc["attention_mask"]
        if self.pooling == "prompt":
            pool = mask.clone()
        elif self.pooling == "last_token":
            pool = torch.zeros_like(mask)
            pool[torch.arange(mask.shape[0]), mask.sum(dim=1) - 1] = 1
        else:
            lo = torch.tensor([p[1] for p in prompts]).unsqueeze(1)
            hi = torch.tensor([p[2] for p in prompts]).unsqueeze(1)
            pool = ((offsets[..., 0] < hi) & (offsets[..., 1] > lo) & (offsets[..., 1] > offsets[..., 0]))
            pool = pool.to(mask.dtype) * mask
        enc["pool_mask"] = pool
        enc.pop("token_type_ids", None)
        return enc

    def forward(self, batch: dict[str, Any]):
        return self.model(**batch, output_hidden_states=True, use_cache=False)

    def _provenance(self) -> dict[str, Any]:
        return {**super()._provenance(), "prompt": self.prompt, "system_prompt": self.system_prompt,
                "user_template": self.template, "view": self.modality, "pooling": self.pooling,
                "chat_template": "the checkpoint's (add_generation_prompt=True)",
                "canonical_smiles": "RDKit MolToSmiles(MolFromSmiles(s))" if self.modality == "smiles" else None}


def _spec(name: str, prompt: str, description: str, **kwargs) -> ModelSpec:
    n = kwargs.pop("n", None)
    width = kwargs.pop("width", None)
    layers = hf_layers(n) if n is not None else {"layers": ("last",), "default_layer": "last"}
    extra = {"widths": (width,) * (n + 2)} if n is not None else {}
    return ModelSpec(
        name=name, factory=f"{__name__}:CausalLMExtractor", family="llm", modality=PROMPTS[prompt][1], kind="llm",
        embedding_type="text", kwargs={"name": name, "prompt": prompt, **kwargs},
        requires=("transformers", "torch", "rdkit"), requires_checkpoint=True, gpu=True,
        description=description, **layers, **extra)


for _prompt, _what in (("long", "long system prompt + SMILES"), ("blank", "minimal prompt + SMILES"),
                       ("blank_atomistic", "minimal prompt + text dump of the Atoms")):
    _tag = _prompt.replace("_", "-")
    for _prefix, (_label, _mt, _n, _w, _p) in STUDY_LLMS.items():
        register(_spec(f"{_prefix}-{_tag}", _prompt,
                       f"{_label} ({_p}, {_n} layers, {_w}-d) checkpoint folder; {_what}; mean over the input's tokens",
                       n=_n, width=_w, model_type=_mt, expected_layers=_n))
    register(_spec(f"causal-lm-{_tag}", _prompt,
                   f"any transformers causal LM folder with a chat template; {_what}; mean over the input's tokens",
                   any_size=True))
