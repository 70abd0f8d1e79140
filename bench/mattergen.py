"""MatterGen environment: install time and size, embedding throughput on the bundled crystals.

Run from the main environment after ``matteralign env create mattergen``::

    nice .venv/bin/python bench/mattergen.py [--n 500] [--threads 2]

A seeded random MatterGen model is written as a checkpoint folder by ``tests/envs/random_models.py
mattergen`` inside the environment: the small test shape (hidden size 64, 2 blocks, 5 Å cutoff)
and, unless ``--small-only``, the released shape (hidden size 512, 4 blocks, 7 Å cutoff, at most 50
neighbours; 44.6 M parameters), since speed depends on the shape, not on the weights. ``n`` crystals of
``matteralign.datasets.load("crystals", n=n, seed=0)`` are embedded at the default layer
(``node_embedding_t0.01``):

* **subprocess**: :func:`matteralign.execute.extract` from the main environment (the whole call);
* **in-process**: a Python in the environment loads the checkpoint folder (timed: ``load_s``) and
  calls ``Store.extract`` (``extract_s``; structures/s and atoms/s from it).

The machine load (``uptime``) before and after is recorded with the figures. Writes
``bench/results/mattergen.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from matteralign import envs  # noqa: E402
from matteralign.execute import extract  # noqa: E402
from matteralign.execute.wire import write_samples  # noqa: E402

INPROC = r"""
import json, sys, time
t0 = time.perf_counter()
from matteralign import models
from matteralign.execute import extract
from matteralign.execute.wire import read_samples
from matteralign.store import Store
ds = read_samples(sys.argv[1])
t1 = time.perf_counter()
ex = models.load("mattergen", checkpoint=sys.argv[2], trust_checkpoint=True, seed=0, num_threads=int(sys.argv[4]))
t2 = time.perf_counter()
s = extract(Store(sys.argv[3]), ds, ex, progress=False, batch_size=16)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "extract_s": t3 - t2, "n": s["n"],
                  "n_skipped": s["n_skipped"], "dim": s["dim"], "n_parameters": ex.provenance()["n_parameters"]}))
"""

#: Overrides of the test config giving the released model's shape (mattergen_base).
FULL = r"""
import sys
sys.path.insert(0, sys.argv[2])
import mattergen_random as mr
H = 512
def config():
    cfg = mr._small_config()
    g = cfg["lightning_module"]["diffusion_module"]["model"]["gemnet"]
    g.update(latent_dim=H, emb_size_atom=H, emb_size_edge=H, emb_size_trip=64, emb_size_rbf=16, emb_size_cbf=16,
             emb_size_bil_trip=64, num_radial=128, num_blocks=4, max_neighbors=50, cutoff=7.0)
    g["atom_embedding"]["emb_size"] = H
    cfg["lightning_module"]["diffusion_module"]["model"]["hidden_dim"] = H
    return cfg
mr._small_config, mr.config = mr.config, config
folder, model = mr.save(sys.argv[1])
print(folder)
"""


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--small-only", action="store_true")
    args = ap.parse_args()
    from matteralign import datasets

    ds = datasets.load("crystals", n=args.n, seed=0)
    n_atoms = int(sum(s.n_atoms for s in ds))
    result = {"n": len(ds), "atoms": n_atoms, "dataset": "bundled crystals (matteralign.datasets.load)",
              "threads": args.threads, "uptime_before": _uptime(), "env": None, "shapes": {}}
    for row in envs.list_envs():
        if row["family"] == "mattergen" and row["exists"] and row["current"]:
            du = subprocess.run(["du", "-sh", row["path"]], capture_output=True, text=True).stdout.split()[0]
            result["env"] = {"build_seconds": row["build_seconds"], "du_sh": du, "size_bytes": row["size_bytes"],
                             "versions": row["versions"]}
    with tempfile.TemporaryDirectory(prefix="bench-mattergen-") as td:
        td = Path(td)
        proc = envs.run_in_env("mattergen", [ROOT / "tests" / "envs" / "random_models.py", "mattergen", td / "small",
                                             "--no-reference"])
        folders = {"test shape (hidden 64, 2 blocks)": json.loads(proc.stdout.strip().splitlines()[-1])["checkpoint"]}
        if not args.small_only:
            p = envs.run_in_env("mattergen", ["-c", FULL, td / "full", ROOT / "tests" / "envs"])
            folders["released shape (hidden 512, 4 blocks)"] = p.stdout.strip().splitlines()[-1]
        dfile = td / "crystals.npz"
        write_samples(ds, dfile)
        for label, folder in folders.items():
            t0 = time.perf_counter()
            s = extract(td / f"store-sub-{len(label)}", ds, "mattergen", threads=args.threads,
                                    options={"checkpoint": folder, "trust_checkpoint": True, "seed": 0})
            sub = time.perf_counter() - t0
            p = envs.run_in_env("mattergen", ["-c", INPROC, dfile, folder, td / f"store-in-{len(label)}",
                                              str(args.threads)])
            r = json.loads(p.stdout.strip().splitlines()[-1])
            row = {"n_parameters": r["n_parameters"], "dim": r["dim"], "n": r["n"], "n_skipped": r["n_skipped"],
                   "subprocess_s": round(sub, 2), "worker_extract_s": round(s["seconds"], 2),
                   "inproc_import_s": round(r["import_s"], 2), "load_s": round(r["load_s"], 2),
                   "extract_s": round(r["extract_s"], 2), "structures_per_s": round(r["n"] / r["extract_s"], 1),
                   "atoms_per_s": round(n_atoms / r["extract_s"], 1)}
            result["shapes"][label] = row
            print(label, row, flush=True)
    result["uptime_after"] = _uptime()
    result["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "mattergen.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "shapes"}, indent=1))


if __name__ == "__main__":
    main()
