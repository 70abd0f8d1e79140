"""Seeded random protein models of the real architectures, built inside their model environments.

Run as ``<env>/bin/python tests/envs/protein_random.py MODEL OUTDIR INPUT.json``; ``INPUT.json`` holds the
inputs (``sequences`` for ESM3, ``backbones``, lists of ``[N, CA, C]`` coordinates per residue, for ESM-IF1).
Writes

* the checkpoint, saved exactly as the package's own local loader reads it;
* ``OUTDIR/reference.npz``: per layer, one row per input, computed independently of matteralign's adapter
  (a forward hook on the package's module, or the package's own embedding function), one input at a time;
* a last stdout line of JSON: ``{"checkpoint": PATH, ...}``.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

SEED = 0


def esm3(outdir, inputs):
    """A tiny ESM3 (2 blocks, d_model 128, 2 heads, 4 geometric heads) from the package's own classes, saved
    as the esm3-sm-open-v1 snapshot lays out its weights."""
    import torch
    from esm.models.esm3 import ESM3
    from esm.tokenization import EsmSequenceTokenizer, TokenizerCollection

    torch.manual_seed(SEED)
    tok = EsmSequenceTokenizer()
    tokenizers = TokenizerCollection(sequence=tok, structure=None, secondary_structure=None, sasa=None,
                                     function=None, residue_annotations=None)
    model = ESM3(d_model=128, n_heads=2, v_heads=4, n_layers=2, structure_encoder_fn=None,
                 structure_decoder_fn=None, function_decoder_fn=None, tokenizers=tokenizers).eval()
    with torch.no_grad():  # random LayerNorm gains, so that a wrong norm would show
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.3 * torch.randn_like(p))
    snap = os.path.join(outdir, "esm3-sm-open-v1")
    os.makedirs(os.path.join(snap, "data", "weights"))
    torch.save(model.state_dict(), os.path.join(snap, "data", "weights", "esm3_sm_open_v1.pth"))
    ref = {"last": [], "hidden_0": [], "hidden_1": [], "hidden_2": []}
    got = {}
    hooks = [model.transformer.norm.register_forward_hook(lambda m, i, o: got.__setitem__("last", o)),
             model.encoder.register_forward_hook(lambda m, i, o: got.__setitem__("hidden_0", o))]
    for k, blk in enumerate(model.transformer.blocks):
        hooks.append(blk.register_forward_hook(lambda m, i, o, k=k: got.__setitem__(f"hidden_{k + 1}", o)))
    for seq in inputs["sequences"]:
        got.clear()
        with torch.no_grad():
            out = model(sequence_tokens=torch.tensor([tok.encode(seq)]))
        assert torch.equal(got["hidden_2"], out.embeddings)  # the package's own pre-norm embedding
        for lay in ref:
            ref[lay].append(got[lay][0, 1:-1].mean(0).numpy())
    for h in hooks:
        h.remove()
    np.savez(os.path.join(outdir, "reference.npz"), **{k: np.stack(v) for k, v in ref.items()})
    return {"checkpoint": snap, "n_parameters": sum(p.numel() for p in model.parameters())}


def esmc_native(outdir, inputs):
    """A tiny ESM C (2 blocks, d_model 128, 2 heads) from the package's own ``ESMC``, saved as its snapshot lays out
    ``esmc_300m_2024_12_v0.pth``; reference from the package's own ``hidden_states`` and ``embeddings``."""
    import torch
    from esm.models.esmc import ESMC
    from esm.tokenization import EsmSequenceTokenizer

    torch.manual_seed(SEED)
    tok = EsmSequenceTokenizer()
    model = ESMC(d_model=128, n_heads=2, n_layers=2, tokenizer=tok, use_flash_attn=False).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.3 * torch.randn_like(p))
    snap = os.path.join(outdir, "esmc-300m-2024-12")
    os.makedirs(os.path.join(snap, "data", "weights"))
    torch.save(model.state_dict(), os.path.join(snap, "data", "weights", "esmc_300m_2024_12_v0.pth"))
    ref = {"last": [], "hidden_1": [], "hidden_2": []}
    for seq in inputs["sequences"]:
        with torch.no_grad():
            out = model(sequence_tokens=torch.tensor([tok.encode(seq)]))
        ref["last"].append(out.embeddings[0, 1:-1].mean(0).numpy())
        for k in (1, 2):  # hidden_states: the output of each block
            ref[f"hidden_{k}"].append(out.hidden_states[k - 1][0, 1:-1].mean(0).numpy())
    np.savez(os.path.join(outdir, "reference.npz"), **{k: np.stack(v) for k, v in ref.items()})
    return {"checkpoint": snap}


def esm_if1(outdir, inputs):
    """A tiny ESM-IF1 (GVP-Transformer) from fair-esm's own classes, saved as ``{"args", "model"}`` (the layout
    ``esm.pretrained.load_model_and_alphabet_local`` reads); reference from ``util.get_encoder_output``."""
    from argparse import Namespace

    import esm
    import esm.inverse_folding
    import torch

    torch.manual_seed(SEED)
    args = Namespace(
        arch="vt_invariant_gvp_tiny", encoder_embed_dim=32, decoder_embed_dim=32, encoder_layers=2,
        decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_embed_dim=64,
        decoder_ffn_embed_dim=64, dropout=0.1, attention_dropout=0.1, gvp_node_hidden_dim_scalar=16,
        gvp_node_hidden_dim_vector=4, gvp_edge_hidden_dim_scalar=8, gvp_edge_hidden_dim_vector=2,
        gvp_num_encoder_layers=2, gvp_dropout=0.1, gvp_top_k_neighbors=8, top_k_neighbors=8,
        node_hidden_dim_scalar=16, node_hidden_dim_vector=4, edge_hidden_dim_scalar=8, edge_hidden_dim_vector=2,
        num_encoder_layers=2)
    alphabet = esm.Alphabet.from_architecture(args.arch)
    model = esm.inverse_folding.gvp_transformer.GVPTransformerModel(args, alphabet).eval()
    path = os.path.join(outdir, "esm_if1_tiny.pt")
    torch.save({"args": args, "model": model.state_dict()}, path)
    ref = []
    for bb in inputs["backbones"]:
        coords = np.asarray(bb, dtype=np.float32)
        with torch.no_grad():
            h = esm.inverse_folding.util.get_encoder_output(model, alphabet, coords)
        ref.append(h.mean(0).numpy())
    np.savez(os.path.join(outdir, "reference.npz"), encoder=np.stack(ref))
    return {"checkpoint": path, "n_parameters": sum(p.numel() for p in model.parameters())}


if __name__ == "__main__":
    model_name, out, inp = sys.argv[1:4]
    with open(inp) as f:
        data = json.load(f)
    info = {"esm3-sequence": esm3, "esmc-300m-native": esmc_native, "esm-if1": esm_if1}[model_name](out, data)
    print(json.dumps(info))
