"""Protein, chemical and general language models read from local checkpoint folders.

Each architecture is a seeded random instance from a tiny configuration (``hf_tiny``), saved with
``save_pretrained``, loaded back through the adapter, and compared with an independent forward: a hook on
the module that produces the last hidden state, fed token ids built here from the vocabulary (not by the
adapter), and the mean taken here over the positions of the input's own content.
"""

from __future__ import annotations

import numpy as np
import pytest

from matteralign import models
from matteralign.errors import InputError, ModelError
from matteralign.samples import Sample

from . import hf_tiny

pytestmark = [pytest.mark.models]

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

SEQS = ["MKTAYIAKQRQISFVKSHFSRQ", "GSHMLEDPVDAFQ", "MKV", "ACDEFGHIKLMNPQRSTVWYUZOB"]
SMILES = ["OCC", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "[Na+].[Cl-]", "OC(=O)[C@@H](N)Cc1c[nH]c2ccccc12"]


def _capture(module):
    got = {}

    def hook(_m, _i, out):
        got["h"] = out[0] if isinstance(out, tuple) else out

    return got, module.register_forward_hook(hook)


def _ref(model, module, ids, positions):
    got, handle = _capture(module)
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([ids]))
    finally:
        handle.remove()
    return got["h"][0, positions].double().mean(0).numpy()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    out = {name: getattr(hf_tiny, name)(root / name) for name in ("esm2", "esmc", "prostt5", "roberta", "gpt_neo")}
    for kind in ("llama", "qwen3", "qwen3_moe", "gpt_oss"):
        out[kind] = hf_tiny.causal_lm(root / kind, kind)
    return out


# ------------------------------------------------------------------ protein language models


def test_esm2_matches_hook_on_final_layer_norm(folders):
    from transformers import EsmModel

    from matteralign.models.protein_lm import Esm2Extractor

    ex = Esm2Extractor(checkpoint=folders["esm2"], batch_size=3)
    assert ex.layers() == ["hidden_0", "hidden_1", "hidden_2", "last"]
    out = ex.embed(SEQS)
    ref_model = EsmModel.from_pretrained(folders["esm2"], add_pooling_layer=False).eval()
    voc = hf_tiny.ESM_VOCAB
    for seq, got in zip(SEQS, out, strict=True):
        ids = [0, *(voc.index(c) for c in seq), 2]
        ref = _ref(ref_model, ref_model.encoder.emb_layer_norm_after, ids, slice(1, len(seq) + 1))
        assert got.shape == (1, 32)
        np.testing.assert_allclose(got[0], ref, atol=2e-5, rtol=1e-5)
    # an inner layer: the output of the first transformer block
    inner = ex.embed(SEQS[:1], layer="hidden_1")[0][0]
    ids = [0, *(voc.index(c) for c in SEQS[0]), 2]
    ref = _ref(ref_model, ref_model.encoder.layer[0], ids, slice(1, len(SEQS[0]) + 1))
    np.testing.assert_allclose(inner, ref, atol=2e-5, rtol=1e-5)
    # 'last' is hidden_2 exactly; batch companions change nothing beyond round-off
    np.testing.assert_array_equal(ex.embed(SEQS[:2], layer="hidden_2")[0], ex.embed(SEQS[:2])[0])
    prov = ex.provenance()
    assert prov["model_type"] == "esm" and prov["n_layers"] == 2 and len(prov["weights_sha256"]) == 64


def test_esmc_matches_hook_on_final_norm(folders):
    from transformers import EsmcModel
    from transformers.models.esmc.tokenization_esmc import SEQUENCE_VOCAB

    from matteralign.models.protein_lm import EsmcExtractor

    ex = EsmcExtractor(checkpoint=folders["esmc"])
    out = ex.embed(SEQS)
    ref_model = EsmcModel.from_pretrained(folders["esmc"]).eval()
    for seq, got in zip(SEQS, out, strict=True):
        ids = [0, *(SEQUENCE_VOCAB.index(c) for c in seq), 2]
        ref = _ref(ref_model, ref_model.norm, ids, slice(1, len(seq) + 1))
        np.testing.assert_allclose(got[0], ref, atol=2e-5, rtol=1e-5)


def test_prostt5_encoder_matches_hook_and_maps_rare_residues(folders):
    from transformers import AutoTokenizer, T5EncoderModel

    from matteralign.models.protein_lm import ProstT5Extractor

    ex = ProstT5Extractor(checkpoint=folders["prostt5"])
    assert ex.prepare("MKU") == "<AA2fold> M K X"
    out = ex.embed(SEQS)
    ref_model = T5EncoderModel.from_pretrained(folders["prostt5"]).eval()
    vocab = AutoTokenizer.from_pretrained(folders["prostt5"]).get_vocab()
    for seq, got in zip(SEQS, out, strict=True):
        residues = [("X" if c in "UZOB" else c) for c in seq]
        ids = [vocab["<AA2fold>"], *(vocab[c] for c in residues), vocab["</s>"]]
        ref = _ref(ref_model, ref_model.encoder.final_layer_norm, ids, slice(1, len(seq) + 1))
        np.testing.assert_allclose(got[0], ref, atol=2e-5, rtol=1e-5)


def test_protein_lm_skips_bad_sequences_and_checks_the_checkpoint(folders, tmp_path):
    from matteralign.models.protein_lm import Esm2Extractor

    ex = Esm2Extractor(checkpoint=folders["esm2"])
    samples = [Sample("a", sequence="MKV"), Sample("b", sequence="MK V1"), Sample("c", smiles="CCO")]
    ids, arrays, skipped = ex.embed_samples(samples)
    assert ids == ["a"] and set(skipped) == {"b", "c"} and "one-letter" in skipped["b"]
    with pytest.raises(ModelError, match="holding config.json"):
        Esm2Extractor(checkpoint=tmp_path)
    with pytest.raises(ModelError, match="'roberta' model"):
        Esm2Extractor(checkpoint=folders["roberta"])
    with pytest.raises(ModelError, match="has 2 layers but model 'esm2-t33-650m' has 33"):
        models.load("esm2-t33-650m", checkpoint=folders["esm2"])
    stand_in = models.load("esm2-t33-650m", checkpoint=folders["esm2"], any_size=True)
    np.testing.assert_array_equal(stand_in.embed(["MKV"])[0], ex.embed(["MKV"])[0])


# ------------------------------------------------------------------ chemical language models


def test_chemberta_canonicalises_and_matches_hook(folders):
    from rdkit import Chem
    from transformers import AutoTokenizer, RobertaModel

    from matteralign.models.chemical_lm import ChemBertaExtractor

    ex = ChemBertaExtractor(checkpoint=folders["roberta"])
    out = ex.embed(SMILES)
    ref_model = RobertaModel.from_pretrained(folders["roberta"], add_pooling_layer=False).eval()
    vocab = AutoTokenizer.from_pretrained(folders["roberta"]).get_vocab()
    for smi, got in zip(SMILES, out, strict=True):
        canon = Chem.MolToSmiles(Chem.MolFromSmiles(smi))
        toks = hf_tiny.smiles_split(canon)
        ids = [vocab["<s>"], *(vocab.get(t, vocab["<unk>"]) for t in toks), vocab["</s>"]]
        ref = _ref(ref_model, ref_model.encoder.layer[-1], ids, slice(1, len(toks) + 1))
        np.testing.assert_allclose(got[0], ref, atol=2e-5, rtol=1e-5)
    # 'OCC' and 'CCO' are one molecule: one canonical form, one vector
    np.testing.assert_array_equal(ex.embed(["CCO"])[0], ex.embed(["OCC"])[0])
    ids, _, skipped = ex.embed_samples([Sample("x", smiles="C1CC"), Sample("y", smiles="CCO")])
    assert ids == ["y"] and "RDKit cannot parse" in skipped["x"]
    assert ex.provenance()["canonical_smiles"].startswith("RDKit")


def test_chemgpt_reads_selfies_of_canonical_smiles(folders):
    import selfies
    from rdkit import Chem
    from transformers import AutoTokenizer, GPTNeoModel

    from matteralign.models.chemical_lm import ChemGPTExtractor

    ex = ChemGPTExtractor(checkpoint=folders["gpt_neo"])
    out = ex.embed(SMILES)
    ref_model = GPTNeoModel.from_pretrained(folders["gpt_neo"]).eval()
    vocab = AutoTokenizer.from_pretrained(folders["gpt_neo"]).get_vocab()
    for smi, got in zip(SMILES, out, strict=True):
        toks = list(selfies.split_selfies(selfies.encoder(Chem.MolToSmiles(Chem.MolFromSmiles(smi)))))
        ids = [vocab.get(t, vocab["[UNK]"]) for t in toks]
        ref = _ref(ref_model, ref_model.ln_f, ids, slice(0, len(ids)))
        np.testing.assert_allclose(got[0], ref, atol=2e-5, rtol=1e-5)


def test_molformer_needs_trust_for_its_own_code(folders):
    from matteralign.models.chemical_lm import MolFormerExtractor

    with pytest.raises(ModelError, match="trust_checkpoint=True"):
        MolFormerExtractor(checkpoint=folders["roberta"])


# ------------------------------------------------------------------ general LLMs


def _chatml(system: str, user: str) -> str:
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n")


@pytest.mark.parametrize("kind", ["llama", "qwen3", "qwen3_moe", "gpt_oss"])
def test_causal_lm_means_the_molecule_tokens_of_the_chat(folders, kind):
    from rdkit import Chem
    from transformers import AutoModel, AutoTokenizer

    from matteralign.models.llm import BLANK_SYSTEM_PROMPT, LONG_SYSTEM_PROMPT, CausalLMExtractor

    tok = AutoTokenizer.from_pretrained(folders[kind])
    ref_model = AutoModel.from_pretrained(folders[kind]).eval()
    for prompt, system in (("blank", BLANK_SYSTEM_PROMPT), ("long", LONG_SYSTEM_PROMPT)):
        ex = CausalLMExtractor(checkpoint=folders[kind], prompt=prompt, batch_size=3)
        out = ex.embed(SMILES)
        for smi, got in zip(SMILES, out, strict=True):
            canon = Chem.MolToSmiles(Chem.MolFromSmiles(smi))
            text = _chatml(system, f"SMILES: {canon}")
            lo = text.index(f"SMILES: {canon}") + len("SMILES: ")
            enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
            pos = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if a < lo + len(canon) and b > lo]
            ref = _ref(ref_model, ref_model.norm, enc["input_ids"], pos)
            np.testing.assert_allclose(got[0], ref, atol=3e-5, rtol=1e-5)
    # last-token pooling: the state generation starts from
    ex = CausalLMExtractor(checkpoint=folders[kind], prompt="blank", pooling="last_token")
    text = _chatml(BLANK_SYSTEM_PROMPT, "SMILES: CCO")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    np.testing.assert_allclose(ex.embed(["OCC"])[0][0], _ref(ref_model, ref_model.norm, ids, [len(ids) - 1]),
                               atol=3e-5, rtol=1e-5)


def test_blank_atomistic_reads_the_text_view(folders):
    from transformers import AutoModel, AutoTokenizer

    from matteralign.models.llm import BLANK_SYSTEM_PROMPT, CausalLMExtractor

    ex = CausalLMExtractor(checkpoint=folders["llama"], prompt="blank_atomistic")
    assert ex.modality == "text"
    dump = "numbers: 6 1 8\npositions: 0.0000 1.0000 -0.5000; 1.0000 0.0000 0.0000; 0.0000 0.0000 1.0000"
    ids, arrays, skipped = ex.embed_samples([Sample("m", smiles="CCO", text=dump), Sample("n", smiles="C")])
    assert ids == ["m"] and "no 'text' view" in skipped["n"]
    tok = AutoTokenizer.from_pretrained(folders["llama"])
    ref_model = AutoModel.from_pretrained(folders["llama"]).eval()
    text = _chatml(BLANK_SYSTEM_PROMPT, dump)
    lo = text.index(dump)
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    pos = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if a < lo + len(dump) and b > lo]
    np.testing.assert_allclose(arrays[0][0], _ref(ref_model, ref_model.norm, enc["input_ids"], pos),
                               atol=3e-5, rtol=1e-5)


def test_causal_lm_bfloat16_is_close_to_float32(folders):
    from matteralign.models.llm import CausalLMExtractor

    f32 = CausalLMExtractor(checkpoint=folders["qwen3"]).embed(SMILES)
    b16 = CausalLMExtractor(checkpoint=folders["qwen3"], dtype="bfloat16").embed(SMILES)
    for a, b in zip(f32, b16, strict=True):
        assert b.dtype == np.float32
        cos = float(a[0] @ b[0] / np.linalg.norm(a[0]) / np.linalg.norm(b[0]))
        assert 0.98 < cos < 1.0


def test_causal_lm_options_are_checked(folders):
    from matteralign.models.llm import CausalLMExtractor

    with pytest.raises(InputError, match="prompt must be one of"):
        CausalLMExtractor(checkpoint=folders["llama"], prompt="short")
    with pytest.raises(InputError, match="pooling must be one of"):
        CausalLMExtractor(checkpoint=folders["llama"], pooling="max")
    with pytest.raises(InputError, match="dtype must be one of"):
        CausalLMExtractor(checkpoint=folders["llama"], dtype="int8")
    with pytest.raises(ModelError, match="'llama' model; model 'qwen3-30b-a3b-blank' reads 'qwen3_moe'"):
        models.load("qwen3-30b-a3b-blank", checkpoint=folders["llama"])
    ex = models.load("causal-lm-blank-atomistic", checkpoint=folders["gpt_oss"])
    assert ex.modality == "text" and ex.prompt == "blank_atomistic"


# ------------------------------------------------------------------ registry


def test_registry_lists_the_study_models_with_kind_and_checkpoint():
    rows = {r["name"]: r for r in models.info()}
    expected = {
        "esm2-t6-8m": "protein_lm", "esm2-t30-150m": "protein_lm", "esm2-t33-650m": "protein_lm",
        "esmc-300m": "protein_lm", "esmc-600m": "protein_lm", "prostt5": "protein_lm",
        "chemberta": "chemical_lm", "molformer": "chemical_lm", "chemgpt": "chemical_lm",
        **{f"{m}-{p}": "llm" for m in ("r1-llama-8b", "qwen3-30b-a3b", "gpt-oss-20b", "causal-lm")
           for p in ("long", "blank", "blank-atomistic")},
    }
    for name, family in expected.items():
        spec = models.get_spec(name)
        assert spec.family == family and spec.kind == family, name
        assert rows[name]["requires_checkpoint"] and not rows[name]["available"], name
        assert spec.default_layer == "last"
    assert models.get_spec("esm2-t33-650m").layers[-2:] == ("hidden_33", "last")
    assert models.get_spec("gpt-oss-20b-blank-atomistic").modality == "text"
    assert models.get_spec("r1-llama-8b-long").modality == "smiles"


def test_models_that_cannot_run_say_why():
    from matteralign.models.study_unavailable import REASONS

    rows = {r["name"]: r for r in models.info()}
    for name, (family, kind, *_rest, reason) in REASONS.items():
        assert not rows[name]["available"] and rows[name]["reason"] == reason
        assert models.get_spec(name).family == family and models.get_spec(name).kind == kind
        with pytest.raises(ModelError, match="cannot run: "):
            models.load(name)
    assert "no PyPI package ships Geom2Vec" in rows["geom2vec"]["reason"]
