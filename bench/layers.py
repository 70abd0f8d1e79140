"""Layer-wise alignment: capturing every layer in one forward pass, and a layer x layer map vs its kNN floor.

Items (each in its own subprocess, so ``ru_maxrss`` is the item's peak RSS):

* **capture-<model>** (CHGNet 0.3.0, SevenNet-0, MiniLM on SMILES): on the same molecules, with one torch
  thread, ``embed_samples(layer=default)`` (one layer) and ``embed_samples_layers(samples, "all")`` (every
  distinct layer from one forward pass per batch), ``REPEATS`` times interleaved after a warm-up batch;
  ratio = median(all) / median(one), target <= 1.2. Also reported: the time of one ``embed_samples`` per layer
  (what capturing every layer cost before), from the same runs.
* **map**: a 10 x 10 layer map of two synthetic 10-layer "models" (a random tanh network each, N samples,
  width 128, float32) for CKNNA (k = 25) and linear CKA with :func:`matteralign.analysis.layers.layer_map`
  (normalisation, one exact kNN search per layer, every cell), against its floor: the 20 single-layer exact
  kNN searches alone (``knn_graph(k=25, metric="ip")`` on the normalised layers, the search each layer's
  cache runs). ``MAP_REPEATS`` runs interleaved; ratio of the medians, target <= 1.3.

Data of the capture items: the bundled ``molecules`` dataset (seeded subset).

    python bench/layers.py                 # 500 molecules, N = 5,000
    python bench/layers.py --molecules 100 --n 2000 --items capture-chgnet-0.3.0 map
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

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "layers.json"
CAPTURE = ["chgnet-0.3.0", "sevennet-0", "minilm-smiles"]
REPEATS = 3
MAP_REPEATS = 5  # the map item is short: more runs, interleaved with its floor
THREADS = 1  # the 2-core machine is shared: one torch thread per item is the least noisy setting
LAYERS, WIDTH, K = 10, 128, 25


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def capture(model: str, n: int, seed: int = 0) -> dict:
    from matteralign import datasets, models

    ds = datasets.load("molecules", n=n, seed=seed)
    samples = list(ds)
    ex = models.load(model, num_threads=THREADS, seed=seed)
    layers = ex.resolve_layers("all")
    default = ex.default_layer
    ex.embed_samples_layers(samples[:8], layers)  # warm-up (lazy loads, first-call allocations)
    one, every, per_layer = [], [], []
    for _ in range(REPEATS):
        t = time.perf_counter()
        ids1, _, _ = ex.embed_samples(samples, layer=default)
        one.append(time.perf_counter() - t)
        t = time.perf_counter()
        ids, _, skipped = ex.embed_samples_layers(samples, layers)
        every.append(time.perf_counter() - t)
        assert ids == ids1
    # one embed_samples per layer (the way to get every layer without one-pass capture), measured once
    t = time.perf_counter()
    for layer in layers:
        ex.embed_samples(samples, layer=layer)
    per_layer.append(time.perf_counter() - t)
    return {"model": model, "n_samples": len(samples), "n_embedded": len(ids), "n_skipped": len(skipped),
            "layers": layers, "default_layer": default, "batch_size": ex.batch_size, "threads": THREADS,
            "one_layer_s": one, "all_layers_s": every, "one_pass_per_layer_s": per_layer[0],
            "ratio_all_over_one": _median(every) / _median(one),
            "per_layer_passes_over_one_pass": per_layer[0] / _median(every), "peak_rss_gib": _rss_gib()}


def _net(n: int, seed: int) -> dict:
    import numpy as np

    r = np.random.default_rng(seed)
    x = r.standard_normal((n, WIDTH), dtype=np.float32)
    out = {}
    for i in range(LAYERS):
        w = r.standard_normal((WIDTH, WIDTH), dtype=np.float32) * np.float32(1.5 / np.sqrt(WIDTH))
        x = np.tanh(x @ w) + np.float32(0.05) * r.standard_normal((n, WIDTH), dtype=np.float32)
        out[f"layer{i}"] = x.astype(np.float32)
    return out


def layer_map_item(n: int) -> dict:
    from matteralign.analysis.layers import layer_map
    from matteralign.metrics import knn_graph
    from matteralign.metrics._compiled import warm
    from matteralign.metrics.normalize import normalize

    A, B = _net(n, 0), _net(n, 1)
    warm()  # compiled kernels loaded outside the timers (both routes use them)
    normed = [normalize(v, method="l2") for v in [*A.values(), *B.values()]]
    knn_graph(normed[0][:500], k=K, metric="ip")
    floor, full, floor_cpu, full_cpu = [], [], [], []
    table = None
    for _ in range(MAP_REPEATS):
        t, c = time.perf_counter(), time.process_time()
        for v in normed:
            knn_graph(v, k=K, metric="ip")
        floor.append(time.perf_counter() - t)
        floor_cpu.append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        table = layer_map(A, B, metrics=[("cknna", {"k": K}), "cka"], model_a="A", model_b="B")
        full.append(time.perf_counter() - t)
        full_cpu.append(time.process_time() - c)
    diag = table[(table["metric"] == "cka")]
    return {"n": n, "layers": LAYERS, "width": WIDTH, "k": K, "cells": int(len(table)),
            "floor_20_searches_s": floor, "layer_map_s": full, "ratio_map_over_floor": _median(full) / _median(floor),
            "floor_cpu_s": floor_cpu, "layer_map_cpu_s": full_cpu,
            "cpu_ratio_map_over_floor": _median(full_cpu) / _median(floor_cpu),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "cka_range": [float(diag["value"].min()), float(diag["value"].max())], "peak_rss_gib": _rss_gib()}


def _spawn(item: str, args) -> dict:
    cmd = [sys.executable, __file__, "--item", item, "--molecules", str(args.molecules), "--n", str(args.n)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"item": item, "error": proc.stderr.strip().splitlines()[-3:]}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["item"] = item
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--molecules", type=int, default=500)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--items", nargs="*", default=[f"capture-{m}" for m in CAPTURE] + ["map"])
    ap.add_argument("--item", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.item:
        if args.item == "map":
            res = layer_map_item(args.n)
        else:
            res = capture(args.item.removeprefix("capture-"), args.molecules)
        print(json.dumps(res))
        return
    results = []
    for item in args.items:
        res = _spawn(item, args)
        results.append(res)
        if "error" in res:
            print(f"{item}: error {res['error']}", flush=True)
        elif item == "map":
            print(f"map N={res['n']} {LAYERS}x{LAYERS}: layer map {_median(res['layer_map_s']):.2f} s, "
                  f"20 searches {_median(res['floor_20_searches_s']):.2f} s, ratio {res['ratio_map_over_floor']:.3f} "
                  f"(target <= 1.3); CPU-time ratio {res['cpu_ratio_map_over_floor']:.3f}; load {res['load_average']}",
                  flush=True)
        else:
            print(f"{item} ({res['n_samples']} molecules, {len(res['layers'])} layers): one layer "
                  f"{_median(res['one_layer_s']):.2f} s, all layers {_median(res['all_layers_s']):.2f} s, "
                  f"ratio {res['ratio_all_over_one']:.3f} (target <= 1.2); one pass per layer "
                  f"{res['one_pass_per_layer_s']:.2f} s", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for r in results:
        r["time"] = now
    kept = []  # a run of some items keeps the other items' last figures
    if RESULTS.exists():
        kept = [r for r in json.loads(RESULTS.read_text()).get("items", []) if r.get("item") not in args.items]
    order = [f"capture-{m}" for m in CAPTURE] + ["map"]
    items = sorted(kept + results, key=lambda r: order.index(r["item"]) if r.get("item") in order else len(order))
    meta = {"machine": "2-core CPU, shared", "repeats": REPEATS, "threads": THREADS}
    RESULTS.write_text(json.dumps({"meta": meta, "items": items}, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
