"""Benchmark of calibrated alignment (permutation nulls, calibrated scores, intervals).

Items (each in its own process, so its peak RSS is its own):

* ``study_off`` / ``study_on``: the default study's measure-stage work for one dataset on synthetic data of the
  bundled size (20 models, N = 300, widths 16..1024, the default metrics): per-model caches plus one
  ``execute.measure.measure_block`` over every pair, calibration off / on at the default ``[calibration]``,
  run as the study runs a measure unit (``execute.worker.run_call`` with one thread, the default
  ``execution.measure_threads``).
* ``scale_off`` / ``scale_on``: 24 models at N (default 50,000): ``pairwise`` of CKNNA k = 25, mutual kNN k = 10
  and linear CKA (off), and the same plus ``calibrate_pairs`` of each metric with 100 permutations, interval off
  (on); linear CKA's null is on its documented subset (``null_max_n``).
* ``cs_*``: one related pair at N, 100 permutations, the same permutations for both: ``calibrate_pairs`` (ours)
  against ``calibrated_similarity.calibrate`` with our CKNNA, our linear CKA, and a dense platonic-rep-style
  CKNNA as ``sim`` (the dense one on 10 permutations; its time is given per permutation too).

Usage::

    python bench/calibration.py                 # everything at the default sizes, writes bench/results/calibration.json
    python bench/calibration.py --scale-n 20000 # the 24-model item at a smaller N
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import make_models, make_pair  # noqa: E402

DEFAULT_METRICS = [("cknna", {"k": 25}), ("mutual_knn", {"k": 10}), ("unbiased_cka", {}), ("dcor2", {}),
                   ("information_imbalance", {"k": 1}), ("idcor", {})]
SCALE_METRICS = [("cknna", {"k": 25}), ("mutual_knn", {"k": 10}), ("cka", {})]


def _study_like(n: int = 300, m: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """``m`` related representations of mixed widths (16..1024), like the bundled models' pooled features."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 32))
    widths = [16, 32, 64, 64, 128, 128, 128, 256, 256, 256, 384, 384, 384, 512, 512, 768, 768, 1024, 64, 128]
    reps = {}
    for i in range(m):
        d = widths[i % len(widths)]
        R = np.tanh(Z @ rng.standard_normal((32, d))) + (0.3 + 0.1 * (i % 7)) * rng.standard_normal((n, d))
        reps[f"model{i:02d}"] = R.astype(np.float32)
    return reps


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_item(item: str, n: int) -> dict:
    from matteralign.metrics import pairwise, prepare
    from matteralign.metrics._compiled import warm

    warm()
    out: dict = {}
    if item.startswith("study_"):
        from matteralign.execute.measure import prepare_cache
        from matteralign.execute.worker import run_call
        from matteralign.study import CalibrationConfig

        reps = _study_like(n)
        calib = {**CalibrationConfig().model_dump(), "seed": 0} if item == "study_on" else None
        t = time.perf_counter()
        caches = [prepare_cache(X, "l2", 25, m) for m, X in reps.items()]
        names = list(reps)
        # as a study's measure unit: one thread for BLAS and the compiled kernels (execution.measure_threads)
        df = run_call("matteralign.execute.measure:measure_block", (names, names, DEFAULT_METRICS, calib, *caches),
                      threads=1)
        out["seconds"] = time.perf_counter() - t
        out["rows"] = len(df)
        if calib:
            out["rows_with_p_and_ci"] = int(df[["p_value", "ci_low", "ci_high"]].notna().all(axis=1).sum())
    elif item.startswith("scale_"):
        from matteralign.metrics.calibration import calibrate_pairs

        reps = make_models(n, 24)
        t = time.perf_counter()
        caches = {m: prepare(X, k_max=25, normalize=None, name=m) for m, X in reps.items()}
        pairwise(caches, SCALE_METRICS)
        out["pairwise_seconds"] = time.perf_counter() - t
        out["peak_rss_after_pairwise_gib"] = _peak()
        if item == "scale_on":
            for name, p in SCALE_METRICS:
                t1, c1 = time.perf_counter(), _cpu()
                df = calibrate_pairs(caches, name, p, n_permutations=100, seed=0, n_subsamples=0)
                out[f"{name}_null_seconds"] = time.perf_counter() - t1
                out[f"{name}_null_cpu_seconds"] = _cpu() - c1
                out[f"{name}_null_n"] = int(df["null_n"].iloc[0])
                out[f"{name}_null_route"] = str(df["null_route"].iloc[0])
                out[f"peak_rss_after_{name}_null_gib"] = _peak()
        out["seconds"] = time.perf_counter() - t
    elif item.startswith("cs_"):
        import torch
        from calibrated_similarity import calibrate

        from matteralign.metrics import cka, cknna
        from matteralign.metrics.calibration import calibrate_pairs, permutations

        sys.path.insert(0, str(HERE))
        from metrics import dense_cknna

        X, Y = make_pair(n)
        metric = {"cs_ours_cknna": "cknna", "cs_ours_cka": "cka"}.get(item)
        B = 10 if item == "cs_theirs_dense" else 100
        perms = permutations(n, B, 0)
        if metric:
            t = time.perf_counter()
            caches = {"a": prepare(X, k_max=25, normalize=None, name="a"),
                      "b": prepare(Y, k_max=25, normalize=None, name="b")}
            df = calibrate_pairs(caches, metric, {"k": 25} if metric == "cknna" else {}, pairs=[("a", "b")],
                                 n_permutations=B, seed=0, n_subsamples=0, null_max_n=n)
            out["seconds"] = time.perf_counter() - t
            out["p_value"], out["calibrated"] = float(df.p_value[0]), float(df.calibrated[0])
            out["null_route"] = str(df.null_route[0])
        else:
            sims = {"cs_theirs_cknna": lambda a, b: cknna(a.numpy(), b.numpy(), k=25, normalize=None),
                    "cs_theirs_cka": lambda a, b: cka(a.numpy(), b.numpy(), normalize=None),
                    "cs_theirs_dense": lambda a, b: dense_cknna(a.numpy(), b.numpy(), 25)}
            it = iter(perms)
            t = time.perf_counter()
            score, p, tau = calibrate(torch.as_tensor(X), torch.as_tensor(Y), sims[item], K=B,
                                      perm_fn=lambda n_, d_: torch.as_tensor(next(it)))
            out["seconds"] = time.perf_counter() - t
            out["p_value"], out["calibrated"] = float(p), float(score)
        out["permutations"] = B
    out["peak_rss_gib"] = _peak()
    out["cpu_seconds_process"] = _cpu()
    return out


def spawn(item: str, n: int) -> dict:
    load = round(os.getloadavg()[0], 2)
    proc = subprocess.run([sys.executable, __file__, "--item", item, "--n", str(n)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"item": item, "n": n, "error": proc.stderr.strip().splitlines()[-3:]}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update(item=item, n=n, load_average_1min_before=load, load_average_1min_after=round(os.getloadavg()[0], 2))
    print(f"  {item:18s} N={n:6d} {res['seconds']:9.2f} s {res['peak_rss_gib']:.2f} GiB", flush=True)
    return res


def main(scale_n: int, cs_sizes: list[int], parts: list[str]) -> dict:
    path = HERE / "results" / "calibration.json"
    result = json.loads(path.read_text()) if path.exists() else {"benchmark": "calibration", "runs": {}}
    runs, ratios = result["runs"], result.setdefault("ratios", {})
    if "study" in parts:
        runs["study_off"], runs["study_on"] = spawn("study_off", 300), spawn("study_on", 300)
        ratios["study_on_over_off"] = runs["study_on"]["seconds"] / runs["study_off"]["seconds"]
    if "scale" in parts:
        runs[f"scale_off_{scale_n}"], runs[f"scale_on_{scale_n}"] = spawn("scale_off", scale_n), spawn("scale_on", scale_n)
        on, off = runs[f"scale_on_{scale_n}"], runs[f"scale_off_{scale_n}"]
        if "seconds" in on and "seconds" in off:
            ratios[f"scale_{scale_n}_on_over_off"] = on["seconds"] / off["seconds"]
    if "cs" in parts:
        for n in cs_sizes:
            for item in ("cs_ours_cknna", "cs_theirs_cknna", "cs_ours_cka", "cs_theirs_cka", "cs_theirs_dense"):
                runs[f"{item}_{n}"] = spawn(item, n)
            r = lambda a, b, n=n: runs[f"{a}_{n}"]["seconds"] / runs[f"{b}_{n}"]["seconds"]  # noqa: E731
            ratios[f"cs_{n}_theirs_cknna_over_ours"] = r("cs_theirs_cknna", "cs_ours_cknna")
            ratios[f"cs_{n}_theirs_cka_over_ours"] = r("cs_theirs_cka", "cs_ours_cka")
            ratios[f"cs_{n}_theirs_dense_per_perm_x101_over_ours_cknna"] = (
                runs[f"cs_theirs_dense_{n}"]["seconds"] / 11 * 101 / runs[f"cs_ours_cknna_{n}"]["seconds"])
    result["machine"] = f"{os.cpu_count()} cores (shared)"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(ratios, indent=2))
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--item")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--scale-n", type=int, default=50_000)
    ap.add_argument("--cs-sizes", type=int, nargs="*", default=[5000, 10000])
    ap.add_argument("--parts", nargs="*", default=["study", "scale", "cs"])
    args = ap.parse_args()
    if args.item:
        print(json.dumps(run_item(args.item, args.n)))
    else:
        main(args.scale_n, args.cs_sizes, args.parts)
