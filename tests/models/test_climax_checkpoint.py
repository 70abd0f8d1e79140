"""ClimaX checkpoint reading without the network (main environment): hyper-parameters inferred from the
tensors of a state dict in the released layout, the legacy ``channel`` names, and the clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from matteralign.errors import ModelError

torch = pytest.importorskip("torch")

from matteralign.models._climax import sincos_1d, sincos_2d  # noqa: E402
from matteralign.models.hub_climax import DEFAULT_VARS, grid_variables, read_climax_checkpoint  # noqa: E402


def _state(d=32, depth=3, p=2, rows=4, n_vars=48, hidden=64, head=2, grouped=False, legacy=False):
    sd = {"pos_embed": torch.zeros(1, rows * 2 * rows, d), "var_query": torch.zeros(1, 1, d),
          "lead_time_embed.weight": torch.zeros(d, 1), "norm.weight": torch.ones(d)}
    sd["channel_embed" if legacy else "var_embed"] = torch.zeros(1, n_vars, d)
    if grouped:
        sd["token_embeds.proj_weights"] = torch.zeros(n_vars, d, 1, p, p)
    else:
        for k in range(n_vars):
            sd[f"token_embeds.{k}.proj.weight"] = torch.zeros(d, 1, p, p)
    for b in range(depth):
        sd[f"blocks.{b}.norm1.weight"] = torch.ones(d)
        sd[f"blocks.{b}.mlp.fc1.weight"] = torch.zeros(hidden, d)
    for k in range(head + 1):
        sd[f"head.{2 * k}.weight"] = torch.zeros(d, d)
    return {"state_dict": {f"net.{k}": v for k, v in sd.items()}, "hyper_parameters": {"lr": 5e-4}}


def test_hyper_parameters_inferred_from_tensors(tmp_path):
    path = tmp_path / "c.ckpt"
    torch.save(_state(), path)
    state, cfg = read_climax_checkpoint(str(path))
    assert (cfg["embed_dim"], cfg["depth"], cfg["patch_size"], cfg["img_size"]) == (32, 3, 2, (8, 16))
    assert cfg["mlp_ratio"] == 2.0 and cfg["decoder_depth"] == 2 and cfg["num_heads"] == 16
    assert cfg["variables"] == DEFAULT_VARS and not cfg["grouped_patch_embed"] and cfg["renamed"] == 0
    assert cfg["sources"] == {"img_size": "pos_embed (1:2 grid)", "num_heads": "released ClimaX value",
                              "variables": "released ClimaX 48-variable list"}
    assert "pos_embed" in state and not any(k.startswith("net.") for k in state)
    torch.save(_state(grouped=True, legacy=True, p=4, n_vars=3), path)
    state, cfg = read_climax_checkpoint(str(path), variables=["a", "b", "c"], num_heads=4)
    assert cfg["grouped_patch_embed"] and cfg["patch_size"] == 4 and cfg["img_size"] == (16, 32)
    assert cfg["renamed"] == 1 and "var_embed" in state and cfg["variables"] == ("a", "b", "c")
    assert cfg["sources"]["num_heads"] == "option" and cfg["num_heads"] == 4


def test_checkpoint_errors_name_the_path(tmp_path):
    path = tmp_path / "c.ckpt"
    torch.save(_state(n_vars=40), path)
    with pytest.raises(ModelError, match=f"{path}.*40 variables and no variable names"):
        read_climax_checkpoint(str(path))
    ck = _state()
    ck["state_dict"]["optimizer_thing"] = torch.zeros(1)
    torch.save(ck, path)
    with pytest.raises(ModelError, match=r"keys outside the network 'net.': \['optimizer_thing'\]"):
        read_climax_checkpoint(str(path))
    ck = _state()
    del ck["state_dict"]["net.pos_embed"]
    torch.save(ck, path)
    with pytest.raises(ModelError, match=f"{path}.*missing key 'pos_embed'"):
        read_climax_checkpoint(str(path))
    ck = _state()
    ck["state_dict"]["net.pos_embed"] = torch.zeros(1, 24, 32)  # 24 tokens: not a 1:2 grid
    torch.save(ck, path)
    with pytest.raises(ModelError, match="24 position tokens do not form a 1:2 grid"):
        read_climax_checkpoint(str(path))
    torch.save(_state(), path)
    with pytest.raises(ModelError, match="5 attention heads do not divide embed_dim 32"):
        read_climax_checkpoint(str(path), num_heads=5)
    torch.save({"model": [1, 2]}, path)
    with pytest.raises(ModelError, match=f"{path}.*holds no ClimaX state dict"):
        read_climax_checkpoint(str(path))


def test_sincos_embeddings():
    e = sincos_1d(4, np.array([0.0, 1.0, 2.0]))
    np.testing.assert_allclose(e[2], [np.sin(2), np.sin(2 / 100), np.cos(2), np.cos(2 / 100)])
    p = sincos_2d(8, 2, 3)  # row-major tokens; first half encodes the column, second half the row
    assert p.shape == (6, 8)
    np.testing.assert_allclose(p[5, :4], sincos_1d(4, np.array([2.0]))[0])
    np.testing.assert_allclose(p[5, 4:], sincos_1d(4, np.array([1.0]))[0])


def test_grid_variables_on_the_bundled_grid():
    from matteralign.datasets.weather import load_weather

    grid = load_weather()[0].grid.grid
    f = grid_variables(grid)
    assert set(f) >= {"land_sea_mask", "orography", "lattitude", "2m_temperature", "temperature_850",
                      "specific_humidity_1000", "mean_sea_level_pressure"}
    np.testing.assert_allclose(f["orography"], grid.static["z"] / 9.80665, rtol=1e-6)
    np.testing.assert_array_equal(f["lattitude"][:, 0], grid.lat.astype(np.float32))
    np.testing.assert_array_equal(f["temperature_850"], grid.atmos["t"][:, grid.levels.index(850)])
    assert len([v for v in DEFAULT_VARS if v in f]) == 21
