"""Benchmark of the CUDA route at the study's scale: ``pairwise`` over many models at N = 50,000, k = 25.

Needs a CUDA device (skipped without one; results then stay as last written). Data: ``M`` related
representations (N, 256) float32, rows L2-normalised (``_common.make_models``). Items, one process:

* ``knn_torch`` -- ``knn_graph`` on CUDA (float32 matmul + ``topk``, completeness proven, float64 re-scoring
  on the CPU) for one model, and the same graph from the CPU ``blas`` route on a 5,000-row subset, which must
  be equal;
* ``pairwise`` -- ``pairwise(reps, ["cknna", "mutual_knn", "cka"], k=25)`` for all ``M`` models: the M
  searches run on the GPU, the combines (CKNNA overlaps, the stacked float64 CKA product) on the CPU cores.

    python bench/gpu.py                 # M = 24 models, N = 50,000; writes bench/results/gpu.json
    python bench/gpu.py --models 8 --n 20000 --out /tmp/gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import make_models  # noqa: E402


def _cuda() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def main(n: int = 50_000, models: int = 24, k: int = 25, out: Path | None = None) -> dict | None:
    device = _cuda()
    if device is None:
        print("gpu benchmark: no CUDA device; skipped (bench/results/gpu.json left as it is)")
        return None
    import torch

    from matteralign.metrics import knn_graph, pairwise
    from matteralign.metrics._compiled import warm

    warm()
    reps = make_models(n, models)
    X = reps["model0"]
    knn_graph(X[:2000], k=k)  # CUDA context, numba kernels: outside the timers
    torch.cuda.synchronize()

    t0 = time.perf_counter()
    idx, vals = knn_graph(X, k=k)
    t_knn = time.perf_counter() - t0
    sub = X[:5000]
    a = knn_graph(sub, k=k)
    b = knn_graph(sub, k=k, backend="blas")
    equal = bool(np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1], rtol=0, atol=1e-12))

    t0 = time.perf_counter()
    table = pairwise(reps, ["cknna", "mutual_knn", "cka"], k=k)
    t_pw = time.perf_counter() - t0
    cknna01 = float(table[(table.metric == "cknna") & (table.model_a == "model0") & (table.model_b == "model1")]
                    ["value"].item())
    result = {
        "benchmark": "gpu",
        "device": device,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "torch": torch.__version__},
        "n": n, "k": k, "models": models,
        "knn_graph_cuda_seconds": t_knn,
        "cuda_graph_equals_cpu_blas_on_5000_rows": equal,
        "pairwise_seconds": t_pw,
        "pairwise_pairs": models * models,
        "cknna_model0_model1": cknna01,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_cuda_gib": torch.cuda.max_memory_allocated() / 2**30,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(json.dumps(result, indent=2))
    path = out or HERE / "results" / "gpu.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--models", type=int, default=24)
    ap.add_argument("--k", type=int, default=25)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    main(a.n, a.models, a.k, a.out)
