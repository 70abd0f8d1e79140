"""ESM3 (``esm3`` environment) and ESM-IF1 (``eqv2`` environment, fair-esm) on the bundled proteins: a seeded
random instance of the real architecture, built from the package's own classes in its environment and saved
as the package's local loader reads it, is loaded back through our adapter (via the worker subprocess) and
must equal an independent path on the package's module, one protein at a time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from matteralign import datasets, envs, models
from matteralign.errors import ModelError
from matteralign.execute import extract
from matteralign.store import Store

pytestmark = [pytest.mark.models, pytest.mark.slow]

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def proteins():
    pytest.importorskip("gemmi")
    return datasets.load("proteins", n=8, seed=0)


def _random_model(model, tmp_path, payload):
    family = models.get_spec(model).env
    envs.create(family)
    inp = tmp_path / "input.json"
    inp.write_text(json.dumps(payload))
    out = tmp_path / "random"
    out.mkdir()
    proc = envs.run_in_env(family, [HERE / "protein_random.py", model, out, inp])
    return json.loads(proc.stdout.strip().splitlines()[-1]), np.load(out / "reference.npz")


def test_esm3_sequence_track_equals_a_hook_on_the_package_module(proteins, tmp_path):
    info, ref = _random_model("esm3-sequence", tmp_path, {"sequences": [s.sequence for s in proteins]})
    store = Store(tmp_path / "store")
    layers = ["hidden_0", "hidden_1", "hidden_2", "last"]
    summary = extract(tmp_path / "store", proteins, "esm3-sequence", layers=layers,
                      options={"checkpoint": info["checkpoint"], "seed": 0}, shard_size=4, progress=False)
    assert summary["env"] == "esm3" and summary["n"] == len(proteins) and summary["n_skipped"] == 0
    for layer in layers:
        ids, X = store.read(proteins.name, "esm3-sequence", layer)
        assert ids == proteins.ids
        np.testing.assert_allclose(X, ref[layer], rtol=1e-4, atol=1e-5)
    assert not np.allclose(ref["hidden_2"], ref["last"], atol=1e-2)  # the final norm is a layer of its own
    prov = store.provenance(proteins.name, "esm3-sequence", "last")["provenance"]
    assert (prov["d_model"], prov["n_layers"], prov["n_heads"], prov["v_heads"]) == (128, 2, 2, 4)
    assert prov["weights"].endswith("data/weights/esm3_sm_open_v1.pth") and prov["env"] == "esm3"
    # the .pth itself is read too; a folder without the weights is refused naming what it lacks
    weights = Path(info["checkpoint"]) / "data" / "weights" / "esm3_sm_open_v1.pth"
    extract(tmp_path / "store2", proteins, "esm3-sequence", options={"checkpoint": str(weights), "seed": 0},
            progress=False)
    np.testing.assert_allclose(Store(tmp_path / "store2").read(proteins.name, "esm3-sequence", "last")[1],
                               ref["last"], rtol=1e-4, atol=1e-5)
    with pytest.raises(ModelError, match="holds no data/weights/esm3_sm_open_v1.pth"):
        extract(tmp_path / "store3", proteins, "esm3-sequence", options={"checkpoint": str(tmp_path), "seed": 0},
                progress=False)


def test_esmc_native_equals_the_package_hidden_states(proteins, tmp_path):
    info, ref = _random_model("esmc-300m-native", tmp_path, {"sequences": [s.sequence for s in proteins]})
    store = Store(tmp_path / "store")
    layers = ["hidden_1", "hidden_2", "last"]
    summary = extract(tmp_path / "store", proteins, "esmc-300m-native", layers=layers,
                      options={"checkpoint": info["checkpoint"], "seed": 0}, shard_size=4, progress=False)
    assert summary["env"] == "esm3" and summary["n_skipped"] == 0
    for layer in layers:
        ids, X = store.read(proteins.name, "esmc-300m-native", layer)
        assert ids == proteins.ids
        np.testing.assert_allclose(X, ref[layer], rtol=1e-4, atol=1e-5)
    prov = store.provenance(proteins.name, "esmc-300m-native", "last")["provenance"]
    assert (prov["d_model"], prov["n_layers"], prov["n_heads"]) == (128, 2, 2)
    assert prov["weights"].endswith("data/weights/esmc_300m_2024_12_v0.pth")
    with pytest.raises(ModelError, match="holds no data/weights/esmc_600m_2024_12_v0.pth"):  # the 600M file
        extract(tmp_path / "s2", proteins, "esmc-600m-native", options={"checkpoint": info["checkpoint"]},
                progress=False)


def test_esm_if1_encoder_equals_the_package_embedding_function(proteins, tmp_path):
    from matteralign.datasets.protein import backbone

    bbs = [backbone(s.atoms)[:, :3].tolist() for s in proteins]
    info, ref = _random_model("esm-if1", tmp_path, {"backbones": bbs})
    store = Store(tmp_path / "store")
    summary = extract(tmp_path / "store", proteins, "esm-if1", options={"checkpoint": info["checkpoint"], "seed": 0},
                      shard_size=4, batch_size=3, progress=False)  # padded batches vs one protein at a time
    assert summary["env"] == "eqv2" and summary["n"] == len(proteins) and summary["n_skipped"] == 0
    ids, X = store.read(proteins.name, "esm-if1", "encoder")
    assert ids == proteins.ids
    np.testing.assert_allclose(X, ref["encoder"], rtol=1e-4, atol=1e-5)
    ids, feats, offs = store.read_atoms(proteins.name, "esm-if1", "encoder")
    assert [int(b - a) for a, b in zip(offs[:-1], offs[1:], strict=True)] == [len(bb) for bb in bbs]  # per residue
    prov = store.provenance(proteins.name, "esm-if1", "encoder")["provenance"]
    assert prov["encoder_embed_dim"] == 32 and prov["env"] == "eqv2" and not prov["trust_checkpoint"]


def test_study_runs_the_env_models_end_to_end_with_a_labelled_second_checkpoint(proteins, tmp_path):
    from matteralign.datasets.protein import backbone
    from matteralign.study import Study

    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    esm3_info, _ = _random_model("esm3-sequence", tmp_path / "a", {"sequences": [s.sequence for s in proteins]})
    if_info, _ = _random_model("esm-if1", tmp_path / "b",
                               {"backbones": [backbone(s.atoms)[:, :3].tolist() for s in proteins]})
    envs.create("pet")
    (tmp_path / "pet").mkdir()
    pet = json.loads(envs.run_in_env("pet", [HERE / "pet_random.py", tmp_path / "pet"]).stdout.strip().splitlines()[-1])
    study = Study.from_dict({
        "out": str(tmp_path / "out"), "seed": 0, "trust_checkpoint": True,
        "models": ["esm3-sequence", "esm-if1", "pet-mad",
                   {"name": "pet-mad", "as": "copy", "checkpoint": pet["checkpoint"]}, "random"],
        "checkpoints": {"esm3-sequence": esm3_info["checkpoint"], "esm-if1": if_info["checkpoint"],
                        "pet-mad": pet["checkpoint"]},
        "datasets": [{"name": "proteins", "n": 8}, {"name": "molecules", "n": 12}],
        "metrics": {"cknna": {"k": 3}}, "model_metrics": {}, "analyses": {"matrix": {"k": 3}},
        "calibration": {"enabled": False},
    })
    study.validate()
    res = study.run(progress=False)
    pairs = res.pairs
    on = {ds: set(pairs.query("dataset == @ds")["model_a"]) for ds in ("proteins", "molecules")}
    assert on["proteins"] == {"esm3-sequence", "esm-if1", "pet-mad", "pet-mad@copy", "random"}
    assert on["molecules"] == {"pet-mad", "pet-mad@copy", "random"}
    same = pairs.query("model_a == 'pet-mad' and model_b == 'pet-mad@copy'")["value"]
    assert len(same) == 2 and (same > 0.999).all()  # one checkpoint under two names: identical features
    assert "pet-mad@copy" in res.report.read_text()
