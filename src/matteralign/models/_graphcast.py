"""GraphCast's encoder–processor–decoder on the icosahedral multimesh, in PyTorch, for DeepMind's parameters.

GraphCast (Lam et al., Science 382, 1416 (2023), doi:10.1126/science.adi2336) maps the grid to a multimesh
(one grid2mesh message-passing step), runs ``gnn_msg_steps`` interaction-network steps on the multimesh
(all refinements of an icosahedron, edges of every level merged) and maps back to the grid (one mesh2grid
step and an output MLP). This module is our own implementation of that network, written from the paper and
the public reference code (``google-deepmind/graphcast``: ``graphcast.py``, ``deep_typed_graph_net.py``,
``typed_graph_net.py``, ``icosahedral_mesh.py``, ``grid_mesh_connectivity.py``, ``model_utils.py``), so that
the released haiku parameters (``params/GraphCast*.npz``) load by name. It equals the reference to float32
rounding on a seeded random instance (``tests/models/test_graphcast.py``; the fixture is made by
``scripts/build_graphcast_reference.py``).

What follows the reference exactly:

* **Mesh**: the regular icosahedron of the reference (vertex and face order, rotated about y so that the
  poles sit on edges), split ``mesh_size`` times (each face into 4, new vertices at normalised edge
  midpoints, in float32); the multimesh keeps the finest vertices and the faces of every level; each face
  ``(a, b, c)`` gives the directed edges a→b, b→c, c→a.
* **Graphs**: grid2mesh connects each grid point to every mesh vertex within
  ``radius_query_fraction_edge_length`` × the longest finest-mesh edge (chord distance, scipy's cKDTree);
  mesh2grid connects each grid point to the 3 vertices of the mesh face nearest to it (trimesh's
  ``closest_point``, the reference's own choice, so ties at vertices and edges resolve the same way).
* **Structural features**: nodes get cos(colatitude), cos(lon), sin(lon); edges get the sender minus
  receiver position in the receiver's local frame (rotated to longitude 0 and latitude 0) and its length,
  divided by the longest such edge of the graph (or ``mesh2grid_edge_normalization_factor`` when the
  checkpoint sets it).
* **Networks** (haiku ``DeepTypedGraphNet``): every MLP has ``hidden_layers`` hidden layers of
  ``latent_size`` with swish, and (except the output MLP) a LayerNorm (eps 1e-5) after it; the encoder
  embeds grid and mesh nodes (mesh nodes get zero data channels plus their 3 structural features) and the
  grid2mesh edges; each processor step updates edges from [edge, sender, receiver] and nodes from
  [node, sum of received edges], with residuals on both; node types that receive no edges in a graph
  (grid nodes in grid2mesh, mesh nodes in mesh2grid) are updated from their own latent alone.

Not part of this module: the input normalisation (``InputsAndResiduals``: per-variable mean / std and the
residual prediction) and the bfloat16 casting of the released pipeline; the adapter does its own
standardisation and runs in float32.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

__all__ = ["GraphCastNet", "build_graphs", "icosahedral_meshes", "read_graphcast_params", "stack_channels"]


# ---------------------------------------------------------------------------------------------- mesh
def _icosahedron() -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import transform

    phi = (1 + np.sqrt(5)) / 2
    verts = []
    for c1 in (1.0, -1.0):
        for c2 in (phi, -phi):
            verts += [(c1, c2, 0.0), (0.0, c1, c2), (c2, 0.0, c1)]
    v = np.array(verts, dtype=np.float32)
    v /= np.linalg.norm([1.0, phi])
    faces = [(0, 1, 2), (0, 6, 1), (8, 0, 2), (8, 4, 0), (3, 8, 2), (3, 2, 7), (7, 2, 1), (0, 4, 6), (4, 11, 6),
             (6, 11, 5), (1, 5, 7), (4, 10, 11), (4, 8, 10), (10, 8, 3), (10, 3, 9), (11, 10, 9), (11, 9, 5),
             (5, 9, 7), (9, 3, 7), (1, 6, 5)]
    # Rotate about y so that the poles lie on mesh edges rather than on vertices.
    between_faces = 2 * np.arcsin(phi / np.sqrt(3))
    rot = transform.Rotation.from_euler(seq="y", angles=(np.pi - between_faces) / 2).as_matrix()
    return np.dot(v, rot).astype(np.float32), np.array(faces, dtype=np.int32)


def _split(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each face into 4 (orientation kept); new vertices at the normalised midpoints, appended in face order."""
    index: dict[tuple[int, int], int] = {}
    out = list(vertices)

    def child(a: int, b: int) -> int:
        key = (a, b) if a < b else (b, a)
        if key not in index:
            pos = vertices[list((a, b))].mean(0)
            pos /= np.linalg.norm(pos)
            index[key] = len(out)
            out.append(pos)
        return index[key]

    new = []
    for a, b, c in faces:
        ab, bc, ca = child(a, b), child(b, c), child(c, a)
        new += [[a, ab, ca], [ab, b, bc], [ca, bc, c], [ab, bc, ca]]
    return np.array(out), np.array(new, dtype=np.int32)


def icosahedral_meshes(splits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The refinement hierarchy of the unit icosahedron, coarse to fine.

    Parameters
    ----------
    splits : int
        Refinements (GraphCast's ``mesh_size``; 6 for the 0.25° model, 5 for GraphCast_small).

    Returns
    -------
    list of (vertices (V, 3) float32, faces (F, 3) int32)
        ``splits + 1`` meshes; each mesh's vertices start with the previous mesh's.
    """
    meshes = [_icosahedron()]
    for _ in range(int(splits)):
        meshes.append(_split(*meshes[-1]))
    return meshes


def _faces_to_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]]),
            np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]]))


# ---------------------------------------------------------------------------------------------- features
def _spherical(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.deg2rad(lon), np.deg2rad(90 - lat)


def _cartesian(phi: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(phi) * np.sin(theta), np.sin(phi) * np.sin(theta), np.cos(theta)], axis=-1)


def _node_features(phi: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(theta), np.cos(phi), np.sin(phi)], axis=-1)


def _edge_features(s_phi, s_theta, r_phi, r_theta, senders, receivers, norm: float | None) -> np.ndarray:
    """[|d|, d] / norm with d = sender − receiver position in the receiver's local frame."""
    from scipy.spatial import transform

    rot = transform.Rotation.from_euler("zy", np.stack([-r_phi, -r_theta + np.pi / 2], axis=1)).as_matrix()
    rot = rot[receivers]
    r_pos = np.einsum("...ji,...i->...j", rot, _cartesian(r_phi, r_theta)[receivers])
    s_pos = np.einsum("...ji,...i->...j", rot, _cartesian(s_phi, s_theta)[senders])
    rel = s_pos - r_pos
    dist = np.linalg.norm(rel, axis=-1, keepdims=True)
    if norm is None:
        norm = dist.max()
    return np.concatenate([dist / norm, rel / norm], axis=-1)


def build_graphs(lat: np.ndarray, lon: np.ndarray, *, mesh_size: int, radius_query_fraction_edge_length: float,
                 mesh2grid_edge_normalization_factor: float | None = None) -> dict[str, dict[str, np.ndarray]]:
    """GraphCast's three graphs and their structural features for a lat/lon grid.

    Parameters
    ----------
    lat, lon : ndarray (H,), (W,)
        Grid latitudes and longitudes [°], in the order the grid nodes are flattened (lat-major).
    mesh_size : int
        Refinements of the icosahedron.
    radius_query_fraction_edge_length : float
        grid2mesh radius as a fraction of the longest finest-mesh edge.
    mesh2grid_edge_normalization_factor : float, optional
        Edge-length normaliser of mesh2grid (default: its longest edge).

    Returns
    -------
    dict
        ``grid2mesh``, ``mesh``, ``mesh2grid``: each with ``senders``, ``receivers`` (int64) and
        ``edge_features`` (E, 4) float32; ``grid_nodes`` / ``mesh_nodes``: node features (N, 3) float32;
        ``mesh_lat``, ``mesh_lon`` of the mesh vertices.
    """
    import scipy.spatial
    import trimesh

    meshes = icosahedral_meshes(mesh_size)
    verts, fine_faces = meshes[-1]
    m_phi = np.arctan2(verts[:, 1], verts[:, 0])
    with np.errstate(invalid="ignore"):
        m_theta = np.arccos(verts[:, 2])
    m_lon = np.mod(np.rad2deg(m_phi), 360).astype(np.float32)
    m_lat = (90 - np.rad2deg(m_theta)).astype(np.float32)
    g_lat, g_lon = np.asarray(lat, dtype=np.float32), np.asarray(lon, dtype=np.float32)
    lon2, lat2 = np.meshgrid(g_lon, g_lat)
    gn_lat, gn_lon = lat2.reshape(-1).astype(np.float32), lon2.reshape(-1).astype(np.float32)
    g_phi, g_theta = _spherical(gn_lat, gn_lon)
    m_phi32, m_theta32 = _spherical(m_lat, m_lon)

    # Grid positions as the reference computes them (float64 from the float32 coordinates).
    pg, tg = np.meshgrid(np.deg2rad(g_lon), np.deg2rad(90 - g_lat))
    grid_pos = np.stack([np.cos(pg) * np.sin(tg), np.sin(pg) * np.sin(tg), np.cos(tg)], axis=-1).reshape(-1, 3)

    s, r = _faces_to_edges(fine_faces)
    radius = np.linalg.norm(verts[s] - verts[r], axis=-1).max() * radius_query_fraction_edge_length
    hits = scipy.spatial.cKDTree(verts).query_ball_point(x=grid_pos, r=radius)
    g2m_s = np.concatenate([np.repeat(i, len(h)) for i, h in enumerate(hits)]).astype(np.int64)
    g2m_r = np.concatenate([np.asarray(h, dtype=np.int64) for h in hits]).astype(np.int64)

    _, _, face_idx = trimesh.proximity.closest_point(trimesh.Trimesh(vertices=verts, faces=fine_faces), grid_pos)
    m2g_s = fine_faces[face_idx].reshape(-1).astype(np.int64)
    m2g_r = np.repeat(np.arange(grid_pos.shape[0]), 3).astype(np.int64)

    all_faces = np.concatenate([f for _, f in meshes], axis=0)
    mesh_s, mesh_r = _faces_to_edges(all_faces)
    f32 = np.float32
    return {
        "grid_nodes": _node_features(g_phi, g_theta).astype(f32),
        "mesh_nodes": _node_features(m_phi32, m_theta32).astype(f32),
        "mesh_lat": m_lat, "mesh_lon": m_lon,
        "grid2mesh": {"senders": g2m_s, "receivers": g2m_r, "edge_features": _edge_features(
            g_phi, g_theta, m_phi32, m_theta32, g2m_s, g2m_r, None).astype(f32)},
        "mesh": {"senders": mesh_s.astype(np.int64), "receivers": mesh_r.astype(np.int64),
                 "edge_features": _edge_features(m_phi32, m_theta32, m_phi32, m_theta32, mesh_s, mesh_r,
                                                 None).astype(f32)},
        "mesh2grid": {"senders": m2g_s, "receivers": m2g_r, "edge_features": _edge_features(
            m_phi32, m_theta32, g_phi, g_theta, m2g_s, m2g_r,
            mesh2grid_edge_normalization_factor).astype(f32)},
    }


# ---------------------------------------------------------------------------------------------- inputs
def stack_channels(fields: dict[str, np.ndarray], dims: dict[str, tuple[str, ...]], sizes: dict[str, int]
                   ) -> np.ndarray:
    """Stack variables into grid-node channels as GraphCast does (``model_utils.dataset_to_stacked``).

    Variables are taken in sorted name order; each contributes one channel per combination of its
    dimensions other than ``lat``/``lon`` (in its own dimension order, e.g. time-major then level);
    variables without ``lat`` or ``lon`` are broadcast over them.

    Parameters
    ----------
    fields : dict of str to ndarray
        One array per variable, without a batch dimension.
    dims : dict of str to tuple of str
        Each variable's dimension names (matching its array).
    sizes : dict
        ``lat`` and ``lon`` sizes.

    Returns
    -------
    ndarray (lat·lon, channels) float32
        Row ``i_lat · n_lon + i_lon``.
    """
    h, w = int(sizes["lat"]), int(sizes["lon"])
    cols = []
    for name in sorted(fields):
        a, d = np.asarray(fields[name], dtype=np.float32), list(dims[name])
        other = [x for x in d if x not in ("lat", "lon")]
        for ax in ("lat", "lon"):
            if ax not in d:
                a, d = a[..., None], d + [ax]
        a = np.transpose(a, [d.index(x) for x in other] + [d.index("lat"), d.index("lon")])
        a = np.broadcast_to(a, a.shape[:len(other)] + (h, w))
        cols.append(a.reshape(-1, h * w).T)
    return np.ascontiguousarray(np.concatenate(cols, axis=1), dtype=np.float32)


# ---------------------------------------------------------------------------------------------- checkpoint
def read_graphcast_params(path: str) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any], dict[str, Any]]:
    """Read a GraphCast checkpoint in DeepMind's released layout (``graphcast.checkpoint.dump`` of a CheckPoint).

    Parameters
    ----------
    path : str
        ``params/GraphCast*.npz``: keys ``params:<haiku module>:<name>``, ``model_config:<field>`` and
        ``task_config:<field>[:<index>]``.

    Returns
    -------
    params : dict of module path to dict of name to ndarray
    model_config : dict
        ``resolution``, ``mesh_size``, ``latent_size``, ``gnn_msg_steps``, ``hidden_layers``,
        ``radius_query_fraction_edge_length``, ``mesh2grid_edge_normalization_factor`` (None when absent).
    task_config : dict
        ``input_variables``, ``target_variables``, ``forcing_variables``, ``pressure_levels`` (tuples) and
        ``input_duration``.
    """
    from ..errors import ModelError

    try:
        with np.load(path, allow_pickle=False) as z:
            flat = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read GraphCast checkpoint {path!r} (expected DeepMind's .npz of a "
                         f"graphcast.CheckPoint): {exc}") from exc
    params: dict[str, dict[str, np.ndarray]] = {}
    model: dict[str, Any] = {}
    task: dict[str, Any] = {}
    for key, val in flat.items():
        parts = key.split(":")
        if parts[0] == "params" and len(parts) == 3:
            params.setdefault(parts[1], {})[parts[2]] = val
        elif parts[0] == "model_config" and len(parts) == 2:
            model[parts[1]] = val.item()
        elif parts[0] == "task_config" and len(parts) == 3:
            task.setdefault(parts[1], {})[int(parts[2])] = val.item()
        elif parts[0] == "task_config" and len(parts) == 2:
            task[parts[1]] = val.item()
    if not params:
        raise ModelError(f"GraphCast checkpoint {path!r} holds no 'params:<module>:<name>' arrays "
                         f"(keys: {sorted(flat)[:6]}); expected DeepMind's released params/*.npz layout")
    need = ("mesh_size", "latent_size", "gnn_msg_steps", "hidden_layers", "radius_query_fraction_edge_length")
    missing = [k for k in need if k not in model]
    if missing:
        raise ModelError(f"GraphCast checkpoint {path!r} lacks model_config fields {missing}")
    model.setdefault("mesh2grid_edge_normalization_factor", None)
    for k, v in list(task.items()):
        if isinstance(v, dict):
            task[k] = tuple(v[i] for i in sorted(v))
    return params, model, task


# ---------------------------------------------------------------------------------------------- network
def _torch():
    import torch

    return torch


def _make_modules():
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional

    class MLP(nn.Module):
        """haiku ``MLP`` ([hidden] × n + [out], swish between layers) with an optional LayerNorm after it."""

        def __init__(self, in_size: int, hidden: int, n_hidden: int, out: int, layer_norm: bool):
            super().__init__()
            sizes = [in_size] + [hidden] * n_hidden + [out]
            self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
            self.norm = nn.LayerNorm(out, eps=1e-5) if layer_norm else None

        def forward(self, x):
            return self._rest(self.linears[0](x))

        def forward_concat(self, parts):
            """``forward(cat([x[idx] for x, idx in parts], -1))`` without building the concatenation: the
            first layer is applied to each part's rows before gathering them (fewer products when a node
            set is gathered onto more edges than it has nodes)."""
            w, b = self.linears[0].weight, self.linears[0].bias
            h, start = None, 0
            for x, idx in parts:
                y = F.linear(x, w[:, start:start + x.shape[-1]])
                y = y if idx is None else y[idx]
                h = y if h is None else h + y
                start += x.shape[-1]
            if start != w.shape[1]:
                raise ValueError(f"inputs of width {start} for a first layer of width {w.shape[1]}")
            return self._rest(h + b)

        def _rest(self, x):
            for lin in self.linears[1:]:
                x = lin(F.silu(x))
            return self.norm(x) if self.norm is not None else x

    def segment_sum(data, index, n):
        out = torch.zeros((n, data.shape[-1]), dtype=data.dtype, device=data.device)
        return out.index_add_(0, index, data)

    class TypedGraphNet(nn.Module):
        """haiku ``DeepTypedGraphNet`` for one edge type (sender set → receiver set), no globals.

        ``nodes``: the node sets of the graph (all are updated in every processor step); ``edge``:
        (name, sender set, receiver set); ``embed_nodes``: input sizes of the node sets to embed (empty:
        none); ``edge_in``: raw edge feature size; ``output``: (node set, size) of the output MLP or None.
        """

        def __init__(self, nodes, edge, *, latent, hidden, n_hidden, steps, embed_nodes, edge_in, output=None):
            super().__init__()
            self.node_sets, self.edge, self.steps = tuple(nodes), tuple(edge), int(steps)
            name, snd, rcv = self.edge
            self.mlps = nn.ModuleDict()
            self.hk_names: dict[str, str] = {}

            def add(hk_name, in_size, out, ln=True):
                key = hk_name.replace("/", "__")
                self.mlps[key] = MLP(in_size, hidden, n_hidden, out, ln)
                self.hk_names[key] = hk_name

            add(f"encoder_edges_{name}", edge_in, latent)
            for ns, size in embed_nodes.items():
                add(f"encoder_nodes_{ns}", size, latent)
            for k in range(self.steps):
                add(f"processor_edges_{k}_{name}", 3 * latent, latent)
                for ns in self.node_sets:
                    add(f"processor_nodes_{k}_{ns}", (2 if ns == rcv else 1) * latent, latent)
            self.output = output
            if output is not None:
                add(f"decoder_nodes_{output[0]}", latent, output[1], ln=False)

        def forward(self, nodes: dict, edge_features, senders, receivers, capture: dict | None = None):
            name, snd, rcv = self.edge
            m = self.mlps
            e = m[f"encoder_edges_{name}"](edge_features)
            nodes = {ns: (m[f"encoder_nodes_{ns}"](x) if f"encoder_nodes_{ns}" in m else x)
                     for ns, x in nodes.items()}
            for k in range(self.steps):
                e_new = m[f"processor_edges_{k}_{name}"].forward_concat(
                    [(e, None), (nodes[snd], senders), (nodes[rcv], receivers)])
                agg = segment_sum(e_new, receivers, nodes[rcv].shape[0])
                new = {}
                for ns in self.node_sets:
                    inp = torch.cat([nodes[ns], agg], dim=-1) if ns == rcv else nodes[ns]
                    new[ns] = nodes[ns] + m[f"processor_nodes_{k}_{ns}"](inp)
                nodes, e = new, e + e_new
            if capture is not None:
                capture.update(nodes)
            if self.output is not None:
                ns = self.output[0]
                nodes = dict(nodes)
                nodes[ns] = m[f"decoder_nodes_{ns}"](nodes[ns])
            return nodes

    return MLP, TypedGraphNet


def GraphCastNet(graphs: dict, *, n_channels: int, latent_size: int, hidden_layers: int, gnn_msg_steps: int,
                 n_outputs: int):
    """GraphCast's encoder–processor–decoder as a ``torch.nn.Module`` bound to one grid's graphs.

    Parameters
    ----------
    graphs : dict
        :func:`build_graphs` of the grid.
    n_channels : int
        Data channels per grid node (without the 3 structural features).
    latent_size, hidden_layers, gnn_msg_steps : int
        As GraphCast's ``ModelConfig``.
    n_outputs : int
        Output channels per grid node.

    Returns
    -------
    torch.nn.Module
        ``forward(x)`` with ``x`` (grid nodes, n_channels) returns a dict: ``encoder_grid``,
        ``encoder_mesh`` (after grid2mesh), ``processor_mesh`` (after the multimesh steps), ``decoder_grid``
        (grid-node latents entering the output MLP), ``output``. ``load_haiku(params)`` loads DeepMind's
        parameters by name (strictly).
    """
    torch = _torch()
    _, TypedGraphNet = _make_modules()
    nn = torch.nn

    class _GraphCast(nn.Module):
        def __init__(self):
            super().__init__()
            L, H = int(latent_size), int(hidden_layers)
            self.n_channels, self.latent_size = int(n_channels), L
            self.hidden_layers, self.gnn_msg_steps, self.n_outputs = H, int(gnn_msg_steps), int(n_outputs)
            n_grid_feat = graphs["grid_nodes"].shape[1]
            self.grid2mesh_gnn = TypedGraphNet(
                ("grid_nodes", "mesh_nodes"), ("grid2mesh", "grid_nodes", "mesh_nodes"), latent=L, hidden=L,
                n_hidden=H, steps=1, edge_in=graphs["grid2mesh"]["edge_features"].shape[1],
                embed_nodes={"grid_nodes": n_channels + n_grid_feat, "mesh_nodes": n_channels + n_grid_feat})
            self.mesh_gnn = TypedGraphNet(
                ("mesh_nodes",), ("mesh", "mesh_nodes", "mesh_nodes"), latent=L, hidden=L, n_hidden=H,
                steps=gnn_msg_steps, embed_nodes={}, edge_in=graphs["mesh"]["edge_features"].shape[1])
            self.mesh2grid_gnn = TypedGraphNet(
                ("grid_nodes", "mesh_nodes"), ("mesh2grid", "mesh_nodes", "grid_nodes"), latent=L, hidden=L,
                n_hidden=H, steps=1, embed_nodes={}, edge_in=graphs["mesh2grid"]["edge_features"].shape[1],
                output=("grid_nodes", n_outputs))
            for g in ("grid2mesh", "mesh", "mesh2grid"):
                for part in ("senders", "receivers"):
                    self.register_buffer(f"{g}_{part}", torch.from_numpy(np.asarray(graphs[g][part])),
                                         persistent=False)
                self.register_buffer(f"{g}_edge_features", torch.from_numpy(graphs[g]["edge_features"]),
                                     persistent=False)
            for ns in ("grid_nodes", "mesh_nodes"):
                self.register_buffer(f"{ns}_features", torch.from_numpy(graphs[ns]), persistent=False)

        def forward(self, x):
            b = self._buffers
            n_mesh = b["mesh_nodes_features"].shape[0]
            grid_in = torch.cat([x, b["grid_nodes_features"].to(x.dtype)], dim=-1)
            mesh_in = torch.cat([x.new_zeros((n_mesh, x.shape[-1])), b["mesh_nodes_features"].to(x.dtype)], dim=-1)
            enc = self.grid2mesh_gnn({"grid_nodes": grid_in, "mesh_nodes": mesh_in},
                                     b["grid2mesh_edge_features"], b["grid2mesh_senders"], b["grid2mesh_receivers"])
            proc = self.mesh_gnn({"mesh_nodes": enc["mesh_nodes"]}, b["mesh_edge_features"], b["mesh_senders"],
                                 b["mesh_receivers"])
            cap: dict = {}
            dec = self.mesh2grid_gnn({"grid_nodes": enc["grid_nodes"], "mesh_nodes": proc["mesh_nodes"]},
                                     b["mesh2grid_edge_features"], b["mesh2grid_senders"],
                                     b["mesh2grid_receivers"], capture=cap)
            return {"encoder_grid": enc["grid_nodes"], "encoder_mesh": enc["mesh_nodes"],
                    "processor_mesh": proc["mesh_nodes"], "decoder_grid": cap["grid_nodes"],
                    "output": dec["grid_nodes"]}

        def haiku_layout(self) -> dict[str, dict[str, tuple]]:
            """Every parameter this network expects, as DeepMind's haiku names and shapes."""
            out: dict[str, dict[str, tuple]] = {}
            for gnn in ("grid2mesh_gnn", "mesh_gnn", "mesh2grid_gnn"):
                net = getattr(self, gnn)
                for key, mlp in net.mlps.items():
                    base = f"{gnn}/~_networks_builder/{net.hk_names[key]}"
                    for i, lin in enumerate(mlp.linears):
                        out[f"{base}_mlp/~/linear_{i}"] = {"w": (lin.in_features, lin.out_features),
                                                          "b": (lin.out_features,)}
                    if mlp.norm is not None:
                        n = mlp.norm.normalized_shape[0]
                        out[f"{base}_layer_norm"] = {"scale": (n,), "offset": (n,)}
            return out

        @torch.no_grad()
        def load_haiku(self, params: dict[str, dict[str, np.ndarray]], source: str = "checkpoint") -> None:
            """Load DeepMind's haiku parameters (strict: every name and shape must match)."""
            from ..errors import ModelError

            layout = self.haiku_layout()
            missing = [f"{m}:{p}" for m, ps in layout.items() for p in ps if p not in params.get(m, {})]
            extra = [f"{m}:{p}" for m, ps in params.items() for p in ps if p not in layout.get(m, {})]
            shapes = [f"{m}:{p} {tuple(np.shape(params[m][p]))} (expected {s})" for m, ps in layout.items()
                      for p, s in ps.items() if p in params.get(m, {}) and tuple(np.shape(params[m][p])) != s]
            if missing or extra or shapes:
                def head(xs):
                    return f"{xs[:6]}{' …' if len(xs) > 6 else ''} ({len(xs)})"

                parts = ([f"missing {head(missing)}"] if missing else []) + \
                        ([f"unexpected {head(extra)}"] if extra else []) + \
                        ([f"shape mismatches {head(shapes)}"] if shapes else [])
                raise ModelError(f"GraphCast parameters of {source} do not match the architecture of its "
                                 f"model_config (latent {self.latent_size}, {self.hidden_layers} hidden layers, "
                                 f"{self.gnn_msg_steps} processor steps, {self.n_channels} input channels, "
                                 f"{self.n_outputs} outputs): " + "; ".join(parts))
            for gnn in ("grid2mesh_gnn", "mesh_gnn", "mesh2grid_gnn"):
                net = getattr(self, gnn)
                for key, mlp in net.mlps.items():
                    base = f"{gnn}/~_networks_builder/{net.hk_names[key]}"
                    for i, lin in enumerate(mlp.linears):
                        p = params[f"{base}_mlp/~/linear_{i}"]
                        lin.weight.copy_(torch.from_numpy(np.asarray(p["w"], dtype=np.float32).T.copy()))
                        lin.bias.copy_(torch.from_numpy(np.asarray(p["b"], dtype=np.float32)))
                    if mlp.norm is not None:
                        p = params[f"{base}_layer_norm"]
                        mlp.norm.weight.copy_(torch.from_numpy(np.asarray(p["scale"], dtype=np.float32)))
                        mlp.norm.bias.copy_(torch.from_numpy(np.asarray(p["offset"], dtype=np.float32)))

    return _GraphCast()


def infer_sizes(params: dict[str, dict[str, np.ndarray]], path: str) -> dict[str, int]:
    """Input channels, outputs, latent size, hidden layers and processor steps read from the parameter shapes."""
    from ..errors import ModelError

    def shape(module, name):
        try:
            return np.shape(params[module][name])
        except KeyError:
            raise ModelError(f"GraphCast checkpoint {path!r}: missing parameter 'params:{module}:{name}'") from None

    enc = "grid2mesh_gnn/~_networks_builder/encoder_nodes_grid_nodes_mlp/~/linear_0"
    n_in, latent = shape(enc, "w")
    dec = [m for m in params if m.startswith("mesh2grid_gnn/~_networks_builder/decoder_nodes_grid_nodes_mlp/~/")]
    if not dec:
        raise ModelError(f"GraphCast checkpoint {path!r}: no mesh2grid output MLP "
                         "('mesh2grid_gnn/~_networks_builder/decoder_nodes_grid_nodes_mlp/~/linear_*')")
    last = max(dec, key=lambda m: int(m.rsplit("_", 1)[1]))
    steps = {int(m.group(1)) for k in params
             if (m := re.match(r"mesh_gnn/~_networks_builder/processor_edges_(\d+)_mesh_mlp/", k))}
    return {"n_channels": int(n_in) - 3, "latent_size": int(latent), "hidden_layers": len(dec) - 1,
            "n_outputs": int(shape(last, "b")[0]), "gnn_msg_steps": len(steps)}
