"""Execution layer at scale: local workers, a Ray cluster, and the scheduling of the paper's run.

Items (ratios are measured in one run, on the same machine state):

* ``default`` — the default study (``make run``) end to end from an empty output folder: the local
  executor with 2 workers vs 1 worker (target ≥ 1.6x on 2 cores), and the Ray executor on a 2-node local
  cluster (``ray.cluster_utils.Cluster``, one CPU per node, half a CPU per unit) vs local with 2 workers
  (target overhead ≤ 15 %). ``--n`` scales the samples per dataset (300 = the default study).
* ``schedule`` — plan the paper's run (59 models x 5 datasets x 50,000 samples, shards of 512) with
  stand-in extractors (``bench/_standin.py``), run ``--units`` of its shards on the local Ray cluster and
  on the local executor with a short stand-in cost per shard (``--cost-ms``, and again at zero cost, where the
  driver alone limits the rate), and report the executor's overhead per unit (target ≤ 50 ms) and the
  driver's CPU time per unit; project the paper's wall time on 8 GPUs from the measured per-model throughputs in
  ``bench/results/extract.json`` (see bench/README.md for the numbers it rests on).

    python bench/scale.py                       # both items, full default study
    python bench/scale.py --item default --n 100
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "scale.json"


def _cluster():
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray.cluster_utils import Cluster

    t0 = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    return cluster, time.perf_counter() - t0


def _default_study(out: Path, n: int):
    from matteralign.study import Study

    return Study.from_toml(None).override(n=n, out=str(out))


def item_default(n: int, two_threads: bool = False) -> dict:
    import pandas as pd

    from matteralign.execute import get_executor

    tmp = Path(tempfile.mkdtemp(prefix="matteralign-scale-"))
    runs = {}
    try:
        configs = [("local-2", lambda: get_executor("local", workers=2)),
                   ("local-1", lambda: get_executor("local", workers=1))]
        if two_threads:
            configs.append(("local-1x2threads", lambda: get_executor("local", workers=1, threads=2)))
        for label, make in configs:
            t0 = time.perf_counter()
            with make() as ex:
                res = _default_study(tmp / label, n).run(progress=False, executor=ex)
            runs[label] = {"seconds": time.perf_counter() - t0,
                           "stages": {k: round(v, 2) for k, v in res.timings.items() if ":" not in k},
                           "analyses": {k.split(":", 1)[1]: round(v, 2) for k, v in res.timings.items()
                                        if k.startswith("analysis:")}}
            print(f"  {label:8s} {runs[label]['seconds']:8.1f} s  {runs[label]['stages']}", flush=True)
            runs[label]["pairs"] = res.pairs
        cluster, up = _cluster()
        try:
            t0 = time.perf_counter()
            with get_executor("ray", cpus_per_unit=0.5) as ex:
                res = _default_study(tmp / "ray", n).run(progress=False, executor=ex)
            runs["ray-2node"] = {"seconds": time.perf_counter() - t0, "cluster_start_s": up,
                                 "stages": {k: round(v, 2) for k, v in res.timings.items() if ":" not in k},
                                 "analyses": {k.split(":", 1)[1]: round(v, 2) for k, v in res.timings.items()
                                              if k.startswith("analysis:")},
                                 "pairs": res.pairs}
            print(f"  ray-2node {runs['ray-2node']['seconds']:8.1f} s (cluster up in {up:.1f} s)", flush=True)
        finally:
            import ray

            ray.shutdown()
            cluster.shutdown()
        same = {k: bool(runs[k]["pairs"].equals(runs["local-1"]["pairs"])) for k in runs}
        for r in runs.values():
            r.pop("pairs")
        return {"item": "default", "n_per_dataset": n, "runs": runs,
                "speedup_2_vs_1": runs["local-1"]["seconds"] / runs["local-2"]["seconds"],
                "ray_overhead_vs_local_2": runs["ray-2node"]["seconds"] / runs["local-2"]["seconds"] - 1,
                **({"speedup_2_vs_1_with_2_threads": runs["local-1x2threads"]["seconds"] / runs["local-2"]["seconds"]}
                   if "local-1x2threads" in runs else {}),
                "identical_pairs_tables_vs_local_1": same, "pandas": pd.__version__}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def item_schedule(n_units: int, cost_ms: float) -> dict:
    sys.path.insert(0, str(HERE))
    os.environ["MATTERALIGN_PLUGINS"] = "_standin"
    os.environ["PYTHONPATH"] = str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")
    import _standin  # noqa: F401  (registers standin-0..58 here; workers import it through MATTERALIGN_PLUGINS)

    from matteralign.execute import get_executor, plan_extraction
    from matteralign.execute.commit import Committer
    from matteralign.samples import Dataset, Sample
    from matteralign.store import Store

    n_models, n_datasets, n_samples, shard = 59, 5, 50_000, 512
    tmp = Path(tempfile.mkdtemp(prefix="matteralign-schedule-"))
    try:
        datasets = [Dataset(f"d{j}", [Sample(f"d{j}:{i}", smiles="C" * (1 + i % 7)) for i in range(n_samples)])
                    for j in range(n_datasets)]
        store = Store(tmp / "plan-store")
        t0 = time.perf_counter()
        jobs, units = {}, []
        for ds in datasets:
            for k in range(n_models):
                job, todo = plan_extraction(store, ds, f"standin-{k}", layers=("h",), shard_size=shard)
                jobs[(ds.name, job.model)] = job
                units.extend(todo)
        plan_s = time.perf_counter() - t0
        print(f"  planned {len(units)} units in {plan_s:.1f} s", flush=True)
        # run a slice: the first shards of the first models of the first dataset, committed to a fresh store
        subset = units[:n_units]
        out = {"item": "schedule", "n_models": n_models, "n_datasets": n_datasets, "n_samples": n_samples,
               "shard_size": shard, "n_units_planned": len(units), "plan_seconds": plan_s,
               "n_units_run": len(subset), "stand_in_ms_per_shard": cost_ms, "runs": {}}
        for label, cost in (("local-2", cost_ms), ("ray-2node", cost_ms), ("local-2-zero-cost", 0.0),
                            ("ray-2node-zero-cost", 0.0)):
            os.environ["MATTERALIGN_STANDIN_MS"] = str(cost)
            run_store = Store(tmp / f"store-{label}")
            run_jobs = {}
            for u in subset:
                if (u.dataset, u.model) not in run_jobs:
                    ds = next(d for d in datasets if d.name == u.dataset)
                    job, _ = plan_extraction(run_store, ds, u.model, layers=("h",), shard_size=shard)
                    job.todo = list(range(job.n_shards))  # a slice of the plan: shards are committed, not consolidated
                    run_jobs[(u.dataset, u.model)] = job
            committer = Committer(run_store, run_jobs)
            cluster = None
            if label.startswith("ray"):
                cluster, _ = _cluster()
                ex = get_executor("ray", cpus_per_unit=0.5)
            else:
                ex = get_executor("local", workers=2)
            try:
                t0, c0 = time.perf_counter(), time.process_time()
                ex.run(subset, committer)
                wall, driver_cpu = time.perf_counter() - t0, time.process_time() - c0
            finally:
                ex.close()
                if cluster is not None:
                    import ray

                    ray.shutdown()
                    cluster.shutdown()
            slots = ex.workers
            # a slot's time per unit beyond the unit's own cost (2 slots on 2 cores)
            per_unit = wall * min(slots, 2) / len(subset) - cost / 1000.0
            out["runs"][label] = {"wall_s": wall, "slots": slots, "stand_in_ms_per_shard": cost,
                                  "overhead_per_unit_ms": 1000 * per_unit,
                                  "driver_cpu_ms_per_unit": 1000 * driver_cpu / len(subset),
                                  "load_average": list(os.getloadavg())}
            print(f"  {label:19s} {len(subset)} units in {wall:.1f} s: overhead {1000 * per_unit:.1f} ms/unit "
                  f"(2 cores), driver CPU {1000 * driver_cpu / len(subset):.1f} ms/unit", flush=True)
        out["projection"] = _projection(len(units), out["runs"]["ray-2node"]["overhead_per_unit_ms"] / 1000.0,
                                        n_models, n_datasets, n_samples)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _projection(n_units: int, overhead_s: float, n_models: int, n_datasets: int, n_samples: int) -> dict:
    """The paper's wall time on 8 GPUs from measured per-model throughputs (CPU, 1 thread) and the overhead."""
    items = json.loads((HERE / "results" / "extract.json").read_text())["items"]
    rates = [it["samples_per_s"] for it in items if it.get("samples_per_s")]
    mean_rate = len(rates) / sum(1.0 / r for r in rates)  # harmonic: the mean time per sample decides
    total_samples = n_models * n_datasets * n_samples
    gpus = 8
    compute_s = total_samples / mean_rate / gpus
    sched_s = n_units * overhead_s / gpus
    return {"basis": "CPU throughput of the bundled models (bench/results/extract.json, 1 thread each)",
            "measured_samples_per_s": {f"{it['model']}/{it['dataset']}": round(it["samples_per_s"], 1)
                                       for it in items if it.get("samples_per_s")},
            "harmonic_mean_samples_per_s": mean_rate, "total_model_samples": total_samples, "workers": gpus,
            "compute_hours_at_cpu_rate": compute_s / 3600, "scheduling_hours": sched_s / 3600,
            "scheduling_share": sched_s / (compute_s + sched_s)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--item", choices=("default", "schedule"), action="append")
    ap.add_argument("--n", type=int, default=300, help="samples per dataset of the default study")
    ap.add_argument("--units", type=int, default=236, help="shards of the paper plan to run")
    ap.add_argument("--cost-ms", type=float, default=100.0, help="stand-in cost per shard (also run at zero cost)")
    ap.add_argument("--two-threads", action="store_true", help="also run the default study on 1 worker x 2 threads")
    args = ap.parse_args(argv if argv is not None else [])
    items = args.item or ["default", "schedule"]
    prev = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    out = {"benchmark": "scale", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(),
           "load_average_before": list(os.getloadavg()), "items": dict(prev.get("items", {}))}
    if "default" in items:
        out["items"]["default"] = item_default(args.n, args.two_threads)
    if "schedule" in items:
        out["items"]["schedule"] = item_schedule(args.units, args.cost_ms)
    out["load_average_after"] = list(os.getloadavg())
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main(sys.argv[1:])
