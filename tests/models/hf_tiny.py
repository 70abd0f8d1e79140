"""Seeded random instances of the real ``transformers`` architectures, from tiny configurations, saved in
the layout their loaders read (``save_pretrained``: config.json, model.safetensors, tokenizer files).

Used by the adapter tests, the study test and ``bench/language_models.py``. Tokenizers are built with
the ``tokenizers`` library (no download): a character/regex-level vocabulary for proteins, SMILES and
SELFIES, and a byte-level BPE with a ChatML chat template for the general LLMs.
"""

from __future__ import annotations

import re
from pathlib import Path

AMINO = list("LAGVSERTIDPKQNFYMHWCXBUZO")
ESM_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", *AMINO, ".", "-", "<null_1>", "<mask>"]
SMILES_PATTERN = (r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|"
                  r"%[0-9]{2}|[0-9])")
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _word_level(vocab: list[str], split: str, *, bos: str | None, eos: str | None, unk: str):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Split(Regex(split), behavior="isolated")])
    single = " ".join(x for x in (bos, "$A", eos) if x)
    specials = [(t, vocab.index(t)) for t in (bos, eos) if t]
    if specials:
        tok.post_processor = processors.TemplateProcessing(single=single, special_tokens=specials)
    return tok


def esm2(folder: str | Path, *, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A random ``EsmModel`` (ESM2 layout: rotary, pre-LN, final ``emb_layer_norm_after``) + EsmTokenizer."""
    import torch
    from transformers import EsmConfig, EsmModel, EsmTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(ESM_VOCAB) + "\n")
    EsmTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(seed)
    cfg = EsmConfig(vocab_size=len(ESM_VOCAB), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                    intermediate_size=2 * hidden, max_position_embeddings=1026, position_embedding_type="rotary",
                    emb_layer_norm_before=False, token_dropout=True, pad_token_id=1, mask_token_id=32)
    EsmModel(cfg, add_pooling_layer=False).save_pretrained(folder)
    return folder


def esmc(folder: str | Path, *, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A random ``EsmcModel`` + ``EsmcTokenizer``."""
    import torch
    from transformers import EsmcConfig, EsmcModel, EsmcTokenizer

    folder = Path(folder)
    EsmcTokenizer().save_pretrained(folder)
    torch.manual_seed(seed)
    cfg = EsmcConfig(vocab_size=64, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                     num_attention_heads=4, max_position_embeddings=2048)
    EsmcModel(cfg).save_pretrained(folder)
    return folder


def prostt5(folder: str | Path, *, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A random ``T5EncoderModel`` + a word-level tokenizer over ProstT5's tokens (space-separated residues)."""
    import torch
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    folder = Path(folder)
    vocab = ["<pad>", "</s>", "<unk>", *AMINO, *[a.lower() for a in AMINO], "<AA2fold>", "<fold2AA>"]
    tok = _word_level(vocab, r"<AA2fold>|<fold2AA>|\S", bos=None, eos="</s>", unk="<unk>")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   extra_special_tokens=["<AA2fold>", "<fold2AA>"])
    fast.save_pretrained(folder)
    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=len(vocab), d_model=hidden, d_kv=8, d_ff=2 * hidden, num_layers=layers, num_heads=4,
                   feed_forward_proj="relu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    T5EncoderModel(cfg).save_pretrained(folder)
    return folder


def _smiles_vocab() -> list[str]:
    atoms = ["C", "c", "N", "n", "O", "o", "S", "s", "P", "F", "Cl", "Br", "I", "B", "b", "p"]
    return [*atoms, *"()=#-+\\/:.@", *"123456789", "[nH]", "[NH3+]", "[O-]", "[Na+]", "[Cl-]", "[C@@H]", "[C@H]",
            "[N+]", "[NH+]", "[S-]", "[Si]"]


def roberta(folder: str | Path, *, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A random ``RobertaModel`` (ChemBERTa layout) + a SMILES word-level tokenizer (``<s> … </s>``)."""
    import torch
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    folder = Path(folder)
    vocab = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", *_smiles_vocab()]
    tok = _word_level(vocab, SMILES_PATTERN, bos="<s>", eos="</s>", unk="<unk>")
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>", mask_token="<mask>").save_pretrained(folder)
    torch.manual_seed(seed)
    cfg = RobertaConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=2 * hidden, max_position_embeddings=130, pad_token_id=1,
                        bos_token_id=0, eos_token_id=2)
    RobertaModel(cfg, add_pooling_layer=False).save_pretrained(folder)
    return folder


def gpt_neo(folder: str | Path, *, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A random ``GPTNeoForCausalLM`` (ChemGPT layout) + a SELFIES word-level tokenizer."""
    import selfies
    import torch
    from transformers import GPTNeoConfig, GPTNeoForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    alphabet = sorted(selfies.get_semantic_robust_alphabet())
    vocab = ["[PAD]", "[UNK]", "[EOS]", *alphabet, "[Ring1]", "[Ring2]", "[Branch1]", "[Branch2]", "[=Branch1]",
             "[=Branch2]", "[#Branch1]", "[#Branch2]", "[nop]", "[Na+1]", "[Cl-1]", "[NH1]", "[C@@H1]", "[C@H1]",
             "[N+1]", "[O-1]", "[NH3+1]", "[.]"]
    vocab = list(dict.fromkeys(vocab))
    tok = _word_level(vocab, r"\[[^\]]*\]|\.", bos=None, eos=None, unk="[UNK]")
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="[EOS]", unk_token="[UNK]").save_pretrained(folder)
    torch.manual_seed(seed)
    cfg = GPTNeoConfig(vocab_size=len(vocab), hidden_size=hidden, num_layers=layers, num_heads=4,
                       attention_types=[[["global", "local"], max(1, layers // 2)]] if layers % 2 == 0 else
                       [[["global"], layers]], max_position_embeddings=256, window_size=16,
                       bos_token_id=2, eos_token_id=2)
    GPTNeoForCausalLM(cfg).save_pretrained(folder)
    return folder


def chat_tokenizer(folder: str | Path):
    """A byte-level BPE with ChatML specials and chat template, trained on a few strings (saved to ``folder``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["You are a domain-agnostic scientific encoder. SMILES: CCO c1ccccc1 CC(=O)O",
              "numbers: 6 1 8 positions: 0.0000 1.0000 -0.5000; cell pbc True False"]
    tok.train_from_iterator(corpus * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHATML)
    fast.save_pretrained(folder)
    return fast


def causal_lm(folder: str | Path, kind: str = "llama", *, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A random causal LM of architecture ``kind`` (llama | qwen3 | qwen3_moe | gpt_oss) + a chat tokenizer."""
    import torch
    import transformers as tf

    folder = Path(folder)
    fast = chat_tokenizer(folder)
    common = {"vocab_size": len(fast), "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": 131072 if kind == "gpt_oss" else 1024,
              "pad_token_id": fast.pad_token_id, "eos_token_id": fast.eos_token_id}
    if kind == "llama":
        cfg = tf.LlamaConfig(intermediate_size=2 * hidden, **common)
        cls = tf.LlamaForCausalLM
    elif kind == "qwen3":
        cfg = tf.Qwen3Config(intermediate_size=2 * hidden, head_dim=8, **common)
        cls = tf.Qwen3ForCausalLM
    elif kind == "qwen3_moe":
        cfg = tf.Qwen3MoeConfig(intermediate_size=2 * hidden, moe_intermediate_size=16, num_experts=4,
                                num_experts_per_tok=2, head_dim=8, **common)
        cls = tf.Qwen3MoeForCausalLM
    elif kind == "gpt_oss":
        cfg = tf.GptOssConfig(intermediate_size=hidden, num_local_experts=4, num_experts_per_tok=2, head_dim=8,
                              sliding_window=8, layer_types=["sliding_attention", "full_attention"] * (layers // 2)
                              + ["sliding_attention"] * (layers % 2), **common)
        cls = tf.GptOssForCausalLM
    else:
        raise ValueError(kind)
    torch.manual_seed(seed)
    cls(cfg).save_pretrained(folder)
    return folder


def smiles_split(smiles: str) -> list[str]:
    """Atom-level split of a SMILES with :data:`SMILES_PATTERN`."""
    return re.findall(SMILES_PATTERN, smiles)
