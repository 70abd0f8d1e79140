"""Benchmark of the streamed geometry metrics (dCor, TwoNN, information imbalance, all-pairs pass).

Every item runs in its own subprocess so that its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``)
is its own; times are ``time.perf_counter()`` around the measured call only (data generation excluded).
Ratios are taken between items of the same run.

    python bench/geometry.py            # all items, writes bench/results/geometry.json
    python bench/geometry.py --quick    # small sizes, smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import D, make_pair, spawn  # noqa: E402
from _common import make_models as _make_models  # noqa: E402


def make_models(n: int, m: int, seed: int = 0):
    return list(_make_models(n, m, seed).values())


def make_id_data(n: int, seed: int = 0):
    """Intrinsic dimension 8 in 256 ambient dimensions (anchor-bench recipe)."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 8), dtype=np.float32)
    A = rng.standard_normal((8, D), dtype=np.float32)
    return (Z @ A + np.float32(0.01) * rng.standard_normal((n, D), dtype=np.float32)).astype(np.float32)


def dense_dcor2(X, Y) -> float:
    """Dense route: scipy ``cdist`` (float64) + double centring, N x N matrices."""
    from scipy.spatial.distance import cdist

    def centred(Z):
        a = cdist(Z, Z)
        a -= a.mean(axis=0)[None, :]
        a -= a.mean(axis=1)[:, None]
        return a

    A = centred(X.astype(np.float64))
    B = centred(Y.astype(np.float64))
    return float((A * B).sum() / np.sqrt((A * A).sum() * (B * B).sum()))


def faiss_floor(X, k: int) -> None:
    import faiss

    index = faiss.IndexFlatL2(X.shape[1])
    index.add(np.ascontiguousarray(X, dtype=np.float32))
    index.search(np.ascontiguousarray(X, dtype=np.float32), k)


def distance_passes(reps, precision: str) -> None:
    """The baseline of the all-pairs item: one plain blocked distance pass per model (GEMM + sqrt + row sums)."""
    import torch

    from matteralign.metrics._blocked import prepare_workspace, row_blocks, sq_dist_block

    for R in reps:
        ws = prepare_workspace(R, precision=precision)
        n = ws.n
        for i0, i1 in row_blocks(n, len(reps) + 1):
            d2 = sq_dist_block(ws, i0, i1, out=torch.empty((i1 - i0, n), dtype=ws.left.dtype))
            d2.sqrt_().sum(dim=1, dtype=torch.float64)


def run_item(item: str, n: int) -> dict:
    import faiss  # noqa: F401  (imports outside the timed region)
    import torch  # noqa: F401

    from matteralign.metrics import (
        distance_correlation,
        information_imbalance,
        intrinsic_dimension,
        pairwise_geometry,
    )

    out: dict = {}
    if item.startswith("dcor"):
        X, Y = make_pair(n)
        t = time.perf_counter()
        if item == "dcor_dense":
            out["value"] = dense_dcor2(X, Y)
        else:
            out["value"] = distance_correlation(X, Y, squared=True, precision=item.split("_")[1], normalize=None)
    elif item == "floor_knn3":
        X = make_id_data(n)
        t = time.perf_counter()
        faiss_floor(X, 3)
    elif item == "twonn":
        X = make_id_data(n)
        t = time.perf_counter()
        out["value"] = intrinsic_dimension(X, normalize=None)
    elif item == "twonn_skdim":
        import skdim

        X = make_id_data(n)
        t = time.perf_counter()
        out["value"] = float(skdim.id.TwoNN().fit(X.astype(np.float64)).dimension_)
    elif item == "floor_knn2_pair":
        X, _ = make_pair(n)
        t = time.perf_counter()
        faiss_floor(X, 2)
    elif item == "ii":
        X, Y = make_pair(n)
        t = time.perf_counter()
        out["value"] = information_imbalance(X, Y, k=1, normalize=None)
    elif item == "passes8":
        reps = make_models(n, 8)
        t = time.perf_counter()
        distance_passes(reps, "float64")
    elif item == "geometry8":
        reps = make_models(n, 8)
        t = time.perf_counter()
        res = pairwise_geometry(reps, k=1, precision="float64", normalize=None)
        out["value"] = {"dcor2_01": float(res["dcor2"][0, 1]),
                        "ii_01": float(res["information_imbalance"][0, 1])}
    else:
        raise SystemExit(f"unknown item {item}")
    out["seconds"] = time.perf_counter() - t
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


REPEAT = 3


def _median_run(runs: list[dict]) -> dict:
    """The run with the median time, with every repeat's time attached."""
    out = dict(sorted(runs, key=lambda x: x["seconds"])[len(runs) // 2])
    out["seconds_repeats"] = [x["seconds"] for x in runs]
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--item")
    ap.add_argument("--n", type=int)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.item:
        print(json.dumps(run_item(args.item, args.n)))
        return {}
    q = args.quick
    n10, n50, n20, nsk = (1000, 3000, 1000, 1000) if q else (10_000, 50_000, 20_000, 20_000)
    # items compared with a kNN floor of similar length run REPEAT times, interleaved with their floor; the
    # run with the median time stands for the item (every repeat is kept in the results)
    plan = [("dcor_dense", n10, 1), ("dcor_float64", n10, 1), ("dcor_float32", n10, 1), ("dcor_float64", n50, 1),
            ("twonn", nsk, 1), ("twonn_skdim", nsk, 1), ("passes8", n20, 1), ("geometry8", n20, 1)]
    interleaved = [[("floor_knn3", n50), ("twonn", n50)], [("floor_knn2_pair", n50), ("ii", n50)]]
    results = [spawn(__file__, item, n) for item, n, _ in plan]
    for group in interleaved:
        for _ in range(1 if q else REPEAT):
            results += [spawn(__file__, item, n) for item, n in group]
    by = {}
    for r in results:
        by.setdefault((r["item"], r["n"]), []).append(r)
    by = {key: _median_run(runs) for key, runs in by.items()}

    def ratio(a, b):
        try:
            return by[a]["seconds"] / by[b]["seconds"]
        except KeyError:
            return None

    summary = {
        "dcor_speedup_vs_dense_N10k": ratio(("dcor_dense", n10), ("dcor_float64", n10)),
        "dcor_abs_diff_vs_dense_N10k": abs(by[("dcor_dense", n10)]["value"] - by[("dcor_float64", n10)]["value"]),
        "dcor32_abs_diff_vs_dense_N10k": abs(by[("dcor_dense", n10)]["value"] - by[("dcor_float32", n10)]["value"]),
        "dcor_N50k_peak_rss_gib": by[("dcor_float64", n50)].get("peak_rss_gib"),
        "twonn_over_knn_floor_N50k": ratio(("twonn", n50), ("floor_knn3", n50)),
        "twonn_speedup_vs_skdim": ratio(("twonn_skdim", nsk), ("twonn", nsk)),
        "twonn_abs_diff_vs_skdim": abs(by[("twonn", nsk)]["value"] - by[("twonn_skdim", nsk)]["value"]),
        "ii_over_knn_floor_N50k": ratio(("ii", n50), ("floor_knn2_pair", n50)),
        "geometry8_over_8_passes_N20k": ratio(("geometry8", n20), ("passes8", n20)),
    }
    doc = {"machine": {"platform": platform.platform(), "python": platform.python_version()},
           "d": D, "quick": q, "results": results, "summary": summary}
    if not q:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "geometry.json").write_text(json.dumps(doc, indent=2))
    print(json.dumps(summary, indent=2))
    return doc


if __name__ == "__main__":
    main()
