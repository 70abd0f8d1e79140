"""Models of per-family environments (Orb, MACE, UMA, eSEN, EquiformerV2: random weights at the real architecture) through the execution
layer: their energies enter the study (taken from the embedding pass and equal to the package's own ASE
calculator), and the Ray executor extracts a model of an environment exactly as the local executor does."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from matteralign import envs, models
from matteralign.execute import extract, get_executor
from matteralign.execute.wire import read_samples
from matteralign.store import Store
from matteralign.study import Study

pytestmark = [pytest.mark.models, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
MODEL = "orb-v3-direct"


def _checkpoint(model: str, tmp_path_factory):
    family = models.get_spec(model).env
    envs.create(family)
    out = tmp_path_factory.mktemp(model)
    proc = envs.run_in_env(family, [HERE / "random_models.py", model, out])
    return Path(json.loads(proc.stdout.strip().splitlines()[-1])["checkpoint"]), out


@pytest.fixture(scope="module")
def orb_checkpoint(tmp_path_factory):
    return _checkpoint(MODEL, tmp_path_factory)


def _calculator_energies(model: str, ckpt: Path, dataset: Path) -> dict[str, float]:
    proc = envs.run_in_env(models.get_spec(model).env, [HERE / "energy_reference.py", model, ckpt, dataset])
    ref = json.loads(proc.stdout.strip().splitlines()[-1])
    return dict(zip(ref["ids"], ref["energy"], strict=True))


@pytest.mark.parametrize("model", [MODEL, "mace-mp", "uma-s", "esen", "equiformer-v2"])
def test_study_energies_include_the_env_model(model, tmp_path, tmp_path_factory):
    ckpt, _ = _checkpoint(model, tmp_path_factory)
    study = Study.from_dict({
        "name": "env-energies", "out": str(tmp_path / "run"), "models": [model, "chgnet-0.3.0", "composition"],
        "checkpoints": {model: str(ckpt)}, "trust_checkpoint": True, "datasets": [{"name": "crystals", "n": 40}],
        "metrics": {"cknna": {"k": 5}}, "model_metrics": {}, "analyses": {}, "energy_samples": 12,
    })
    res = study.run(progress=False, report=False)
    assert model in set(res.pairs["model_a"])
    files = sorted((res.out / "results" / "energies" / "crystals").glob("*.npz"))
    mine = [p for p in files if p.name.startswith(model + "-")]
    assert len(mine) == 1, [p.name for p in files]
    z = np.load(mine[0])
    assert len(z["ids"]) >= 5
    # the same structures through the package's own ASE calculator, one at a time
    from matteralign import datasets
    from matteralign.execute.wire import write_samples

    ds = datasets.load("crystals").select([str(i) for i in z["ids"]])
    write_samples(ds, tmp_path / "subset.npz")
    ref = _calculator_energies(model, ckpt, tmp_path / "subset.npz")
    np.testing.assert_allclose(z["energy"], [ref[str(i)] for i in z["ids"]], rtol=0, atol=1e-3)
    # taken from the embedding pass: the per-shard energies of the extraction exist
    assert list((res.out / "results" / "energies" / "crystals" / "from-extraction" / model).glob("*.npz"))


def test_ray_executor_extracts_an_env_model_like_the_local_one(orb_checkpoint, tmp_path):
    ray = pytest.importorskip("ray")
    ckpt, out = orb_checkpoint
    ds = read_samples(out / "dataset.npz")
    opts = {"checkpoint": str(ckpt)}
    # one thread per worker on both sides: torch's CPU kernels may round differently with another thread count
    extract(tmp_path / "local", ds, MODEL, options=opts, shard_size=5, progress=False, workers=1, threads=1)
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if ray.is_initialized():
        ray.shutdown()
    with get_executor("ray", cpus_per_unit=0.5, init={"num_cpus": 2}) as ex:
        summary = extract(tmp_path / "ray", ds, MODEL, options=opts, shard_size=5, progress=False, executor=ex)
    assert summary["env"] == "orb" and summary["n"] == len(ds)
    a = Store(tmp_path / "local").read(ds.name, MODEL, "node_features")
    b = Store(tmp_path / "ray").read(ds.name, MODEL, "node_features")
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    # and both equal an independent hook on the backbone (computed in the env by random_models.py)
    ref = np.load(out / "reference.npz")
    _, feats, offsets = Store(tmp_path / "ray").read_atoms(ds.name, MODEL, "node_features")
    np.testing.assert_allclose(feats, ref["node_features"], rtol=1e-5, atol=1e-5)
