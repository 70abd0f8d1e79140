"""Build the bundled ``molecules`` dataset: src/matteralign/data/molecules.npz.

The 4,999 NCI SMILES that RDKit ships → largest fragment → ETKDGv3 + MMFF94 → GFN2-xTB (tblite) labels and
RDKit descriptors. Deterministic for a given seed (single process). Takes ~10 min on one core.

    nice python scripts/build_molecules.py [--seed 0] [--processes 1] [--limit N] [--out PATH]
"""

from __future__ import annotations

import os

# one thread per process: OpenMP workers spinning on a shared CPU slow xTB down by 10x or more
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from matteralign.datasets.build import build_molecules, nci_smiles  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "matteralign" / "data" / "molecules.npz"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-atoms", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=None, help="resumable build: keep finished chunks here")
    parser.add_argument("--processes", type=int, default=1, help="parallel chunks (same result)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N SMILES (for testing)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    pairs = nci_smiles()[: args.limit]

    def progress(i: int, n: int, seconds: float) -> None:
        print(f"{i}/{n} molecules, {seconds:.0f} s", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    result = build_molecules(pairs, seed=args.seed, max_atoms=args.max_atoms,
                             processes=args.processes, cache_dir=args.cache, progress=progress)
    result.save(args.out)
    meta = result.metadata
    print(f"wrote {args.out}: {meta['n_built']} of {meta['n_input']} molecules, dropped {meta['dropped']}, "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
