"""ClimaX from a local checkpoint in the ``aurora`` environment: a seeded random ClimaX at the 5.625° geometry
(``climax_random.py``), saved in the released Lightning layout, loaded back through the adapter on the bundled
32 × 64 synthetic grid, equals an independent hook on the network's final norm; bad checkpoints are clear
errors naming the path and the keys."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from matteralign import envs
from matteralign.errors import ModelError
from matteralign.execute import extract
from matteralign.execute.wire import read_samples
from matteralign.store import Store

pytestmark = [pytest.mark.models, pytest.mark.slow]

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def climax_case(tmp_path_factory):
    envs.create("aurora")
    out = tmp_path_factory.mktemp("climax")
    proc = envs.run_in_env("aurora", [HERE / "climax_random.py", out])
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


def test_encoder_equals_hook_on_the_network(climax_case, tmp_path):
    out, info = climax_case
    ds = read_samples(out / "dataset.npz")
    assert len(ds) == 1280 and info["grid"] == [32, 64]
    summary = extract(tmp_path / "store", ds, "climax", options={"checkpoint": info["checkpoint"]}, shard_size=300)
    assert summary["env"] == "aurora" and summary["n"] == 1280 and summary["n_skipped"] == 0
    ids, X = Store(tmp_path / "store").read(ds.name, "climax", "encoder")
    assert ids == ds.ids and X.shape == (1280, 128)
    want = np.load(out / "reference.npz")["encoder"]
    np.testing.assert_allclose(X, want, atol=1e-5, rtol=1e-5)
    assert np.abs(X - want).max() < 1e-5 and X.std() > 0.1  # not a constant
    prov = Store(tmp_path / "store").provenance(ds.name, "climax", "encoder")["provenance"]
    from matteralign.models.base import file_sha256

    assert prov["weights_sha256"] == file_sha256(info["checkpoint"])
    assert prov["env"] == "aurora" and prov["n_parameters"] == info["n_parameters"] == 623424
    assert (prov["embed_dim"], prov["depth"], prov["num_heads"], prov["patch_size"]) == (128, 2, 16, 2)
    assert prov["img_size"] == [32, 64] and prov["n_variables"] == 48
    assert prov["inferred_from"]["num_heads"] == "released ClimaX value"
    assert prov["lead_time_hours"] == 6.0 and prov["lead_time_input"] == 0.06
    assert prov["input_variables"] == info["input_variables"] and len(prov["input_variables"]) == 21
    assert "mean_sea_level_pressure" in prov["grid_fields_left_out"]
    assert "temperature_1000" in prov["grid_fields_left_out"]
    # the lead time reaches the network: 24 h gives other features
    extract(tmp_path / "s24", ds[:8], "climax", options={"checkpoint": info["checkpoint"], "lead_time_hours": 24})
    _, Y = Store(tmp_path / "s24").read(ds.name, "climax", "encoder")
    assert not np.allclose(Y, X[:8], atol=1e-3)


def test_checkpoint_errors_name_the_path_and_keys(climax_case, tmp_path):
    import torch

    out, info = climax_case
    ds = read_samples(out / "dataset.npz")[:2]
    missing = tmp_path / "nope" / "missing.ckpt"
    with pytest.raises(ModelError, match=str(missing)):
        extract(tmp_path / "s1", ds, "climax", options={"checkpoint": str(missing)})
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(os.urandom(4096))
    with pytest.raises(ModelError, match=str(corrupt)):
        extract(tmp_path / "s2", ds, "climax", options={"checkpoint": str(corrupt)})
    ck = torch.load(info["checkpoint"], map_location="cpu", weights_only=True)
    sd = dict(ck["state_dict"])
    sd.pop("net.blocks.1.mlp.fc2.bias")
    sd["net.extra_head.weight"] = torch.zeros(3)
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": sd}, bad)
    with pytest.raises(ModelError, match=r"missing keys \['blocks.1.mlp.fc2.bias'\].*unexpected keys \['extra_head"):
        extract(tmp_path / "s3", ds, "climax", options={"checkpoint": str(bad)})
    sd = dict(ck["state_dict"])
    sd["net.var_embed"] = sd["net.var_embed"][:, :40]
    torch.save({"state_dict": sd}, bad)
    with pytest.raises(ModelError, match=f"{bad}.*has 40 variables and no variable names"):
        extract(tmp_path / "s4", ds, "climax", options={"checkpoint": str(bad)})


STUDY = """
name = "weather-models"
out = "{out}"
seed = 0
models = ["aurora", "climax", "graphcast", "grid-patch", "grid-random", "random"]

[checkpoints]
aurora = "{aurora}"
climax = "{climax}"
graphcast = "{graphcast}"

[metrics]
cknna = {{ k = 5 }}

[model_metrics]

[analyses.matrix]
k = 5

[analyses.probes]
cv = 3

[[datasets]]
name = "weather"
n = 150
"""


def test_weather_models_in_a_study(climax_case, tmp_path):
    """Aurora, ClimaX and GraphCast (its seeded random params file, tests/data/graphcast) beside the grid baselines
    on the bundled grid: the weather alignment matrix and the weather probes of all three."""
    import pandas as pd

    from matteralign.study import Study

    _, info = climax_case
    ck = tmp_path / "aurora"
    ck.mkdir()
    proc = envs.run_in_env("aurora", [HERE / "random_models.py", "aurora", ck])
    aurora = json.loads(proc.stdout.strip().splitlines()[-1])["checkpoint"]
    toml = tmp_path / "study.toml"
    graphcast = HERE.parent / "data" / "graphcast" / "graphcast_tiny.npz"
    toml.write_text(STUDY.format(out=tmp_path / "run", aurora=aurora, climax=info["checkpoint"], graphcast=graphcast))
    res = Study.from_toml(toml).run(progress=False)
    w = res.pairs.query("dataset == 'weather' and metric == 'cknna'")
    pairs = {frozenset((a, b)) for a, b in zip(w["model_a"], w["model_b"], strict=True) if a != b}
    weather = ("aurora", "climax", "graphcast")
    assert {frozenset((a, b)) for a in weather for b in weather if a != b} <= pairs
    assert frozenset(("climax", "grid-patch")) in pairs and frozenset(("graphcast", "grid-random")) in pairs
    assert np.isfinite(w["value"]).all() and (w["n"] == 150).all()
    scores = pd.read_parquet(tmp_path / "run" / "results" / "analysis" / "probes" / "probe_scores.parquet")
    for model in weather:  # noqa: B007 - read by the query string (@model)
        r2 = scores.query("dataset == 'weather' and model == @model").set_index("label")["r2"]
        assert set(r2.index) == {"temperature_2m_k", "specific_humidity_g_kg", "mslp_hpa", "wind_speed_10m_m_s"}
        assert np.isfinite(r2).all()
    html = res.report.read_text()
    assert all(m in html for m in weather)
    assert (tmp_path / "run" / "report" / "figures" / "matrix" / "matrix_weather_cknna.png").exists()
