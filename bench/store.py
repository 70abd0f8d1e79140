"""Cost of the store's integrity checks: on reading a 50,000 x 256 pooled array, and as a share of a study run.

Items (``--item read|run|all``; each run keeps the other item's last figures in ``bench/results/store.json``):

``read`` — a store holding one layer of N = 50,000 samples x D = 256 (float32, committed in shards of 256, as a
study writes it) is read three ways, interleaved, ``--repeats`` times each, in one process:

- ``raw``: the zarr arrays ``sample_ids`` and ``pooled`` read directly (what ``Store.read`` did before digests);
- ``verified``: ``Store.read`` checking every shard's digest (the process's memory of checks cleared first);
- ``again``: ``Store.read`` of unchanged files already checked by this process (the once-per-process path).

``run`` — the default study (``make run``: every bundled model and control, both datasets) at ``--n`` samples per
dataset, from an empty folder, with local workers on every core, run in this process with every integrity path
of the store timed: content digests (computed at each shard's commit, checked and recomputed at consolidation,
checked on reads), the files' fingerprints of the once-per-process check, the result caches' content digests and
the store-commit lock. All of these run in the driver (workers return arrays; the driver commits and reads the
store), so the timers see all of it. The share at the default n = 300 is bounded from the measured run: every
integrity term is linear in the bytes stored (3x at n = 300 from n = 100; the fixed per-read terms do not grow),
and the run itself does not get shorter with more samples, so share(300) <= 300 / n x share(n).

Run: ``python bench/store.py --item read`` (about 10 s), ``--item run --n 100`` (about 4 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import shutil
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


def item_read(repeats: int = 15) -> dict:
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
    return result


class _Timers:
    """Wall time, calls and bytes of wrapped functions; a call made inside another timed call is not counted."""

    def __init__(self):
        self.t: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self.depth = 0

    def wrap(self, owner, attr: str, label: str, nbytes=None):
        orig = getattr(owner, attr)

        def timed(*a, **k):
            if self.depth:
                return orig(*a, **k)
            self.depth += 1
            t0 = time.perf_counter()
            try:
                return orig(*a, **k)
            finally:
                self.t[label] = self.t.get(label, 0.0) + time.perf_counter() - t0
                self.calls[label] = self.calls.get(label, 0) + 1
                if nbytes is not None:
                    self.bytes[label] = self.bytes.get(label, 0) + nbytes(*a, **k)
                self.depth -= 1

        setattr(owner, attr, timed)
        return orig


def _nbytes(data, algo=None) -> int:
    import numpy as np

    data = np.asarray(data)
    if data.dtype.kind in ("U", "O", "T", "S"):
        return sum(len(str(x).encode()) + 1 for x in data.tolist())
    return int(data.nbytes)


def item_run(n: int) -> dict:
    """The default study at ``n`` samples per dataset, every integrity path of the store timed."""
    import matteralign._lock as lock_mod
    import matteralign.store as store_mod
    from matteralign.study import Study

    timers = _Timers()
    timers.wrap(store_mod, "_digest", "digests", nbytes=_nbytes)
    timers.wrap(store_mod, "_fingerprint", "fingerprints")
    timers.wrap(store_mod, "_fingerprint_file", "fingerprints")
    timers.wrap(store_mod.Store, "content_digest", "cache keys (content_digest)")
    timers.wrap(lock_mod.FolderLock, "acquire", "locks (acquire)")
    timers.wrap(lock_mod.FolderLock, "release", "locks (release)")
    timers.wrap(store_mod.Store, "has", "Store.has (incl. the finished-layer check of write_shard)")
    tmp = Path(tempfile.mkdtemp(prefix="matteralign-store-run-"))
    try:
        study = Study.from_toml(None).override(n=n, out=str(tmp / "run"))
        t0 = time.perf_counter()
        res = study.run(progress=False)
        wall = time.perf_counter() - t0
        store_bytes = sum(f.stat().st_size for f in (tmp / "run" / "store").rglob("*") if f.is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    integrity = ("digests", "fingerprints", "cache keys (content_digest)", "locks (acquire)", "locks (release)")
    total = sum(timers.t.get(k, 0.0) for k in integrity)
    share = total / wall
    return {
        "item": "run", "study": "default", "n_per_dataset": n, "models": len(study.config.models),
        "wall_s": round(wall, 2), "stages_s": {k: round(v, 2) for k, v in res.timings.items() if ":" not in k},
        "store_bytes_on_disk": store_bytes,
        "timed": {k: {"seconds": round(timers.t[k], 4), "calls": timers.calls[k],
                      **({"bytes": timers.bytes[k]} if k in timers.bytes else {})} for k in sorted(timers.t)},
        "digest_rate_MB_per_s": round(timers.bytes["digests"] / timers.t["digests"] / 1e6, 1),
        "integrity_s": round(total, 4), "integrity_share_of_run": round(share, 6),
        "bound_share_at_n300": round(share * max(1.0, 300 / n), 6),
        "bound_rule": "share(300) <= 300/n x share(n): integrity terms linear in the stored bytes, run time "
                      "non-decreasing in n",
    }


def main(item: str = "all", n: int = 100, repeats: int = 15) -> dict:
    out = Path(__file__).parent / "results" / "store.json"
    result = json.loads(out.read_text()) if out.exists() else {}
    if item in ("read", "all"):
        run = result.pop("run", None)
        result = item_read(repeats)
        if run is not None:
            result["run"] = run
    if item in ("run", "all"):
        result["run"] = item_run(n)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--item", choices=["read", "run", "all"], default="all")
    ap.add_argument("--n", type=int, default=100, help="samples per dataset of the study run")
    ap.add_argument("--repeats", type=int, default=15)
    a = ap.parse_args()
    main(a.item, a.n, a.repeats)
