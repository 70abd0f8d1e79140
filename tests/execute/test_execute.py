"""The execution layer: the same study through every executor gives the same numbers; faults are survived.

* local executor with 1 and 2 workers, and Ray on a two-node local cluster (``ray.cluster_utils.Cluster``,
  fractional CPUs): identical ``pairs`` tables and identical store arrays;
* a worker process (local) or actor process (Ray) killed in the middle of a unit: the unit runs again and
  the tables equal an uninterrupted run bit for bit;
* a Ray node removed mid-run: the study completes on the remaining node;
* a model that raises on one sample: that sample is skipped with the reason, the shard completes;
* GPU requests are planned only when the model and the study ask for one.
"""

from __future__ import annotations

import os
import signal

import numpy as np
import pandas as pd
import pytest

from matteralign.execute import get_executor
from matteralign.study import Study

pytestmark = pytest.mark.slow

STUDY = {
    "name": "exec", "seed": 0,
    "models": ["chgnet-0.3.0", "composition", "random", "minilm-smiles"],
    "datasets": [{"name": "molecules", "n": 100}],
    "metrics": {"cknna": {"k": 10}, "mutual_knn": {"k": 5}, "unbiased_cka": {}, "dcor2": {}},
    "model_metrics": {"intrinsic_dimension": [{"method": "twonn"}]},
    "analyses": {"matrix": {"k": 10}},
    "shard_size": 25, "energy_samples": 20,
    # pair blocks of 2 models: several blocks share each model's cache
    "execution": {"pair_block": 2},
}


def _study(tmp_path, name, **over):
    return Study.from_dict({**STUDY, "out": str(tmp_path / name), **over})


def _arrays(out):
    from matteralign.store import Store

    st = Store(out / "store", mode="r")
    return {(r["dataset"], r["model"], r["layer"]): st.read(r["dataset"], r["model"], r["layer"]) for r in st.list()}


def _same_store(a, b):
    A, B = _arrays(a), _arrays(b)
    assert A.keys() == B.keys() and len(A) == 4
    for key in A:
        assert A[key][0] == B[key][0], key
        np.testing.assert_array_equal(A[key][1], B[key][1], err_msg=str(key))


def _at_first_shard(ex, action):
    """Make ``ex`` call ``action()`` once, when the first extraction shard comes back (before its commit)."""
    original, fired = ex.run, []

    def run(units, on_result, *, progress=None):
        def act_then_commit(unit, result):
            if not fired and unit.kind == "extract":
                fired.append(action())
            on_result(unit, result)

        return original(units, act_then_commit, progress=progress)

    ex.run = run
    return fired


def _sigkill(pids: list[int]) -> list[int]:
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The study with one local worker."""
    tmp = tmp_path_factory.mktemp("ref")
    with get_executor("local", workers=1) as ex:
        res = _study(tmp, "w1").run(progress=False, executor=ex)
    return res


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of two nodes (a head and one worker node, one CPU each), on loopback."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_reference_tables(reference):
    pairs = reference.pairs
    assert set(pairs["model_a"]) == set(STUDY["models"])
    assert (pairs.groupby("metric").size() == 16).all()  # 4 models -> 16 ordered pairs per metric
    assert np.isfinite(pairs["value"]).all()
    # energies came from CHGNet's embedding pass
    e = pd.read_csv(reference.out / "results" / "pairs.csv")
    assert len(e) == len(pairs)
    assert list((reference.out / "results" / "energies" / "molecules").glob("chgnet-0.3.0-*.npz"))


def test_two_local_workers_equal_one(reference, tmp_path):
    with get_executor("local", workers=2) as ex:
        res = _study(tmp_path, "w2").run(progress=False, executor=ex)
        assert ex.describe()["workers"] == 2
    pd.testing.assert_frame_equal(res.pairs, reference.pairs, check_exact=True)
    pd.testing.assert_frame_equal(res.per_model, reference.per_model, check_exact=True)
    _same_store(res.out, reference.out)


def test_killed_local_worker_reruns_its_unit(reference, tmp_path):
    """SIGKILL every live worker when the first shard lands: the units in flight run again."""
    with get_executor("local", workers=2) as ex:
        killed = _at_first_shard(ex, lambda: _sigkill(ex.worker_pids()))
        res = _study(tmp_path, "killed").run(progress=False, executor=ex)
        assert killed and killed[0] and ex.retries >= 1
    pd.testing.assert_frame_equal(res.pairs, reference.pairs, check_exact=True)
    _same_store(res.out, reference.out)


def test_ray_two_nodes_equal_local(reference, ray_cluster, tmp_path):
    with get_executor("ray", cpus_per_unit=0.5) as ex:
        res = _study(tmp_path, "ray").run(progress=False, executor=ex)
        info = ex.describe()
    assert info["nodes"] == 2 and info["executor"] == "ray"
    pd.testing.assert_frame_equal(res.pairs, reference.pairs, check_exact=True)
    pd.testing.assert_frame_equal(res.per_model, reference.per_model, check_exact=True)
    _same_store(res.out, reference.out)


def test_ray_killed_actor_reruns_its_unit(reference, ray_cluster, tmp_path):
    with get_executor("ray", cpus_per_unit=0.5) as ex:
        killed = _at_first_shard(ex, lambda: _sigkill(ex.actor_pids()))  # every actor is on this machine
        res = _study(tmp_path, "ray-killed").run(progress=False, executor=ex)
        assert killed and killed[0] and ex.retries >= 1
    pd.testing.assert_frame_equal(res.pairs, reference.pairs, check_exact=True)
    _same_store(res.out, reference.out)


def test_ray_node_removed_mid_run(reference, tmp_path):
    """A worker node removed after the first shard: the study completes on the head node."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    node = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        with get_executor("ray", cpus_per_unit=0.5) as ex:
            removed = _at_first_shard(ex, lambda: cluster.remove_node(node) or True)
            res = _study(tmp_path, "ray-node").run(progress=False, executor=ex)
            assert removed and len([n for n in ray.nodes() if n["Alive"]]) == 1
    finally:
        ray.shutdown()
        cluster.shutdown()
    pd.testing.assert_frame_equal(res.pairs, reference.pairs, check_exact=True)
    _same_store(res.out, reference.out)


def test_a_sample_that_raises_is_skipped_and_the_shard_completes(tmp_path):
    from matteralign.execute import extract
    from matteralign.models.base import Extractor
    from matteralign.samples import Dataset, Sample
    from matteralign.store import Store

    class Fragile(Extractor):
        name, family, modality, default_layer = "fragile", "test", "smiles", "h"

        def _embed(self, inputs, layer):
            if "Q" in inputs:
                raise ValueError("cannot read Q")
            return [np.full((1, 3), float(len(s)), np.float32) for s in inputs]

    ds = Dataset("d", [Sample(f"d:{i}", smiles=s) for i, s in enumerate(["C", "CC", "Q", "CCC", "N"])])
    summary = extract(tmp_path / "s", ds, Fragile(batch_size=4), shard_size=5, progress=False)
    assert summary["n"] == 4 and summary["n_skipped"] == 1
    st = Store(tmp_path / "s")
    assert st.skipped("d", "fragile", "h") == {"d:2": "ValueError: cannot read Q"}
    ids, X = st.read("d", "fragile", "h")
    assert ids == ["d:0", "d:1", "d:3", "d:4"] and X[:, 0].tolist() == [1.0, 2.0, 3.0, 1.0]

    class Broken(Fragile):
        name = "broken"

        def _embed(self, inputs, layer):
            raise ValueError("bad checkpoint")

    with pytest.raises(ValueError, match="bad checkpoint"):  # every sample fails: an error, not skips
        extract(tmp_path / "s", ds, Broken(), shard_size=5, progress=False)


@pytest.mark.parametrize("gpus", [False, True])
def test_gpu_requests_are_planned_only_when_model_and_study_ask(tmp_path, gpus):
    from matteralign import datasets, models
    from matteralign.execute import plan_extraction, resources_for
    from matteralign.execute.ray_executor import ray_options
    from matteralign.store import Store

    ds = datasets.load("g2", n=10, seed=0)
    st = Store(tmp_path / "s")
    for name, can in [("chgnet-0.3.0", True), ("composition", False), ("aurora", True)]:
        spec = models.get_spec(name)
        assert spec.gpu is can
        _job, units = plan_extraction(st, ds, name, layers=(spec.default_layer,), shard_size=4,
                                      resources=resources_for(spec, use_gpu=gpus))
        want = 1.0 if (gpus and can) else 0.0
        assert units and all(u.resources.gpus == want for u in units)
        assert ray_options(units[0].resources)["num_gpus"] == want


def test_the_random_control_reads_the_sample_id_in_workers(tmp_path):
    """A control that reads only the id gets it through the worker (``Extractor.view``), not a view."""
    from matteralign import datasets, models
    from matteralign.execute import extract
    from matteralign.store import Store

    ds = datasets.load("molecules", n=12, seed=1)
    extract(tmp_path / "s", ds, "random", progress=False, workers=2, shard_size=5)
    ids, X = Store(tmp_path / "s").read("molecules", "random", "gaussian")
    assert ids == ds.ids
    np.testing.assert_array_equal(X, np.concatenate(models.load("random").embed(ids)))
