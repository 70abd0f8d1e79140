"""SMILES tokenizer of a MoLFormer checkpoint folder: a regular expression splits the SMILES into atoms,
bonds, branches and ring closures; ``vocab.json`` maps each piece to its id; ``<bos> ... <eos>`` around it."""

import json
import os
import re

from transformers import PreTrainedTokenizer

#: One token per bracket atom, two-letter halogen, atom, bond, branch or ring-closure digit.
SMILES_PATTERN = (r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$|"
                  r"\%[0-9]{2}|[0-9])")

VOCAB_FILES_NAMES = {"vocab_file": "vocab.json"}


class MolformerTokenizer(PreTrainedTokenizer):
    """Regex-over-SMILES tokenizer reading ``vocab.json`` (token -> id)."""

    vocab_files_names = VOCAB_FILES_NAMES

    def __init__(self, vocab_file, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
                 mask_token="<mask>", **kwargs):
        with open(vocab_file, encoding="utf-8") as fh:
            self.vocab = json.load(fh)
        self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        self.pattern = re.compile(SMILES_PATTERN)
        super().__init__(bos_token=bos_token, eos_token=eos_token, pad_token=pad_token, unk_token=unk_token,
                         mask_token=mask_token, **kwargs)

    @property
    def vocab_size(self):
        return len(self.vocab)

    def get_vocab(self):
        return dict(self.vocab, **self.added_tokens_encoder)

    def _tokenize(self, text, **kwargs):
        pieces, end = [], 0  # the regex matches, and any text between them as one piece (-> <unk>)
        for match in self.pattern.finditer(text):
            if match.start() > end:
                pieces.append(text[end:match.start()])
            pieces.append(match.group())
            end = match.end()
        return pieces + ([text[end:]] if end < len(text) else [])

    def _convert_token_to_id(self, token):
        return self.vocab.get(token, self.vocab.get(self.unk_token))

    def _convert_id_to_token(self, index):
        return self.ids_to_tokens.get(index, self.unk_token)

    def convert_tokens_to_string(self, tokens):
        return "".join(tokens)

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        out = [self.bos_token_id, *token_ids_0, self.eos_token_id]
        return out if token_ids_1 is None else [*out, *token_ids_1, self.eos_token_id]

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens=False):
        if already_has_special_tokens:
            return super().get_special_tokens_mask(token_ids_0, token_ids_1, already_has_special_tokens=True)
        out = [1, *([0] * len(token_ids_0)), 1]
        return out if token_ids_1 is None else [*out, *([0] * len(token_ids_1)), 1]

    def save_vocabulary(self, save_directory, filename_prefix=None):
        path = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + "vocab.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.vocab, fh, ensure_ascii=False)
        return (path,)
