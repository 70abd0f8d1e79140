"""GraphCast (Lam et al., Science 2023, doi:10.1126/science.adi2336) from DeepMind's released parameters.

**Route.** DeepMind's released parameter files (``params/GraphCast*.npz``: haiku names, ``model_config`` and
``task_config``) run in our own PyTorch implementation of the encoder–processor–decoder on the icosahedral
multimesh (:mod:`matteralign.models._graphcast`). It equals DeepMind's JAX/haiku reference to float32
rounding on a seeded random instance (encoder, processor and decoder latents and the outputs; the
fixture is made by ``scripts/build_graphcast_reference.py`` from the reference package and committed),
and builds the same meshes, graphs and structural features. It needs torch, scipy, trimesh and rtree
(trimesh's nearest-face query, the reference's own), so it runs in the main environment. NVIDIA's
physicsnemo ``GraphCastNet`` (its own ``.mdlus`` weights, compiled torch_scatter/torch_sparse) is not used.

**Checkpoint.** The ``.npz`` is read with ``allow_pickle=False``; sizes come from the tensors (latent size,
hidden layers, processor steps, input channels, outputs) and must agree with its ``model_config``; the
parameters load strictly (a missing, extra or mis-shaped haiku name is an error naming it).

**Inputs.** A sample is one (time, patch) of a :mod:`matteralign.datasets.weather` grid; the network runs
once per time on the whole grid, building GraphCast's graphs for the grid's own latitudes and longitudes
(the architecture is resolution-free; the checkpoint's training resolution is recorded beside the grid's).
Channels are stacked exactly as the reference does (sorted variable names; time-major, then level), for the
checkpoint's ``task_config``: its input variables at two times (t − 6 h and t; at the first time of a grid,
or when the previous time is not 6 h earlier, t is used twice, recorded) and its forcings at t + 6 h. The
grid's fields map to GraphCast names (``2t`` → ``2m_temperature``, ``msl`` → ``mean_sea_level_pressure``,
``10u``/``10v``, atmospheric ``z``, ``t``, ``u``, ``v``, ``q``, ``w`` at each of the checkpoint's pressure
levels, static ``z`` → ``geopotential_at_surface``, ``lsm`` → ``land_sea_mask``); ``year_progress`` and
``day_progress`` sin/cos are computed from the times and longitudes as the reference data pipeline does.
**Rule for what the grid lacks** (a level outside the grid, ``vertical_velocity``, precipitation, top-of-
atmosphere solar radiation): the channel is 0, i.e. its mean after standardisation, and every such
channel is listed in the provenance; a grid that provides none of the checkpoint's inputs is an error.
Each variable is standardised per level by the reference's ``mean_by_level`` / ``stddev_by_level``
statistics (NetCDF files of the released ``stats/``) when given, else over the grid (every time and cell;
recorded); without statistics files the progress features are fed as computed. The run is float32 (the
released pipeline casts to bfloat16).

**Layers.** ``processor`` (default): the mesh-node latents after the processor's message-passing steps,
mapped back to the grid through the decoder's own connectivity (each grid node takes the mean of the 3
vertices of its mesh2grid triangle); ``decoder``: the grid-node latents entering the output MLP (after the
mesh2grid step). A sample's vector is the mean over the grid nodes of its patch.

**Lead time.** GraphCast has no lead-time input: one forward is one fixed 6 h step; ``lead_time_hours``
other than 6 is an error.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import numpy as np

from ..errors import ModelError
from ._hub import CheckpointExtractor
from ._registry import ModelSpec, register

__all__ = ["GraphCastExtractor", "graphcast_inputs", "input_channels"]

STEP_HOURS = 6
_STATIC = ("geopotential_at_surface", "land_sea_mask")
_ATMOS = {"temperature": "t", "geopotential": "z", "u_component_of_wind": "u", "v_component_of_wind": "v",
          "specific_humidity": "q", "vertical_velocity": "w", "relative_humidity": "r"}
_SURF = {"2m_temperature": "2t", "mean_sea_level_pressure": "msl", "10m_u_component_of_wind": "10u",
         "10m_v_component_of_wind": "10v", "total_precipitation_6hr": "tp6h",
         "toa_incident_solar_radiation": "tisr"}
_PROGRESS = ("year_progress_sin", "year_progress_cos", "day_progress_sin", "day_progress_cos")
_SEC_PER_DAY = 86400
_DAYS_PER_YEAR = 365.24219


def _kind(name: str) -> str:
    if name in _STATIC:
        return "static"
    if name.startswith("year_progress"):
        return "year"
    if name.startswith("day_progress"):
        return "day"
    if name in _ATMOS or name in ("potential_vorticity", "vorticity", "divergence", "ozone_mass_mixing_ratio"):
        return "atmos"
    return "surface"


def _n_input_times(task: dict) -> int:
    dur = str(task.get("input_duration", "12h"))
    if not dur.endswith("h"):
        raise ModelError(f"GraphCast task_config input_duration {dur!r}: expected hours such as '12h'")
    return int(dur[:-1]) // STEP_HOURS


def input_channels(task: dict) -> list[tuple[str, str, int | None, int]]:
    """The grid-node channels a GraphCast task feeds, in the reference's stacking order.

    Returns
    -------
    list of (part, variable, level or None, time index)
        ``part`` is ``inputs`` (time index 0 = t − 6 h, 1 = t) or ``forcings`` (t + 6 h).
    """
    levels = tuple(int(v) for v in task["pressure_levels"])
    out = []
    for part, names, n_t in (("inputs", task["input_variables"], _n_input_times(task)),
                             ("forcings", task["forcing_variables"], 1)):
        for name in sorted(names):
            kind = _kind(name)
            if kind == "static":
                out.append((part, name, None, -1))
                continue
            for ti in range(n_t):
                if kind == "atmos":
                    out += [(part, name, lev, ti) for lev in levels]
                else:
                    out.append((part, name, None, ti))
    return out


def _progress(name: str, seconds: int, lon: np.ndarray) -> np.ndarray:
    """year/day progress sin/cos as the reference data pipeline computes them (float32)."""
    if name.startswith("year"):
        p = np.mod(np.asarray(seconds, dtype=np.int64) / _SEC_PER_DAY / np.float64(_DAYS_PER_YEAR), 1.0)
        p = np.asarray(p, dtype=np.float32)
    else:
        g = np.mod(np.asarray(seconds, dtype=np.int64), _SEC_PER_DAY) / _SEC_PER_DAY
        p = np.mod(g + np.deg2rad(lon) / (2 * np.pi), 1.0).astype(np.float32)
    phase = p * (2 * np.pi)
    return (np.sin(phase) if name.endswith("sin") else np.cos(phase)).astype(np.float32)


def _grid_field(grid, name: str, level: int | None):
    """The grid's (T, H, W) or (H, W) field for a GraphCast variable, or None."""
    if name == "geopotential_at_surface":
        return grid.static.get("z")
    if name == "land_sea_mask":
        return grid.static.get("lsm")
    if name in _SURF:
        return grid.surf.get(_SURF[name])
    if name in _ATMOS and _ATMOS[name] in grid.atmos and level in tuple(int(v) for v in grid.levels):
        return grid.atmos[_ATMOS[name]][:, tuple(int(v) for v in grid.levels).index(level)]
    return None


def graphcast_inputs(grid, task: dict, stats: tuple[dict, dict] | None = None) -> dict[str, Any]:
    """Every time's grid-node input of a :class:`~matteralign.datasets.weather.WeatherGrid` for a GraphCast task.

    Parameters
    ----------
    grid : WeatherGrid
    task : dict
        The checkpoint's ``task_config`` (see :func:`~matteralign.models._graphcast.read_graphcast_params`).
    stats : (mean, std), optional
        Per-variable statistics: dicts of variable name to a scalar or a {level: value} dict.

    Returns
    -------
    dict
        ``x`` (T, H·W, channels) float32 (rows as the grid: lat-major); ``channels`` (the list of
        :func:`input_channels`); ``missing`` (channel labels set to 0); ``repeated_first_time`` (time indices
        whose t − 6 h frame is time t itself).
    """
    chans = input_channels(task)
    times = np.asarray(grid.times).astype("datetime64[s]")
    secs = times.astype(np.int64)
    n_t, (h, w) = len(times), grid.shape
    step = np.timedelta64(STEP_HOURS, "h")
    prev = np.arange(n_t) - 1
    ok_prev = (prev >= 0) & (times[np.maximum(prev, 0)] == times - step)
    prev = np.where(ok_prev, prev, np.arange(n_t))
    x = np.zeros((n_t, h, w, len(chans)), dtype=np.float32)
    missing, norm_cache = [], {}
    lon = np.asarray(grid.lon, dtype=np.float64)
    n_in = _n_input_times(task)
    for c, (part, name, lev, ti) in enumerate(chans):
        label = f"{part}:{name}" + (f"@{lev}" if lev is not None else "") + (f"[t{ti}]" if ti >= 0 else "")
        if name in _PROGRESS:
            if part == "forcings":
                s = secs + STEP_HOURS * 3600
            else:  # input frame ti of n_in: t - (n_in - 1 - ti) steps (first frame repeated like the fields)
                s = np.where(ok_prev | (ti == n_in - 1), secs - (n_in - 1 - ti) * STEP_HOURS * 3600, secs)
            vals = np.stack([_progress(name, int(si), lon) for si in s])  # (T, W) or (T, 1)
            x[..., c] = vals.reshape(n_t, 1, -1) if vals.ndim == 2 and vals.shape[1] == w else vals.reshape(n_t, 1, 1)
            if stats is not None:
                x[..., c] = (x[..., c] - _stat(stats[0], name, lev)) / _stat(stats[1], name, lev)
            continue
        field = _grid_field(grid, name, lev)
        if field is None or (part == "forcings" and field.ndim == 3):
            # a forcing at t + 6 h is a future field: not read from the grid (the grid's t + 6 h is a target)
            missing.append(label)
            continue
        a = np.asarray(field, dtype=np.float64)
        key = (name, lev)
        if key not in norm_cache:
            if stats is not None:
                norm_cache[key] = (_stat(stats[0], name, lev), _stat(stats[1], name, lev))
            else:
                sd = float(a.std())
                norm_cache[key] = (float(a.mean()), sd if sd > 0 else 1.0)
        mean, sd = norm_cache[key]
        if a.ndim == 2:
            x[..., c] = ((a - mean) / sd)[None]
        else:
            src = prev if (part == "inputs" and ti < n_in - 1) else np.arange(n_t)
            x[..., c] = ((a[src] - mean) / sd)
    if len(missing) == len(chans) - sum(1 for ch in chans if ch[1] in _PROGRESS):
        raise ModelError(f"grid {grid.name!r} provides none of this GraphCast checkpoint's input variables "
                         f"(grid: surf {sorted(grid.surf)}, atmos {sorted(grid.atmos)} at {list(grid.levels)} hPa, "
                         f"static {sorted(grid.static)}; checkpoint: {sorted(set(task['input_variables']))})")
    return {"x": x.reshape(n_t, h * w, len(chans)), "channels": chans, "missing": missing,
            "repeated_first_time": [int(t) for t in np.flatnonzero(~ok_prev)]}


def _stat(table: dict, name: str, lev: int | None) -> float:
    if name not in table:
        raise ModelError(f"GraphCast statistics files lack variable {name!r}")
    v = table[name]
    if isinstance(v, dict):
        if lev not in v:
            raise ModelError(f"GraphCast statistics files lack {name!r} at level {lev} hPa")
        v = v[lev]
    return float(v)


def _read_stats(path: str) -> dict:
    """A ``mean_by_level.nc`` / ``stddev_by_level.nc`` file as {variable: scalar or {level: value}}."""
    try:
        import xarray

        with xarray.open_dataset(path) as ds:
            out: dict = {}
            for k in ds.data_vars:
                v = ds[k]
                if "level" in v.dims:
                    out[k] = {int(lv): float(x) for lv, x in zip(v["level"].values, v.values.reshape(-1), strict=True)}
                else:
                    out[k] = float(v.values.reshape(-1)[0])
            return out
    except (OSError, ValueError, ImportError) as exc:
        raise ModelError(f"cannot read the GraphCast statistics file {path!r} (NetCDF as the released "
                         f"stats/*_by_level.nc): {exc}") from exc


class GraphCastExtractor(CheckpointExtractor):
    """Per-patch GraphCast latents from DeepMind's released parameters (our PyTorch implementation).

    Parameters
    ----------
    checkpoint : path
        A released ``params/GraphCast*.npz`` (see the module notes).
    mean_by_level, stddev_by_level : path, optional
        The released ``stats/mean_by_level.nc`` and ``stats/stddev_by_level.nc`` (both or neither);
        default: per-variable, per-level statistics of the grid.
    lead_time_hours : float
        Must be 6 (GraphCast's fixed step; accepted so that a study's lead time applies to every weather model).
    name : str, optional
    **options
        ``device``, ``seed``, ``num_threads``, ``batch_size``.
    """

    family = "graphcast"
    modality = "grid"
    default_layer = "processor"
    package = "torch"

    def __init__(self, *, mean_by_level: str | None = None, stddev_by_level: str | None = None,
                 lead_time_hours: float = STEP_HOURS, **options: Any):
        try:
            lead = float(lead_time_hours)
        except (TypeError, ValueError):
            raise ModelError(f"lead_time_hours must be a number of hours; got {lead_time_hours!r}") from None
        if lead != STEP_HOURS:
            raise ModelError(f"GraphCast has no lead-time input: one forward is a fixed {STEP_HOURS} h step; "
                             f"got lead_time_hours={lead_time_hours!r}")
        self.lead_time_hours = float(STEP_HOURS)
        if (mean_by_level is None) != (stddev_by_level is None):
            raise ModelError("mean_by_level and stddev_by_level must be given together (GraphCast stats .nc files)")
        for p in (mean_by_level, stddev_by_level):
            if p is not None and not os.path.isfile(p):
                raise ModelError(f"GraphCast statistics file not found: {os.fspath(p)!r}")
        self.stats_paths = (mean_by_level, stddev_by_level)
        options.setdefault("batch_size", 4096)
        self._nets: OrderedDict = OrderedDict()
        self._cache: OrderedDict = OrderedDict()
        self._prep: dict = {}
        self.n_forward = 0
        super().__init__(**options)

    def _load(self) -> None:
        import torch

        from ._graphcast import infer_sizes, read_graphcast_params

        path = self.checkpoint
        torch.manual_seed(self.seed)
        self.params, self.model_config, self.task_config = read_graphcast_params(path)
        self.sizes = infer_sizes(self.params, path)
        mc = self.model_config
        for k in ("latent_size", "hidden_layers", "gnn_msg_steps"):
            if int(mc[k]) != self.sizes[k]:
                raise ModelError(f"GraphCast checkpoint {path!r}: model_config {k}={mc[k]} but its parameters "
                                 f"have {self.sizes[k]}")
        for k in ("input_variables", "forcing_variables", "pressure_levels"):
            if k not in self.task_config:
                raise ModelError(f"GraphCast checkpoint {path!r} lacks task_config field {k!r}")
        n_expected = len(input_channels(self.task_config))
        if n_expected != self.sizes["n_channels"]:
            raise ModelError(f"GraphCast checkpoint {path!r}: its task_config stacks {n_expected} input channels "
                             f"but its encoder takes {self.sizes['n_channels']} (+3 structural)")
        self.stats = (None if self.stats_paths[0] is None
                      else (_read_stats(self.stats_paths[0]), _read_stats(self.stats_paths[1])))
        # The network of the first grid seen; its parameters define `self.model` (for counting and provenance).
        self.model = None

    def network(self, grid):
        """The :func:`~matteralign.models._graphcast.GraphCastNet` bound to ``grid``'s coordinates (cached)."""
        from ._graphcast import GraphCastNet, build_graphs

        key = (tuple(np.round(np.asarray(grid.lat, dtype=np.float64), 9)),
               tuple(np.round(np.asarray(grid.lon, dtype=np.float64), 9)))
        if key in self._nets:
            return self._nets[key]
        mc = self.model_config
        graphs = build_graphs(np.asarray(grid.lat), np.asarray(grid.lon), mesh_size=int(mc["mesh_size"]),
                              radius_query_fraction_edge_length=float(mc["radius_query_fraction_edge_length"]),
                              mesh2grid_edge_normalization_factor=mc["mesh2grid_edge_normalization_factor"])
        net = GraphCastNet(graphs, **self.sizes)
        net.load_haiku(self.params, source=repr(self.checkpoint))
        net = net.to(self.device).eval()
        self.graph_sizes = {"grid_nodes": int(graphs["grid_nodes"].shape[0]),
                            "mesh_nodes": int(graphs["mesh_nodes"].shape[0]),
                            **{f"{g}_edges": int(graphs[g]["senders"].shape[0])
                               for g in ("grid2mesh", "mesh", "mesh2grid")}}
        self._nets[key] = net
        while len(self._nets) > 2:
            self._nets.popitem(last=False)
        if self.model is None:
            self.model = net
        return net

    def layers(self) -> list[str]:
        return ["processor", "decoder"]

    def input_reason(self, obj: Any) -> str | None:
        from ..datasets.weather import GridPatch

        if not isinstance(obj, GridPatch):
            return f"expected a weather grid patch (matteralign.datasets.weather.GridPatch); got {type(obj).__name__}"
        return None

    def prepare(self, grid) -> dict[str, Any]:
        """:func:`graphcast_inputs` of ``grid`` for this checkpoint (cached for the last grid)."""
        if self._prep.get("grid") is grid:
            return self._prep["out"]
        out = graphcast_inputs(grid, self.task_config, self.stats)
        self._prep = {"grid": grid, "out": out}
        return out

    def grid_latents(self, grid, t: int) -> dict[str, np.ndarray]:
        """Per-grid-node latents at time index ``t``: ``processor`` and ``decoder``, each (H·W, latent) float32."""
        import torch

        key = (id(grid), int(t))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key][1]
        net = self.network(grid)
        x = torch.from_numpy(self.prepare(grid)["x"][t]).to(self.device)
        with self._runtime():
            out = net(x)
        self.n_forward += 1
        mesh = out["processor_mesh"].float()
        tri = net.mesh2grid_senders.view(-1, 3)  # each grid node's 3 mesh vertices, in grid-node order
        feats = {"processor": mesh[tri].mean(dim=1).cpu().numpy(),
                 "decoder": out["decoder_grid"].float().cpu().numpy()}
        self._cache[key] = (grid, feats)
        while len(self._cache) > 4:
            self._cache.popitem(last=False)
        return feats

    def _embed(self, inputs, layer):
        return self._embed_layers(inputs, [layer])[layer]

    def _embed_layers(self, inputs, layers):
        out = {layer: [] for layer in layers}
        for patch in inputs:
            g = patch.grid
            lat = self.grid_latents(g, patch.t)
            p, w = g.patch_size, g.shape[1]
            rows = np.arange(patch.i * p, (patch.i + 1) * p)
            cols = np.arange(patch.j * p, (patch.j + 1) * p)
            idx = (rows[:, None] * w + cols[None, :]).reshape(-1)
            for layer in layers:
                out[layer].append(lat[layer][idx].astype(np.float64).mean(axis=0).astype(np.float32)[None, :])
        return out

    def _hub_provenance(self) -> dict[str, Any]:
        mc, tc = self.model_config, self.task_config
        info = {"architecture": "GraphCast encoder-processor-decoder (matteralign.models._graphcast, PyTorch; "
                                "DeepMind's haiku parameters loaded by name)",
                "route": "DeepMind released params/*.npz in our PyTorch implementation",
                "model_config": {k: (None if v is None else (float(v) if isinstance(v, float) else int(v)))
                                 for k, v in mc.items()},
                "pressure_levels": [int(v) for v in tc["pressure_levels"]],
                "input_variables": list(tc["input_variables"]), "forcing_variables": list(tc["forcing_variables"]),
                "n_input_channels": self.sizes["n_channels"], "n_outputs": self.sizes["n_outputs"],
                "lead_time_hours": self.lead_time_hours, "precision": "float32",
                "standardisation": ("files " + ", ".join(os.path.abspath(p) for p in self.stats_paths)
                                    if self.stats is not None else
                                    "per variable and level over the grid (all times, cells); progress "
                                    "features as computed"),
                "per_sample": ("processor: mesh latents after the processor, each grid node the mean of its "
                               "mesh2grid triangle's 3 vertices; decoder: grid latents entering the output MLP; "
                               "mean over the grid nodes of the (time, patch); one forward per time")}
        if getattr(self, "graph_sizes", None):
            info["graph"] = self.graph_sizes
        if self._prep:
            o = self._prep["out"]
            info["channels_set_to_zero"] = list(o["missing"])
            info["times_with_repeated_first_frame"] = list(o["repeated_first_time"])
        return info

    def _provenance(self) -> dict[str, Any]:
        if self.model is not None:
            return super()._provenance()
        # No grid seen yet: count the checkpoint's parameters (the network loads them all, strictly).
        info = {"package": self.package, "weights": os.path.abspath(self.checkpoint),
                "weights_sha256": self.checkpoint_sha256, "trust_checkpoint": self.trust_checkpoint,
                "env": os.environ.get("MATTERALIGN_ENV"),
                "n_parameters": sum(int(np.prod(np.shape(v))) for m in self.params.values() for v in m.values())}
        info.update(self._hub_provenance())
        return info


register(ModelSpec(
    name="graphcast", factory=f"{__name__}:GraphCastExtractor", family="graphcast", modality="grid",
    layers=("processor", "decoder"), default_layer="processor", kwargs={"name": "graphcast"},
    requires=("torch", "scipy", "trimesh", "rtree"), requires_checkpoint=True, kind="weather",
    embedding_type="grid", gpu=True,
    description=("GraphCast from DeepMind's released params/*.npz in our PyTorch encoder-processor-decoder "
                 "(route 1, equal to the JAX reference); processor mesh latents mapped to the grid, mean per "
                 "(time, patch)")))
