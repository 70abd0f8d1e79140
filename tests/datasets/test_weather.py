"""The ERA5-style gridded reader, the bundled synthetic ``weather`` grid, and the grid's trip to a worker."""

from __future__ import annotations

import numpy as np
import pytest

from matteralign import datasets
from matteralign.datasets.weather import GridPatch, read_weather
from matteralign.errors import DatasetError

xr = pytest.importorskip("xarray")

LEVELS = (1000, 850, 500)


def _era5(n_time=2, n_lat=9, n_lon=8, *, lat_ascending=True, seed=0, names="cds"):
    """A tiny ERA5-style dataset with known values (latitude ascending and longitude in [-180, 180) as CDS files can be)."""
    rng = np.random.default_rng(seed)
    lat = np.linspace(-80, 80, n_lat) if lat_ascending else np.linspace(80, -80, n_lat)
    lon = np.linspace(-180, 180, n_lon, endpoint=False)
    times = np.datetime64("2022-07-01T00") + np.arange(n_time) * np.timedelta64(6, "h")
    s3, a4 = (n_time, n_lat, n_lon), (n_time, len(LEVELS), n_lat, n_lon)
    surf = {"t2m": 270 + 20 * rng.random(s3), "u10": rng.normal(0, 5, s3), "v10": rng.normal(0, 5, s3),
            "msl": 101000 + 1000 * rng.random(s3)}
    if names == "short":
        surf = {{"t2m": "2t", "u10": "10u", "v10": "10v"}.get(k, k): v for k, v in surf.items()}
    data = {k: (("valid_time", "latitude", "longitude"), v.astype(np.float32)) for k, v in surf.items()}
    for k, (m, sd) in {"z": (5e4, 1e4), "u": (5, 5), "v": (0, 5), "t": (250, 10), "q": (0.005, 0.001)}.items():
        data[k] = (("valid_time", "pressure_level", "latitude", "longitude"), (m + sd * rng.random(a4)).astype(np.float32))
    data["lsm"] = (("latitude", "longitude"), (rng.random((n_lat, n_lon)) > 0.5).astype(np.float32))
    data["slt"] = (("latitude", "longitude"), rng.integers(0, 8, (n_lat, n_lon)).astype(np.float32))
    data["geopotential_at_surface"] = (("latitude", "longitude"), rng.random((n_lat, n_lon)).astype(np.float32))
    return xr.Dataset(data, coords={"valid_time": times, "pressure_level": np.array(LEVELS), "latitude": lat,
                                    "longitude": lon})


@pytest.fixture
def era5_file(tmp_path):
    ds = _era5()
    path = tmp_path / "tiny.nc"
    ds.to_netcdf(path)
    return ds, path


def test_reader_values_labels_ids(era5_file):
    raw, path = era5_file
    ds = read_weather(path, patch_size=4)
    # 9 latitudes → 8 (one row dropped), 8 longitudes → 2 patch columns; 2 times → 2·2·2 samples
    assert len(ds) == 8 and ds.meta["grid"]["patches"] == [2, 2] and ds.meta["grid"]["cropped"] == [1, 0]
    assert ds.ids[:4] == ["tiny:2022-07-01T00:0:0", "tiny:2022-07-01T00:0:1", "tiny:2022-07-01T00:1:0",
                          "tiny:2022-07-01T00:1:1"]
    assert ds.ids[4] == "tiny:2022-07-01T06:0:0"
    # sorted north → south and lon in [0, 360): patch (0, 0) is the 4 northernmost latitudes, lon 0..135
    north = raw.sortby("latitude", ascending=False)
    north = north.assign_coords(longitude=north.longitude % 360).sortby("longitude")
    block = north.isel(valid_time=1, latitude=slice(0, 4), longitude=slice(0, 4))
    s = ds.by_id("tiny:2022-07-01T06:0:0")
    assert s.labels["temperature_2m_k"] == pytest.approx(float(block.t2m.astype(float).mean()), rel=1e-6)
    assert s.labels["mslp_hpa"] == pytest.approx(float(block.msl.astype(float).mean()) / 100, rel=1e-6)
    q1000 = block.q.sel(pressure_level=1000).astype(float)
    assert s.labels["specific_humidity_g_kg"] == pytest.approx(1000 * float(q1000.mean()), rel=1e-6)
    speed = np.sqrt(block.u10.astype(float) ** 2 + block.v10.astype(float) ** 2)
    assert s.labels["wind_speed_10m_m_s"] == pytest.approx(float(speed.mean()), rel=1e-6)
    assert s.meta["lat"] == pytest.approx(float(block.latitude.mean()), abs=1e-3)
    # the grid view: patch values in variables() order, the full grid shared by every patch
    g = s.grid
    assert isinstance(g, GridPatch) and g.grid is ds[0].grid.grid
    vals = np.asarray(g)
    names = g.grid.variables()
    assert vals.shape == (len(names), 4, 4) == g.shape
    np.testing.assert_array_equal(vals[names.index("surf:2t")], block.t2m.values)
    np.testing.assert_array_equal(vals[names.index("atmos:t@500")], block.t.sel(pressure_level=500).values)
    assert np.all(np.diff(g.grid.lat) < 0) and np.all(np.diff(g.grid.lon) > 0) and g.grid.lon.min() >= 0


def test_reader_zarr_and_short_names(tmp_path):
    raw = _era5(names="short", lat_ascending=False, n_lat=8)
    path = tmp_path / "short.zarr"
    raw.to_zarr(path, consolidated=False)
    ds = datasets.load(path)  # a .zarr folder is a dataset path
    assert len(ds) == 8 and ds.ids[0] == "short:2022-07-01T00:0:0"
    assert ds[0].labels["temperature_2m_k"] > 200


def test_reader_errors(tmp_path):
    raw = _era5()
    with pytest.raises(DatasetError, match="does not exist"):
        read_weather(tmp_path / "none.nc")
    p = tmp_path / "no_q.nc"
    raw.drop_vars("q").to_netcdf(p)
    with pytest.raises(DatasetError, match=r"no atmospheric 'q' variable .*specific_humidity"):
        read_weather(p)
    p = tmp_path / "no_level.nc"
    raw.drop_vars(["z", "u", "v", "t", "q"]).drop_dims("pressure_level").to_netcdf(p)
    with pytest.raises(DatasetError, match="no pressure-level dimension"):
        read_weather(p)
    p = tmp_path / "nolat.nc"
    raw.rename({"latitude": "y"}).to_netcdf(p)
    with pytest.raises(DatasetError, match="no 'latitude' dimension"):
        read_weather(p)
    p = tmp_path / "nan.nc"
    bad = raw.copy(deep=True)
    bad["msl"][0, 4, 4] = np.nan
    bad.to_netcdf(p)
    with pytest.raises(DatasetError, match="'msl' has non-finite"):
        read_weather(p)
    with pytest.raises(DatasetError, match="smaller than one 16×16 patch"):
        read_weather(tmp_path / "nan.nc", patch_size=16)
    p = tmp_path / "junk.nc"
    p.write_bytes(b"not a netcdf file at all")
    with pytest.raises(DatasetError, match="cannot read"):
        read_weather(p)


def test_bundled_weather_is_synthetic_and_plausible():
    ds = datasets.load("weather")
    info = {i.name: i for i in datasets.describe() if i.kind == "bundled"}
    assert "SYNTHETIC" in info["weather"].source and ds.meta["synthetic"] is True
    assert len(ds) == 1280 and ds.meta["grid"]["shape"] == [32, 64] and ds.meta["grid"]["levels_hpa"] == [1000, 850, 500, 250]
    t2m, lat = ds.labels("temperature_2m_k"), np.array([s.meta["lat"] for s in ds])
    # warmer at the equator than at the poles; pressure, humidity and wind in Earth-like ranges
    assert t2m[np.abs(lat) < 20].mean() > t2m[np.abs(lat) > 60].mean() + 25
    assert 950 < ds.labels("mslp_hpa").min() and ds.labels("mslp_hpa").max() < 1060
    q = ds.labels("specific_humidity_g_kg")
    assert 0 < q.min() and q.max() < 30 and q[np.abs(lat) < 20].mean() > q[np.abs(lat) > 60].mean()
    assert 0 < ds.labels("wind_speed_10m_m_s").mean() < 20
    g = ds[0].grid.grid
    t = g.atmos["t"]  # colder with height
    assert (t[:, 0].mean() > t[:, 1].mean() > t[:, 2].mean() > t[:, 3].mean())
    z = g.atmos["z"]
    assert np.all(np.diff(z.mean(axis=(0, 2, 3))) > 0)


def test_grids_survive_subsets_and_the_worker_file(tmp_path):
    from matteralign.execute.wire import read_samples, write_samples

    ds = datasets.load("weather", n=50, seed=1)
    sub = ds.select(ds.ids[::-1][:20])
    write_samples(sub, tmp_path / "d.npz")
    back = read_samples(tmp_path / "d.npz")
    assert back.ids == sub.ids
    for a, b in zip(sub, back, strict=True):
        assert (a.grid.t, a.grid.i, a.grid.j) == (b.grid.t, b.grid.i, b.grid.j)
        np.testing.assert_array_equal(np.asarray(a.grid), np.asarray(b.grid))
    assert len({id(s.grid.grid) for s in back}) == 1  # one full grid, shared
    gb, ga = back[0].grid.grid, sub[0].grid.grid
    np.testing.assert_array_equal(gb.times, ga.times)
    np.testing.assert_array_equal(gb.atmos["q"], ga.atmos["q"])
    assert gb.levels == ga.levels and gb.history(0) == [0, 0] and gb.history(3) == [2, 3]
    # an atoms-only dataset writes no grid arrays
    g2 = datasets.load("g2", n=3)
    write_samples(g2, tmp_path / "g.npz")
    assert all(s.grid is None for s in read_samples(tmp_path / "g.npz"))
