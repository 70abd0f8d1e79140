"""GraphCast: parameter count, per-grid forward time, samples/s and linear-probe R² of the weather labels
from a random-weights GraphCast at GraphCast_small's released geometry, beside the raw-patch baseline.

Run from the main environment (GraphCast runs there: torch, scipy, trimesh, rtree)::

    nice .venv/bin/python bench/weather_graphcast.py      # writes bench/results/weather_graphcast.json

* **instance**: a seeded random GraphCast with GraphCast_small's configuration (mesh refinement 5, latent
  512, 16 processor steps, 1 hidden layer, 13 pressure levels, the ``TASK_13_PRECIP_OUT`` variables; haiku's
  initialisers: truncated-normal weights of variance 1 / fan-in, zero biases, unit layer norms) written in
  DeepMind's released ``params/*.npz`` layout; no trained parameters are on this machine and nothing may be
  downloaded.
* **bundled grid**: the graphs built for the bundled synthetic 32 × 64 grid, the model alone per grid
  (``GraphCastExtractor.grid_latents`` on the first times, after loading), then ``embed_samples`` on all
  1,280 (time, patch) samples (one forward per time).
* **1° grid**: one forward on a 181 × 360 grid (GraphCast_small's own grid; random fields), graph build
  time and peak memory of the process.
* **probes**: 5-fold cross-validated ridge probes (:func:`matteralign.probes.cross_validated_probes`) of
  the four labels from the ``processor`` and ``decoder`` layers, the raw standardised patch
  (``grid-patch``), its random projection (``grid-random``) and Gaussian random features of width 512.

The machine's load average is recorded before and after: the figures are from a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _common import probe_rows  # noqa: E402

LABELS = ("temperature_2m_k", "specific_humidity_g_kg", "mslp_hpa", "wind_speed_10m_m_s")
LEVELS_13 = (50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000)
TASK_SMALL = {
    "input_variables": ("2m_temperature", "mean_sea_level_pressure", "10m_v_component_of_wind",
                        "10m_u_component_of_wind", "temperature", "geopotential", "u_component_of_wind",
                        "v_component_of_wind", "vertical_velocity", "specific_humidity",
                        "toa_incident_solar_radiation", "year_progress_sin", "year_progress_cos", "day_progress_sin",
                        "day_progress_cos", "geopotential_at_surface", "land_sea_mask"),
    "target_variables": ("2m_temperature", "mean_sea_level_pressure", "10m_v_component_of_wind",
                         "10m_u_component_of_wind", "total_precipitation_6hr", "temperature", "geopotential",
                         "u_component_of_wind", "v_component_of_wind", "vertical_velocity", "specific_humidity"),
    "forcing_variables": ("toa_incident_solar_radiation", "year_progress_sin", "year_progress_cos",
                          "day_progress_sin", "day_progress_cos"),
    "pressure_levels": LEVELS_13, "input_duration": "12h"}
CONFIG_SMALL = {"resolution": 1.0, "mesh_size": 5, "latent_size": 512, "gnn_msg_steps": 16, "hidden_layers": 1,
                "radius_query_fraction_edge_length": 0.6}


def write_random_graphcast(path: Path, *, seed: int = 0, config=CONFIG_SMALL, task=TASK_SMALL) -> int:
    """A seeded random GraphCast in the released npz layout; returns its parameter count."""
    from matteralign.models import _graphcast as gc
    from matteralign.models.hub_graphcast import input_channels

    n_out = 5 + 6 * len(task["pressure_levels"])
    graphs = gc.build_graphs(np.linspace(-90, 90, 7), np.arange(0, 360, 30.0), mesh_size=1,
                             radius_query_fraction_edge_length=0.6)  # sizes only: the layout does not depend on it
    net = gc.GraphCastNet(graphs, n_channels=len(input_channels(task)), latent_size=config["latent_size"],
                          hidden_layers=config["hidden_layers"], gnn_msg_steps=config["gnn_msg_steps"], n_outputs=n_out)
    rng = np.random.default_rng(seed)
    flat, n = {}, 0
    for module, ps in net.haiku_layout().items():
        for name, shape in ps.items():
            if name == "w":  # haiku VarianceScaling(1, fan_in, truncated_normal)
                std = np.sqrt(1.0 / shape[0]) / 0.87962566103423978
                a = rng.standard_normal(shape)
                while (bad := np.abs(a) > 2).any():
                    a[bad] = rng.standard_normal(int(bad.sum()))
                v = (a * std).astype(np.float32)
            elif name == "scale":
                v = np.ones(shape, np.float32)
            else:
                v = np.zeros(shape, np.float32)
            flat[f"params:{module}:{name}"] = v
            n += v.size
    flat.update({f"model_config:{k}": v for k, v in config.items()})
    for k, v in task.items():
        if isinstance(v, tuple):
            flat.update({f"task_config:{k}:{i}": x for i, x in enumerate(v)})
        else:
            flat[f"task_config:{k}"] = v
    np.savez(path, **flat)
    return n


def main(argv: list[str] | None = None) -> None:
    import torch

    from matteralign import datasets
    from matteralign.datasets.weather import WeatherGrid
    from matteralign.models import load
    from matteralign.probes import random_features

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timed-grids", type=int, default=3, help="bundled-grid times timed one by one")
    ap.add_argument("--skip-1deg", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "weather_graphcast.json")
    args = ap.parse_args([] if argv is None and __name__ != "__main__" else argv)
    result: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                "torch": torch.__version__, "load_before": os.getloadavg()}}
    ds = datasets.load("weather")
    grid = ds[0].grid.grid
    with tempfile.TemporaryDirectory() as td:
        ckpt = Path(td) / "GraphCast_small_random.npz"
        t0 = time.perf_counter()
        n_params = write_random_graphcast(ckpt)
        result["instance"] = {**CONFIG_SMALL, "pressure_levels": list(LEVELS_13), "n_parameters": n_params,
                              "checkpoint_mb": round(ckpt.stat().st_size / 2**20, 1),
                              "write_s": round(time.perf_counter() - t0, 1)}
        print("instance", result["instance"], flush=True)
        t0 = time.perf_counter()
        m = load("graphcast", checkpoint=str(ckpt), num_threads=args.threads)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        m.network(grid)
        m.prepare(grid)
        graph_s = time.perf_counter() - t0
        per = []
        for t in range(min(args.timed_grids, grid.times.size)):
            t1 = time.perf_counter()
            m.grid_latents(grid, t)
            per.append(time.perf_counter() - t1)
            print("grid", t, round(per[-1], 2), flush=True)
        m._cache.clear()
        n0 = m.n_forward
        t2 = time.perf_counter()
        ids, arrays, skipped = m.embed_samples_layers(list(ds), ["processor", "decoder"])
        embed_s = time.perf_counter() - t2
        med = float(np.median(per))
        patches = grid.patch_shape[0] * grid.patch_shape[1]
        result["bundled_grid"] = {
            "grid": list(grid.shape), "graph": m.graph_sizes, "n_parameters_loaded": sum(
                p.numel() for p in m.model.parameters()),
            "load_s": round(load_s, 2), "graph_build_and_inputs_s": round(graph_s, 2),
            "grid_forward_s_median": round(med, 2), "grid_forward_s_all": [round(x, 2) for x in per],
            "samples_per_s_model": round(patches / med, 2), "embed_samples_s": round(embed_s, 1),
            "embed_samples_forwards": m.n_forward - n0, "embed_samples_per_s": round(len(ids) / embed_s, 2),
            "n_samples": len(ids), "skipped": len(skipped), "threads": args.threads,
            "channels_set_to_zero": m.prepare(grid)["missing"], "n_channels": m.sizes["n_channels"]}
        print("bundled", result["bundled_grid"], flush=True)
        ys = {lab: ds.labels(lab) for lab in LABELS}
        feats = {f"graphcast random weights ({lay})": np.concatenate(arrays[lay]) for lay in ("processor", "decoder")}
        for name in ("grid-patch", "grid-random"):
            _, arr, _ = load(name).embed_samples(ds)
            feats[name] = np.concatenate(arr)
        feats["gaussian random (d=512)"] = random_features(len(ds), 512, seed=1)
        rows = []
        for name, F in feats.items():
            rows += probe_rows(name, F, ys)
            print(name, {r["label"]: r["r2"] for r in rows if r["features"] == name}, flush=True)
        result["probes"] = rows
        if not args.skip_1deg:
            lat, lon = np.linspace(90, -90, 181), np.arange(0.0, 360.0, 1.0)
            rng = np.random.default_rng(0)
            f = lambda *s: rng.standard_normal((2, *s, 181, 360)).astype(np.float32)  # noqa: E731
            g1 = WeatherGrid("era5-1deg-random", grid.times[:2], lat, lon, LEVELS_13,
                             {k: f() for k in ("2t", "10u", "10v", "msl")},
                             {"z": f()[0], "lsm": (f()[0] > 0).astype(np.float32)},
                             {k: f(13) for k in ("z", "u", "v", "t", "q")})
            t0 = time.perf_counter()
            m.network(g1)
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            m.grid_latents(g1, 1)
            fwd = time.perf_counter() - t0
            result["grid_1deg"] = {"grid": [181, 360], "graph": m.graph_sizes, "graph_build_s": round(build, 1),
                                   "grid_forward_s": round(fwd, 1),
                                   "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
            print("1deg", result["grid_1deg"], flush=True)
    result["machine"]["load_after"] = os.getloadavg()
    result["note"] = ("A seeded random GraphCast at GraphCast_small's configuration (no trained parameters are on this "
                      "machine; nothing may be downloaded), run by matteralign's PyTorch implementation in float32. "
                      "The bundled grid is synthetic (scripts/build_weather.py) and coarser (5.625 deg) than the 1 deg "
                      "the configuration was trained for; its graphs are built for its own coordinates.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
