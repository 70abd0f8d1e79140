"""ClimaX, a climate and weather foundation model, from a local released checkpoint (``aurora`` environment).

ClimaX (Nguyen et al., ICML 2023, arXiv:2301.10343) has no installable distribution; the network is
written here (:mod:`matteralign.models._climax`, on timm's ViT ``Block`` and ``PatchEmbed`` as the
reference code) and runs in the ``aurora`` environment, which has torch, torchvision and timm.

**Checkpoints.** The released Lightning ``.ckpt`` files (``5.625deg.ckpt``: 32 × 64 grid, patch 2;
``1.40625deg.ckpt``: 128 × 256, patch 4; both embed_dim 1024, depth 8, 16 heads, 48 variables) hold a
``state_dict`` whose keys start with ``net.``; a plain state dict of the network loads too. Keys named
with the legacy ``channel`` (``net.channel_embed``, ``net.channel_query``, ``net.channel_agg.*``) are
renamed ``var`` as the reference loader does. The state dict must match the architecture exactly
(strict): a missing, extra or mis-shaped key is an error naming it. Hyper-parameters are read from the
tensors: embed_dim and token count from ``pos_embed``, patch size from the patch kernels, variable count
from ``var_embed``, depth from the blocks, MLP ratio from ``fc1``, head depth from ``head``; the image is
taken 1:2 (height:width), as the reference loader assumes. Two facts are not in the tensors: the number
of attention heads and the variable names. They come from the checkpoint's ``hyper_parameters`` when
present, else the released values (16 heads; the 48-variable vocabulary of :data:`DEFAULT_VARS`, the
only list of that length), else the ``num_heads`` / ``variables`` options.

**Inputs.** A sample is one (time, patch) of a :mod:`matteralign.datasets.weather` grid; the model runs
once per time on the whole grid, which must have the checkpoint's image size (32 × 64 for the 5.625°
checkpoint: the bundled ``weather`` grid). The grid's fields map to ClimaX names (``2t`` →
``2m_temperature``, ``t`` at 850 hPa → ``temperature_850``, static ``lsm`` → ``land_sea_mask``, static
``z`` / g → ``orography`` [m], latitude → ``lattitude`` (sic)). **Rule for variables**: ClimaX reads any
subset of its vocabulary (variable tokenisation), so the input is every vocabulary variable the grid
provides, in vocabulary order; the grid's other fields (e.g. ``msl``, levels such as 1000 hPa outside the
vocabulary) are left out and listed in the provenance; a grid that provides none is an error listing
both sides. Rows are fed south to north (ClimaX's WeatherBench training data has ascending latitude).
Fields are standardised per variable with the ``normalize_mean`` / ``normalize_std`` ``.npz`` files of the
ClimaX data pipeline when given (keyed by ClimaX name; a missing variable is an error), else by the
variable's mean and standard deviation over the whole grid (every time and cell; recorded). The lead
time is ``lead_time_hours`` (6 by default; a study sets it with its ``lead_time_hours`` key), fed as
hours / 100 as the reference data pipeline does, and recorded in the provenance.

**Layer** ``encoder`` (default): :meth:`ClimaXNet.encode` (the reference ``forward_encoder``: after the
blocks and the final norm), shape (L, 1024); a sample's vector is the mean of the tokens whose cells
overlap its patch (4 tokens for a 4 × 4 patch at patch size 2).
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Any

import numpy as np

from ..errors import ModelError
from ._hub import TRUST_HINT, CheckpointExtractor
from ._registry import ModelSpec, register

__all__ = ["ClimaXExtractor", "DEFAULT_VARS", "grid_variables", "read_climax_checkpoint"]

_LEVELS = (50, 250, 500, 600, 700, 850, 925)
_ATMOS_NAMES = {"z": "geopotential", "u": "u_component_of_wind", "v": "v_component_of_wind", "t": "temperature",
                "r": "relative_humidity", "q": "specific_humidity"}
#: The released checkpoints' 48 variables (the reference pretraining config's ``default_vars``), in order.
DEFAULT_VARS = (("land_sea_mask", "orography", "lattitude", "2m_temperature", "10m_u_component_of_wind",
                 "10m_v_component_of_wind")
                + tuple(f"{_ATMOS_NAMES[v]}_{lev}" for v in ("z", "u", "v", "t", "r", "q") for lev in _LEVELS))
_SURF_NAMES = {"2t": "2m_temperature", "10u": "10m_u_component_of_wind", "10v": "10m_v_component_of_wind",
               "msl": "mean_sea_level_pressure"}
_G = 9.80665  # m s⁻²: surface geopotential → orography height
_HEADS_RELEASED = 16


def grid_variables(grid) -> dict[str, np.ndarray]:
    """The fields of a :class:`~matteralign.datasets.weather.WeatherGrid` under ClimaX names, rows north→south.

    Returns
    -------
    dict of str to ndarray
        Time-varying fields (T, H, W) and static ones (H, W), float32.
    """
    out: dict[str, np.ndarray] = {}
    if "lsm" in grid.static:
        out["land_sea_mask"] = grid.static["lsm"]
    if "z" in grid.static:
        out["orography"] = (grid.static["z"] / _G).astype(np.float32)
    out["lattitude"] = np.repeat(np.asarray(grid.lat, dtype=np.float32)[:, None], len(grid.lon), axis=1)
    for k, name in _SURF_NAMES.items():
        if k in grid.surf:
            out[name] = grid.surf[k]
    for k, name in _ATMOS_NAMES.items():
        if k in grid.atmos:
            for li, lev in enumerate(grid.levels):
                out[f"{name}_{int(lev)}"] = grid.atmos[k][:, li]
    return out


# ---------------------------------------------------------------------- checkpoint reading
def _torch_load(path: str, trust: bool):
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust:
            raise ModelError(f"checkpoint {path!r} holds Python objects beyond tensors ({str(exc)[:160]}); "
                             f"{TRUST_HINT}") from exc
        return torch.load(path, map_location="cpu", weights_only=False)


def _hparams(obj: Any) -> dict[str, Any]:
    """``default_vars``/``num_heads``/``img_size`` found in a Lightning checkpoint's hyper-parameters."""
    found: dict[str, Any] = {}
    stack = [obj.get("hyper_parameters")] if isinstance(obj, dict) else []
    while stack:
        d = stack.pop()
        if not isinstance(d, dict):
            try:
                d = dict(d)
            except (TypeError, ValueError):
                continue
        for key in ("default_vars", "num_heads", "img_size"):
            if key in d and key not in found:
                found[key] = d[key]
        stack += [v for v in d.values() if isinstance(v, dict)]
    return found


def read_climax_checkpoint(path: str, *, trust: bool = False, variables=None, num_heads: int | None = None):
    """Read a ClimaX checkpoint: its network state dict (``net.`` stripped) and the hyper-parameters.

    Parameters
    ----------
    path : str
        A released Lightning ``.ckpt`` (``state_dict`` with ``net.*`` keys) or a plain state dict.
    trust : bool
        Allow a pickle beyond tensors (``weights_only=False``).
    variables : sequence of str, optional
        The vocabulary, when neither the checkpoint nor the released list gives it.
    num_heads : int, optional
        Attention heads, overriding the checkpoint's hyper-parameters and the released 16.

    Returns
    -------
    state : dict of str to Tensor
    config : dict
        ``ClimaXNet`` keyword arguments plus ``renamed`` (legacy keys renamed) and ``sources``.
    """
    import torch

    obj = _torch_load(path, trust)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        raw = obj["state_dict"]
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        raw = obj
    else:
        raise ModelError(f"checkpoint {path!r} holds no ClimaX state dict (expected a Lightning checkpoint with "
                         f"a 'state_dict' or a dict of tensors; got {type(obj).__name__})")
    keys = list(raw)
    if any(k.startswith("net.") for k in keys):
        other = [k for k in keys if not k.startswith("net.")]
        if other:
            raise ModelError(f"checkpoint {path!r}: keys outside the network 'net.': {other[:8]}"
                             f"{' …' if len(other) > 8 else ''} ({len(other)} in all)")
        raw = {k[4:]: v for k, v in raw.items()}
    state, renamed = {}, 0
    for k, v in raw.items():
        new = k.replace("channel", "var")
        renamed += new != k
        state[new] = v

    def need(key):
        if key not in state:
            raise ModelError(f"checkpoint {path!r} is not a ClimaX network: missing key {key!r}")
        return state[key]

    pos = need("pos_embed")
    if pos.ndim != 3:
        raise ModelError(f"checkpoint {path!r}: pos_embed has shape {tuple(pos.shape)}; expected (1, L, D)")
    n_tokens, dim = int(pos.shape[1]), int(pos.shape[2])
    n_vars = int(need("var_embed").shape[1])
    grouped = "token_embeds.proj_weights" in state
    kernel = state["token_embeds.proj_weights"][0] if grouped else need("token_embeds.0.proj.weight")
    patch = int(kernel.shape[-1])
    depth = len({m.group(1) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    hidden = int(need("blocks.0.mlp.fc1.weight").shape[0]) if depth else 4 * dim
    n_head_linear = len({m.group(1) for k in state if (m := re.match(r"head\.(\d+)\.weight$", k))})
    hp = _hparams(obj)
    sources = {}
    if "img_size" in hp:
        img = (int(hp["img_size"][0]), int(hp["img_size"][1]))
        sources["img_size"] = "hyper_parameters"
    else:
        rows = int(round((n_tokens / 2) ** 0.5))
        if 2 * rows * rows != n_tokens:
            raise ModelError(f"checkpoint {path!r}: {n_tokens} position tokens do not form a 1:2 grid; "
                             "its image size cannot be inferred")
        img = (rows * patch, 2 * rows * patch)
        sources["img_size"] = "pos_embed (1:2 grid)"
    if num_heads is not None:
        heads, sources["num_heads"] = int(num_heads), "option"
    elif "num_heads" in hp:
        heads, sources["num_heads"] = int(hp["num_heads"]), "hyper_parameters"
    else:
        heads, sources["num_heads"] = _HEADS_RELEASED, "released ClimaX value"
    if heads < 1 or dim % heads:
        raise ModelError(f"checkpoint {path!r}: {heads} attention heads do not divide embed_dim {dim}")
    if variables is not None:
        vocab, sources["variables"] = tuple(variables), "option"
    elif "default_vars" in hp:
        vocab, sources["variables"] = tuple(hp["default_vars"]), "hyper_parameters"
    elif n_vars == len(DEFAULT_VARS):
        vocab, sources["variables"] = DEFAULT_VARS, "released ClimaX 48-variable list"
    else:
        raise ModelError(f"checkpoint {path!r} has {n_vars} variables and no variable names; pass "
                         f"variables=[...] (the {n_vars} ClimaX names in the checkpoint's order)")
    if len(vocab) != n_vars:
        raise ModelError(f"checkpoint {path!r} has {n_vars} variable embeddings but {len(vocab)} variable names "
                         f"({sources['variables']})")
    config = {"variables": vocab, "img_size": img, "patch_size": patch, "embed_dim": dim, "depth": depth,
              "num_heads": heads, "mlp_ratio": hidden / dim, "decoder_depth": max(n_head_linear - 1, 0),
              "grouped_patch_embed": grouped}
    return state, {**config, "renamed": renamed, "sources": sources}


def build_climax(path: str, *, trust: bool = False, variables=None, num_heads: int | None = None):
    """A :class:`~matteralign.models._climax.ClimaXNet` holding a checkpoint's weights (strict), in eval mode.

    Returns
    -------
    net : ClimaXNet
    config : dict
        As :func:`read_climax_checkpoint`.
    """
    from ._climax import ClimaXNet

    state, config = read_climax_checkpoint(path, trust=trust, variables=variables, num_heads=num_heads)
    net = ClimaXNet(**{k: v for k, v in config.items() if k not in ("renamed", "sources")})
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [f"{k}: {tuple(state[k].shape)} (expected {tuple(own[k].shape)})" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or shapes:
        def head(xs):
            return f"{xs[:8]}{' …' if len(xs) > 8 else ''} ({len(xs)})"

        parts = ([f"missing keys {head(missing)}"] if missing else []) + \
                ([f"unexpected keys {head(extra)}"] if extra else []) + \
                ([f"shape mismatches {head(shapes)}"] if shapes else [])
        raise ModelError(f"checkpoint {path!r} does not match the ClimaX architecture inferred from it "
                         f"(embed_dim {config['embed_dim']}, depth {config['depth']}, patch {config['patch_size']}, "
                         f"{len(config['variables'])} variables): " + "; ".join(parts))
    net.load_state_dict(state, strict=True)
    return net.eval(), config


def _read_stats(path: str, what: str) -> dict[str, float]:
    try:
        with np.load(path) as z:
            return {k: float(np.asarray(z[k]).reshape(-1)[0]) for k in z.files}
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the ClimaX {what} file {path!r} (an .npz keyed by variable name): "
                         f"{exc}") from exc


class ClimaXExtractor(CheckpointExtractor):
    """Per-patch ClimaX encoder tokens from a local released checkpoint.

    Parameters
    ----------
    checkpoint : path
        Released ``.ckpt`` or a state dict of the network (see the module notes).
    lead_time_hours : float
        Lead time fed to the lead-time embedding (as hours / 100). Default 6.
    normalize_mean, normalize_std : path, optional
        ClimaX's ``normalize_mean.npz`` / ``normalize_std.npz`` (both or neither); default: per-variable
        statistics of the grid.
    variables : sequence of str, optional
        The checkpoint's variable names, when it has neither hyper-parameters nor the released 48.
    num_heads : int, optional
        Attention heads (default: hyper-parameters, else the released 16).
    name : str, optional
    **options
        ``trust_checkpoint``, ``device``, ``seed``, ``num_threads``, ``batch_size``.
    """

    family = "climax"
    modality = "grid"
    default_layer = "encoder"
    package = "timm"

    def __init__(self, *, lead_time_hours: float = 6.0, normalize_mean: str | None = None,
                 normalize_std: str | None = None, variables=None, num_heads: int | None = None, **options: Any):
        try:
            self.lead_time_hours = float(lead_time_hours)
        except (TypeError, ValueError):
            raise ModelError(f"lead_time_hours must be a number of hours; got {lead_time_hours!r}") from None
        if not np.isfinite(self.lead_time_hours):
            raise ModelError(f"lead_time_hours must be finite; got {lead_time_hours!r}")
        if (normalize_mean is None) != (normalize_std is None):
            raise ModelError("normalize_mean and normalize_std must be given together (ClimaX .npz files)")
        for p in (normalize_mean, normalize_std):
            if p is not None and not os.path.isfile(p):
                raise ModelError(f"ClimaX normalisation file not found: {os.fspath(p)!r}")
        self.stats_paths = (normalize_mean, normalize_std)
        self._vocab_option = variables
        self._heads_option = num_heads
        options.setdefault("batch_size", 256)
        self._cache: OrderedDict = OrderedDict()
        self._prep: dict[int, tuple] = {}
        self.n_forward = 0
        super().__init__(**options)

    def _load(self) -> None:
        import torch

        torch.manual_seed(self.seed)
        self.model, self.config = build_climax(self.checkpoint, trust=self.trust_checkpoint,
                                               variables=self._vocab_option, num_heads=self._heads_option)
        self.model = self.model.to(self.device)
        if self.stats_paths[0] is not None:
            self.stats = (_read_stats(self.stats_paths[0], "normalize_mean"),
                          _read_stats(self.stats_paths[1], "normalize_std"))
        else:
            self.stats = None

    def layers(self) -> list[str]:
        return ["encoder"]

    def input_reason(self, obj: Any) -> str | None:
        from ..datasets.weather import GridPatch

        if not isinstance(obj, GridPatch):
            return f"expected a weather grid patch (matteralign.datasets.weather.GridPatch); got {type(obj).__name__}"
        if tuple(obj.grid.shape) != tuple(self.model.img_size):
            return (f"grid {obj.grid.shape[0]}×{obj.grid.shape[1]} differs from this ClimaX checkpoint's image "
                    f"{self.model.img_size[0]}×{self.model.img_size[1]}")
        return None

    # ------------------------------------------------------------------ inputs
    def prepare(self, grid) -> tuple[list[str], np.ndarray, list[str]]:
        """The model input of every time of ``grid``: (variables used, fields (T, V, H, W) standardised and
        rows south→north, grid fields left out)."""
        key = id(grid)
        if key in self._prep and self._prep[key][0] is grid:
            return self._prep[key][1]
        fields = grid_variables(grid)
        used = [v for v in self.model.variables if v in fields]
        left = sorted(v for v in fields if v not in self.model.var_index)
        if not used:
            raise ModelError(f"{self.name}: grid {grid.name!r} provides none of this ClimaX checkpoint's variables "
                             f"(grid: {sorted(fields)}; checkpoint: {list(self.model.variables)})")
        if self.stats is not None:
            lacking = [v for v in used if v not in self.stats[0] or v not in self.stats[1]]
            if lacking:
                raise ModelError(f"{self.name}: the normalisation files {list(self.stats_paths)} lack variables "
                                 f"{lacking}")
        n_t = len(grid.times)
        x = np.empty((n_t, len(used), *grid.shape), dtype=np.float32)
        for k, v in enumerate(used):
            a = np.asarray(fields[v], dtype=np.float64)
            a = np.broadcast_to(a, (n_t, *grid.shape)) if a.ndim == 2 else a
            if self.stats is not None:
                mean, std = self.stats[0][v], self.stats[1][v]
            else:
                mean, std = float(a.mean()), float(a.std())
            x[:, k] = (a - mean) / (std if std > 0 else 1.0)
        x = np.ascontiguousarray(x[:, :, ::-1])  # rows south → north
        out = (used, x, left)
        self._prep = {key: (grid, out)}
        return out

    def grid_tokens(self, grid, t: int) -> np.ndarray:
        """Encoder tokens of the whole grid at time index ``t``, shape (L, D) float32, rows south→north."""
        import torch

        key = (id(grid), int(t))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key][1]
        used, x, _ = self.prepare(grid)
        xt = torch.from_numpy(x[t:t + 1]).to(self.device)
        lead = torch.full((1,), self.lead_time_hours / 100.0, dtype=torch.float32, device=self.device)
        with self._runtime():
            tok = self.model.encode(xt, lead, used)
        self.n_forward += 1
        feats = tok[0].float().cpu().numpy()
        self._cache[key] = (grid, feats)
        while len(self._cache) > 4:
            self._cache.popitem(last=False)
        return feats

    def patch_tokens(self, grid, i: int, j: int) -> np.ndarray:
        """Indices of the tokens whose cells overlap patch (i, j) of ``grid`` (rows counted north→south)."""
        p, q = grid.patch_size, self.model.patch_size
        h = grid.shape[0]
        rows = {(h - 1 - r) // q for r in range(i * p, (i + 1) * p)}
        cols = {c // q for c in range(j * p, (j + 1) * p)}
        w_tok = self.model.grid_tokens[1]
        return np.array(sorted(r * w_tok + c for r in rows for c in cols))

    def _embed(self, inputs, layer):
        out = []
        for patch in inputs:
            toks = self.grid_tokens(patch.grid, patch.t)
            sel = toks[self.patch_tokens(patch.grid, patch.i, patch.j)]
            out.append(sel.astype(np.float64).mean(axis=0).astype(np.float32)[None, :])
        return out

    def _hub_provenance(self) -> dict[str, Any]:
        c = self.config
        info = {"architecture": "ClimaX (matteralign.models._climax, timm ViT blocks)",
                "img_size": list(c["img_size"]), "patch_size": c["patch_size"], "embed_dim": c["embed_dim"],
                "depth": c["depth"], "num_heads": c["num_heads"], "mlp_ratio": c["mlp_ratio"],
                "decoder_depth": c["decoder_depth"], "n_variables": len(c["variables"]),
                "grouped_patch_embed": c["grouped_patch_embed"], "legacy_keys_renamed": c["renamed"],
                "inferred_from": c["sources"], "lead_time_hours": self.lead_time_hours,
                "lead_time_input": self.lead_time_hours / 100.0, "row_order": "south to north",
                "standardisation": ("files " + ", ".join(os.path.abspath(p) for p in self.stats_paths)
                                    if self.stats is not None else "per variable over the grid (all times, cells)"),
                "per_sample": "mean of the encoder tokens overlapping the (time, patch); one forward per time"}
        if self._prep:
            used, _, left = next(iter(self._prep.values()))[1]
            info["input_variables"] = list(used)
            info["grid_fields_left_out"] = list(left)
        return info


register(ModelSpec(
    name="climax", factory=f"{__name__}:ClimaXExtractor", family="climax", modality="grid", layers=("encoder",),
    default_layer="encoder", kwargs={"name": "climax"}, requires=("timm", "torch"), requires_checkpoint=True,
    env="aurora", kind="weather", embedding_type="grid", gpu=True,
    description=("ClimaX released checkpoint (own implementation on timm, strict load); encoder tokens after the "
                 "final norm, mean over the tokens of each (time, patch), 1024-d")))
