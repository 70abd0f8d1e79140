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
    if model.startswith(("uma", "esen")):
        from fairchem.core.calculate.ase_calculator import FAIRChemCalculator

        from matteralign.models.hub_fairchem import _get_predict_unit

        unit = _get_predict_unit()(ckpt, inference_settings="batch", device="cpu")
        return {task: FAIRChemCalculator(unit, task_name=task) for task in ("omat", "omol")}
    if model.startswith("equiformer"):
        import os

        from fairchem.core.common.relaxation.ase_utils import OCPCalculator

        from matteralign.models.hub_eqv2 import register_fairchem_modules

        os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
        register_fairchem_modules()
        return OCPCalculator(checkpoint_path=ckpt, cpu=True, seed=0)
    raise SystemExit(f"no reference calculator for {model!r}")


def main():
    model, ckpt, path = sys.argv[1:4]
    from matteralign.execute.wire import read_samples

    calc = calculator(model, ckpt)
    ids, energy = [], []
    for s in read_samples(path):
        a = s.atoms.copy()
        if isinstance(calc, dict):  # fairchem 2.x: the task head its adapter picks (omat for crystals)
            if not a.pbc.all():
                a.info.setdefault("charge", 0)
                a.info.setdefault("spin", 1)
            a.calc = calc["omat" if a.pbc.all() else "omol"]
        else:
            a.calc = calc
        ids.append(s.id)
        energy.append(float(a.get_potential_energy()))
    print(json.dumps({"ids": ids, "energy": energy}))


if __name__ == "__main__":
    main()
