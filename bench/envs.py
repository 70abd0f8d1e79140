"""Model environments: install time and size, extraction throughput per family, subprocess overhead.

Run from the main environment after ``matteralign env create`` (or ``make envs``)::

    nice .venv/bin/python bench/envs.py [--n 500] [--bundled] [--models mace-mp,esen,...,equiformer-v2]

For each model a seeded random instance of the real architecture is written by
``tests/envs/random_models.py`` inside its environment. Each set of ``n`` molecules and ``n``
crystals is embedded (default layer) twice:

* **subprocess**: :func:`matteralign.execute.extract` from the main environment (wall time of
  the whole call: dataset file, interpreter start, imports, model load, extraction, store writes);
* **in-process**: a Python already running in the model's environment loads the model and calls
  ``Store.extract`` (timed from after its imports; import time reported separately).

The overhead of the environment switch is ``subprocess − in-process (load + extract)``.
Molecules are ASE's G2 set (162 molecules) and crystals ASE ``bulk`` prototypes with supercells,
rattled with seeded noise to reach ``n`` each (the bundled datasets were not available when this
ran; ``--bundled`` uses ``matteralign.datasets.load("molecules"/"crystals", n=n)`` instead).
The machine's load average (``os.getloadavg``) is recorded before and after each model.
Writes ``bench/results/envs.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from matteralign import envs, models  # noqa: E402
from matteralign.execute import extract  # noqa: E402
from matteralign.execute.wire import write_samples  # noqa: E402
from matteralign.samples import Dataset, Sample  # noqa: E402

INPROC = r"""
import json, sys, time
t0 = time.perf_counter()
from matteralign import models
from matteralign.execute import extract
from matteralign.execute.wire import read_samples
from matteralign.store import Store
ds = read_samples(sys.argv[1])
t1 = time.perf_counter()
ex = models.load(sys.argv[2], checkpoint=sys.argv[3], trust_checkpoint=True, seed=0)
t2 = time.perf_counter()
s = extract(Store(sys.argv[4]), ds, ex, progress=False)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "extract_s": t3 - t2, "n": s["n"]}))
"""


def molecules(n: int) -> Dataset:
    from ase.collections import g2

    base = [a for a in g2 if len(a) > 1]
    out = []
    for i in range(n):
        a = base[i % len(base)].copy()
        a.rattle(0.02, seed=i)
        out.append(Sample(id=f"mol{i:05d}", atoms=a))
    return Dataset("bench-molecules", out)


def crystals(n: int) -> Dataset:
    from ase.build import bulk

    protos = [("NaCl", "rocksalt", 5.64), ("Si", "diamond", 5.43), ("Cu", "fcc", 3.6), ("Fe", "bcc", 2.87),
              ("MgO", "rocksalt", 4.21), ("GaAs", "zincblende", 5.65), ("Al", "fcc", 4.05), ("Ti", "hcp", 2.95),
              ("ZnO", "wurtzite", 3.25), ("LiF", "rocksalt", 4.03)]
    out = []
    for i in range(n):
        sym, kind, a0 = protos[i % len(protos)]
        kw = {"c": 1.6 * a0} if kind in ("hcp", "wurtzite") else {}
        a = bulk(sym, kind, a=a0, **kw).repeat((1 + i % 2, 1 + (i // 2) % 2, 1))
        a.rattle(0.03, seed=i)
        out.append(Sample(id=f"cryst{i:05d}", atoms=a))
    return Dataset("bench-crystals", out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--models", default="mace-mp,esen,uma-s,orb-v3-conservative,equiformer-v2")
    ap.add_argument("--bundled", action="store_true")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other models of an existing envs.json measured on the same data")
    args = ap.parse_args()
    if args.bundled:
        from matteralign import datasets

        sets = [datasets.load("molecules", n=args.n, seed=0), datasets.load("crystals", n=args.n, seed=0)]
    else:
        sets = [molecules(args.n), crystals(args.n)]
    result = {"n": args.n, "datasets": {d.name: {"n": len(d), "atoms": int(sum(s.n_atoms for s in d))}
                                        for d in sets},
              "source": "bundled" if args.bundled else "ase (G2 molecules, bulk prototypes), rattled",
              "envs": {}, "models": {}, "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    for row in envs.list_envs():
        if row["exists"] and row["current"]:
            du = subprocess.run(["du", "-sh", row["path"]], capture_output=True, text=True).stdout.split()[0]
            result["envs"][row["family"]] = {"build_seconds": row["build_seconds"], "du_sh": du,
                                             "size_bytes": row["size_bytes"], "versions": row["versions"]}
    with tempfile.TemporaryDirectory(prefix="bench-envs-") as td:
        td = Path(td)
        for model in args.models.split(","):
            family = models.get_spec(model).env
            out = td / model
            proc = envs.run_in_env(family, [ROOT / "tests" / "envs" / "random_models.py", model, out, "--no-reference"])
            info = json.loads(proc.stdout.strip().splitlines()[-1])
            rows = {}
            load_before = [round(x, 2) for x in os.getloadavg()]
            for ds in sets:
                t0 = time.perf_counter()
                s = extract(td / f"store-sub-{model}", ds, model,
                                        options={"checkpoint": info["checkpoint"], "trust_checkpoint": True, "seed": 0})
                sub = time.perf_counter() - t0
                dfile = td / f"{ds.name}.npz"
                write_samples(ds, dfile)
                p = envs.run_in_env(family, ["-c", INPROC, dfile, model, info["checkpoint"], td / f"store-in-{model}"])
                inproc = json.loads(p.stdout.strip().splitlines()[-1])
                n_atoms = result["datasets"][ds.name]["atoms"]
                rows[ds.name] = {
                    "subprocess_s": round(sub, 2), "worker_extract_s": round(s["seconds"], 2),
                    "inproc_import_s": round(inproc["import_s"], 2), "inproc_load_s": round(inproc["load_s"], 2),
                    "inproc_extract_s": round(inproc["extract_s"], 2),
                    "overhead_s": round(sub - inproc["load_s"] - inproc["extract_s"], 2),
                    "samples_per_s": round(len(ds) / inproc["extract_s"], 1),
                    "atoms_per_s": round(n_atoms / inproc["extract_s"], 1), "n": s["n"], "dim": s["dim"],
                }
                print(model, ds.name, rows[ds.name], flush=True)
            result["models"][model] = {"family": family, "n_parameters": info.get("n_parameters"), "sets": rows,
                                       "loadavg_before": load_before,
                                       "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    result["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    path = ROOT / "bench" / "results" / "envs.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.merge and path.is_file():
        old = json.loads(path.read_text())
        if old.get("datasets") == result["datasets"] and old.get("source") == result["source"]:
            result["models"] = {**old.get("models", {}), **result["models"]}
            result["runs"] = [*old.get("runs", [{k: old.get(k) for k in ("created", "loadavg_start")}]),
                              {k: result[k] for k in ("created", "loadavg_start")}]
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["envs"], indent=1))


if __name__ == "__main__":
    main()
