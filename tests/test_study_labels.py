"""Two checkpoints of one registered model in one study (``NAME@LABEL``), and a study with placeholder checkpoint
paths that lists every missing checkpoint at once."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from matteralign import models
from matteralign.errors import ConfigError, InputError, UnknownNameError
from matteralign.study import Study


def test_labelled_name_is_the_registered_spec_under_its_own_name():
    base = models.get_spec("esm2-t6-8m")
    spec = models.get_spec("esm2-t6-8m@finetuned")
    assert spec.name == "esm2-t6-8m@finetuned" and spec.kwargs["name"] == "esm2-t6-8m@finetuned"
    assert (spec.family, spec.layers, spec.default_layer, spec.env) == (base.family, base.layers, base.default_layer,
                                                                        base.env)
    assert models.get_spec("esm2-t6-8m@finetuned") is spec
    assert models.get_spec("esm2-t6-8m").name == "esm2-t6-8m"  # the registered spec is untouched
    assert "esm2-t6-8m@finetuned" not in models.names()
    with pytest.raises(UnknownNameError, match="esm2-t6-9m"):
        models.get_spec("esm2-t6-9m@x")
    with pytest.raises(InputError, match="label after '@'.*got 'Big Model'"):
        models.get_spec("esm2-t6-8m@Big Model")


def test_model_tables_become_labelled_names_with_their_checkpoints():
    cfg = Study.from_dict({
        "models": ["esm2-t6-8m", {"name": "esm2-t6-8m", "as": "b", "checkpoint": "/x/b"},
                   {"name": "random"}],
        "checkpoints": {"esm2-t6-8m": "/x/a"}, "datasets": [{"name": "proteins"}]}).config
    assert cfg.models == ["esm2-t6-8m", "esm2-t6-8m@b", "random"]
    assert cfg.checkpoints == {"esm2-t6-8m": "/x/a", "esm2-t6-8m@b": "/x/b"}
    with pytest.raises(ConfigError, match="listed twice"):
        Study.from_dict({"models": ["esm2-t6-8m@b", {"name": "esm2-t6-8m", "as": "b"}],
                         "datasets": [{"name": "proteins"}]})
    with pytest.raises(ConfigError, match=r"models\[0\].*unknown: \['label'\]"):
        Study.from_dict({"models": [{"name": "esm2-t6-8m", "label": "b"}], "datasets": [{"name": "proteins"}]})
    with pytest.raises(ConfigError, match="differs from checkpoints.esm2-t6-8m@b"):
        Study.from_dict({"models": [{"name": "esm2-t6-8m", "as": "b", "checkpoint": "/x/b"}],
                         "checkpoints": {"esm2-t6-8m@b": "/x/c"}, "datasets": [{"name": "proteins"}]})


@pytest.mark.slow
@pytest.mark.models
def test_two_checkpoints_of_one_model_flow_into_the_store_and_tables(tmp_path):
    pytest.importorskip("transformers")
    sys.path.insert(0, str(Path(__file__).parent / "models"))
    import hf_tiny

    from matteralign import datasets
    from matteralign.store import Store

    a = hf_tiny.esm2(tmp_path / "a", layers=6, seed=0)
    b = hf_tiny.esm2(tmp_path / "b", layers=6, seed=1)
    study = Study.from_dict({
        "out": str(tmp_path / "out"), "seed": 0,
        "models": ["esm2-t6-8m", {"name": "esm2-t6-8m", "as": "seed1", "checkpoint": str(b)}],
        "checkpoints": {"esm2-t6-8m": str(a)},
        "datasets": [{"name": "proteins", "n": 12}],
        "metrics": {"cknna": {"k": 3}}, "model_metrics": {}, "analyses": {},
        "calibration": {"enabled": False}, "execution": {"executor": "inline"},
    })
    study.validate()
    res = study.run(progress=False, report=False)
    pairs = res.pairs
    assert set(pairs["model_a"]) == {"esm2-t6-8m", "esm2-t6-8m@seed1"}
    cross = pairs.query("model_a == 'esm2-t6-8m' and model_b == 'esm2-t6-8m@seed1'")["value"]
    assert len(cross) == 1 and cross.iloc[0] < 0.99  # two different random checkpoints
    store = Store(tmp_path / "out" / "store")
    layer = models.get_spec("esm2-t6-8m").default_layer
    ds = {s.id: s for s in datasets.load("proteins")}
    for name, folder in (("esm2-t6-8m", a), ("esm2-t6-8m@seed1", b)):
        ids, X = store.read("proteins", name, layer)
        prov = store.provenance("proteins", name, layer)
        assert prov["model"] == name
        direct = models.load("esm2-t6-8m", checkpoint=str(folder), seed=0)
        seqs = [ds[i].sequence for i in ids]
        want = np.stack([f.mean(axis=0) for f in direct.embed(seqs, layer=layer)])
        np.testing.assert_allclose(X, want, rtol=1e-5, atol=1e-6)


def test_placeholder_study_lists_every_missing_checkpoint(tmp_path):
    real = tmp_path / "real.ckpt"
    real.write_bytes(b"x")
    study = Study.from_dict({
        "models": ["esm2-t6-8m", "esm2-t30-150m@other", "chemberta", "random"],
        "checkpoints": {"esm2-t6-8m": "/path/to/esm2", "esm2-t30-150m@other": "/path/to/other",
                        "chemberta": str(real)},
        "datasets": [{"name": "proteins"}]})
    study.validate(files=False)  # names and parameters only: placeholders pass
    found = study.problems()
    missing = [(p["model"], p["path"]) for p in found if p["what"] == "checkpoint"]
    assert missing == [("esm2-t6-8m", "/path/to/esm2"), ("esm2-t30-150m@other", "/path/to/other")]
    with pytest.raises(ConfigError) as err:
        study.validate()
    msg = str(err.value)
    assert "2 checkpoint paths do not exist: esm2-t6-8m = '/path/to/esm2', esm2-t30-150m@other = " \
           "'/path/to/other'" in msg
    assert "chemberta =" not in msg
    with pytest.raises(UnknownNameError):  # a bad name is still refused without files
        Study.from_dict({"models": ["esm2-t6-9m"], "datasets": [{"name": "proteins"}]}).validate(files=False)


def test_cli_check_lists_missing_checkpoints_and_runs_nothing(tmp_path):
    from typer.testing import CliRunner

    from matteralign.cli import app

    study = tmp_path / "s.toml"
    out = tmp_path / "out"
    study.write_text(f'out = "{out}"\nmodels = ["esm2-t6-8m", {{ name = "esm2-t6-8m", as = "b", '
                     f'checkpoint = "/path/to/b" }}, "random"]\n'
                     f'[checkpoints]\nesm2-t6-8m = "/path/to/a"\n[[datasets]]\nname = "proteins"\n')
    res = CliRunner().invoke(app, ["run", str(study), "--check"])
    assert res.exit_code == 2
    lines = res.stdout.strip().splitlines()
    assert lines == ["esm2-t6-8m: checkpoint path '/path/to/a' does not exist",
                     "esm2-t6-8m@b: checkpoint path '/path/to/b' does not exist"]
    assert not out.exists()
    ok = tmp_path / "ok.toml"
    ok.write_text(f'out = "{out}"\nmodels = ["random", "random@again"]\n[[datasets]]\nname = "proteins"\n')
    res = CliRunner().invoke(app, ["run", str(ok), "--check"])
    assert res.exit_code == 0 and "every model can run" in res.stdout and not out.exists()


def test_paper_model_table_validates_and_lists_each_placeholder():
    from importlib import resources

    path = resources.files("matteralign").joinpath("studies", "paper-models.toml")
    study = Study.from_toml(str(path))
    study.validate(files=False)  # every name, layer, metric and dataset is known
    found = study.problems()
    missing = {p["model"] for p in found if p["what"] == "checkpoint"}
    assert missing == set(study.config.checkpoints)  # every placeholder path, each named
    cannot = {p["model"]: p["reason"] for p in found if p["what"] == "model"}
    assert {"geom2vec", "esm3-structure", "prostt5-structure"} <= set(cannot)
    assert "no PyPI package ships Geom2Vec" in cannot["geom2vec"]
    with pytest.raises(ConfigError, match=f"{len(missing)} checkpoint paths do not exist: orb-v2 = "):
        study.validate()
