"""Build a seeded random instance of a real architecture inside its model environment.

Run as ``<env>/bin/python tests/envs/random_models.py MODEL OUTDIR [--n-mol N --n-cryst N]``. Writes

* ``OUTDIR/checkpoint.<ext>``: the model saved exactly as the family's own local loader reads it;
* ``OUTDIR/dataset.npz``: test structures (molecules and crystals, each with a rotated and
  translated copy ``<id>-rot`` and a translated copy ``<id>-shift``), in the worker's dataset format;
* ``OUTDIR/reference.npz``: per layer, the per-atom features of every structure computed by an
  *independent* path (the family's own API or a hook on the readout's input), concatenated.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

SEED = 0


def structures(n_mol: int = 0, n_cryst: int = 0):
    """(ids, atoms) of small molecules and crystals plus rotated/translated copies."""
    from ase.build import bulk, molecule
    from scipy.spatial.transform import Rotation

    base = [("ethanol", molecule("CH3CH2OH")), ("water", molecule("H2O")), ("benzene", molecule("C6H6")),
            ("nacl", bulk("NaCl", "rocksalt", a=5.64)), ("si", bulk("Si", "diamond", a=5.43)),
            ("cu", bulk("Cu", "fcc", a=3.6, cubic=True))]
    rng = np.random.default_rng(SEED)
    out = []
    for name, a in base:
        out.append((name, a))
        r = a.copy()
        rot = Rotation.random(random_state=SEED + len(out)).as_matrix()
        r.set_positions(a.get_positions() @ rot.T + rng.normal(size=3))
        if a.get_pbc().all():
            r.set_cell(a.cell[:] @ rot.T, scale_atoms=False)
        out.append((name + "-rot", r))
        t = a.copy()
        t.translate(rng.normal(size=3) * 3.0)
        out.append((name + "-shift", t))
    for i in range(n_mol):  # throughput sets: perturbed copies
        a = base[i % 3][1].copy()
        a.rattle(0.05, seed=i)
        out.append((f"mol{i:05d}", a))
    for i in range(n_cryst):
        a = base[3 + i % 3][1].repeat((1 + i % 2, 1, 1))
        a.rattle(0.05, seed=i)
        out.append((f"cryst{i:05d}", a))
    return [i for i, _ in out], [a for _, a in out]


# ---------------------------------------------------------------------- MACE
def mace(model_name, outdir, ids, atoms_list):
    import mace as _mace  # noqa: F401  - before e3nn
    import torch
    from e3nn import o3
    from mace import modules
    from mace.calculators import MACECalculator

    torch.set_default_dtype(torch.float64)
    torch.manual_seed(SEED)
    zs = list(range(1, 90))
    model = modules.ScaleShiftMACE(
        r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=2,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=2, num_elements=len(zs), hidden_irreps=o3.Irreps("16x0e + 16x1o"),
        MLP_irreps=o3.Irreps("16x0e"), gate=torch.nn.functional.silu, atomic_energies=np.zeros(len(zs)),
        avg_num_neighbors=8.0, atomic_numbers=zs, correlation=3, atomic_inter_scale=1.0,
        atomic_inter_shift=0.0).eval()
    path = os.path.join(outdir, "checkpoint.model")
    torch.save(model, path)
    calc = MACECalculator(models=model, device="cpu", default_dtype="float64")
    ref = {"invariants": [], "equivariant": [], "readout_input": []}
    grabbed = []
    h = model.readouts[-1].register_forward_pre_hook(lambda _m, inp: grabbed.append(inp[0].detach()) and None)
    for a in atoms_list:
        ref["invariants"].append(calc.get_descriptors(a, invariants_only=True))
        ref["equivariant"].append(calc.get_descriptors(a, invariants_only=False))
        grabbed.clear()
        a = a.copy()
        a.calc = calc
        a.get_potential_energy()
        ref["readout_input"].append(grabbed[-1].numpy())
    h.remove()
    return path, {k: np.concatenate(v) for k, v in ref.items()}, {"n_parameters": sum(p.numel() for p in model.parameters())}


# ---------------------------------------------------------------------- Orb
def orb(model_name, outdir, ids, atoms_list):
    import torch
    from orb_models.forcefield import pretrained
    from orb_models.forcefield.atomic_system import ase_atoms_to_atom_graphs

    build = {"orb-v2": "orb_v2_architecture", "orb-v3-direct": "orb_v3_direct_architecture",
             "orb-v3-conservative": "orb_v3_conservative_architecture"}[model_name]
    from orb_models.forcefield.atomic_system import SystemConfig

    sc = SystemConfig(radius=6.0, max_num_neighbors=20 if model_name == "orb-v2" else 120)  # as the loaders
    torch.manual_seed(SEED)
    model = getattr(pretrained, build)(system_config=sc).eval()
    path = os.path.join(outdir, "checkpoint.ckpt")
    torch.save(model.state_dict(), path)
    grabbed = []
    energy = getattr(model, "energy_name", "energy")
    h = model.heads[energy].register_forward_pre_hook(lambda _m, inp: grabbed.append(inp[0].detach()) and None)
    ref = []
    for a in atoms_list:
        grabbed.clear()
        g = ase_atoms_to_atom_graphs(a, system_config=sc, device=torch.device("cpu"))
        with torch.enable_grad():
            model.predict(g)
        x = grabbed[0]
        ref.append((x.node_features if hasattr(x, "node_features") else x).numpy())
    h.remove()
    return path, {"node_features": np.concatenate(ref)}, {"n_parameters": sum(p.numel() for p in model.parameters())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("outdir")
    ap.add_argument("--n-mol", type=int, default=0)
    ap.add_argument("--n-cryst", type=int, default=0)
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    from matteralign.execute.wire import write_samples
    from matteralign.samples import Dataset, Sample

    if args.model.startswith("aurora"):  # a grid model: its own grid samples (aurora_random.py)
        from aurora_random import aurora

        path, ref, info = aurora(args.model, args.outdir)
        np.savez(os.path.join(args.outdir, "reference.npz"), **ref)
        print(json.dumps({"checkpoint": path, **info}))
        return
    ids, atoms_list = structures(args.n_mol, args.n_cryst)
    if args.model == "mattergen":  # crystals only (molecules are skipped, tested apart)
        ids, atoms_list = map(list, zip(*[(i, a) for i, a in zip(ids, atoms_list, strict=True) if a.pbc.all()],
                                        strict=True))
    write_samples(Dataset("envtest", [Sample(id=i, atoms=a) for i, a in zip(ids, atoms_list, strict=True)]),
                   os.path.join(args.outdir, "dataset.npz"))
    family = {"mace": mace, "orb": orb}
    try:
        from fairchem_random import fairchem
        family["fairchem"] = fairchem
    except ImportError:
        pass
    if args.model == "mattergen":
        from mattergen_random import mattergen
        family["mattergen"] = mattergen
    if args.model.startswith("equiformer"):  # equiformer-v2 (hydra layout) or equiformer-v2-oc20
        from eqv2_random import eqv2
        family["equiformer"] = eqv2
    fam = args.model.split("-")[0] if not args.model.startswith(("uma", "esen")) else "fairchem"
    ref_atoms = atoms_list if not args.no_reference else atoms_list[:2]
    path, ref, info = family[fam](args.model, args.outdir, ids, ref_atoms)
    np.savez(os.path.join(args.outdir, "reference.npz"), **ref)
    print(json.dumps({"checkpoint": path, **info}))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
