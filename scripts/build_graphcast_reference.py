"""Make the GraphCast reference fixture: a seeded random instance of DeepMind's GraphCast and its outputs.

This runs **outside** matteralign, in a throw-away environment holding DeepMind's ``graphcast`` package
(github.com/google-deepmind/graphcast, the ``graphcast/`` package of the commit before it became
``weathernext``) and its dependencies (jax, dm-haiku, jraph, chex, trimesh, rtree, xarray, scipy)::

    python -m venv /tmp/gcvenv && /tmp/gcvenv/bin/pip install jax dm-haiku jraph chex trimesh rtree xarray scipy dm-tree pandas
    /tmp/gcvenv/bin/python scripts/build_graphcast_reference.py --graphcast-src /path/to/graphcast/checkout \
        --out tests/data/graphcast

It builds a small GraphCast (mesh refinement 2, 10° grid with the poles, latent size 16, 2 processor
steps, task of 2 pressure levels) with haiku's initialisers, perturbs every parameter with seeded noise
(so biases and layer-norm offsets are not trivially 0 / 1), and writes

* ``graphcast_tiny.npz``: the parameters in the released checkpoint layout (``graphcast.checkpoint.dump``
  of a ``graphcast.CheckPoint``: ``params:<haiku module>:<name>``, ``model_config:*``, ``task_config:*``);
* ``graphcast_tiny_reference.npz``: the raw input variables (``in:<name>``, ``forcing:<name>`` with their
  dims in ``dims:<kind>:<name>``), the stacked grid-node features the model sees, and the reference's
  intermediate arrays: grid and mesh latents after the encoder, mesh latents after the processor, the
  grid-node latents entering the decoder's output MLP, and the outputs.

With ``--structure MESH_SIZE RESOLUTION`` it instead writes the reference graph structure (mesh vertices,
multimesh, grid2mesh and mesh2grid edges and their features) at that geometry to
``graphcast_structure_<mesh>_<res>.npz`` (large; not committed) and its digests (SHA-256 of every index
array, sums of every feature array) to ``graphcast_structure_<mesh>_<res>.json`` (committed for 5, 1.0:
GraphCast_small's geometry).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np


def _grid(resolution: float):
    lat = np.linspace(-90.0, 90.0, int(round(180 / resolution)) + 1)
    lon = np.arange(0.0, 360.0, resolution)
    return lat, lon


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graphcast-src", required=True, help="checkout holding DeepMind's graphcast/ package")
    ap.add_argument("--out", default="tests/data/graphcast")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--structure", nargs=2, metavar=("MESH_SIZE", "RESOLUTION"))
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.graphcast_src))
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import haiku as hk
    import jax
    import xarray
    from graphcast import checkpoint, graphcast

    os.makedirs(args.out, exist_ok=True)
    if args.structure:
        mesh_size, res = int(args.structure[0]), float(args.structure[1])
        cfg = graphcast.ModelConfig(resolution=res, mesh_size=mesh_size, latent_size=4, gnn_msg_steps=1,
                                    hidden_layers=1, radius_query_fraction_edge_length=0.6,
                                    mesh2grid_edge_normalization_factor=None)
        lat, lon = _grid(res)
        built = {}

        def make():  # haiku modules are built inside a transform; only the graph structure is kept
            built["model"] = graphcast.GraphCast(cfg, graphcast.TASK_13_PRECIP_OUT)
            built["model"]._maybe_init(xarray.Dataset(coords={"lat": lat, "lon": lon}))

        hk.transform(make).init(jax.random.PRNGKey(0))
        model = built["model"]
        out = {"vertices": model._finest_mesh.vertices, "lat": lat, "lon": lon}
        for name, g in (("grid2mesh", model._grid2mesh_graph_structure), ("mesh", model._mesh_graph_structure),
                        ("mesh2grid", model._mesh2grid_graph_structure)):
            (key, es), = g.edges.items()
            out[f"{name}:senders"] = np.asarray(es.indices.senders)
            out[f"{name}:receivers"] = np.asarray(es.indices.receivers)
            out[f"{name}:edge_features"] = np.asarray(es.features)
            for node_name, ns in g.nodes.items():
                out[f"{name}:{node_name}:features"] = np.asarray(ns.features)
        path = os.path.join(args.out, f"graphcast_structure_{mesh_size}_{res:g}.npz")
        np.savez_compressed(path, **out)
        print("wrote", path, {k: v.shape for k, v in out.items()})
        digest = {"mesh_size": mesh_size, "resolution": res, "mesh2grid_edge_normalization_factor": None}
        for k, v in out.items():
            if k.endswith(("senders", "receivers")):
                digest[k] = {"n": int(v.size), "sha256": hashlib.sha256(v.astype("<i8").tobytes()).hexdigest()}
            elif k.endswith("features") or k == "vertices":
                a = v.astype(np.float64)
                digest[k] = {"shape": list(v.shape), "sum": float(a.sum()), "abs_sum": float(np.abs(a).sum()),
                             "weighted_sum": float((a * np.arange(1, a.shape[0] + 1)[:, None]).sum())}
        with open(os.path.join(args.out, f"graphcast_structure_{mesh_size}_{res:g}.json"), "w") as f:
            json.dump(digest, f, indent=1)
        return

    model_config = graphcast.ModelConfig(resolution=10.0, mesh_size=2, latent_size=16, gnn_msg_steps=2,
                                         hidden_layers=1, radius_query_fraction_edge_length=0.6,
                                         mesh2grid_edge_normalization_factor=0.6180338738074472)
    task_config = graphcast.TaskConfig(
        input_variables=graphcast.TASK_13_PRECIP_OUT.input_variables,
        target_variables=graphcast.TASK_13_PRECIP_OUT.target_variables,
        forcing_variables=graphcast.FORCING_VARS, pressure_levels=(500, 850), input_duration="12h")
    lat, lon = _grid(model_config.resolution)
    levels = np.array(task_config.pressure_levels)
    rng = np.random.default_rng(args.seed)
    sizes = {"batch": 1, "time": 2, "lat": len(lat), "lon": len(lon), "level": len(levels)}
    coords = {"lat": lat, "lon": lon, "level": levels}

    def var(dims):  # quarter-integer values: exact in float32, and the fixture compresses well
        return (dims, (rng.integers(-8, 9, [sizes[d] for d in dims]) / 4).astype(np.float32))

    surface = ("batch", "time", "lat", "lon")
    atmos = ("batch", "time", "level", "lat", "lon")
    kinds = {}
    for name in task_config.input_variables:
        if name in graphcast.STATIC_VARS:
            kinds[name] = ("lat", "lon")
        elif name in ("year_progress_sin", "year_progress_cos"):
            kinds[name] = ("batch", "time")
        elif name in ("day_progress_sin", "day_progress_cos"):
            kinds[name] = ("batch", "time", "lon")
        elif name in graphcast.ALL_ATMOSPHERIC_VARS:
            kinds[name] = atmos
        else:
            kinds[name] = surface
    inputs = xarray.Dataset({k: var(d) for k, d in kinds.items()}, coords=coords)
    sizes["time"] = 1
    forcings = xarray.Dataset({k: var(kinds[k]) for k in task_config.forcing_variables}, coords=coords)
    targets = xarray.Dataset({k: var(surface if k not in graphcast.ALL_ATMOSPHERIC_VARS else atmos)
                              for k in task_config.target_variables}, coords=coords)

    captured = {}

    def interceptor(next_f, args_, kwargs, context):
        out = next_f(*args_, **kwargs)
        name = context.module.module_name
        if name.endswith("decoder_nodes_grid_nodes_mlp") and context.method_name == "__call__":
            captured["decoder_input"] = args_[0]
        return out

    def forward(inputs, targets, forcings):
        model = graphcast.GraphCast(model_config, task_config)
        model._maybe_init(inputs)
        feats = model._inputs_to_grid_node_features(inputs, forcings)
        mesh0, grid0 = model._run_grid2mesh_gnn(feats)
        mesh1 = model._run_mesh_gnn(mesh0)
        with hk.intercept_methods(interceptor):
            out = model._run_mesh2grid_gnn(mesh1, grid0)
        full = model(inputs, targets_template=targets, forcings=forcings)
        return {"grid_node_features": feats, "encoder_mesh": mesh0, "encoder_grid": grid0,
                "processor_mesh": mesh1, "decoder_grid_input": captured["decoder_input"], "output": out,
                "full_2m_temperature": graphcast.xarray_jax.unwrap_data(full["2m_temperature"])}

    fn = hk.transform(forward)
    params = fn.init(jax.random.PRNGKey(args.seed), inputs, targets, forcings)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(args.seed + 1), len(leaves))
    leaves = [np.asarray(p + 0.1 * jax.random.normal(k, p.shape, p.dtype)) for p, k in zip(leaves, keys, strict=True)]
    params = jax.tree_util.tree_unflatten(tree, leaves)
    ref = {k: np.asarray(v) for k, v in fn.apply(params, None, inputs, targets, forcings).items()}

    ck = graphcast.CheckPoint(params={m: dict(p) for m, p in params.items()}, model_config=model_config,
                              task_config=task_config, description="seeded random GraphCast (test fixture)",
                              license="test fixture")
    with open(os.path.join(args.out, "graphcast_tiny.npz"), "wb") as f:
        checkpoint.dump(f, ck)
    out = {**ref, "lat": lat, "lon": lon}
    for prefix, ds in (("in", inputs), ("forcing", forcings)):
        for k in ds.data_vars:
            out[f"{prefix}:{k}"] = ds[k].values
            out[f"dims:{prefix}:{k}"] = np.array(ds[k].dims)
    np.savez_compressed(os.path.join(args.out, "graphcast_tiny_reference.npz"), **out)
    print({k: v.shape for k, v in out.items() if not k.startswith(("in:", "forcing:", "dims:"))})


if __name__ == "__main__":
    main()
