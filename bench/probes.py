"""Benchmark: cross-validated linear probes and probe transfer vs the plain scikit-learn route.

Every item runs in its own subprocess (peak RSS per item). Items:

* ``probes_lib``: :func:`matteralign.probes.cross_validated_probes`, 16 labels of one (N, 256)
  representation, 5 folds (one Gram eigendecomposition per fold for all labels).
* ``probes_sklearn``: the obvious route, per label and fold ``make_pipeline(StandardScaler(),
  RidgeCV(alphas))`` on the same folds (same alphas, same leave-one-out criterion). BLAS is limited to one
  thread here as it is inside the library, so the ratio measures the algorithm, not thread contention.
* ``transfer_lib``: :func:`matteralign.probes.transfer_matrix`, 8 models (N, 128), 8 labels.

    python bench/probes.py            # writes bench/results/probes.json
    python bench/probes.py --quick    # small smoke run, writes nothing
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
from _common import D, spawn  # noqa: E402

N_LABELS = 16


def make_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 8))
    X = np.tanh(Z @ rng.standard_normal((8, D))) + 0.3 * rng.standard_normal((n, D))
    Y = {
        f"y{j}": Z @ rng.standard_normal(8) + (0.5 + j / 8) * rng.standard_normal(n) for j in range(N_LABELS)
    }
    return X, Y


def sklearn_probes(X, Y, cv: int = 5, seed: int = 0) -> dict:
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    from matteralign.probes import DEFAULT_ALPHAS

    out = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for name, y in Y.items():
            r2 = []
            for tr, te in KFold(cv, shuffle=True, random_state=seed).split(X):
                p = make_pipeline(StandardScaler(), RidgeCV(alphas=DEFAULT_ALPHAS)).fit(X[tr], y[tr])
                r2.append(p.score(X[te], y[te]))
            out[name] = float(np.mean(r2))
    return out


def run_item(item: str, n: int) -> dict:
    import sklearn.linear_model  # noqa: F401  (imports outside the timed region)

    from matteralign.probes import cross_validated_probes, transfer_matrix

    out: dict = {}
    if item in ("probes_lib", "probes_sklearn"):
        X, Y = make_data(n)
        t = time.perf_counter()
        if item == "probes_lib":
            res = cross_validated_probes(X, Y, cv=5, seed=0)
            out["value"] = {k: r.r2 for k, r in res.items()}
        else:
            out["value"] = sklearn_probes(X, Y)
    elif item == "transfer_lib":
        rng = np.random.default_rng(1)
        Z = rng.standard_normal((n, 8))
        reps = {f"m{i}": Z @ rng.standard_normal((8, 128)) + rng.standard_normal((n, 128)) for i in range(8)}
        labels = {f"y{j}": Z @ rng.standard_normal(8) + rng.standard_normal(n) for j in range(8)}
        t = time.perf_counter()
        df = transfer_matrix(reps, labels, seed=0)
        out["value"] = {"mean_r2_transfer": float(df["r2_transfer"].mean()),
                        "mean_r2_target_own": float(df["r2_target_own"].mean())}  # fmt: skip
    else:
        raise SystemExit(f"unknown item {item}")
    out["seconds"] = time.perf_counter() - t
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
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
    n_probe, n_transfer = (1000, 600) if q else (5000, 3000)
    results = [
        spawn(__file__, "probes_lib", n_probe, show_value=False),
        spawn(__file__, "probes_sklearn", n_probe, show_value=False),
        spawn(__file__, "transfer_lib", n_transfer, show_value=False),
    ]
    by = {r["item"]: r for r in results}
    summary = {}
    if "seconds" in by["probes_lib"] and "seconds" in by["probes_sklearn"]:
        lib, ref = by["probes_lib"]["value"], by["probes_sklearn"]["value"]
        summary = {
            "probes_speedup_vs_sklearn_16_labels": by["probes_sklearn"]["seconds"]
            / by["probes_lib"]["seconds"],
            "probes_max_abs_r2_diff_vs_sklearn": max(abs(lib[k] - ref[k]) for k in lib),
        }
    if "seconds" in by["transfer_lib"]:
        summary["transfer_8_models_8_labels_seconds"] = by["transfer_lib"]["seconds"]
    doc = {"machine": {"platform": platform.platform(), "python": platform.python_version()},
           "d": D, "n_labels": N_LABELS, "quick": q, "results": results, "summary": summary}  # fmt: skip
    if not q:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "probes.json").write_text(json.dumps(doc, indent=2))
    print(json.dumps(summary, indent=2))
    return doc


if __name__ == "__main__":
    main()
