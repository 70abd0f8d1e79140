"""A MoLFormer checkpoint folder with its own code: a seeded random instance of a MoLFormer-shaped encoder.

``ibm/MoLFormer-XL-both-10pct`` ships its modelling and tokenizer code in the checkpoint folder
(``config.json``'s ``auto_map`` names ``configuration_molformer.MolformerConfig`` and
``modeling_molformer.MolformerModel``; ``tokenizer_config.json``'s names ``tokenization_molformer(_fast)``),
and ``transformers`` has no MoLFormer class of its own. :func:`molformer` writes a folder of that layout:
the code files of ``molformer_code/`` (written for these tests: linear attention over rotary-embedded
queries and keys, as in the paper), a ``vocab.json`` over regex-split SMILES pieces, then the model saved
with ``save_pretrained`` after loading the folder's code with ``trust_remote_code``.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

CODE = Path(__file__).parent / "molformer_code"
SPECIALS = ["<bos>", "<eos>", "<pad>", "<mask>", "<unk>"]
AUTO_MAP = {"AutoConfig": "configuration_molformer.MolformerConfig", "AutoModel": "modeling_molformer.MolformerModel"}
TOKENIZER_MAP = {"AutoTokenizer": ["tokenization_molformer.MolformerTokenizer",
                                   "tokenization_molformer_fast.MolformerTokenizerFast"]}


def vocabulary(seed: int = 0) -> list[str]:
    """The special tokens, then SMILES pieces in a seeded shuffled order (ids are not alphabetical)."""
    try:
        from .hf_tiny import _smiles_vocab
    except ImportError:  # imported as a top-level module (bench/language_models.py)
        from hf_tiny import _smiles_vocab

    pieces = [*_smiles_vocab(), "[C@]", "[C@@]", "[N-]", "[n+]", "[O+]", "[NH2+]", "[S+]", "[PH]", "[K+]", "%10"]
    pieces = list(dict.fromkeys(pieces))
    random.Random(seed).shuffle(pieces)
    return [*SPECIALS, *pieces]


def molformer(folder: str | Path, *, layers: int = 2, hidden: int = 32, heads: int = 4, features: int = 32,
              seed: int = 0, deterministic_eval: bool = False) -> Path:
    """Write a random MoLFormer-shaped checkpoint folder (own code + ``auto_map``) and return its path.

    ``layers``, ``hidden`` (also the feed-forward width, as in MoLFormer-XL), ``heads`` and ``features``
    (random features per head) size the encoder; MoLFormer-XL is 12, 768, 12, 32.

    ``deterministic_eval`` is stored in ``config.json`` as given; the published checkpoint stores False,
    which makes its linear attention draw fresh random features at every forward.
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for src in sorted(CODE.glob("*.py")):
        shutil.copy(src, folder / src.name)
    vocab = vocabulary(seed)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "MolformerTokenizer", "auto_map": TOKENIZER_MAP, "bos_token": "<bos>",
        "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>",
        "model_max_length": 202}))
    (folder / "config.json").write_text(json.dumps({
        "model_type": "molformer", "architectures": ["MolformerModel"], "auto_map": AUTO_MAP,
        "vocab_size": len(vocab), "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "intermediate_size": hidden, "max_position_embeddings": 202, "num_random_features": features,
        "deterministic_eval": deterministic_eval, "pad_token_id": vocab.index("<pad>"),
        "bos_token_id": vocab.index("<bos>"), "eos_token_id": vocab.index("<eos>")}))
    AutoTokenizer.from_pretrained(folder, trust_remote_code=True).save_pretrained(folder)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    torch.manual_seed(seed)
    model = AutoModel.from_config(config, trust_remote_code=True)
    with torch.no_grad():  # norms away from (1, 0), as trained ones are: the final LayerNorm is then no identity
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.add_(0.2 * torch.randn_like(module.weight))
                module.bias.normal_(0.0, 0.2)
    model.save_pretrained(folder)
    return folder
