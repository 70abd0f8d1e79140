"""Build the bundled ``crystals`` dataset: src/matteralign/data/crystals.npz.

pymatgen's 288 AFLOW prototypes (≤ 64 atoms) × 11 seeded variants (prototype, element substitution within a
group, strain, rattle) → density, volume per atom, mean Z, number of elements, and a GFN1-xTB Γ-point energy
per atom for cells of ≤ 12 atoms within a CPU budget.

    nice python scripts/build_crystals.py [--seed 0] [--xtb-budget 1200] [--limit N] [--out PATH]
"""

from __future__ import annotations

import os

# one thread per process: OpenMP workers spinning on a shared CPU slow xTB down by 10x or more
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from matteralign.datasets.build import aflow_prototypes, build_crystals  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "matteralign" / "data" / "crystals.npz"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", type=int, default=11)
    parser.add_argument("--max-atoms", type=int, default=64)
    parser.add_argument("--xtb-max-atoms", type=int, default=12)
    parser.add_argument("--xtb-timeout", type=float, default=30.0)
    parser.add_argument("--xtb-budget", type=float, default=1200.0, help="seconds of periodic xTB in all")
    parser.add_argument("--no-xtb", action="store_true")
    parser.add_argument("--limit", type=int, default=None, help="only the first N prototypes (for testing)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    prototypes = aflow_prototypes()[: args.limit]

    def progress(stage: str, i: int, n: int, seconds: float) -> None:
        if i % 100 == 0:
            print(f"{stage}: {i}/{n}, {seconds:.0f} s", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    result = build_crystals(
        prototypes, seed=args.seed, n_variants=args.variants, max_atoms=args.max_atoms, xtb=not args.no_xtb,
        xtb_max_atoms=args.xtb_max_atoms, xtb_timeout_s=args.xtb_timeout, xtb_budget_s=args.xtb_budget,
        progress=progress,
    )
    result.save(args.out)
    meta = result.metadata
    print(f"wrote {args.out}: {meta['n_built']} structures from {meta['n_prototypes']} prototypes, "
          f"dropped prototypes {meta['dropped_prototypes']}, xTB {meta['xtb']['status']}, "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
