"""A seeded random AuroraSmall on a small synthetic grid, for ``random_models.py aurora OUTDIR``.

Writes the grid samples (a (time, patch) each, in a shuffled order so that batches mix times) to
``OUTDIR/dataset.npz`` through the worker's own writer, the state dict to ``OUTDIR/checkpoint.pt``
(as ``load_checkpoint_local`` reads it), and the reference per-patch features computed independently:
one full forward per sample's time with hooks on ``model.decoder``'s input and ``model.encoder``'s
output, rearranged ``"B (C h w) D -> (h w) C D"`` here.
"""

from __future__ import annotations

import os

import numpy as np

SEED = 0
H, W, TIMES, LEVELS = 16, 32, 3, (1000, 850, 500, 250)

_STATS = {"2t": (280.0, 15.0), "10u": (0.0, 6.0), "10v": (0.0, 5.0), "msl": (101000.0, 1200.0),
          "z": (50000.0, 30000.0), "u": (5.0, 10.0), "v": (0.0, 8.0), "t": (250.0, 20.0), "q": (0.004, 0.003)}


def random_grid(name: str = "envgrid"):
    """A WeatherGrid of smooth-ish seeded random fields with plausible magnitudes."""
    from matteralign.datasets.weather import WeatherGrid

    rng = np.random.default_rng(SEED)
    lat = 90.0 - (np.arange(H) + 0.5) * 180.0 / H
    lon = np.arange(W) * 360.0 / W
    times = np.datetime64("2021-03-01T00") + np.arange(TIMES) * np.timedelta64(6, "h")

    def field(var, shape):
        m, s = _STATS[var]
        a = m + s * rng.standard_normal(shape)
        if var == "q":
            a = np.abs(a)
        return a.astype(np.float32)

    surf = {v: field(v, (TIMES, H, W)) for v in ("2t", "10u", "10v", "msl")}
    atmos = {v: field(v, (TIMES, len(LEVELS), H, W)) for v in ("z", "u", "v", "t", "q")}
    static = {"lsm": (rng.random((H, W)) > 0.6).astype(np.float32),
              "z": np.abs(rng.normal(0, 5000, (H, W))).astype(np.float32),
              "slt": rng.integers(0, 8, (H, W)).astype(np.float32)}
    return WeatherGrid(name=name, times=times.astype("datetime64[s]"), lat=lat, lon=lon, levels=LEVELS,
                       surf=surf, static=static, atmos=atmos, patch_size=4)


def _batch(grid, t):
    """Aurora's input for time ``t``: steps (t-1, t), the first time repeated (written here independently)."""
    from datetime import datetime

    import torch
    from aurora import Batch, Metadata

    steps = [max(t - 1, 0), t]
    when = datetime.fromisoformat(str(grid.times[t]))
    return Batch(surf_vars={k: torch.tensor(v[steps])[None] for k, v in grid.surf.items()},
                 static_vars={k: torch.tensor(v) for k, v in grid.static.items()},
                 atmos_vars={k: torch.tensor(v[steps])[None] for k, v in grid.atmos.items()},
                 metadata=Metadata(lat=torch.tensor(grid.lat, dtype=torch.float32),
                                   lon=torch.tensor(grid.lon, dtype=torch.float32),
                                   time=(when,), atmos_levels=LEVELS))


def aurora(model_name, outdir):
    """Build, save and run the random model; return (checkpoint path, reference dict, info)."""
    import torch
    from aurora import AuroraSmallPretrained
    from einops import rearrange

    from matteralign.datasets.weather import grid_dataset
    from matteralign.execute.wire import write_samples
    from matteralign.samples import Dataset

    grid = random_grid()
    full = grid_dataset(grid)
    order = np.random.default_rng(SEED).permutation(len(full))
    ds = Dataset("envgrid", [full[int(k)] for k in order], full.meta)
    write_samples(ds, os.path.join(outdir, "dataset.npz"))

    torch.manual_seed(SEED)
    model = AuroraSmallPretrained().eval()
    path = os.path.join(outdir, "checkpoint.pt")
    torch.save(model.state_dict(), path)

    grabbed = {}
    h1 = model.decoder.register_forward_pre_hook(lambda _m, inp: grabbed.__setitem__("dec", inp[0].detach()))
    h2 = model.encoder.register_forward_hook(lambda _m, _i, out: grabbed.__setitem__("enc", out.detach()))
    hp, wp = H // 4, W // 4
    per_time = {}
    with torch.no_grad():
        for t in range(TIMES):
            model(_batch(grid, t))
            dec = rearrange(grabbed["dec"], "B (C H W) D -> B (H W) C D", H=hp, W=wp)[0].numpy()
            enc = rearrange(grabbed["enc"], "B (C H W) D -> B (H W) C D", H=hp, W=wp)[0].numpy()
            per_time[t] = {"latent": dec.astype(np.float64).mean(axis=1), "latent_levels": dec.reshape(hp * wp, -1),
                           "encoder": enc.astype(np.float64).mean(axis=1)}
    h1.remove()
    h2.remove()
    ref = {k: np.stack([per_time[s.grid.t][k][s.grid.i * wp + s.grid.j] for s in ds]).astype(np.float32)
           for k in ("latent", "latent_levels", "encoder")}
    info = {"n_parameters": sum(p.numel() for p in model.parameters()), "grid": [H, W], "times": TIMES,
            "n_samples": len(ds)}
    return path, ref, info
