"""Throughput of the ESM3, ESM-IF1 and PET-MAD adapters in their model environments, on random-weight instances.

Each item runs in its environment's Python (its own process, so the peak RSS is its own): a seeded random
instance of the real architecture is built with the package's own classes, saved as the adapter's checkpoint
format, loaded through the adapter (``load_s``) and timed on bundled samples (``samples_per_s``, after one
warm-up batch): the 27 chains of ``proteins`` cycled to ``n`` for ESM3 and ESM-IF1, the first ``n`` of
``molecules`` for PET. ``tiny`` = the tests' configuration; ``full`` = the published size (ESM3-open 1.4B:
d_model 1536, 48 blocks, saved in bfloat16 to halve the file; ESM-IF1: the 142M GVP-Transformer's arguments;
PET: metatrain's default PET hypers, the PET-MAD architecture family).

    nice python bench/env_families.py [--items a,b] [--threads 1]
Writes bench/results/env_families.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ITEMS = {  # item -> (model, family of samples, n samples)
    "esm3-tiny": ("esm3-sequence", "proteins", 200),
    "esm3-full": ("esm3-sequence", "proteins", 8),
    "esm-if1-tiny": ("esm-if1", "proteins", 200),
    "esm-if1-full": ("esm-if1", "proteins", 27),
    "pet-tiny": ("pet-mad", "molecules", 200),
    "pet-default": ("pet-mad", "molecules", 200),
}


# ---------------------------------------------------------------------- inside the environment
def _esm3(item, out):
    import torch
    from esm.models.esm3 import ESM3
    from esm.tokenization import EsmSequenceTokenizer, TokenizerCollection

    torch.manual_seed(0)
    tok = TokenizerCollection(sequence=EsmSequenceTokenizer(), structure=None, secondary_structure=None, sasa=None,
                              function=None, residue_annotations=None)
    shape = dict(d_model=128, n_heads=2, v_heads=4, n_layers=2) if item == "esm3-tiny" else \
        dict(d_model=1536, n_heads=24, v_heads=256, n_layers=48)
    model = ESM3(**shape, structure_encoder_fn=None, structure_decoder_fn=None, function_decoder_fn=None,
                 tokenizers=tok)
    sd = model.state_dict()
    if item == "esm3-full":
        sd = {k: v.to(torch.bfloat16) for k, v in sd.items()}
    path = os.path.join(out, "esm3.pth")
    torch.save(sd, path)
    del model, sd
    return path, {}


def _esm_if1(item, out):
    from argparse import Namespace

    import esm
    import esm.inverse_folding
    import torch

    torch.manual_seed(0)
    if item == "esm-if1-tiny":
        dims = dict(encoder_embed_dim=32, decoder_embed_dim=32, encoder_layers=2, decoder_layers=1,
                    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_embed_dim=64,
                    decoder_ffn_embed_dim=64, gvp_node_hidden_dim_scalar=16, gvp_node_hidden_dim_vector=4,
                    gvp_edge_hidden_dim_scalar=8, gvp_edge_hidden_dim_vector=2, gvp_num_encoder_layers=2,
                    gvp_top_k_neighbors=8)
    else:  # esm_if1_gvp4_t16_142M_UR50: 4 GVP layers, 8 + 8 transformer layers, 512-d
        dims = dict(encoder_embed_dim=512, decoder_embed_dim=512, encoder_layers=8, decoder_layers=8,
                    encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_embed_dim=2048,
                    decoder_ffn_embed_dim=2048, gvp_node_hidden_dim_scalar=1024, gvp_node_hidden_dim_vector=256,
                    gvp_edge_hidden_dim_scalar=32, gvp_edge_hidden_dim_vector=1, gvp_num_encoder_layers=4,
                    gvp_top_k_neighbors=30)
    args = Namespace(arch="vt_invariant_gvp", dropout=0.1, attention_dropout=0.1, gvp_dropout=0.1, **dims)
    model = esm.inverse_folding.gvp_transformer.GVPTransformerModel(args, esm.Alphabet.from_architecture(args.arch))
    path = os.path.join(out, "esm_if1.pt")
    torch.save({"args": args, "model": model.state_dict()}, path)
    return path, {}


def _pet(item, out):
    import copy

    import torch
    from metatrain.pet import PET
    from metatrain.pet.trainer import Trainer
    from metatrain.utils.architectures import get_default_hypers
    from metatrain.utils.data import DatasetInfo
    from metatrain.utils.data.target_info import get_energy_target_info

    hypers = get_default_hypers("pet")
    mh = dict(hypers["model"])
    if item == "pet-tiny":
        mh.update(d_pet=16, d_head=16, d_node=16, d_feedforward=32, num_heads=2, num_gnn_layers=2,
                  num_attention_layers=1)
    torch.manual_seed(0)
    info = DatasetInfo(length_unit="Angstrom", atomic_types=list(range(1, 87)),
                       targets={"energy": get_energy_target_info("energy", {"quantity": "energy", "unit": "eV"})})
    model = PET(mh, info).eval()
    trainer = Trainer(hypers["training"])
    trainer.epoch, trainer.best_epoch, trainer.best_metric = 0, 0, 0.0
    trainer.optimizer_state_dict = trainer.scheduler_state_dict = trainer.best_optimizer_state_dict = None
    trainer.best_model_state_dict = copy.deepcopy(model.state_dict())
    path = os.path.join(out, "pet.ckpt")
    trainer.save_checkpoint(model, path)
    return path, {"trust_checkpoint": True}


def worker(item, samples_path, threads):
    import torch

    from matteralign import models
    from matteralign.execute.wire import read_samples

    torch.set_num_threads(threads)
    model_name = ITEMS[item][0]
    ds = read_samples(samples_path)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        path, extra = {"esm3-sequence": _esm3, "esm-if1": _esm_if1, "pet-mad": _pet}[model_name](item, out)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ext = models.load(model_name, checkpoint=path, seed=0, **extra)
        load_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in ext.model.parameters())
    samples = list(ds)
    ext.embed_samples(samples[:1])  # warm-up
    t0 = time.perf_counter()
    res = ext.embed_samples(samples)
    dt = time.perf_counter() - t0
    n = len(res[0]) if isinstance(res, tuple) else len(samples)
    return {"item": item, "model": model_name, "n": len(samples), "n_embedded": n, "n_parameters": int(n_params),
            "build_s": round(build_s, 2), "load_s": round(load_s, 2), "embed_s": round(dt, 2),
            "samples_per_s": round(len(samples) / dt, 3), "threads": threads,
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


# ---------------------------------------------------------------------- driver
def _samples(kind, n, path):
    from matteralign import datasets
    from matteralign.execute.wire import write_samples
    from matteralign.samples import Dataset, Sample

    ds = datasets.load(kind)
    base = list(ds)[:n] if kind == "molecules" else list(ds)
    samples = [Sample(id=f"{s.id}#{i // len(base)}" if i >= len(base) else s.id, atoms=s.atoms, sequence=s.sequence)
               for i, s in ((i, base[i % len(base)]) for i in range(n))]
    write_samples(Dataset(kind, samples), path)


def main():
    from matteralign import envs, models

    ap = argparse.ArgumentParser()
    ap.add_argument("--items", default=",".join(ITEMS))
    ap.add_argument("--threads", type=int, default=1)
    args, _ = ap.parse_known_args()  # run_all.py passes its own arguments
    rows = []
    out_path = HERE / "results" / "env_families.json"
    with tempfile.TemporaryDirectory() as tmp:
        for item in args.items.split(","):
            model_name, kind, n = ITEMS[item]
            family = models.get_spec(model_name).env
            envs.create(family)
            samples = os.path.join(tmp, f"{item}.npz")
            _samples(kind, n, samples)
            proc = envs.run_in_env(family, [__file__, "--worker", item, samples, str(args.threads)])
            row = {**json.loads(proc.stdout.strip().splitlines()[-1]), "env": family}
            print(json.dumps(row), flush=True)
            rows.append(row)
    old = json.loads(out_path.read_text()) if out_path.exists() else {"items": []}
    keep = [r for r in old.get("items", []) if r["item"] not in {r2["item"] for r2 in rows}]
    out_path.write_text(json.dumps({"items": keep + rows}, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    else:
        main()
