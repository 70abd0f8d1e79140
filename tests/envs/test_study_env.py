"""A study with a checkpoint model that lives in its own environment: the runner sends its extraction to
that environment's worker, writes into the same store, and measures it beside in-process models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from matteralign import envs, models
from matteralign.study import Study

pytestmark = [pytest.mark.models, pytest.mark.slow]

HERE = Path(__file__).resolve().parent


def test_study_runs_a_model_in_its_own_environment(tmp_path):
    model = "orb-v3-direct"
    envs.create(models.get_spec(model).env)
    out = tmp_path / "ckpt"
    out.mkdir()
    proc = envs.run_in_env(models.get_spec(model).env, [HERE / "random_models.py", model, out])
    ckpt = json.loads(proc.stdout.strip().splitlines()[-1])["checkpoint"]
    study = Study.from_dict({
        "name": "env-study", "out": str(tmp_path / "run"), "models": [model, "composition", "random"],
        "checkpoints": {model: ckpt},
        "datasets": [{"name": "g2", "n": 30}],
        "metrics": {"cknna": {"k": 5}, "dcor2": {}},
        "model_metrics": {}, "analyses": {"matrix": {"k": 5}},
    })
    res = study.run(progress=False)
    rows = res.pairs.query("model_a == @model and model_b != @model")
    assert set(rows["model_b"]) == {"composition", "random"} and set(rows["metric"]) == {"cknna", "dcor2"}
    assert np.isfinite(rows["value"]).all()
    self_dcor = res.pairs.query("model_a == @model and model_b == @model and metric == 'dcor2'")["value"]
    assert float(self_dcor.iloc[0]) == pytest.approx(1.0, abs=1e-9)
    assert res.report.exists()


def test_study_without_the_checkpoint_is_refused_before_any_work(tmp_path):
    from matteralign.errors import ConfigError

    with pytest.raises(ConfigError, match="orb-v3-direct.*checkpoint"):
        Study.from_dict({"out": str(tmp_path / "r"), "models": ["orb-v3-direct", "random"],
                         "datasets": [{"name": "g2", "n": 20}]}).run(progress=False)
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="does not exist"):
        Study.from_dict({"out": str(tmp_path / "r"), "models": ["orb-v3-direct", "random"],
                         "checkpoints": {"orb-v3-direct": str(tmp_path / "nope.ckpt")},
                         "datasets": [{"name": "g2", "n": 20}]}).run(progress=False)
