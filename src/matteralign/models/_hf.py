"""Shared base of adapters that load a ``transformers`` model from a local checkpoint folder.

A checkpoint folder is what ``save_pretrained`` writes (``config.json``, ``model.safetensors`` or
``pytorch_model.bin``, shards with an index) plus the tokenizer files, i.e. a snapshot of a hub repository
copied to local disk. Nothing is fetched: ``HF_HUB_OFFLINE`` is set and every ``from_pretrained`` call
passes ``local_files_only=True``.

Layers are ``hidden_0`` (the embedding output) … ``hidden_L`` (the last layer, after the model's final
norm where it has one: the model output's ``last_hidden_state``, also for checkpoint code whose
``hidden_states`` end before that norm) and ``last``,
the last layer of whatever checkpoint is loaded (an alias of ``hidden_L``). Each is mean-pooled over
the tokens of the input's own content: padding and the tokenizer's special tokens (``<cls>``, ``<eos>``,
``</s>``, ...) are left out, as are any prompt tokens an adapter adds around the content.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelError
from .base import file_sha256, package_version
from .language import _offline, _quiet_transformers, _TransformerExtractor, masked_mean

__all__ = ["LocalHFExtractor", "DTYPES", "checkpoint_dir_sha256", "weight_files", "hf_layers"]

#: dtype names accepted by ``dtype=``.
DTYPES = ("float32", "bfloat16", "float16")

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weight_files(folder: str | os.PathLike) -> list[Path]:
    """The weight files of a checkpoint folder, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES
                  and not p.name.startswith("training_args"))


def checkpoint_dir_sha256(folder: str | os.PathLike, files: list[Path] | None = None) -> str:
    """SHA-256 over the names and SHA-256 of every weight file (or of ``files``) of a checkpoint folder."""
    import hashlib

    h = hashlib.sha256()
    for p in weight_files(folder) if files is None else files:
        h.update(p.name.encode() + b"\0" + file_sha256(p).encode() + b"\n")
    return h.hexdigest()


def hf_layers(n: int) -> dict[str, Any]:
    """``ModelSpec`` layer fields for a model of ``n`` layers: ``hidden_0..hidden_n`` then ``last``."""
    return {"layers": (*(f"hidden_{i}" for i in range(n + 1)), "last"), "default_layer": "last",
            "depths": (*range(n + 1), n), "aliases": {"last": f"hidden_{n}"}}


class LocalHFExtractor(_TransformerExtractor):
    """A ``transformers`` model read from a local checkpoint folder, its hidden states mean-pooled.

    Parameters
    ----------
    checkpoint : path
        The checkpoint folder (``config.json`` + weights + tokenizer files).
    name : str, optional
        Registry name recorded in the store.
    max_length : int, optional
        Maximum tokens per input (longer inputs are truncated and counted); default: the model's
        position table (or 1024 where it has none).
    dtype : {"float32", "bfloat16", "float16"}
        Weights and activations dtype (pooling is done in float32).
    expected_layers : int, optional
        Number of layers the registered model has; a checkpoint with another number raises
        :class:`ModelError` unless ``any_size=True`` (e.g. a small stand-in of the same architecture).
    any_size : bool
        Accept a checkpoint of any depth (the ``last`` layer follows it).
    trust_checkpoint : bool
        Allow a checkpoint whose folder carries its own modelling code (``trust_remote_code``) and
        pickled ``.bin`` weights.
    **options
        ``device``, ``seed``, ``num_threads``, ``batch_size`` (see :class:`~matteralign.models.base.Extractor`).
    """

    requires_checkpoint = True
    family = "lm"
    default_layer = "last"
    #: ``transformers`` class that loads the model (``AutoModel``, ``T5EncoderModel``, ...).
    auto_class: str = "AutoModel"
    #: Leave the tokenizer's special tokens out of the mean.
    exclude_special: bool = True
    #: The folder carries its own modelling code (``trust_remote_code=True`` needed).
    remote_code: bool = False

    def __init__(self, *, checkpoint: str | os.PathLike | None = None, name: str | None = None,
                 max_length: int | None = None, dtype: str = "float32", expected_layers: int | None = None,
                 any_size: bool = False, trust_checkpoint: bool = False, **options: Any):
        if name:
            self.name = name
        if checkpoint is None:
            raise ModelError(f"model {self.name!r} needs a local checkpoint folder: pass checkpoint=PATH "
                             "(a save_pretrained folder with config.json, weights and tokenizer files)")
        folder = Path(os.fspath(checkpoint)).expanduser()
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise ModelError(f"checkpoint for model {self.name!r} must be a folder holding config.json; "
                             f"got {str(folder)!r}")
        if dtype not in DTYPES:
            raise InputError(f"{self.name}: dtype must be one of {DTYPES}; got {dtype!r}")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < 4):
            raise InputError(f"{self.name}: max_length must be an integer ≥ 4; got {max_length!r}")
        self.trust_checkpoint = bool(trust_checkpoint)
        if self.remote_code and not self.trust_checkpoint:
            raise ModelError(f"checkpoint {str(folder)!r} of model {self.name!r} runs its own modelling code "
                             "(trust_remote_code): pass trust_checkpoint=True if you trust the folder")
        self.model_dir = folder
        self.dtype = dtype
        if not weight_files(folder):
            raise ModelError(f"checkpoint folder {str(folder)!r} of model {self.name!r} holds no weight file "
                             f"({', '.join(_WEIGHT_SUFFIXES)})")
        _offline()
        try:
            from transformers import AutoConfig

            with _quiet_transformers():
                self.config = AutoConfig.from_pretrained(str(folder), local_files_only=True,
                                                         trust_remote_code=self.remote_code)
        except Exception as exc:
            raise ModelError(f"cannot read the configuration of checkpoint {str(folder)!r} for model "
                             f"{self.name!r} ({type(exc).__name__}: {str(exc)[:300]})") from None
        self.check_config(self.config)
        self.n_hidden = self.n_layers_of(self.config)
        if expected_layers is not None and not any_size and self.n_hidden != expected_layers:
            raise ModelError(f"checkpoint {str(folder)!r} has {self.n_hidden} layers but model {self.name!r} has "
                             f"{expected_layers}; pass any_size=True to use it anyway (layer 'last' follows it)")
        self.max_length = int(max_length) if max_length is not None else self.default_max_length(self.config)
        options.setdefault("batch_size", 8)
        super().__init__(**options)
        self._tokenizer = None
        self._sha = None

    # ------------------------------------------------------------------ what subclasses may override
    def check_config(self, config) -> None:
        """Raise :class:`ModelError` when ``config`` is not of the architecture this adapter reads."""

    @staticmethod
    def n_layers_of(config) -> int:
        """Number of transformer layers of ``config``."""
        for attr in ("num_hidden_layers", "num_layers", "n_layer"):
            n = getattr(config, attr, None)
            if isinstance(n, int):
                return n
        raise ModelError(f"cannot tell the number of layers of a {type(config).__name__}")

    @staticmethod
    def default_max_length(config) -> int:
        n = getattr(config, "max_position_embeddings", None)
        return int(n) if isinstance(n, int) and n > 0 else 1024

    def prepare(self, text: str) -> str:
        """The string fed to the tokenizer for one input (default: as is)."""
        return text

    def content_mask(self, enc: dict, texts: list[str]):
        """``(B, T)`` 0/1 mask of the positions averaged (default: real, non-special tokens)."""
        mask = enc["attention_mask"].clone()
        special = enc.get("special_tokens_mask")
        if self.exclude_special and special is not None:
            mask = mask * (1 - special.to(mask.dtype))
        return mask

    # ------------------------------------------------------------------ machinery
    def layers(self) -> list[str]:
        return [f"hidden_{i}" for i in range(self.n_hidden + 1)] + ["last"]

    def input_reason(self, obj: Any) -> str | None:
        from .language import _string_reason

        return _string_reason(obj, self.modality)

    @property
    def tokenizer(self):
        """The checkpoint's tokenizer (``AutoTokenizer``, loaded on first use)."""
        if self._tokenizer is None:
            _offline()
            from transformers import AutoTokenizer

            with _quiet_transformers():
                try:
                    self._tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True,
                                                                    trust_remote_code=self.remote_code)
                except Exception as exc:
                    raise ModelError(f"cannot load the tokenizer of checkpoint {str(self.model_dir)!r} "
                                     f"({type(exc).__name__}: {str(exc)[:300]})") from None
        return self._tokenizer

    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    def _load(self):
        import transformers

        cls = getattr(transformers, self.auto_class)
        return cls.from_pretrained(str(self.model_dir), local_files_only=True, dtype=self.torch_dtype(),
                                   trust_remote_code=self.remote_code)

    @property
    def model(self):
        """The ``transformers`` module (loaded on first use, eval mode, in ``dtype``)."""
        if self._model is None:
            _offline()
            with _quiet_transformers():
                try:
                    model = self._load()
                except Exception as exc:
                    raise ModelError(f"could not load checkpoint {str(self.model_dir)!r} as model {self.name!r} "
                                     f"({type(exc).__name__}: {str(exc)[:300]})") from None
            if getattr(model, "hf_device_map", None) is None:
                model = model.to(self.device)
            self._model = model.to(self.torch_dtype()).eval()
        return self._model

    def _batch(self, inputs: list[str]) -> dict[str, Any]:
        texts = [self.prepare(s) for s in inputs]
        tok = self.tokenizer
        full = tok(texts, add_special_tokens=True)["input_ids"]
        self._count_truncated(sum(len(x) > self.max_length for x in full))
        enc = dict(tok(texts, padding=True, truncation=True, max_length=self.max_length,
                       return_special_tokens_mask=True, return_tensors="pt"))
        enc["pool_mask"] = self.content_mask(enc, texts)
        enc.pop("special_tokens_mask", None)
        return enc

    def forward(self, batch: dict[str, Any]):
        """One forward pass with all hidden states (``batch`` holds only model inputs)."""
        return self.model(**batch, output_hidden_states=True)

    def hidden_states(self, inputs: list[str]):
        import torch

        self.model  # noqa: B018  (load first, under the quiet logger)
        raw = self._batch(inputs)
        pool_mask = raw.pop("pool_mask")
        dev = next(self.model.parameters()).device
        batch = {k: v.to(dev) if hasattr(v, "to") else v for k, v in raw.items()}
        with torch.no_grad():
            out = self.forward(batch)
        if (pool_mask.sum(dim=1) == 0).any():
            raise ModelError(f"{self.name}: an input has no content token to average (empty after tokenising)")
        batch["pool_mask"] = pool_mask.to(dev)
        hidden = tuple(out.hidden_states)
        last = getattr(out, "last_hidden_state", None)
        if last is not None and len(hidden) == self.n_hidden + 1:
            hidden = (*hidden[:-1], last)  # after the final norm, also where a model's hidden_states stop before it
        return hidden, batch

    def _pool(self, hidden, batch, layer: str):
        idx = self.n_hidden if layer == "last" else int(layer.split("_")[1])
        return masked_mean(hidden[idx].float(), batch["pool_mask"].float())

    def _weights_file(self) -> Path:
        return weight_files(self.model_dir)[0]

    def _provenance(self) -> dict[str, Any]:
        if self._sha is None:
            self._sha = checkpoint_dir_sha256(self.model_dir)
        return {
            "package": "transformers", "package_version": package_version("transformers"),
            "weights": str(self.model_dir.resolve()), "weights_sha256": self._sha,
            "model_type": getattr(self.config, "model_type", None), "auto_class": self.auto_class,
            "n_layers": self.n_hidden, "hidden_size": getattr(self.config, "hidden_size", None),
            "n_parameters": int(sum(p.numel() for p in self.model.parameters())), "dtype": self.dtype,
            "max_length": self.max_length, "n_strings": self.n_strings, "n_truncated": self.n_truncated,
            "pooling": "mean over the input's content tokens (special and padding tokens excluded)",
            "per_atom": False,
            **({"trust_checkpoint": True, "remote_code": sorted(p.name for p in self._code_files()),
                "code_sha256": checkpoint_dir_sha256(self.model_dir, self._code_files())}
               if self.remote_code else {}),
        }

    def _code_files(self) -> list[Path]:
        """The Python files of the checkpoint folder (its own modelling and tokenizer code)."""
        return sorted(self.model_dir.glob("*.py"))

