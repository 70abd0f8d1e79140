"""A seeded random MatterGen denoiser saved as a MatterGen checkpoint folder (run in the ``mattergen`` env).

The folder is what ``MatterGenCheckpointInfo(model_path=DIR, load_epoch="last")`` reads: ``config.yaml``
(a resolved config whose ``lightning_module`` builds a ``DiffusionLightningModule``) and
``checkpoints/last.ckpt`` (written by a Lightning ``Trainer``, with the config as an OmegaConf object in it,
so that, like a released checkpoint, it loads only with ``weights_only=False``). The model is small (hidden size 64,
two interaction blocks) and keeps every neighbour within its 5 Å cutoff (``max_neighbors`` = 500), so
its features are exactly invariant to translations (no neighbour-count cut on tied distances).
The reference features are the input of ``fc_atom`` (a forward pre-hook) on the in-memory model,
one structure at a time, at each layer's diffusion time.
"""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

SEED = 0
HIDDEN = 64


def config() -> dict:
    """The resolved config of a small MatterGen model: lattice/positions SDEs, masked atom-type diffusion."""
    gemnet = {"_target_": "mattergen.common.gemnet.gemnet.GemNetT", "num_targets": 1, "latent_dim": HIDDEN,
              "atom_embedding": {"_target_": "mattergen.common.gemnet.layers.embedding_block.AtomEmbedding",
                                 "emb_size": HIDDEN, "with_mask_type": True},
              "emb_size_atom": HIDDEN, "emb_size_edge": HIDDEN, "emb_size_trip": 16, "emb_size_rbf": 8,
              "emb_size_cbf": 8, "emb_size_bil_trip": 16, "num_radial": 16, "num_blocks": 2,
              "max_neighbors": 500, "max_cell_images_per_dim": 5, "cutoff": 5.0, "regress_stress": True,
              "otf_graph": True, "scale_file": None}
    denoiser = {"_target_": "mattergen.denoiser.GemNetTDenoiser", "gemnet": gemnet, "hidden_dim": HIDDEN,
                "denoise_atom_types": True, "atom_type_diffusion": "mask",
                "property_embeddings": {}, "property_embeddings_adapt": {}}
    schedule = {"_target_": "mattergen.diffusion.d3pm.d3pm.create_discrete_diffusion_schedule",
                "kind": "standard", "num_steps": 1000}
    corruption = {
        "_target_": "mattergen.diffusion.corruption.multi_corruption.MultiCorruption",
        "sdes": {"pos": {"_target_": "mattergen.common.diffusion.corruption.NumAtomsVarianceAdjustedWrappedVESDE",
                         "wrapping_boundary": 1.0, "sigma_max": 5.0, "limit_info_key": "num_atoms"},
                 "cell": {"_target_": "mattergen.common.diffusion.corruption.LatticeVPSDE.from_vpsde_config",
                          "vpsde_config": {"beta_min": 0.1, "beta_max": 20, "limit_density": 0.05,
                                           "limit_var_scaling_constant": 0.25}}},
        "discrete_corruptions": {"atomic_numbers": {
            "_target_": "mattergen.diffusion.corruption.d3pm_corruption.D3PMCorruption", "offset": 1,
            "d3pm": {"_target_": "mattergen.diffusion.d3pm.d3pm.MaskDiffusion", "dim": 101, "schedule": schedule}}},
    }
    loss = {"_target_": "mattergen.common.loss.MaterialsLoss", "reduce": "sum", "d3pm_hybrid_lambda": 0.01,
            "include_pos": True, "include_cell": True, "include_atomic_numbers": True,
            "weights": {"pos": 0.1, "cell": 1.0, "atomic_numbers": 1.0}}
    module = {"_target_": "mattergen.diffusion.diffusion_module.DiffusionModule", "model": denoiser,
              "corruption": corruption, "loss_fn": loss}
    return {"lightning_module": {"_target_": "mattergen.diffusion.lightning_module.DiffusionLightningModule",
                                 "diffusion_module": module}}


def _prepare():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src"))
    from matteralign.models import _torch_sparse_shim
    from matteralign.models.hub_mattergen import scale_root

    _torch_sparse_shim.install()
    with contextlib.redirect_stdout(sys.stderr):
        import mattergen.common.gemnet.gemnet as gemnet_module
    gemnet_module.MODELS_PROJECT_ROOT = str(scale_root())


def save(outdir: str):
    """Build the seeded random lightning module, save it as a checkpoint folder; returns (folder, denoiser)."""
    import pytorch_lightning as pl
    import torch
    import yaml
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    _prepare()
    cfg = OmegaConf.create(config())
    torch.manual_seed(SEED)
    module = instantiate(cfg.lightning_module)
    folder = os.path.join(outdir, "mattergen")
    os.makedirs(os.path.join(folder, "checkpoints"), exist_ok=True)
    with open(os.path.join(folder, "config.yaml"), "w") as fh:
        yaml.safe_dump(config(), fh, sort_keys=False)
    class AddConfig(pl.Callback):  # as MatterGen's training does: the run's config rides in the checkpoint
        def on_save_checkpoint(self, trainer, pl_module, checkpoint):
            checkpoint["config"] = OmegaConf.create(config())  # an OmegaConf object: needs weights_only=False

    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, max_epochs=0,
                         callbacks=[AddConfig()])
    trainer.strategy.connect(module)
    trainer.save_checkpoint(os.path.join(folder, "checkpoints", "last.ckpt"))
    return folder, module.diffusion_module.model.eval()


def reference(denoiser, atoms_list, times) -> dict:
    """Per layer: the input of ``fc_atom`` for each structure, one structure per forward, concatenated."""
    import torch
    from mattergen.common.data.chemgraph import ChemGraph
    from mattergen.common.data.collate import collate

    grabbed = []
    hook = denoiser.fc_atom.register_forward_pre_hook(lambda _m, inp: grabbed.append(inp[0].detach()) and None)
    out = {}
    try:
        for layer, t in times.items():
            rows = []
            for a in atoms_list:
                g = ChemGraph(pos=torch.tensor(a.get_scaled_positions(wrap=True), dtype=torch.float32),
                              cell=torch.tensor(a.cell.array[None], dtype=torch.float32),
                              atomic_numbers=torch.tensor(a.numbers, dtype=torch.long),
                              num_atoms=torch.tensor([len(a)]))
                grabbed.clear()
                with torch.no_grad():
                    denoiser(collate([g]), torch.tensor([t], dtype=torch.float32))
                rows.append(grabbed[-1].numpy())
            out[layer] = np.concatenate(rows)
    finally:
        hook.remove()
    return out


def mattergen(model_name, outdir, ids, atoms_list):
    from matteralign.models.hub_mattergen import TIMES

    folder, denoiser = save(outdir)
    ref = reference(denoiser, atoms_list, TIMES)
    return folder, ref, {"n_parameters": sum(p.numel() for p in denoiser.parameters())}
