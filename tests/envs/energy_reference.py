"""Energies of a local checkpoint by the model package's own ASE calculator (an independent route).

Run as ``<env>/bin/python tests/envs/energy_reference.py MODEL CHECKPOINT DATASET.npz`` in the model's
environment; prints ``{"ids": [...], "energy": [...]}`` (eV) for every structure of the dataset file, computed
one structure at a time.
"""

from __future__ import annotations

import json
import sys


def calculator(model: str, ckpt: str):
    if model.startswith("orb"):
        from orb_models.forcefield import pretrained
        from orb_models.forcefield.calculator import ORBCalculator

        from matteralign.models.hub_orb import LOADERS

        orb = getattr(pretrained, LOADERS[model])(weights_path=ckpt, device="cpu", compile=False).eval()
        return ORBCalculator(orb, device="cpu")
    if model.startswith("mace"):
        import mace  # noqa: F401  - before e3nn
        import torch
        from mace.calculators import MACECalculator

        module = torch.load(ckpt, map_location="cpu", weights_only=False)
        dtype = str(next(module.parameters()).dtype).replace("torch.", "")
        return MACECalculator(models=module, device="cpu", default_dtype=dtype)
    raise SystemExit(f"no reference calculator for {model!r}")


def main():
    model, ckpt, path = sys.argv[1:4]
    from matteralign.execute.wire import read_samples

    calc = calculator(model, ckpt)
    ids, energy = [], []
    for s in read_samples(path):
        a = s.atoms.copy()
        a.calc = calc
        ids.append(s.id)
        energy.append(float(a.get_potential_energy()))
    print(json.dumps({"ids": ids, "energy": energy}))


if __name__ == "__main__":
    main()
