"""Seeded random eSEN / UMA instances saved as fairchem 2.x ``MLIPInferenceCheckpoint`` files (run in the env)."""

from __future__ import annotations

import os

import numpy as np

DATASETS = ["oc20", "omat", "omol", "odac", "omc"]


def _config(model_name: str) -> dict:
    backbone = {
        "max_num_elements": 100, "sphere_channels": 16, "lmax": 2, "mmax": 2, "otf_graph": True,
        "max_neighbors": 30, "cutoff": 6.0, "edge_channels": 16, "distance_function": "gaussian",
        "num_distance_basis": 16, "regress_forces": True, "regress_stress": True, "direct_forces": False,
        "num_layers": 2, "hidden_channels": 16, "norm_type": "rms_norm_sh", "act_type": "gate",
        "ff_type": "spectral", "chg_spin_emb_type": "rand_emb", "cs_emb_grad": True, "dataset_list": DATASETS,
    }
    if model_name.startswith("uma"):
        backbone |= {"model": "fairchem.core.models.uma.escn_moe.eSCNMDMoeBackbone", "num_experts": 4,
                     "moe_dropout": 0.0, "use_composition_embedding": True, "moe_layer_type": "pytorch"}
        head = {"module": "fairchem.core.models.uma.escn_moe.DatasetSpecificSingleHeadWrapper",
                "head_cls": "fairchem.core.models.uma.escn_md.MLP_EFS_Head",
                "head_kwargs": {"wrap_property": False}, "dataset_names": DATASETS}
    else:
        backbone |= {"model": "fairchem.core.models.uma.escn_md.eSCNMDBackbone"}
        head = {"module": "fairchem.core.models.uma.escn_md.MLP_EFS_Head"}
    return {"_target_": "fairchem.core.models.base.HydraModel", "model_id": "matteralign-test-random",
            "backbone": backbone, "heads": {"energyandforcehead": head}, "pass_through_head_outputs": True}


def _tasks(model_name: str) -> list[dict]:
    """UMA: one task per dataset and property (the wrapper prefixes outputs); eSEN: shared tasks."""
    tasks = []
    groups = [[ds] for ds in DATASETS] if model_name.startswith("uma") else [DATASETS]
    for dss in groups:
        for prop, level, dim in (("energy", "system", [1]), ("forces", "atom", [3]), ("stress", "system", [1, 9])):
            tasks.append({
                "_target_": "fairchem.core.units.mlip_unit.mlip_unit.Task",
                "name": f"{dss[0]}_{prop}" if len(dss) == 1 else prop, "level": level, "property": prop,
                "datasets": list(dss),
                "out_spec": {"_target_": "fairchem.core.units.mlip_unit.mlip_unit.OutputSpec",
                             "dim": dim, "dtype": "float32"},
                "normalizer": {"_target_": "fairchem.core.modules.normalization.normalizer.Normalizer",
                               "mean": 0.0, "rmsd": 1.0},
            })
    return tasks


def fairchem(model_name, outdir, ids, atoms_list):
    import torch
    from fairchem.core.calculate.pretrained_mlip import get_predict_unit
    from fairchem.core.datasets.atomic_data import AtomicData
    from fairchem.core.units.mlip_unit.api.inference import MLIPInferenceCheckpoint
    from hydra.utils import instantiate

    torch.manual_seed(0)
    cfg = _config(model_name)
    model = instantiate(cfg).eval()
    ema = torch.optim.swa_utils.AveragedModel(model)
    ckpt = MLIPInferenceCheckpoint(model_config=cfg, model_state_dict=model.state_dict(),
                                   ema_state_dict=ema.state_dict(), tasks_config=_tasks(model_name))
    path = os.path.join(outdir, "checkpoint.pt")
    torch.save(ckpt, path)
    # independent path: the package's own predict unit, a hook on the energy readout's input
    pu = get_predict_unit(path, inference_settings="batch", device="cpu")
    full, l0 = [], []
    for a in atoms_list:
        task = "omat" if a.get_pbc().all() else "omol"
        a = a.copy()
        a.info.update({"charge": 0, "spin": 1 if task == "omol" else 0})
        data = AtomicData.from_ase(a, task_name=task, r_data_keys=["spin", "charge"],
                                   max_neigh=cfg["backbone"]["max_neighbors"], radius=cfg["backbone"]["cutoff"])
        got = {}
        blocks = [m for n, m in pu.model.named_modules() if n.endswith("energy_block")]

        def pre(_m, inp, got=got):
            got.setdefault("l0", inp[0].detach())  # returns None: the input is left as it is

        def post(_m, _i, out, got=got):
            got.setdefault("full", out["node_embedding"].detach())

        hooks = [b.register_forward_pre_hook(pre) for b in blocks]
        hooks.append(pu.model.module.backbone.register_forward_hook(post))
        pu.predict(data)
        for h in hooks:
            h.remove()
        l0.append(got["l0"].numpy())
        full.append(got["full"].reshape(len(a), -1).numpy())
    n_par = sum(p.numel() for p in model.parameters())
    return path, {"node_embedding_l0": np.concatenate(l0), "node_embedding": np.concatenate(full)}, \
        {"n_parameters": n_par}
