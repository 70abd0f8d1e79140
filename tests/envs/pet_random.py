"""A seeded random PET (the PET-MAD architecture, tiny widths) built with metatrain's own classes in the ``pet``
environment and saved by metatrain's own trainer as the ``.ckpt`` its loader reads.

Run as ``<env>/bin/python tests/envs/pet_random.py OUTDIR``. Writes ``OUTDIR/pet-tiny.ckpt``,
``OUTDIR/dataset.npz`` (the structures of ``random_models.structures``) and ``OUTDIR/reference.npz``, computed
one structure at a time and independently of the adapter:

* ``last_layer_features``: forward hooks on every readout layer's node and edge heads of the energy target,
  the edge part summed over neighbours with the cutoff factors the model computed (read where its backend
  receives them);
* ``features``: the model's own ``feature`` output;
* ``energy``: the model's own ``energy`` output per structure.
"""

from __future__ import annotations

import copy
import json
import os
import sys

import numpy as np

SEED = 0


def main(outdir):
    import torch
    from metatomic.torch import ModelOutput, System
    from metatrain.pet import PET
    from metatrain.pet.trainer import Trainer
    from metatrain.utils.architectures import get_default_hypers
    from metatrain.utils.data import DatasetInfo
    from metatrain.utils.data.target_info import get_energy_target_info
    from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists
    from random_models import structures

    from matteralign.execute.wire import write_samples
    from matteralign.samples import Dataset, Sample

    hypers = get_default_hypers("pet")
    model_hypers = {**hypers["model"], "d_pet": 16, "d_head": 16, "d_node": 16, "d_feedforward": 32,
                    "num_heads": 2, "num_gnn_layers": 2, "num_attention_layers": 1}
    torch.manual_seed(SEED)
    info = DatasetInfo(length_unit="Angstrom", atomic_types=list(range(1, 87)),
                       targets={"energy": get_energy_target_info("energy", {"quantity": "energy", "unit": "eV"})})
    model = PET(model_hypers, info).eval()
    trainer = Trainer(hypers["training"])  # saved as the trainer saves it at the end of training
    trainer.epoch, trainer.best_epoch, trainer.best_metric = 0, 0, 0.0
    trainer.optimizer_state_dict = trainer.scheduler_state_dict = trainer.best_optimizer_state_dict = None
    trainer.best_model_state_dict = copy.deepcopy(model.state_dict())
    path = os.path.join(outdir, "pet-tiny.ckpt")
    trainer.save_checkpoint(model, path)

    ids, atoms_list = structures()
    write_samples(Dataset("envtest", [Sample(id=i, atoms=a) for i, a in zip(ids, atoms_list, strict=True)]),
                  os.path.join(outdir, "dataset.npz"))
    backend = model.backend
    got: dict = {}
    hooks = []
    for i, head in enumerate(backend.node_heads["energy"]):
        hooks.append(head.register_forward_hook(lambda m, inp, out, i=i: got.__setitem__(("node", i), out)))
    for i, head in enumerate(backend.edge_heads["energy"]):
        hooks.append(head.register_forward_hook(lambda m, inp, out, i=i: got.__setitem__(("edge", i), out)))
    predict = backend.predict

    def spy(node_features_list, edge_features_list, batch_data, *args, **kwargs):
        got["cutoff_factors"] = batch_data["cutoff_factors"]
        return predict(node_features_list, edge_features_list, batch_data, *args, **kwargs)

    backend.predict = spy
    ref = {"last_layer_features": [], "features": [], "energy": []}
    for a in atoms_list:
        dtype = torch.float32
        s = System(types=torch.tensor(a.numbers, dtype=torch.int32), positions=torch.tensor(a.positions, dtype=dtype),
                   cell=torch.tensor(np.asarray(a.cell[:]) * a.pbc[:, None], dtype=dtype), pbc=torch.tensor(a.pbc))
        s = get_system_with_neighbor_lists(s, model.requested_neighbor_lists())
        got.clear()
        with torch.no_grad():
            out = model([s], {"feature": ModelOutput(per_atom=True), "energy": ModelOutput(per_atom=False)})
        cf = got["cutoff_factors"]
        parts = []
        for i in range(len(backend.node_heads["energy"])):
            parts += [got[("node", i)], (got[("edge", i)] * cf[:, :, None]).sum(dim=1)]
        ref["last_layer_features"].append(torch.cat(parts, dim=1).numpy())
        ref["features"].append(out["feature"].block().values.numpy())
        ref["energy"].append(float(out["energy"].block().values.reshape(-1)[0]))
    for h in hooks:
        h.remove()
    np.savez(os.path.join(outdir, "reference.npz"), last_layer_features=np.concatenate(ref["last_layer_features"]),
             features=np.concatenate(ref["features"]), energy=np.array(ref["energy"]))
    return {"checkpoint": path, "n_parameters": sum(p.numel() for p in model.parameters())}


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    print(json.dumps(main(sys.argv[1])))
