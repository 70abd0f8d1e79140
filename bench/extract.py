"""Extraction throughput of the interatomic-potential adapters, and our overhead over the model's own call.

For each (model, dataset) item, in its own subprocess (so ``ru_maxrss`` is the item's peak RSS):

* **embed**: ``Extractor.embed_samples`` (input checks, graph building, forward with hooks, per-atom split);
* **ours**: ``Store.extract`` end to end (the above plus pooling, provenance, zarr shards and
  consolidation) into a temporary store; throughput figures are from this one;
* **own**: the model's own batched prediction on the same structures and batch size, energies only
  (CHGNet ``predict_structure(task="e")`` on pymatgen structures; SevenNet the model's forward on
  torch-geometric batches built with ``unlabeled_atoms_to_graph``; ANI-1x the model's forward on
  padded batches), timed as own, then ours (one pass each, after a warm-up batch); overhead = embed / own - 1 (target ≤ 15 %); the
  store's share is reported separately (``overhead_with_store`` = ours / own - 1).

Datasets: the bundled ``molecules`` and ``crystals`` when they exist, else ase-built substitutes
(rattled copies of ase.collections g2 molecules; rattled dcdft elemental crystals and ase-built
binary crystals, some as supercells). The JSON records which.

    python bench/extract.py                       # defaults: 1,000 molecules, 500 crystals
    python bench/extract.py --molecules 200 --crystals 100 --models chgnet-0.3.0
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "extract.json"
MODELS = ["chgnet-0.3.0", "sevennet-0", "ani-1x"]
BATCH = 16
THREADS = 1  # the 2-core machine is shared: one torch thread per item is the least noisy setting


def _substitute(kind: str, n: int, seed: int):
    """ase-built stand-ins for the bundled datasets (used only when they are missing)."""
    import numpy as np
    from ase.build import bulk
    from ase.collections import dcdft, g2

    from matteralign.samples import Dataset, Sample

    rng = np.random.default_rng(seed)
    if kind == "molecules":
        base = [a for a in g2 if len(a) > 1]
    else:
        base = [a for a in dcdft]
        for args in [("NaCl", "rocksalt", 5.64), ("MgO", "rocksalt", 4.21), ("GaAs", "zincblende", 5.65),
                     ("ZnO", "wurtzite", 3.25), ("Si", "diamond", 5.43), ("CsCl", "cesiumchloride", 4.12)]:
            name, structure, a = args
            kw = {"c": 5.2} if structure == "wurtzite" else {}
            base.append(bulk(name, structure, a=a, **kw))
        base += [b * (2, 2, 2) for b in base[::9]]  # a few supercells (8-64 atoms)
    samples = []
    for i in range(n):
        a = base[int(rng.integers(len(base)))].copy()
        a.rattle(0.02, seed=int(rng.integers(2**31)))
        samples.append(Sample(f"{kind}-sub:{i:05d}", atoms=a))
    return Dataset(f"{kind}-substitute", samples, {"substitute": True})


def _dataset(kind: str, n: int, seed: int = 0):
    try:
        from matteralign import datasets

        ds = datasets.load(kind, n=n, seed=seed)
        return ds, f"bundled {kind!r} (n={len(ds)}, seed={seed})"
    except Exception as exc:  # not built yet: fall back, and say so
        ds = _substitute(kind, n, seed)
        return ds, f"ase-built substitute for {kind!r} ({type(exc).__name__}: {exc})"


def _own_call(ex, atoms_list):
    """The model's own batched energy prediction (no hooks, no bookkeeping)."""
    import torch

    if ex.family == "chgnet":
        from pymatgen.io.ase import AseAtomsAdaptor

        from matteralign.models._atoms import boxed
        from matteralign.models.chgnet import VACUUM_BEYOND_CUTOFF

        gap = ex.cutoff + VACUUM_BEYOND_CUTOFF
        structures = [AseAtomsAdaptor.get_structure(boxed(a, gap=gap)) for a in atoms_list]
        with torch.no_grad():
            ex.model.predict_structure(structures, task="e", batch_size=BATCH)
        return
    if ex.family == "sevennet":
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph
        from torch_geometric.loader import DataLoader

        graphs = [AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(a, ex.cutoff)) for a in atoms_list]
        with torch.no_grad():
            for batch in DataLoader(graphs, batch_size=BATCH, shuffle=False):
                ex.model(batch)
        return
    if ex.family == "ani":
        with torch.no_grad():
            for start in range(0, len(atoms_list), BATCH):
                chunk = atoms_list[start:start + BATCH]
                n_max = max(len(a) for a in chunk)
                Z = torch.full((len(chunk), n_max), -1, dtype=torch.long)
                R = torch.zeros((len(chunk), n_max, 3))
                for j, a in enumerate(chunk):
                    Z[j, : len(a)] = torch.as_tensor(a.get_atomic_numbers())
                    R[j, : len(a)] = torch.as_tensor(a.get_positions(), dtype=torch.float32)
                ex.model((Z, R))
        return
    raise ValueError(ex.family)


def run_item(model: str, kind: str, n: int) -> dict:
    """One (model, dataset) measurement, in this process."""
    import torch

    from matteralign import models
    from matteralign.execute import extract
    from matteralign.store import Store

    torch.set_num_threads(THREADS)
    ds, source = _dataset(kind, n)
    t0 = time.perf_counter()
    ex = models.load(model, batch_size=BATCH)
    load_s = time.perf_counter() - t0
    supported = [s for s in ds if ex.supports(s)]
    atoms = [s.atoms for s in supported]
    n_atoms = sum(len(a) for a in atoms)
    # warm-up (first-call costs: lazy imports, allocator)
    ex.embed(atoms[:BATCH])
    _own_call(ex, atoms[:BATCH])

    t = time.perf_counter()
    _own_call(ex, atoms)
    own = time.perf_counter() - t
    # our extraction: the embed part (checks, hooks, per-atom split) is timed inside the store run
    embed = [0.0]
    inner = ex.embed_samples

    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            embed[0] += time.perf_counter() - t

    ex.embed_samples = timed
    tmp = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        t = time.perf_counter()
        summary = extract(Store(tmp / "store"), ds, ex, shard_size=256, progress=False)
        ours = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    embed, own_mean = embed[0], own
    return {
        "model": model, "dataset": kind, "source": source, "n_samples": len(ds), "n_embedded": summary["n"],
        "n_skipped": summary["n_skipped"], "n_atoms": n_atoms, "load_s": load_s, "ours_s": ours, "own_s": own,
        "embed_s": embed, "samples_per_s": summary["n"] / ours, "atoms_per_s": n_atoms / ours,
        "overhead": embed / own_mean - 1.0, "overhead_with_store": ours / own_mean - 1.0,
        "torch_threads": THREADS, "batch_size": BATCH,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def _in_subprocess(model: str, kind: str, n: int, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--item", model, kind, str(n)]
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "PYTHONWARNINGS": "ignore"}
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"model": model, "dataset": kind, "n_samples": n, "error": f"timed out after {timeout:.0f} s"}
    except subprocess.CalledProcessError as exc:
        return {"model": model, "dataset": kind, "n_samples": n, "error": exc.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(molecules: int = 1000, crystals: int = 500, models: list[str] | None = None,
         timeout: float = 240.0) -> dict:
    """Run every item, print a table, write ``bench/results/extract.json``."""
    items = []
    for model in models or MODELS:
        for kind, n in (("molecules", molecules), ("crystals", crystals)):
            if model.startswith("ani") and kind == "crystals":
                continue  # ANI-1x embeds molecules only
            t = time.perf_counter()
            r = _in_subprocess(model, kind, n, timeout)
            r["wall_s"] = time.perf_counter() - t
            items.append(r)
            if "error" in r:
                print(f"{model:14s} {kind:10s} ERROR {r['error']}", flush=True)
            else:
                print(f"{model:14s} {kind:10s} n={r['n_embedded']:5d} atoms={r['n_atoms']:6d} "
                      f"{r['samples_per_s']:8.1f} samples/s {r['atoms_per_s']:9.1f} atoms/s "
                      f"ours {r['ours_s']:.1f} s (embed {r['embed_s']:.1f} s) own {r['own_s']:.1f} s "
                      f"overhead {100 * r['overhead']:+.1f} % (with store {100 * r['overhead_with_store']:+.1f} %) "
                      f"rss {r['peak_rss_gib']:.2f} GiB", flush=True)
    ok = [r for r in items if "error" not in r]
    result = {
        "benchmark": "extract",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "target": {"overhead_max": 0.15},
        "items": items,
        "overhead_met": all(r["overhead"] <= 0.15 for r in ok) if ok else None,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--item", nargs=3, metavar=("MODEL", "KIND", "N"))
    ap.add_argument("--molecules", type=int, default=1000)
    ap.add_argument("--crystals", type=int, default=500)
    ap.add_argument("--models", nargs="*")
    ap.add_argument("--timeout", type=float, default=240.0)
    args = ap.parse_args()
    if args.item:
        import warnings

        warnings.simplefilter("ignore")
        m, k, n = args.item
        print(json.dumps(run_item(m, k, int(n))))
    else:
        main(args.molecules, args.crystals, args.models, args.timeout)
