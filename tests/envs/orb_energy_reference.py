"""Energies of a local Orb checkpoint by the package's own ASE calculator (an independent route).

Run as ``<orb env>/bin/python tests/envs/orb_energy_reference.py MODEL CHECKPOINT DATASET.npz``; prints
``{"ids": [...], "energy": [...]}`` (eV) for every structure of the dataset file.
"""

from __future__ import annotations

import json
import sys


def main():
    model, ckpt, path = sys.argv[1:4]
    from orb_models.forcefield import pretrained
    from orb_models.forcefield.calculator import ORBCalculator

    from matteralign.execute.wire import read_samples
    from matteralign.models.hub_orb import LOADERS

    orb = getattr(pretrained, LOADERS[model])(weights_path=ckpt, device="cpu", compile=False).eval()
    calc = ORBCalculator(orb, device="cpu")
    ds = read_samples(path)
    ids, energy = [], []
    for s in ds:
        a = s.atoms.copy()
        a.calc = calc
        ids.append(s.id)
        energy.append(float(a.get_potential_energy()))
    print(json.dumps({"ids": ids, "energy": energy}))


if __name__ == "__main__":
    main()
