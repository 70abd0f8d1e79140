"""Cost of the store's integrity checks: reading a 50,000 x 256 pooled array with and without verification.

A store holding one layer of N = 50,000 samples x D = 256 (float32, committed in shards of 256, as a study
writes it) is read three ways, interleaved, ``--repeats`` times each, in one process:

- ``raw``: the zarr arrays ``sample_ids`` and ``pooled`` read directly (what ``Store.read`` did before digests);
- ``verified``: ``Store.read`` checking every shard's digest (the process's memory of checks cleared first);
- ``again``: ``Store.read`` of unchanged files already checked by this process (the once-per-process path).

Writes ``bench/results/store.json``. Run: ``python bench/store.py``.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

N, D, SHARD = 50_000, 256, 256


def _build(root: Path):
    from matteralign.store import Store

    st = Store(root)
    rng = np.random.default_rng(0)
    n_shards = 0
    for k, lo in enumerate(range(0, N, SHARD)):
        ids = [f"s{i:06d}" for i in range(lo, min(lo + SHARD, N))]
        arrays = [row[None, :] for row in rng.standard_normal((len(ids), D)).astype(np.float32)]
        st.write_shard("bench", "model", "layer", k, ids=ids, arrays=arrays, save_atoms=False)
        n_shards += 1
    t0 = time.perf_counter()
    st.finish("bench", "model", "layer", n_shards=n_shards, save_atoms=False)
    return st, time.perf_counter() - t0


def main(repeats: int = 15) -> dict:
    import zarr

    import matteralign.store as store_mod

    with tempfile.TemporaryDirectory() as tmp:
        st, t_finish = _build(Path(tmp) / "store")
        gp = st.path / "bench" / "model" / "layer"
        times = {"raw": [], "verified": [], "again": []}
        for _ in range(repeats):
            t0 = time.perf_counter()
            g = zarr.open_group(str(gp), mode="r")
            ids = [str(x) for x in np.asarray(g["sample_ids"][:]).tolist()]
            X = np.asarray(g["pooled"][:], dtype=np.float32)
            times["raw"].append(time.perf_counter() - t0)

            store_mod._verified.clear()
            t0 = time.perf_counter()
            ids_v, X_v = st.read("bench", "model", "layer")
            times["verified"].append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            st.read("bench", "model", "layer")
            times["again"].append(time.perf_counter() - t0)
            assert ids_v == ids and np.array_equal(X_v, X)
        # the hashing alone, on the arrays in memory
        manifest = zarr.open_group(str(gp), mode="r").attrs["integrity"]
        t0 = time.perf_counter()
        for name, arr in (("sample_ids", np.asarray(zarr.open_group(str(gp), mode="r")["sample_ids"][:])),
                          ("pooled", X)):
            for sh in manifest["shards"]:
                lo, hi = store_mod._range_of(name, sh)
                store_mod._digest(arr[lo:hi], manifest["algo"])
        t_hash = time.perf_counter() - t0
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "N": N, "D": D, "shard_size": SHARD, "n_shards": -(-N // SHARD), "algo": manifest["algo"],
        "repeats": repeats, "runs_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "hash_only_s": round(t_hash, 4),
        "verified_over_raw": round(med["verified"] / med["raw"], 3),
        "again_over_raw": round(med["again"] / med["raw"], 3),
        "finish_s (consolidation incl. digests)": round(t_finish, 3),
    }
    out = Path(__file__).parent / "results" / "store.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
