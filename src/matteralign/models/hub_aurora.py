"""Aurora, a weather foundation model, from a local checkpoint (``microsoft-aurora==2.0.1``, ``aurora`` environment).

Aurora (Bodnar et al., Nature 2025, doi:10.1038/s41586-025-09005-y; arXiv:2405.13063) encodes
surface, static and pressure-level fields into ``C`` latent levels of patch tokens (a Perceiver
aggregates the pressure levels; ``C`` = 4 for AuroraSmall: the surface and 3 atmospheric levels),
runs a 3D Swin U-Net backbone over them and decodes the backbone output back to fields. The
representation here is the backbone output, captured as the input of ``model.decoder`` with a forward
pre-hook: shape ``(B, C·h·w, D)`` with layout ``"B (C h w) D"``, h and w the grid divided by the patch
size 4, D = 512 for AuroraSmall (2 × embed_dim). Layers:

* ``latent`` (default): the decoder input of the sample's patch, averaged over the C latent levels (D);
* ``latent_levels``: the same, the C levels concatenated, surface level first (C·D);
* ``encoder``: the encoder output of the patch (input of the backbone), averaged over the levels (embed_dim).

A sample is one (time, patch) (:mod:`matteralign.datasets.weather`): the model runs **once per time**
on the whole grid (two input steps, the previous time and this one; the first time of a file is
repeated) and each sample takes its patch's row. The forward pass stops once the wanted tensor is
captured (the decoder is not run). Checkpoints are state dicts loaded with Aurora's own
``load_checkpoint_local(path, strict=True)`` (``torch.load(weights_only=True)``: no trust needed).

ClimaX and GraphCast, the article's other weather models, are in :mod:`~matteralign.models.hub_climax` and
:mod:`~matteralign.models.hub_graphcast`.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..errors import ModelError
from ._hub import CheckpointExtractor
from ._registry import ModelSpec, register

__all__ = ["AuroraExtractor", "CONFIGS", "LAYERS"]

#: Registry config → the aurora class that builds the architecture.
CONFIGS = {"small": "AuroraSmallPretrained", "full": "AuroraPretrained"}
#: Layers in forward order: the encoder's output, then two views of the decoder's input (one depth).
LAYERS = ("encoder", "latent_levels", "latent")
_DEPTHS = (0, 1, 1)


class _Captured(Exception):
    """Raised by the capture hook to stop the forward pass once the wanted tensor is held."""


class AuroraExtractor(CheckpointExtractor):
    """Per-patch Aurora latents from a local state-dict checkpoint.

    Parameters
    ----------
    checkpoint : path
        A state dict of the architecture named by ``config`` (``torch.save(model.state_dict())``, or a
        released ``.ckpt``).
    config : {"small", "full"}
        ``AuroraSmallPretrained`` (embed_dim 256) or ``AuroraPretrained`` (embed_dim 512).
    lead_time_hours : float
        Must be 6: the forward feeds Aurora's fixed 6 h step (accepted so that a study's lead time applies
        to every weather model; recorded in the provenance).
    name : str, optional
    **options
        ``device``, ``seed``, ``num_threads``, ``batch_size`` (samples per call; the model itself runs
        once per time whatever the batch).

    Notes
    -----
    The grid must be at least 3 patches high after Swin downsampling (12 cells with patch size 4;
    smaller grids fail inside Aurora). Latents of the last few (grid, time) pairs are cached, so a
    batch that splits one time's patches does not run the model twice.
    """

    family = "aurora"
    modality = "grid"
    default_layer = "latent"
    package = "microsoft-aurora"

    def __init__(self, *, config: str = "small", lead_time_hours: float = 6.0, **options: Any):
        if config not in CONFIGS:
            raise ModelError(f"aurora config must be one of {sorted(CONFIGS)}; got {config!r}")
        try:
            lead = float(lead_time_hours)
        except (TypeError, ValueError):
            raise ModelError(f"lead_time_hours must be a number of hours; got {lead_time_hours!r}") from None
        if lead != 6.0:
            raise ModelError(f"aurora runs its fixed 6 h step (the model's timestep); got lead_time_hours="
                             f"{lead_time_hours!r}")
        self.lead_time_hours = lead
        self.config = config
        options.setdefault("batch_size", 256)
        self._cache: OrderedDict = OrderedDict()
        self.n_forward = 0
        super().__init__(**options)

    def _load(self) -> None:
        import aurora
        import torch

        torch.manual_seed(self.seed)
        model = getattr(aurora, CONFIGS[self.config])()
        model.load_checkpoint_local(self.checkpoint, strict=True)
        self.model = model.to(self.device).eval()

    def layers(self) -> list[str]:
        return list(LAYERS)

    def input_reason(self, obj: Any) -> str | None:
        from ..datasets.weather import GridPatch

        if not isinstance(obj, GridPatch):
            return f"expected a weather grid patch (matteralign.datasets.weather.GridPatch); got {type(obj).__name__}"
        g = obj.grid
        if g.patch_size != self.model.patch_size:
            return f"the dataset's patch size is {g.patch_size}; Aurora's is {self.model.patch_size}"
        if g.patch_shape[0] < 3:
            return f"grid {g.shape[0]}×{g.shape[1]} is too small for Aurora (at least 3 patches high: 12 cells)"
        return None

    # ------------------------------------------------------------------ the forward pass
    def _batch(self, grid, t: int):
        import torch
        from aurora import Batch, Metadata

        steps = grid.history(t, self.model.max_history_size)
        tt = torch.from_numpy
        when = grid.times[t].astype("datetime64[s]").astype(np.int64).item()
        return Batch(
            surf_vars={v: tt(np.ascontiguousarray(a[steps]))[None] for v, a in grid.surf.items()},
            static_vars={v: tt(np.ascontiguousarray(a)) for v, a in grid.static.items()},
            atmos_vars={v: tt(np.ascontiguousarray(a[steps]))[None] for v, a in grid.atmos.items()},
            metadata=Metadata(lat=tt(grid.lat.astype(np.float32)), lon=tt(grid.lon.astype(np.float32)),
                              time=(datetime.fromtimestamp(when, tz=UTC).replace(tzinfo=None),),
                              atmos_levels=tuple(int(x) for x in grid.levels)),
        )

    def grid_latents(self, grid, t: int, layer: str = "latent") -> np.ndarray:
        """Per-patch features of the whole grid at time index ``t``.

        Returns
        -------
        ndarray, shape (h·w, d), float32
            Row ``i·w + j`` is patch (i, j); d is D (``latent``), C·D (``latent_levels``) or embed_dim
            (``encoder``).
        """
        key = (id(grid), int(t), layer)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key][1]
        module = self.model.encoder if layer == "encoder" else self.model.decoder
        got: dict[str, Any] = {}

        def pre_hook(_mod, args):
            got["x"] = args[0].detach()
            raise _Captured

        def post_hook(_mod, _args, out):
            got["x"] = out.detach()
            raise _Captured

        handle = (module.register_forward_hook(post_hook) if layer == "encoder"
                  else module.register_forward_pre_hook(pre_hook))
        try:
            self.model(self._batch(grid, t))
        except _Captured:
            pass
        finally:
            handle.remove()
        self.n_forward += 1
        if "x" not in got:  # pragma: no cover - the hook always fires
            raise ModelError(f"{self.name}: the {layer!r} tensor was not captured")
        x = got["x"].float().cpu().numpy()[0]  # (C·h·w, D)
        h, w = grid.patch_shape
        c = x.shape[0] // (h * w)
        if c * h * w != x.shape[0]:
            raise ModelError(f"{self.name}: latent of {x.shape[0]} tokens does not split into {h}×{w} patches")
        x = x.reshape(c, h * w, x.shape[1])  # "(C h w) D -> C (h w) D"
        feats = (x.transpose(1, 0, 2).reshape(h * w, c * x.shape[2]) if layer == "latent_levels"
                 else x.astype(np.float64).mean(axis=0).astype(np.float32))
        self._cache[key] = (grid, feats)  # the grid is held so that its id is not reused while cached
        while len(self._cache) > 4:
            self._cache.popitem(last=False)
        return feats

    def _embed(self, inputs, layer):
        out = []
        for patch in inputs:
            feats = self.grid_latents(patch.grid, patch.t, layer)
            out.append(feats[patch.i * patch.grid.patch_shape[1] + patch.j][None, :])
        return out

    def _hub_provenance(self) -> dict[str, Any]:
        m = self.model
        return {"config": self.config, "model_class": type(m).__name__, "patch_size": int(m.patch_size),
                "latent_levels": int(m.encoder.latent_levels), "embed_dim": int(m.encoder.embed_dim),
                "history": int(m.max_history_size), "layout": "B (C h w) D (decoder input)",
                "lead_time_hours": self.lead_time_hours,
                "per_sample": "one (time, patch): the model runs once per time on the whole grid"}


register(ModelSpec(
    name="aurora", factory=f"{__name__}:AuroraExtractor", family="aurora", modality="grid", layers=LAYERS, depths=_DEPTHS, kind="weather",
    embedding_type="grid", gpu=True,
    default_layer="latent", kwargs={"name": "aurora", "config": "small"}, requires=("aurora", "torch"),
    requires_checkpoint=True, env="aurora",
    description="Aurora (AuroraSmall config) state dict; decoder input per (time, patch), mean over 4 latent levels, 512-d"))
register(ModelSpec(
    name="aurora-full", factory=f"{__name__}:AuroraExtractor", family="aurora", modality="grid", layers=LAYERS, depths=_DEPTHS, kind="weather",
    embedding_type="grid", gpu=True,
    default_layer="latent", kwargs={"name": "aurora-full", "config": "full"}, requires=("aurora", "torch"),
    requires_checkpoint=True, env="aurora",
    description="Aurora (full 1.3B config) state dict; decoder input per (time, patch), mean over latent levels, 1024-d"))
