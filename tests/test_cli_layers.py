"""Several layers end to end: ``extract --layer A --layer B`` / ``--layers all``, ``matteralign layers``, a study's
``layers = "all"``, and layer maps of a real model with itself."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matteralign import models
from matteralign.cli import main
from matteralign.errors import ConfigError


def _g2(n):
    datasets = pytest.importorskip("matteralign.datasets")
    try:
        return datasets.load("g2", n=n, seed=0)
    except Exception as exc:  # the dataset registry is not usable here
        pytest.skip(f"dataset 'g2' unavailable: {exc}")


def test_unknown_layer_names_the_valid_ones_in_forward_order(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["extract", "--dataset", "g2", "--model", "chgnet-0.3.0", "--layer", "readout_norm",
              "--layer", "conv3", "--store", str(tmp_path / "s")])
    assert exc.value.code == 2
    out = " ".join(capsys.readouterr().err.split())
    assert "unknown layer 'conv3' of model 'chgnet-0.3.0'" in out
    assert ("Layers in forward order: atom_embedding, atom_conv_layers.0, atom_conv_layers.1, atom_conv_layers.2, "
            "atom_conv_layers.3, readout_norm, mlp.layers.5") in out
    assert not (tmp_path / "s").exists()  # refused before any work


def test_study_layers_accept_a_list_or_all(tmp_path):
    from matteralign.study import Study

    base = {"datasets": [{"name": "g2", "n": 8}], "models": ["chgnet-0.3.0", "soap"], "out": str(tmp_path)}
    s = Study.from_dict({**base, "layers": {"chgnet-0.3.0": "all", "soap": ["soap"]}})
    assert s.config.layers == {"chgnet-0.3.0": "all", "soap": ["soap"]}
    s.validate()
    with pytest.raises(ConfigError, match=r"layers.chgnet-0.3.0: unknown layer 'conv9'.*forward order"):
        Study.from_dict({**base, "layers": {"chgnet-0.3.0": ["readout_norm", "conv9"]}}).validate()


def test_list_models_gives_layers_in_forward_order():
    rows = {r["name"]: r for r in models.info()}
    assert rows["chgnet-0.3.0"]["layers"] == list(models.get_spec("chgnet-0.3.0").layers)
    assert rows["chgnet-0.3.0"]["layers"][0] == "atom_embedding" and rows["chgnet-0.3.0"]["depths"] == list(range(7))
    assert rows["rxnfp-bert"]["layers"][:3] == ["hidden_0", "hidden_1", "hidden_2"]


@pytest.mark.models
def test_repeated_layer_keeps_every_layer_and_all_equals_single(capsys, tmp_path):
    _g2(12)
    from matteralign.store import Store

    common = ["--dataset", "g2", "--model", "ani-1x", "--n", "12", "--seed", "0", "--executor", "inline"]
    main(["extract", *common, "--layer", "penultimate", "--layer", "aev", "--store", str(tmp_path / "two")])
    out = " ".join(capsys.readouterr().out.split())
    assert "ani-1x · aev:" in out and "ani-1x · penultimate:" in out
    two = Store(tmp_path / "two")
    assert two.has("g2", "ani-1x", "aev") and two.has("g2", "ani-1x", "penultimate")
    main(["extract", *common, "--layers", "all", "--store", str(tmp_path / "all")])
    for layer in ("aev", "penultimate"):
        main(["extract", *common, "--layer", layer, "--store", str(tmp_path / layer)])
        ids, X = Store(tmp_path / layer).read("g2", "ani-1x", layer)
        for st in (two, Store(tmp_path / "all")):
            ids2, X2 = st.read("g2", "ani-1x", layer)
            assert ids2 == ids
            np.testing.assert_array_equal(X2, X)  # one forward pass == one pass per layer, bit for bit
    assert X.shape[1] == 96


@pytest.mark.models
def test_layers_command_prints_the_map_and_writes_the_table(capsys, tmp_path, monkeypatch):
    _g2(40)
    monkeypatch.setenv("COLUMNS", "300")
    out = tmp_path / "map.csv"
    main(["layers", "chgnet-0.3.0", "--dataset", "g2", "--n", "40", "--metric", "cka", "--metric", "cknna",
          "--k", "5", "--store", str(tmp_path / "s"), "--workers", "1", "--aggregate", "platonic_max",
          "--out", str(out)])
    text = capsys.readouterr().out
    assert "rows chgnet-0.3.0, columns chgnet-0.3.0" in text and "5: readout_norm" in text
    t = pd.read_csv(out)
    assert len(t) == 2 * 7 * 7 and set(t["metric"]) == {"cka", "cknna"}
    cka = t[t["metric"] == "cka"].pivot(index="depth_a", columns="depth_b", values="value").to_numpy()
    assert (cka.argmax(axis=1) == np.arange(7)).all()  # a model with itself: maximum on the diagonal
    np.testing.assert_allclose(np.diag(cka), 1.0, atol=1e-9)
    # best-match path of CHGNet against a copy of itself is the identity (same arrays under another name)
    from matteralign.analysis.layers import best_matches, layer_map
    from matteralign.store import Store

    st = Store(tmp_path / "s")
    reps = {lay: st.read("g2", "chgnet-0.3.0", lay)[1] for lay in models.get_spec("chgnet-0.3.0").layers}
    copy = {k: v.copy() for k, v in reps.items()}
    for metric in ("cka", "cknna"):
        bm = best_matches(layer_map(reps, copy, metrics=metric, model_a="chgnet", model_b="chgnet-copy", k=5))
        assert list(bm["best_layer"]) == list(reps)


@pytest.mark.models
@pytest.mark.slow
def test_study_with_all_layers_has_a_layer_map_section(tmp_path):
    _g2(40)
    from matteralign.store import Store
    from matteralign.study import Study

    cfg = {"name": "layers", "seed": 0, "out": str(tmp_path / "out"),
           "models": ["chgnet-0.3.0", "composition"], "datasets": [{"name": "g2", "n": 40}],
           "layers": {"chgnet-0.3.0": "all"}, "metrics": {"cknna": {"k": 5}, "unbiased_cka": {}},
           "model_metrics": {}, "analyses": {"matrix": {"k": 5}, "layers": {"k": 5, "metrics": ["unbiased_cka"]}},
           "execution": {"executor": "inline"}}
    res = Study.from_dict(cfg).run(progress=False)
    out = tmp_path / "out"
    st = Store(out / "store")
    assert all(st.has("g2", "chgnet-0.3.0", lay) for lay in models.expand_layers("chgnet-0.3.0", "all"))
    # the pair metrics use the default layer
    assert set(res.pairs["model_a"]) == {"chgnet-0.3.0", "composition"}
    lm = pd.read_parquet(out / "results" / "analysis" / "layers" / "layer_map.parquet")
    self_map = lm[(lm["model_a"] == "chgnet-0.3.0") & (lm["model_b"] == "chgnet-0.3.0")]
    assert len(self_map) == 49 and list(dict.fromkeys(self_map["depth_a"])) == list(range(7))
    ref = pd.read_parquet(out / "results" / "analysis" / "layers" / "to_reference.parquet")
    assert set(ref["model_b"]) == {"chgnet-0.3.0"} and set(ref["layer_b"]) == {"readout_norm"}
    html = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "Layer-wise alignment" in html


def test_layers_command_extends_a_stored_layer_to_a_raised_n(capsys, tmp_path):
    """A second run at a larger --n embeds only the new samples and maps all of them; a smaller --n reuses the
    store as it is (the stored layer keeps every sample)."""
    from matteralign.store import Store

    st_path = tmp_path / "s"
    args = ["layers", "composition", "--dataset", "g2", "--metric", "cka", "--store", str(st_path),
            "--workers", "1", "--out", str(tmp_path / "m.csv")]
    main([*args, "--n", "20"])
    assert "(n = 20)" in capsys.readouterr().out
    main([*args, "--n", "40"])
    assert "(n = 40)" in capsys.readouterr().out
    ids40 = Store(st_path).read("g2", "composition", "fraction")[0]
    assert len(ids40) == 40
    main([*args, "--n", "20"])
    assert "(n = 20)" in capsys.readouterr().out
    assert Store(st_path).read("g2", "composition", "fraction")[0] == ids40
