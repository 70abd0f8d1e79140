"""The ClimaX network (Nguyen et al. 2023, arXiv:2301.10343), written from the paper and its description of
the released model, for inference from the released checkpoints.

ClimaX is a vision transformer over a latitude-longitude grid with two additions that let it take any
subset of a fixed vocabulary of input variables:

* **variable tokenisation**: every variable has its own patch embedding (a ``p × p`` convolution from one
  channel to ``D``), so a grid of ``V`` variables becomes ``V × L`` tokens (``L = (H/p)·(W/p)``);
* **variable aggregation**: a learned per-variable embedding is added, then the ``V`` tokens of each
  location are reduced to one by a single cross-attention layer whose query is one learned vector.

A fixed 2-D sine-cosine positional embedding (learned after initialisation) and a linear embedding of
the lead time are added, and the ``L`` tokens pass through ``depth`` pre-norm ViT blocks (timm's
:class:`~timm.models.vision_transformer.Block`) and a final LayerNorm. That output is
:meth:`ClimaXNet.encode`; the prediction head (an MLP to ``V·p²`` values per token) is kept so that a
checkpoint loads strictly, and is not run by the encoder.

The module's attribute names are those of the released checkpoints' ``net.*`` keys, so a released
state dict (after the legacy ``channel`` → ``var`` renaming) loads with ``strict=True``. Dropout and
stochastic depth are absent (inference only).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["ClimaXNet", "GroupedPatchEmbed", "sincos_1d", "sincos_2d"]


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """Sine-cosine embedding of 1-D positions: ``[sin(pos·ω_k), cos(pos·ω_k)]``, ``ω_k = 10000^(-2k/dim)``.

    Parameters
    ----------
    dim : int
        Embedding width (even).
    positions : ndarray
        Positions, any shape (flattened).

    Returns
    -------
    ndarray, shape (positions.size, dim), float64
    """
    if dim % 2:
        raise ValueError(f"sine-cosine embedding width must be even; got {dim}")
    omega = 1.0 / 10000.0 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.outer(np.asarray(positions, dtype=np.float64).reshape(-1), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d(dim: int, rows: int, cols: int) -> np.ndarray:
    """2-D sine-cosine embedding of a ``rows × cols`` token grid, row-major: the first half of the width
    encodes the column index, the second half the row index (as MAE/ClimaX).

    Returns
    -------
    ndarray, shape (rows·cols, dim), float64
    """
    if dim % 4:
        raise ValueError(f"2-D sine-cosine embedding width must be a multiple of 4; got {dim}")
    col, row = np.meshgrid(np.arange(cols, dtype=np.float32), np.arange(rows, dtype=np.float32))
    return np.concatenate([sincos_1d(dim // 2, col), sincos_1d(dim // 2, row)], axis=1)


class GroupedPatchEmbed(nn.Module):
    """Per-variable patch embeddings held as one grouped convolution (ClimaX's "parallel" layout).

    Parameters ``proj_weights`` (V, D, 1, p, p) and ``proj_biases`` (V, D); ``forward(x, ids)`` embeds
    channel ``k`` of ``x`` with variable ``ids[k]``'s kernel and returns (B, V, L, D).
    """

    def __init__(self, n_vars: int, patch_size: int, embed_dim: int):
        super().__init__()
        self.patch_size = int(patch_size)
        self.proj_weights = nn.Parameter(torch.empty(n_vars, embed_dim, 1, patch_size, patch_size))
        self.proj_biases = nn.Parameter(torch.zeros(n_vars, embed_dim))

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        b, v = x.shape[:2]
        out = nn.functional.conv2d(x, self.proj_weights[ids].flatten(0, 1), self.proj_biases[ids].flatten(0, 1),
                                   stride=self.patch_size, groups=v)
        out = out.reshape(b, v, -1, *out.shape[-2:])  # B, V, D, h, w
        return out.flatten(3).transpose(2, 3)  # B, V, L, D


class ClimaXNet(nn.Module):
    """ClimaX (encoder and prediction head), inference only.

    Parameters
    ----------
    variables : sequence of str
        The checkpoint's variable vocabulary, in its order (row ``k`` of ``var_embed`` is variable ``k``).
    img_size : (int, int)
        Grid height and width (cells).
    patch_size, embed_dim, depth, num_heads : int
    mlp_ratio : float
    decoder_depth : int
        Hidden layers of the prediction head.
    grouped_patch_embed : bool
        Hold the per-variable patch embeddings as one grouped kernel (``token_embeds.proj_weights``)
        instead of one timm ``PatchEmbed`` per variable (``token_embeds.<k>.proj.weight``, the released
        layout).
    """

    def __init__(self, variables: Sequence[str], img_size: tuple[int, int] = (32, 64), patch_size: int = 2,
                 embed_dim: int = 1024, depth: int = 8, num_heads: int = 16, mlp_ratio: float = 4.0,
                 decoder_depth: int = 2, grouped_patch_embed: bool = False):
        super().__init__()
        from timm.models.vision_transformer import Block, PatchEmbed

        self.variables = tuple(variables)
        self.var_index = {v: k for k, v in enumerate(self.variables)}
        self.img_size = (int(img_size[0]), int(img_size[1]))
        self.patch_size = int(patch_size)
        self.embed_dim = int(embed_dim)
        self.num_heads = int(num_heads)
        self.grid_tokens = (self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size)
        n_tokens = self.grid_tokens[0] * self.grid_tokens[1]
        n_vars = len(self.variables)
        self.grouped_patch_embed = bool(grouped_patch_embed)
        if self.grouped_patch_embed:
            self.token_embeds = GroupedPatchEmbed(n_vars, self.patch_size, self.embed_dim)
        else:
            self.token_embeds = nn.ModuleList(PatchEmbed(self.img_size, self.patch_size, 1, self.embed_dim)
                                              for _ in range(n_vars))
        self.var_embed = nn.Parameter(torch.zeros(1, n_vars, self.embed_dim))
        self.var_query = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        self.var_agg = nn.MultiheadAttention(self.embed_dim, self.num_heads, batch_first=True)
        self.pos_embed = nn.Parameter(torch.zeros(1, n_tokens, self.embed_dim))
        self.lead_time_embed = nn.Linear(1, self.embed_dim)
        self.blocks = nn.ModuleList(Block(self.embed_dim, self.num_heads, mlp_ratio, qkv_bias=True,
                                          norm_layer=nn.LayerNorm) for _ in range(depth))
        self.norm = nn.LayerNorm(self.embed_dim)
        head: list[nn.Module] = []
        for _ in range(decoder_depth):
            head += [nn.Linear(self.embed_dim, self.embed_dim), nn.GELU()]
        head.append(nn.Linear(self.embed_dim, n_vars * self.patch_size ** 2))
        self.head = nn.Sequential(*head)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as a fresh ClimaX: sine-cosine positional and variable embeddings, truncated-normal
        (σ = 0.02) linear and patch kernels, zero biases, unit LayerNorms (draws from torch's global RNG)."""
        from timm.layers import trunc_normal_

        self.pos_embed.data.copy_(torch.from_numpy(sincos_2d(self.embed_dim, *self.grid_tokens)).float()[None])
        self.var_embed.data.copy_(torch.from_numpy(
            sincos_1d(self.embed_dim, np.arange(len(self.variables)))).float()[None])
        kernels = ([self.token_embeds.proj_weights[k] for k in range(len(self.variables))]
                   if self.grouped_patch_embed else [e.proj.weight for e in self.token_embeds])
        for w in kernels:
            trunc_normal_(w.data.view(w.shape[0], -1), std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def variable_ids(self, variables: Sequence[str], device: torch.device | None = None) -> torch.Tensor:
        """Vocabulary indices of ``variables`` (a ``KeyError`` names an unknown one)."""
        unknown = [v for v in variables if v not in self.var_index]
        if unknown:
            raise KeyError(f"variables not in this ClimaX vocabulary: {unknown}")
        return torch.tensor([self.var_index[v] for v in variables], dtype=torch.long, device=device)

    def encode(self, x: torch.Tensor, lead_times: torch.Tensor, variables: Sequence[str]) -> torch.Tensor:
        """The encoder: (B, V, H, W) fields, (B,) lead times → (B, L, D) tokens after the final norm.

        Parameters
        ----------
        x : Tensor, shape (B, V, H, W)
            Standardised fields; channel ``k`` is ``variables[k]``.
        lead_times : Tensor, shape (B,)
            Lead times in the training pipeline's unit (hours / 100).
        variables : sequence of str
            Names of the channels of ``x`` (a subset of the vocabulary, any order).

        Returns
        -------
        Tensor, shape (B, L, D)
            Token ``r·(W/p) + c`` covers cells rows ``r·p …``, columns ``c·p …`` of ``x``.
        """
        ids = self.variable_ids(variables, x.device)
        if self.grouped_patch_embed:
            tokens = self.token_embeds(x, ids)
        else:
            tokens = torch.stack([self.token_embeds[int(v)](x[:, k:k + 1]) for k, v in enumerate(ids)], dim=1)
        tokens = tokens + self.var_embed[:, ids, :].unsqueeze(2)  # B, V, L, D
        b, _, n, d = tokens.shape
        per_location = tokens.permute(0, 2, 1, 3).flatten(0, 1)  # (B·L), V, D
        query = self.var_query.repeat_interleave(per_location.shape[0], dim=0)
        agg, _ = self.var_agg(query, per_location, per_location)  # (B·L), 1, D
        h = agg.squeeze(1).unflatten(0, (b, n))  # B, L, D
        h = h + self.pos_embed
        h = h + self.lead_time_embed(lead_times.unsqueeze(-1)).unsqueeze(1)
        for block in self.blocks:
            h = block(h)
        return self.norm(h)

    def forward(self, x: torch.Tensor, lead_times: torch.Tensor, variables: Sequence[str]) -> torch.Tensor:
        """The full network: :meth:`encode`, then the prediction head, back to fields.

        Returns
        -------
        Tensor, shape (B, V_vocab, H, W)
            A prediction of every vocabulary variable (channel ``k`` is ``self.variables[k]``).
        """
        tokens = self.head(self.encode(x, lead_times, variables))  # B, L, V·p·p
        b, p = tokens.shape[0], self.patch_size
        rows, cols = self.grid_tokens
        out = tokens.reshape(b, rows, cols, p, p, len(self.variables))
        return out.permute(0, 5, 1, 3, 2, 4).reshape(b, len(self.variables), rows * p, cols * p)
