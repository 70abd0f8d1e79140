"""Helpers shared by the benchmarks: the anchor-bench data recipes and the one-item-per-process runner."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

#: Feature width of every synthetic representation.
D = 256


def make_pair(n: int, seed: int = 0):
    """Related (X, Y), (n, 256) float32, rows L2-normalised (anchor-bench recipe)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D), dtype=np.float32)
    W = (rng.standard_normal((D, D), dtype=np.float32) / np.float32(np.sqrt(D))).astype(np.float32)
    Y = X @ W + np.float32(0.5) * rng.standard_normal((n, D), dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    return X.astype(np.float32), Y.astype(np.float32)


def make_models(n: int, m: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``m`` related representations ``model0..`` of one latent, (n, 256) float32, rows L2-normalised."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, D), dtype=np.float32)
    reps = {}
    for i in range(m):
        W = (rng.standard_normal((D, D), dtype=np.float32) / np.float32(np.sqrt(D))).astype(np.float32)
        R = Z @ W + np.float32(0.5 + 0.1 * i) * rng.standard_normal((n, D), dtype=np.float32)
        reps[f"model{i}"] = (R / np.linalg.norm(R, axis=1, keepdims=True)).astype(np.float32)
    return reps


def spawn(script: str, item: str, n: int, *, show_value: bool = True) -> dict:
    """Run ``script --item ITEM --n N`` in its own process (so its peak RSS is its own); parse its JSON line."""
    cmd = [sys.executable, script, "--item", item, "--n", str(n)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"item": item, "n": n, "error": proc.stderr.strip().splitlines()[-1:]}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update(item=item, n=n)
    value = f"  {res.get('value', '')}" if show_value else ""
    print(f"  {item:16s} N={n:6d}  {res['seconds']:8.2f} s  {res['peak_rss_gib']:.2f} GiB{value}", flush=True)
    return res


def probe_rows(name: str, X: np.ndarray, ys: dict[str, np.ndarray]) -> list[dict]:
    """Rows of 5-fold cross-validated ridge probes of each label in ``ys`` from features ``X`` (n, d).

    One dict per label: ``features`` (``name``), ``dim``, ``label``, ``r2`` with its interval ``r2_low`` /
    ``r2_high``, and ``mae``, rounded to 4 decimals (:func:`matteralign.probes.cross_validated_probes`, seed 0).
    """
    from matteralign.probes import cross_validated_probes

    out = []
    for lab, r in cross_validated_probes(X, ys, cv=5, seed=0).items():
        lo, hi = r.r2_ci
        out.append({"features": name, "dim": int(X.shape[1]), "label": lab, "r2": round(r.r2, 4),
                    "r2_low": round(lo, 4), "r2_high": round(hi, 4), "mae": round(r.mae, 4)})
    return out
