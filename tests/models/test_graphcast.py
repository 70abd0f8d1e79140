"""GraphCast: our PyTorch encoder–processor–decoder against DeepMind's JAX/haiku reference, and the adapter.

``tests/data/graphcast`` holds a seeded random GraphCast made by ``scripts/build_graphcast_reference.py``
with DeepMind's own ``graphcast`` package (mesh refinement 2, 10° grid with the poles, latent 16, 2
processor steps, 2 pressure levels): its parameters in the released ``params/*.npz`` layout, its raw
inputs, and the reference's stacked grid-node features, encoder / processor / decoder latents and outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matteralign.errors import ModelError

torch = pytest.importorskip("torch")
pytest.importorskip("trimesh")
pytest.importorskip("rtree")

from matteralign.models import _graphcast as gc  # noqa: E402
from matteralign.models.hub_graphcast import GraphCastExtractor, graphcast_inputs, input_channels  # noqa: E402

FIX = Path(__file__).resolve().parents[1] / "data" / "graphcast"
CKPT = FIX / "graphcast_tiny.npz"


@pytest.fixture(scope="module")
def ref():
    with np.load(FIX / "graphcast_tiny_reference.npz") as z:
        return {k: z[k] for k in z.files}


def _reference_net(ref):
    params, mc, _ = gc.read_graphcast_params(str(CKPT))
    graphs = gc.build_graphs(ref["lat"], ref["lon"], mesh_size=mc["mesh_size"],
                             radius_query_fraction_edge_length=mc["radius_query_fraction_edge_length"],
                             mesh2grid_edge_normalization_factor=mc["mesh2grid_edge_normalization_factor"])
    net = gc.GraphCastNet(graphs, **gc.infer_sizes(params, str(CKPT)))
    net.load_haiku(params)
    return net.eval(), graphs


def test_encoder_processor_decoder_equal_the_reference(ref):
    net, _ = _reference_net(ref)
    with torch.no_grad():
        out = net(torch.from_numpy(ref["grid_node_features"][:, 0]))
    pairs = {"encoder_grid": "encoder_grid", "encoder_mesh": "encoder_mesh", "processor_mesh": "processor_mesh",
             "decoder_grid": "decoder_grid_input", "output": "output"}
    for ours, theirs in pairs.items():
        a, b = out[ours].numpy(), ref[theirs][:, 0]
        assert a.shape == b.shape, ours
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * max(1.0, float(np.abs(b).max())), err_msg=ours)
    # the full model's 2m_temperature: outputs are stacked in sorted target order (10m_u, 10m_v, 2m_temperature, …)
    t2m = ref["full_2m_temperature"][0, 0].reshape(-1)
    np.testing.assert_allclose(out["output"][:, 2].numpy(), t2m, atol=5e-5)


def test_channel_stacking_equals_the_reference(ref):
    def part(prefix):
        fields, dims = {}, {}
        for k in ref:
            if k.startswith(prefix + ":"):
                name = k.split(":", 1)[1]
                d, a = tuple(str(x) for x in ref[f"dims:{prefix}:{name}"]), ref[k]
                if d[0] == "batch":  # drop the batch axis (static fields have none)
                    a, d = a[0], d[1:]
                fields[name], dims[name] = a, d
        return gc.stack_channels(fields, dims, {"lat": ref["lat"].size, "lon": ref["lon"].size})

    x = np.concatenate([part("in"), part("forcing")], axis=1)
    np.testing.assert_array_equal(x, ref["grid_node_features"][:, 0])


def test_input_channels_follow_the_stacking_order():
    """The adapter's channel list is the order in which ``stack_channels`` (checked above) lays variables out."""
    _, _, task = gc.read_graphcast_params(str(CKPT))
    chans = input_channels(task)
    assert len(chans) == 49
    code = {}
    fields, dims = {}, {}
    levels = list(task["pressure_levels"])
    for part in ("inputs", "forcings"):
        names = task["input_variables"] if part == "inputs" else task["forcing_variables"]
        n_t = 2 if part == "inputs" else 1
        f, d = {}, {}
        for name in names:
            kind = [c for c in chans if c[0] == part and c[1] == name]
            if kind[0][3] == -1:
                arr, dd = np.zeros((1, 1)), ("lat", "lon")
                code[(part, name, None, -1)] = 0
            elif kind[0][2] is not None:
                arr, dd = np.zeros((n_t, len(levels), 1, 1)), ("time", "level", "lat", "lon")
            else:
                arr, dd = np.zeros((n_t, 1, 1)), ("time", "lat", "lon")
            f[name], d[name] = arr, dd
        fields[part], dims[part] = f, d
    # give each channel a distinct value, placed through the dims, and read the stacking order back
    k = 0
    for part in ("inputs", "forcings"):
        for arr in fields[part].values():
            flat = arr.reshape(-1)
            for i in range(flat.size):
                flat[i] = k
                k += 1
    got = np.concatenate([gc.stack_channels(fields[p], dims[p], {"lat": 1, "lon": 1})[0]
                          for p in ("inputs", "forcings")])
    expect = []
    for part, name, lev, ti in chans:
        arr = fields[part][name]
        if ti == -1:
            expect.append(arr.reshape(-1)[0])
        elif lev is None:
            expect.append(arr[ti, 0, 0])
        else:
            expect.append(arr[ti, levels.index(lev), 0, 0])
    np.testing.assert_array_equal(got, np.array(expect, dtype=np.float32))


def test_mesh_hierarchy_counts():
    meshes = gc.icosahedral_meshes(3)
    assert [v.shape[0] for v, _ in meshes] == [12, 42, 162, 642]
    assert [f.shape[0] for _, f in meshes] == [20, 80, 320, 1280]
    v = meshes[-1][0]
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    for (a, _), (b, _) in zip(meshes[:-1], meshes[1:], strict=True):
        np.testing.assert_array_equal(a, b[:a.shape[0]])


# ---------------------------------------------------------------------- the adapter
LEVELS = (50, 250, 500, 850, 1000)


def _random_checkpoint(path, *, seed=0, latent=12, steps=2, hidden=1, mesh_size=2, levels=LEVELS):
    """A seeded random GraphCast in the released npz layout (task: GraphCast_small's variables, given levels)."""
    task = {"input_variables": ("2m_temperature", "mean_sea_level_pressure", "10m_v_component_of_wind",
                                "10m_u_component_of_wind", "temperature", "geopotential", "u_component_of_wind",
                                "v_component_of_wind", "vertical_velocity", "specific_humidity",
                                "toa_incident_solar_radiation", "year_progress_sin", "year_progress_cos",
                                "day_progress_sin", "day_progress_cos", "geopotential_at_surface", "land_sea_mask"),
            "target_variables": ("2m_temperature", "temperature"),
            "forcing_variables": ("toa_incident_solar_radiation", "year_progress_sin", "year_progress_cos",
                                  "day_progress_sin", "day_progress_cos"),
            "pressure_levels": tuple(levels), "input_duration": "12h"}
    n_ch = len(input_channels(task))
    lat = np.linspace(-90, 90, 7)
    graphs = gc.build_graphs(lat, np.arange(0, 360, 30.0), mesh_size=mesh_size,
                             radius_query_fraction_edge_length=0.6)
    net = gc.GraphCastNet(graphs, n_channels=n_ch, latent_size=latent, hidden_layers=hidden, gnn_msg_steps=steps,
                          n_outputs=1 + len(levels))
    rng = np.random.default_rng(seed)
    flat = {}
    for module, ps in net.haiku_layout().items():
        for name, shape in ps.items():
            flat[f"params:{module}:{name}"] = (rng.standard_normal(shape) * 0.3).astype(np.float32)
    flat.update({"model_config:resolution": 1.0, "model_config:mesh_size": mesh_size,
                 "model_config:latent_size": latent, "model_config:gnn_msg_steps": steps,
                 "model_config:hidden_layers": hidden, "model_config:radius_query_fraction_edge_length": 0.6,
                 "task_config:input_duration": "12h", "description": "seeded random", "license": "test"})
    for k in ("input_variables", "target_variables", "forcing_variables", "pressure_levels"):
        for i, v in enumerate(task[k]):
            flat[f"task_config:{k}:{i}"] = v
    np.savez(path, **flat)
    return task


@pytest.fixture(scope="module")
def weather():
    from matteralign.datasets.weather import load_weather

    return load_weather()


def test_adapter_equals_an_independent_hook(tmp_path, weather):
    path = tmp_path / "GraphCast_random.npz"
    task = _random_checkpoint(path)
    ext = GraphCastExtractor(checkpoint=str(path), name="graphcast")
    samples = [weather[k] for k in (0, 5, 130, 700, 1279)]
    ids, arrays, skipped = ext.embed_samples_layers(samples, ["processor", "decoder"])
    assert not skipped and list(arrays) == ["processor", "decoder"]
    got = {layer: dict(zip(ids, arrs, strict=True)) for layer, arrs in arrays.items()}
    grid = samples[0].grid.grid
    # independently: a fresh network from the file, hooks on the processor output and the output MLP's input
    params, mc, _ = gc.read_graphcast_params(str(path))
    graphs = gc.build_graphs(grid.lat, grid.lon, mesh_size=2, radius_query_fraction_edge_length=0.6)
    net = gc.GraphCastNet(graphs, **gc.infer_sizes(params, str(path)))
    net.load_haiku(params)
    net.eval()
    seen = {}
    net.mesh_gnn.register_forward_hook(lambda m, a, out: seen.__setitem__("mesh", out["mesh_nodes"]))
    net.mesh2grid_gnn.mlps["decoder_nodes_grid_nodes"].register_forward_pre_hook(
        lambda m, a: seen.__setitem__("dec", a[0]))
    x = graphcast_inputs(grid, task)["x"]
    tri = graphs["mesh2grid"]["senders"].reshape(-1, 3)
    h, w = grid.shape
    for s in samples:
        p = s.grid
        with torch.no_grad():
            net(torch.from_numpy(x[p.t]))
        mesh_on_grid = seen["mesh"].numpy()[tri].mean(axis=1).reshape(h, w, -1)
        dec = seen["dec"].numpy().reshape(h, w, -1)
        sl = (slice(p.i * 4, p.i * 4 + 4), slice(p.j * 4, p.j * 4 + 4))
        np.testing.assert_allclose(got["processor"][s.id][0], mesh_on_grid[sl].reshape(-1, 12).mean(0), atol=1e-5)
        np.testing.assert_allclose(got["decoder"][s.id][0], dec[sl].reshape(-1, 12).mean(0), atol=1e-5)
    assert ext.n_forward == len({s.grid.t for s in samples})
    prov = ext.provenance()
    assert prov["n_parameters"] == sum(int(np.prod(v.shape)) for v in net.parameters())
    info = prov.get("model", prov)
    text = repr(info)
    assert "vertical_velocity" in text and "toa_incident_solar_radiation" in text  # channels set to 0
    assert "'lead_time_hours': 6.0" in text and "'route': 'DeepMind released params" in text
    assert "temperature@50" in text and "temperature@850" not in text.replace("inputs:temperature@850", "")


def test_inputs_from_the_grid(weather):
    grid = weather[0].grid.grid
    _, _, task = gc.read_graphcast_params(str(CKPT))  # levels 500, 850; 2 input times
    inp = graphcast_inputs(grid, task)
    chans = inp["channels"]
    x = inp["x"]
    c = chans.index(("inputs", "temperature", 850, 1))
    t850 = grid.atmos["t"][:, list(grid.levels).index(850)].astype(np.float64)
    np.testing.assert_allclose(x[:, :, c], ((t850 - t850.mean()) / t850.std()).reshape(len(grid.times), -1),
                               atol=1e-5)
    c0 = chans.index(("inputs", "temperature", 850, 0))  # t - 6 h; the first time repeats itself
    np.testing.assert_array_equal(x[1:, :, c0], x[:-1, :, c])
    np.testing.assert_array_equal(x[0, :, c0], x[0, :, c])
    assert inp["repeated_first_time"] == [0]
    assert "inputs:vertical_velocity@500[t1]" in inp["missing"]
    assert not any(m.startswith(("inputs:2m_temperature", "inputs:land_sea_mask")) for m in inp["missing"])
    # year progress at t + 6 h, as the reference computes it
    c = chans.index(("forcings", "year_progress_sin", None, 0))
    s = grid.times.astype("datetime64[s]").astype(np.int64)[2] + 6 * 3600
    expect = np.sin(np.float32(np.mod(s / 86400 / np.float64(365.24219), 1.0)) * (2 * np.pi))
    np.testing.assert_allclose(x[2, :, c], expect, atol=1e-6)


def test_missing_and_bad_checkpoints_name_the_path(tmp_path):
    with pytest.raises(ModelError, match="nope.npz"):
        GraphCastExtractor(checkpoint=str(tmp_path / "nope.npz"))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="bad.npz"):
        GraphCastExtractor(checkpoint=str(bad))
    empty = tmp_path / "empty.npz"
    np.savez(empty, something=np.zeros(2))
    with pytest.raises(ModelError, match=r"empty.npz.*no 'params:<module>:<name>'"):
        GraphCastExtractor(checkpoint=str(empty))
    # one parameter removed, one renamed
    path = tmp_path / "gc.npz"
    _random_checkpoint(path)
    with np.load(path) as z:
        flat = {k: z[k] for k in z.files}
    key = "params:mesh_gnn/~_networks_builder/processor_nodes_1_mesh_nodes_layer_norm:scale"
    flat["params:mesh_gnn/~_networks_builder/processor_nodes_1_mesh_nodes_layer_norm:gain"] = flat.pop(key)
    np.savez(path, **flat)
    with pytest.raises(ModelError, match=r"gc.npz.*missing.*processor_nodes_1_mesh_nodes_layer_norm:scale"
                                         r".*unexpected.*layer_norm:gain"):
        GraphCastExtractor(checkpoint=str(path)).network(_tiny_grid())
    # model_config that disagrees with the tensors
    _random_checkpoint(path, steps=2)
    with np.load(path) as z:
        flat = {k: z[k] for k in z.files}
    flat["model_config:gnn_msg_steps"] = np.array(16)
    np.savez(path, **flat)
    with pytest.raises(ModelError, match=r"gc.npz.*gnn_msg_steps=16 but its parameters have 2"):
        GraphCastExtractor(checkpoint=str(path))
    with pytest.raises(ModelError, match="fixed 6 h step"):
        GraphCastExtractor(checkpoint=str(CKPT), lead_time_hours=12)


def _tiny_grid():
    from matteralign.datasets.weather import WeatherGrid

    lat = np.linspace(80, -80, 8)
    lon = np.arange(0, 360, 22.5)
    t = np.array(["2020-01-01T00", "2020-01-01T06"], dtype="datetime64[s]")
    z = np.zeros((2, 8, 16), np.float32)
    return WeatherGrid("tiny", t, lat, lon, (500,), {"2t": z}, {}, {"t": z[:, None]})


def test_grid_without_any_input_is_an_error(tmp_path):
    from matteralign.datasets.weather import WeatherGrid

    g = _tiny_grid()
    g = WeatherGrid("bare", g.times, g.lat, g.lon, (700,), {"foo": g.surf["2t"]}, {}, {})
    _, _, task = gc.read_graphcast_params(str(CKPT))
    with pytest.raises(ModelError, match="grid 'bare' provides none of this GraphCast checkpoint's input"):
        graphcast_inputs(g, task)


@pytest.mark.slow
def test_graphs_equal_the_reference_at_graphcast_small_geometry():
    """Mesh refinement 5 on the 1° grid (GraphCast_small): every index array equals the reference's (SHA-256)
    and every feature array its sums (digests written by ``build_graphcast_reference.py --structure 5 1``)."""
    import hashlib
    import json

    ref = json.loads((FIX / "graphcast_structure_5_1.json").read_text())
    lat, lon = np.linspace(-90.0, 90.0, 181), np.arange(0.0, 360.0, 1.0)
    g = gc.build_graphs(lat, lon, mesh_size=5, radius_query_fraction_edge_length=0.6)
    ours = {"vertices": gc.icosahedral_meshes(5)[-1][0]}
    for name in ("grid2mesh", "mesh", "mesh2grid"):
        for part in ("senders", "receivers", "edge_features"):
            ours[f"{name}:{part}"] = g[name][part]
    ours["grid2mesh:grid_nodes:features"] = ours["mesh2grid:grid_nodes:features"] = g["grid_nodes"]
    for key in ("grid2mesh:mesh_nodes:features", "mesh:mesh_nodes:features", "mesh2grid:mesh_nodes:features"):
        ours[key] = g["mesh_nodes"]
    assert set(ours) == {k for k in ref if ":" in k or k == "vertices"}
    for key, d in ((k, v) for k, v in ref.items() if isinstance(v, dict)):
        a = ours[key]
        if "sha256" in d:
            assert a.size == d["n"] and hashlib.sha256(a.astype("<i8").tobytes()).hexdigest() == d["sha256"], key
        else:
            a = a.astype(np.float64)
            assert list(a.shape) == d["shape"], key
            w = np.arange(1, a.shape[0] + 1)[:, None]
            tol = 1e-6 * max(1.0, d["abs_sum"])  # float32 features: last-bit differences only
            assert abs(a.sum() - d["sum"]) <= tol and abs(np.abs(a).sum() - d["abs_sum"]) <= tol, key
            assert abs((a * w).sum() - d["weighted_sum"]) <= tol * a.shape[0], key
