"""Benchmark: loading the bundled datasets.

Items (each in its own subprocess, so imports and peak RSS are per item):

* ``npz``: ``numpy.load`` of the bundle's arrays alone (the floor);
* ``molecules`` / ``crystals``: ``matteralign.datasets.load(name)`` (``ase.Atoms`` + text view per sample);
* ``molecules_notext``: the same without the text view.

Target: ``load("molecules")`` (~5,000 samples) in under 2 s on a quiet machine; the ratio to the ``npz`` floor
is reported because the 2-core machine is often loaded.

    python bench/datasets.py        # writes bench/results/datasets.json
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ITEMS = ("npz", "molecules", "molecules_notext", "crystals")


def run_item(item: str) -> dict:
    import numpy as np

    from matteralign import datasets
    from matteralign.datasets.builtin import data_path

    t0 = time.perf_counter()
    if item == "npz":
        with np.load(data_path("molecules.npz")) as z:
            n = len({k: z[k] for k in z.files}["ids"])
    elif item == "molecules_notext":
        n = len(datasets.load("molecules", text=False))
    else:
        n = len(datasets.load(item))
    seconds = time.perf_counter() - t0
    return {"item": item, "n": n, "seconds": round(seconds, 3),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}


def main() -> None:
    results = []
    for item in ITEMS:
        out = subprocess.run([sys.executable, __file__, "--item", item], capture_output=True, text=True,
                             check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    by = {r["item"]: r for r in results}
    summary = {
        "molecules_seconds": by["molecules"]["seconds"],
        "molecules_target_seconds": 2.0,
        "molecules_over_npz": round(by["molecules"]["seconds"] / max(by["npz"]["seconds"], 1e-9), 1),
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "datasets.json").write_text(json.dumps(
        {"items": results, "summary": summary, "machine": platform.platform(), "time": time.ctime()}, indent=2))
    print(summary)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--item":
        print(json.dumps(run_item(sys.argv[2])))
    else:
        main()
