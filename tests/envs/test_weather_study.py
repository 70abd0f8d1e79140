"""A study with the weather model: Aurora (a seeded random AuroraSmall checkpoint) runs in its own environment on
the bundled synthetic ``weather`` grid beside grid baselines, a materials dataset runs beside it with a materials
model, each model only on the datasets whose view it reads, and the report's probes section holds the weather
labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from matteralign import envs
from matteralign.study import Study

pytestmark = [pytest.mark.models, pytest.mark.slow]

HERE = Path(__file__).resolve().parent

STUDY = """
name = "weather-study"
out = "{out}"
seed = 0
models = ["aurora", "grid-patch", "grid-random", "composition", "random"]

[checkpoints]
aurora = "{ckpt}"

[metrics]
cknna = {{ k = 5 }}
dcor2 = {{}}

[model_metrics]

[analyses.probes]
cv = 3

[[datasets]]
name = "weather"
n = 150

[[datasets]]
name = "g2"
n = 30
"""


def test_weather_model_in_a_study_with_its_probes(tmp_path):
    envs.create("aurora")
    ck = tmp_path / "ckpt"
    ck.mkdir()
    proc = envs.run_in_env("aurora", [HERE / "random_models.py", "aurora", ck])
    ckpt = json.loads(proc.stdout.strip().splitlines()[-1])["checkpoint"]
    toml = tmp_path / "study.toml"
    toml.write_text(STUDY.format(out=tmp_path / "run", ckpt=ckpt))
    res = Study.from_toml(toml).run(progress=False)

    # each model on the datasets it reads: grid models on weather, composition on g2, random on both
    seen = res.pairs.groupby("dataset")["model_a"].agg(set).to_dict()
    assert seen["weather"] == {"aurora", "grid-patch", "grid-random", "random"}
    assert seen["g2"] == {"composition", "random"}
    w = res.pairs.query("dataset == 'weather' and model_a == 'aurora' and model_b != 'aurora'")
    assert np.isfinite(w["value"]).all() and set(w["metric"]) == {"cknna", "dcor2"}
    assert (w["n"] == 150).all()

    import pandas as pd

    scores = pd.read_parquet(tmp_path / "run" / "results" / "analysis" / "probes" / "probe_scores.parquet")
    ws = scores.query("dataset == 'weather'")
    labels = {"temperature_2m_k", "specific_humidity_g_kg", "mslp_hpa", "wind_speed_10m_m_s"}
    assert set(ws["label"]) == labels
    assert set(ws["model"]) == {"aurora", "grid-patch", "grid-random", "random"}
    # the raw patch holds the labels' own values: a linear probe recovers temperature and pressure from it
    raw = ws.query("model == 'grid-patch'").set_index("label")["r2"]
    assert raw["temperature_2m_k"] > 0.9 and raw["mslp_hpa"] > 0.9
    rand = ws.query("model == 'random'").set_index("label")["r2"]
    assert rand.max() < 0.3  # the id-seeded noise control reads nothing
    aur = ws.query("model == 'aurora'").set_index("label")["r2"]
    assert np.isfinite(aur).all()
    html = res.report.read_text()
    assert "temperature_2m_k" in html and "aurora" in html
