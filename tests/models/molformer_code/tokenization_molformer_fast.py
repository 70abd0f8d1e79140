"""Fast (``tokenizers``) twin of :class:`MolformerTokenizer`: word-level ``vocab.json`` lookup after the same
SMILES regular expression, ``<bos> $A <eos>`` around each molecule."""

import json
import os

from transformers import PreTrainedTokenizerFast

from .tokenization_molformer import SMILES_PATTERN, MolformerTokenizer


def backend(vocab, bos_token, eos_token, unk_token):
    """The ``tokenizers.Tokenizer`` built from ``vocab`` (token -> id, or the path of ``vocab.json``)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors

    if not isinstance(vocab, dict):
        with open(vocab, encoding="utf-8") as fh:
            vocab = json.load(fh)
    bos_token, eos_token, unk_token = str(bos_token), str(eos_token), str(unk_token)
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk_token))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(SMILES_PATTERN), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos_token} $A {eos_token}", pair=f"{bos_token} $A {eos_token} $B {eos_token}",
        special_tokens=[(bos_token, vocab[bos_token]), (eos_token, vocab[eos_token])])
    return tok


class MolformerTokenizerFast(PreTrainedTokenizerFast):
    """Same ids as :class:`MolformerTokenizer`, from ``tokenizer.json`` or built from ``vocab.json``."""

    vocab_files_names = {"vocab_file": "vocab.json", "tokenizer_file": "tokenizer.json"}
    slow_tokenizer_class = MolformerTokenizer

    def __init__(self, vocab_file=None, tokenizer_file=None, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                 unk_token="<unk>", mask_token="<mask>", **kwargs):
        vocab = kwargs.pop("vocab", None)
        if kwargs.get("tokenizer_object") is None and (tokenizer_file is None or not os.path.isfile(tokenizer_file)):
            kwargs["tokenizer_object"] = backend(vocab_file or vocab, bos_token, eos_token, unk_token)
        super().__init__(vocab_file=vocab_file, tokenizer_file=tokenizer_file, bos_token=bos_token,
                         eos_token=eos_token, pad_token=pad_token, unk_token=unk_token, mask_token=mask_token,
                         **kwargs)
        self.vocab_file = vocab_file

    def save_vocabulary(self, save_directory, filename_prefix=None):
        path = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + "vocab.json")
        vocab = {t: i for t, i in self.get_vocab().items() if i < self.backend_tokenizer.get_vocab_size(False)}
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(vocab, fh, ensure_ascii=False)
        return (path,)
