"""Weather model: Aurora environment size and build time, embedding throughput on the bundled synthetic grid,
and linear-probe R² of the weather labels from random-weights Aurora latents vs baselines.

Run from the main environment after ``matteralign env create aurora``::

    nice .venv/bin/python bench/weather.py           # writes bench/results/weather.json
    nice .venv/bin/python bench/weather.py --checkpoint aurora-0.25-small-pretrained.ckpt   # + trained probes

* **environment**: build seconds (from the environment's manifest) and size on disk.
* **throughput**: a seeded random AuroraSmall (``tests/envs/random_models.py aurora``; no trained
  checkpoint is available here: nothing may be downloaded) embeds the bundled ``weather`` dataset
  (1,280 (time, patch) samples, 10 grids of 32 × 64 cells). Two timings: the whole
  :func:`matteralign.execute.extract` call (interpreter start, imports, 450 MB checkpoint load,
  extraction, store writes), and, inside the environment, the model alone per grid
  (``AuroraExtractor.grid_latents``, after loading), then ``embed_samples`` on all 1,280 samples (the model runs
  once per time and each of its 128 patches takes its row).
* **probes**: 5-fold cross-validated ridge probes (:func:`matteralign.probes.cross_validated_probes`) of
  the four labels from Aurora's ``latent`` / ``latent_levels`` / ``encoder`` layers, the raw standardised
  patch (``grid-patch``), its random projection (``grid-random``) and Gaussian random features of
  Aurora's width. The folds are random over samples, so neighbouring patches and times share folds:
  R² measures linear decodability, not generalisation to unseen regions.

The machine's load average is recorded before and after.

``--only climax`` (written to ``bench/results/weather_climax.json``) measures ClimaX instead: a seeded random
ClimaX at the released 5.625° geometry and width (``tests/envs/climax_random.py --released``: 32 × 64 grid,
patch 2, embed_dim 1024, depth 8, 16 heads, 48 variables) in the same environment; the same two timings
(``ClimaXExtractor.grid_tokens`` per grid) and the probes of its ``encoder`` layer beside the same baselines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _common import probe_rows  # noqa: E402

from matteralign import datasets, envs  # noqa: E402
from matteralign.execute import extract  # noqa: E402

LABELS = ("temperature_2m_k", "specific_humidity_g_kg", "mslp_hpa", "wind_speed_10m_m_s")

IN_ENV = """
import json, sys, time
import numpy as np
from matteralign import datasets
from matteralign.execute.wire import read_samples as read_dataset
from matteralign.models import load
ds = read_dataset(sys.argv[1])
t0 = time.perf_counter()
m = load("aurora", checkpoint=sys.argv[2], num_threads=int(sys.argv[3]))
load_s = time.perf_counter() - t0
grid = ds[0].grid.grid
per = []
for t in range(grid.times.size):
    t1 = time.perf_counter()
    m.grid_latents(grid, t, "latent")
    per.append(time.perf_counter() - t1)
m._cache.clear()
n0 = m.n_forward
t2 = time.perf_counter()
ids, arrays, skipped = m.embed_samples(list(ds), layer="latent")  # every sample: one forward per time + picking
embed_s = time.perf_counter() - t2
print(json.dumps({"load_s": load_s, "grid_s": per, "embed_s": embed_s, "n": len(ids),
                  "embed_forwards": m.n_forward - n0}))
"""


IN_ENV_CLIMAX = """
import json, sys, time
from matteralign.execute.wire import read_samples
from matteralign.models import load
ds = read_samples(sys.argv[1])
t0 = time.perf_counter()
m = load("climax", checkpoint=sys.argv[2], num_threads=int(sys.argv[3]))
load_s = time.perf_counter() - t0
grid = ds[0].grid.grid
m.prepare(grid)
per = []
for t in range(grid.times.size):
    t1 = time.perf_counter()
    m.grid_tokens(grid, t)
    per.append(time.perf_counter() - t1)
m._cache.clear()
n0 = m.n_forward
t2 = time.perf_counter()
ids, arrays, skipped = m.embed_samples(list(ds))
embed_s = time.perf_counter() - t2
print(json.dumps({"load_s": load_s, "grid_s": per, "embed_s": embed_s, "n": len(ids),
                  "embed_forwards": m.n_forward - n0, "n_parameters": sum(p.numel() for p in m.model.parameters())}))
"""


def bench_climax(args, ds, result: dict) -> None:
    """ClimaX (random weights, released geometry): timings and probes into ``result``."""
    from matteralign.execute.wire import read_samples, write_samples
    from matteralign.probes import random_features
    from matteralign.store import Store

    grid = ds[0].grid.grid
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        t0 = time.perf_counter()
        proc = envs.run_in_env("aurora", [ROOT / "tests" / "envs" / "climax_random.py", td, "--released"])
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        result["instance"] = {k: info[k] for k in ("n_parameters", "embed_dim", "depth", "num_heads", "grid")}
        result["instance"]["build_and_reference_s"] = round(time.perf_counter() - t0, 1)
        result["instance"]["checkpoint_mb"] = round(os.path.getsize(info["checkpoint"]) / 2**20, 1)
        result["instance"]["input_variables"] = info["input_variables"]
        print("instance", result["instance"], flush=True)
        store = td / "store"
        t0 = time.perf_counter()
        summ = extract(store, ds, "climax", options={"checkpoint": info["checkpoint"], "seed": 0}, threads=args.threads)
        wall = time.perf_counter() - t0
        n_grids = int(grid.times.size)
        result["throughput_subprocess"] = {
            "n_samples": summ["n"], "n_grids": n_grids, "grid": list(grid.shape), "wall_s": round(wall, 2),
            "samples_per_s": round(summ["n"] / wall, 1), "grids_per_s": round(n_grids / wall, 3),
            "threads": args.threads}
        print("subprocess", result["throughput_subprocess"], flush=True)
        ids, X = Store(store).read(ds.name, "climax", "encoder")
        assert ids == ds.ids
        ref = np.load(td / "reference.npz")["encoder"]
        order = {sid: k for k, sid in enumerate(read_samples(td / "dataset.npz").ids)}
        result["max_abs_diff_vs_hook"] = float(np.abs(X - ref[[order[i] for i in ids]]).max())
        write_samples(ds, td / "d.npz")
        script = td / "inenv.py"
        script.write_text(IN_ENV_CLIMAX)
        proc = envs.run_in_env("aurora", [script, td / "d.npz", info["checkpoint"], args.threads])
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        per = float(np.median(r["grid_s"]))
        result["throughput_model"] = {
            "load_s": round(r["load_s"], 2), "grid_forward_s_median": round(per, 3),
            "grid_forward_s_all": [round(x, 3) for x in r["grid_s"]], "grids_per_s": round(1 / per, 3),
            "samples_per_s": round(ds.meta["grid"]["patches"][0] * ds.meta["grid"]["patches"][1] / per, 1),
            "embed_samples_s": round(r["embed_s"], 2), "embed_samples_forwards": r["embed_forwards"],
            "embed_samples_per_s": round(r["n"] / r["embed_s"], 1), "threads": args.threads}
        print("in-env", result["throughput_model"], flush=True)
        from matteralign.models import load

        ys = {lab: ds.labels(lab) for lab in LABELS}
        feats = {"climax random weights (encoder)": np.asarray(X)}
        for name in ("grid-patch", "grid-random"):
            _, arrays, _ = load(name).embed_samples(ds)
            feats[name] = np.concatenate(arrays)
        feats["gaussian random (d=1024)"] = random_features(len(ds), 1024, seed=1)
        rows = []
        for name, F in feats.items():
            rows += probe_rows(name, F, ys)
            print(name, {r["label"]: r["r2"] for r in rows if r["features"] == name}, flush=True)
        result["probes"] = rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "weather.json")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="a trained AuroraSmall checkpoint: its probes are added beside the random-weights instance's")
    ap.add_argument("--only", choices=("aurora", "climax"), default="aurora",
                    help="climax: the ClimaX figures instead (default output bench/results/weather_climax.json)")
    args = ap.parse_args([] if argv is None and __name__ != "__main__" else argv)  # run_all passes no arguments
    result: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                "load_before": os.getloadavg()}}
    envs.create("aurora")
    row = next(r for r in envs.list_envs(sizes=True) if r["family"] == "aurora" and r["current"])
    result["environment"] = {"build_seconds": row.get("build_seconds"), "size_gib": round(row["size_bytes"] / 2**30, 2),
                             "versions": row.get("versions")}
    print("environment", result["environment"], flush=True)

    ds = datasets.load("weather")
    if args.only == "climax":
        bench_climax(args, ds, result)
        result["machine"]["load_after"] = os.getloadavg()
        result["note"] = ("A seeded random ClimaX at the released 5.625-degree geometry and width (no trained checkpoint "
                          "is on this machine; nothing may be downloaded). The grid is synthetic (scripts/build_weather.py).")
        out = args.out if args.out != ROOT / "bench" / "results" / "weather.json" else (
            ROOT / "bench" / "results" / "weather_climax.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
        return
    grid = ds[0].grid.grid
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        proc = envs.run_in_env("aurora", [ROOT / "tests" / "envs" / "random_models.py", "aurora", td])
        ckpt = json.loads(proc.stdout.strip().splitlines()[-1])["checkpoint"]
        store = td / "store"
        t0 = time.perf_counter()
        summ = extract(store, ds, "aurora", options={"checkpoint": ckpt, "seed": 0},
                                   threads=args.threads)
        wall = time.perf_counter() - t0
        n_grids = int(grid.times.size)
        result["throughput_subprocess"] = {
            "n_samples": summ["n"], "n_grids": n_grids, "grid": list(grid.shape), "wall_s": round(wall, 2),
            "samples_per_s": round(summ["n"] / wall, 1), "grids_per_s": round(n_grids / wall, 3),
            "threads": args.threads}
        print("subprocess", result["throughput_subprocess"], flush=True)
        from matteralign.execute.wire import write_samples

        write_samples(ds, td / "d.npz")
        script = td / "inenv.py"
        script.write_text(IN_ENV)
        proc = envs.run_in_env("aurora", [script, td / "d.npz", ckpt, args.threads])
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        per = float(np.median(r["grid_s"]))
        result["throughput_model"] = {
            "load_s": round(r["load_s"], 2), "grid_forward_s_median": round(per, 3),
            "grid_forward_s_all": [round(x, 3) for x in r["grid_s"]], "grids_per_s": round(1 / per, 3),
            "samples_per_s": round(ds.meta["grid"]["patches"][0] * ds.meta["grid"]["patches"][1] / per, 1),
            "embed_samples_s": round(r["embed_s"], 2), "embed_samples_forwards": r["embed_forwards"],
            "embed_samples_per_s": round(r["n"] / r["embed_s"], 1),
            "embed_grids_per_s": round(r["embed_forwards"] / r["embed_s"], 3), "threads": args.threads}
        print("in-env", result["throughput_model"], flush=True)

        from matteralign.models import load
        from matteralign.probes import random_features
        from matteralign.store import Store

        ys = {lab: ds.labels(lab) for lab in LABELS}
        rows = []
        feats = {}
        for layer in ("latent", "latent_levels", "encoder"):
            if layer != "latent":
                extract(store, ds, "aurora", layer=layer, options={"checkpoint": ckpt, "seed": 0},
                                    threads=args.threads)
            ids, X = Store(store).read(ds.name, "aurora", layer)
            assert ids == ds.ids
            feats[f"aurora random weights ({layer})"] = np.asarray(X)
        if args.checkpoint is not None:  # trained weights: the comparison the random instance stands in for
            trained = td / "trained-store"
            for layer in ("latent", "latent_levels", "encoder"):
                extract(trained, ds, "aurora", layer=layer,
                                    options={"checkpoint": str(args.checkpoint), "seed": 0}, threads=args.threads)
                ids, X = Store(trained).read(ds.name, "aurora", layer)
                feats[f"aurora trained ({layer})"] = np.asarray(X)
        for name in ("grid-patch", "grid-random"):
            ex = load(name)
            _, arrays, _ = ex.embed_samples(ds)
            feats[name] = np.concatenate(arrays)
        feats["gaussian random (d=512)"] = random_features(len(ds), 512, seed=1)
        for name, X in feats.items():
            rows += probe_rows(name, X, ys)
            print(name, {r["label"]: r["r2"] for r in rows if r["features"] == name}, flush=True)
        result["probes"] = rows
    result["machine"]["load_after"] = os.getloadavg()
    result["note"] = ("Random-weights rows: a seeded random AuroraSmall. Trained rows appear only with --checkpoint "
                      "(none exists on this machine; nothing may be downloaded). The grid is synthetic "
                      "(scripts/build_weather.py).")
    result["trained_checkpoint"] = None if args.checkpoint is None else str(args.checkpoint)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
