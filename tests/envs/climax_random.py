"""A seeded random ClimaX at the 5.625° geometry on the bundled synthetic grid, for ``climax_random.py OUTDIR``.

Writes the bundled ``weather`` samples (each a (time, patch), shuffled so that batches mix times) to
``OUTDIR/dataset.npz``, the network's state dict in the released Lightning layout (``{"state_dict":
{"net.<key>": tensor}}``) to ``OUTDIR/checkpoint.ckpt``, and the reference per-sample features computed
independently of the adapter: the model input is assembled here from the grid (the 48-variable vocabulary
∩ the grid's fields, standardised over the grid, rows flipped south→north), one *full* forward (encoder and
head) per time runs with a forward hook on the final norm, and each patch's vector is the mean of its
2 × 2 token block. ``--released`` builds the released width (embed_dim 1024, depth 8, 16 heads); the
default is a narrow instance (128, 2, 16) of the same geometry, heads and vocabulary (the number of heads
is not in the tensors: the loader takes the released 16).
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

SEED = 0
G = 9.80665


def build(outdir: str, released: bool = False, lead_hours: float = 6.0):
    import torch

    from matteralign.datasets.weather import load_weather
    from matteralign.execute.wire import write_samples
    from matteralign.models._climax import ClimaXNet
    from matteralign.models.hub_climax import DEFAULT_VARS
    from matteralign.samples import Dataset

    full = load_weather()
    order = np.random.default_rng(SEED).permutation(len(full))
    ds = Dataset("weather", [full[int(k)] for k in order], full.meta)
    write_samples(ds, os.path.join(outdir, "dataset.npz"))
    grid = full[0].grid.grid

    dims = dict(embed_dim=1024, depth=8, num_heads=16) if released else dict(embed_dim=128, depth=2, num_heads=16)
    torch.manual_seed(SEED)
    net = ClimaXNet(DEFAULT_VARS, img_size=(32, 64), patch_size=2, mlp_ratio=4.0, decoder_depth=2, **dims).eval()
    path = os.path.join(outdir, "checkpoint.ckpt")
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "epoch": 0,
                "hyper_parameters": {"lr": 5e-4}}, path)

    # the input, written independently of the adapter
    fields = {"land_sea_mask": grid.static["lsm"], "orography": grid.static["z"] / G,
              "lattitude": np.repeat(grid.lat[:, None], grid.lon.size, axis=1),
              "2m_temperature": grid.surf["2t"], "10m_u_component_of_wind": grid.surf["10u"],
              "10m_v_component_of_wind": grid.surf["10v"]}
    names = {"z": "geopotential", "u": "u_component_of_wind", "v": "v_component_of_wind", "t": "temperature",
             "q": "specific_humidity"}
    for k, name in names.items():
        for li, lev in enumerate(grid.levels):
            fields[f"{name}_{lev}"] = grid.atmos[k][:, li]
    used = [v for v in DEFAULT_VARS if v in fields]
    n_t = grid.times.size
    x = np.stack([np.broadcast_to(np.asarray(fields[v], np.float64), (n_t, 32, 64)) for v in used], axis=1)
    mu = x.mean(axis=(0, 2, 3), keepdims=True)
    sd = x.std(axis=(0, 2, 3), keepdims=True)
    x = ((x - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)[:, :, ::-1].copy()

    grabbed = {}
    hook = net.norm.register_forward_hook(lambda _m, _i, out: grabbed.__setitem__("tok", out.detach()))
    per_time = []
    with torch.no_grad():
        for t in range(n_t):
            net(torch.from_numpy(x[t:t + 1]), torch.tensor([lead_hours / 100.0]), used)
            tok = grabbed["tok"][0].numpy().reshape(16, 32, -1)[::-1]  # token rows back to north→south
            per_time.append(tok)
    hook.remove()
    ref = np.stack([per_time[s.grid.t][2 * s.grid.i:2 * s.grid.i + 2, 2 * s.grid.j:2 * s.grid.j + 2]
                    .astype(np.float64).mean(axis=(0, 1)) for s in ds]).astype(np.float32)
    info = {"checkpoint": path, "n_parameters": sum(p.numel() for p in net.parameters()), "grid": [32, 64],
            "times": int(n_t), "n_samples": len(ds), "input_variables": used, **dims}
    return path, {"encoder": ref}, info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--released", action="store_true")
    ap.add_argument("--lead-hours", type=float, default=6.0)
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    _, ref, info = build(args.outdir, args.released, args.lead_hours)
    np.savez(os.path.join(args.outdir, "reference.npz"), **ref)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
