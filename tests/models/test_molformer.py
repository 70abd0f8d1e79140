"""MoLFormer from a checkpoint folder that carries its own modelling and tokenizer code.

``molformer_tiny`` writes such a folder (a seeded random MoLFormer-shaped encoder with its ``auto_map``).
The adapter must run that folder's code only under ``trust_checkpoint=True``, tokenise with the folder's
own tokenizer, canonicalise the SMILES with RDKit, and mean every layer over the molecule's tokens. The
reference here is independent of the adapter: forward hooks on the loaded module's embeddings, blocks and
final LayerNorm, one molecule at a time (no padding), ids checked against the folder's ``vocab.json`` over
a regex split done here, and the mean taken over the positions the tokenizer does not mark as special.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from matteralign import models
from matteralign.errors import MatterAlignError, ModelError

from . import hf_tiny, molformer_tiny

pytestmark = [pytest.mark.models]

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("rdkit")

LAYERS = ["hidden_0", "hidden_1", "hidden_2", "last"]
CODE = ["configuration_molformer.py", "modeling_molformer.py", "tokenization_molformer.py",
        "tokenization_molformer_fast.py"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return molformer_tiny.molformer(tmp_path_factory.mktemp("ckpt") / "MoLFormer-tiny")


@pytest.fixture(scope="module")
def molecules():
    from matteralign import datasets

    return datasets.load("molecules", n=40, seed=0)


@pytest.fixture(scope="module")
def loaded(folder):
    return models.load("molformer", checkpoint=folder, trust_checkpoint=True, any_size=True, batch_size=8)


def _reference(ex, folder, smiles: str) -> dict[str, np.ndarray]:
    """Every layer's mean over the non-special tokens of one molecule, from hooks on the loaded module."""
    from rdkit import Chem

    model, tok = ex.model, ex.tokenizer
    canon = Chem.MolToSmiles(Chem.MolFromSmiles(smiles))
    vocab = json.loads((folder / "vocab.json").read_text())
    enc = tok(canon, return_special_tokens_mask=True, return_tensors="pt")
    pieces = hf_tiny.smiles_split(canon)
    assert "".join(pieces) == canon
    assert enc["input_ids"][0].tolist() == [vocab["<bos>"], *(vocab.get(p, vocab["<unk>"]) for p in pieces),
                                            vocab["<eos>"]]
    keep = enc["special_tokens_mask"][0] == 0
    assert keep.tolist() == [False, *([True] * len(pieces)), False]
    modules = {"hidden_0": model.embeddings, "hidden_1": model.encoder.layer[0], "hidden_2": model.LayerNorm}
    got, handles = {}, []
    for layer, module in modules.items():
        handles.append(module.register_forward_hook(lambda _m, _i, out, layer=layer: got.__setitem__(layer, out)))
    try:
        with torch.no_grad():
            model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    finally:
        for h in handles:
            h.remove()
    ref = {layer: got[layer][0, keep].double().mean(0).numpy() for layer in modules}
    ref["last"] = ref["hidden_2"]
    return ref


def test_molformer_extract_matches_hooks_on_every_layer(folder, molecules, loaded, tmp_path):
    from matteralign.execute import extract
    from matteralign.store import Store

    options = {"checkpoint": str(folder), "trust_checkpoint": True, "any_size": True}
    extract(tmp_path / "store", molecules, "molformer", layers=LAYERS, options=options, executor="inline",
            progress=False, batch_size=8)
    store = Store(tmp_path / "store")
    stored = {layer: store.read(molecules.name, "molformer", layer) for layer in LAYERS}
    assert all(ids == list(molecules.ids) for ids, _ in stored.values())
    for k, sample in enumerate(molecules):
        ref = _reference(loaded, folder, sample.smiles)
        for layer in LAYERS:
            np.testing.assert_allclose(stored[layer][1][k], ref[layer], atol=1e-6, rtol=0, err_msg=layer)
    # the extractor gives the same vectors in this process; 'last' is hidden_2 exactly
    ids, arrays, skipped = loaded.embed_samples_layers(list(molecules), LAYERS)
    assert not skipped and ids == list(molecules.ids)
    np.testing.assert_array_equal(np.concatenate(arrays["last"]), np.concatenate(arrays["hidden_2"]))
    for layer in LAYERS:
        np.testing.assert_allclose(np.concatenate(arrays[layer]), stored[layer][1], atol=1e-6, rtol=0)
    prov = store.provenance(molecules.name, "molformer", "last")["provenance"]
    assert prov["trust_checkpoint"] is True and prov["canonical_smiles"].startswith("RDKit")


def test_molformer_runs_the_folder_code_and_tokenizer(folder, loaded):
    model, tok = loaded.model, loaded.tokenizer
    assert type(model).__name__ == "MolformerModel" and type(model).__module__.startswith("transformers_modules")
    assert type(tok).__name__ == "MolformerTokenizerFast" and type(tok).__module__.startswith("transformers_modules")
    # the last layer is the model's output after its final LayerNorm, not the last entry of its hidden_states
    enc = tok(["CCO"], return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True)
    assert not torch.allclose(out.hidden_states[-1], out.last_hidden_state)


def test_molformer_canonicalises_and_is_deterministic(folder, loaded):
    from transformers import AutoModel

    # 'OCC' and 'CCO' are one molecule: one canonical form, one vector, equal to the reference on 'CCO'
    a, b = loaded.embed(["OCC"])[0], loaded.embed(["CCO"])[0]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a[0], _reference(loaded, folder, "CCO")["last"], atol=1e-6, rtol=0)
    # the folder's config draws fresh attention features at every forward; the adapter keeps the stored ones
    assert json.loads((folder / "config.json").read_text())["deterministic_eval"] is False
    assert loaded.model.config.deterministic_eval is True
    np.testing.assert_array_equal(loaded.embed(["c1ccccc1O"])[0], loaded.embed(["c1ccccc1O"])[0])
    plain = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    enc = loaded.tokenizer(["c1ccccc1O"], return_tensors="pt")
    with torch.no_grad():
        first, second = (plain(input_ids=enc["input_ids"]).last_hidden_state for _ in range(2))
    assert not torch.allclose(first, second)


def test_molformer_provenance_records_canonical_smiles_and_trust(loaded):
    prov = loaded.provenance()
    assert prov["canonical_smiles"] == "RDKit MolToSmiles(MolFromSmiles(s)), isomeric"
    assert prov["trust_checkpoint"] is True and prov["remote_code"] == CODE and len(prov["code_sha256"]) == 64
    assert prov["deterministic_eval"] is True and prov["model_type"] == "molformer" and prov["n_layers"] == 2
    assert prov["pooling"].startswith("mean over the input's content tokens")


def test_molformer_refuses_the_folder_code_without_trust(folder, tmp_path):
    for load in (lambda: models.load("molformer", checkpoint=folder, any_size=True),
                 lambda: models.load("molformer", checkpoint=folder, any_size=True, trust_checkpoint=False)):
        with pytest.raises(ModelError) as err:
            load()
        assert isinstance(err.value, MatterAlignError)
        assert repr(str(folder)) in str(err.value) and "trust_checkpoint=True" in str(err.value)
    with pytest.raises(ModelError, match="has 2 layers but model 'molformer' has 12"):
        models.load("molformer", checkpoint=folder, trust_checkpoint=True)
    roberta = hf_tiny.roberta(tmp_path / "roberta")
    with pytest.raises(ModelError, match="is a 'roberta' model; model 'molformer' reads molformer"):
        models.load("molformer", checkpoint=roberta, trust_checkpoint=True, any_size=True)
