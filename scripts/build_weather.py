"""Build the bundled ``weather`` dataset: src/matteralign/data/weather.nc, a small *synthetic* ERA5-style grid.

No real reanalysis is bundled (nothing may be downloaded at run time). The fields are made from simple
physics, seeded, on a 32 × 64 latitude-longitude grid (5.625°), 4 pressure levels and 10 times 6 hours
apart:

* land-sea mask and orography from a few seeded Gaussian "continents"; soil type 1–7 on land, 0 at sea;
* mean sea-level pressure: subtropical highs and subpolar lows, plus seeded cyclones and anticyclones
  (±10–25 hPa, 800–1600 km across) drifting east with the westerlies;
* 10 m wind: easterly trades, mid-latitude westerlies, polar easterlies, plus the geostrophic wind of
  the pressure anomalies (Coriolis parameter floored at 12° latitude), reduced by surface friction;
* 2 m temperature: 300 K at the equator to 245 K at the poles (cos²φ), −6.5 K/km with orography, a
  diurnal cycle over land, warm/cold sectors ahead of/behind the cyclones;
* pressure levels 1000, 850, 500, 250 hPa: heights from the hypsometric equation, temperature with the
  −6.5 K/km lapse rate (floored at 210 K), winds growing with height plus a 250 hPa jet near ±40°,
  specific humidity from relative humidity (higher at sea, near lows, lower aloft) × saturation.

    python scripts/build_weather.py [--seed 0] [--out PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "matteralign" / "data" / "weather.nc"

G = 9.80665          # m s-2
R_D = 287.05         # J kg-1 K-1
OMEGA = 7.2921e-5    # s-1
A_EARTH = 6.371e6    # m
LAPSE = 0.0065       # K m-1


def _smooth_noise(rng, shape, scale_cells: float) -> np.ndarray:
    """Seeded noise smoothed by a Gaussian filter in Fourier space (periodic in longitude), unit std."""
    f = np.fft.fft2(rng.standard_normal(shape))
    ky = np.fft.fftfreq(shape[-2])[:, None]
    kx = np.fft.fftfreq(shape[-1])[None, :]
    f *= np.exp(-0.5 * (2 * np.pi * scale_cells) ** 2 * (kx**2 + ky**2))
    out = np.real(np.fft.ifft2(f))
    return out / out.std()


def _great_circle(lat1, lon1, lat2, lon2):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(lon2 - lon1)
    c = np.sin(p1) * np.sin(p2) + np.cos(p1) * np.cos(p2) * np.cos(dl)
    return A_EARTH * np.arccos(np.clip(c, -1.0, 1.0))


def synthetic_weather(*, seed: int = 0, n_lat: int = 32, n_lon: int = 64, n_times: int = 10,
                      levels=(1000, 850, 500, 250), step_hours: int = 6, start: str = "2020-01-01T00"):
    """The synthetic fields as an ``xarray.Dataset`` with ERA5 (CDS) variable names."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    lat = 90.0 - (np.arange(n_lat) + 0.5) * 180.0 / n_lat        # cell centres, north → south
    lon = np.arange(n_lon) * 360.0 / n_lon
    LAT, LON = np.meshgrid(lat, lon, indexing="ij")
    phi = np.radians(LAT)
    times = np.datetime64(start) + np.arange(n_times) * np.timedelta64(step_hours, "h")

    # static: continents, orography, soil type
    land = np.zeros_like(LAT)
    for _ in range(6):
        c_lat, c_lon = rng.uniform(-60, 70), rng.uniform(0, 360)
        r = rng.uniform(1.5e6, 3.5e6)
        land += np.exp(-0.5 * (_great_circle(LAT, LON, c_lat, c_lon) / r) ** 2)
    land += 0.15 * _smooth_noise(rng, LAT.shape, 2.0)
    lsm = np.clip((land - 0.45) / 0.15, 0.0, 1.0)
    height = lsm * np.clip(1200.0 * (land - 0.4) + 500.0 * _smooth_noise(rng, LAT.shape, 1.5), 0.0, 4000.0)
    zs = G * height
    slt = np.where(lsm > 0.5, rng.integers(1, 8, size=LAT.shape), 0).astype(np.float64)

    # weather systems: (lat, lon, amplitude Pa, radius m, eastward speed m/s)
    systems = []
    for _ in range(10):
        hemi = rng.choice([-1.0, 1.0])
        systems.append((hemi * rng.uniform(30, 65), rng.uniform(0, 360), rng.choice([-1.0, 1.0]) * rng.uniform(1000, 2500),
                        rng.uniform(8e5, 1.6e6), rng.uniform(6, 14)))

    f = 2 * OMEGA * np.sin(phi)
    f = np.where(np.abs(LAT) < 12.0, np.sign(LAT + 1e-9) * 2 * OMEGA * np.sin(np.radians(12.0)), f)
    dy = np.radians(180.0 / n_lat) * A_EARTH
    dx = np.radians(360.0 / n_lon) * A_EARTH * np.cos(phi)

    surf = {k: [] for k in ("t2m", "u10", "v10", "msl")}
    atm = {k: [] for k in ("z", "u", "v", "t", "q")}
    for ti in range(len(times)):
        hours = ti * step_hours
        msl = 101325.0 + 1200.0 * np.exp(-0.5 * ((np.abs(LAT) - 30) / 8) ** 2) - 1500.0 * np.exp(
            -0.5 * ((np.abs(LAT) - 62) / 8) ** 2)
        warm = np.zeros_like(LAT)
        near_low = np.zeros_like(LAT)
        for s_lat, s_lon, amp, rad, speed in systems:
            c_lon = (s_lon + np.degrees(speed * hours * 3600 / (A_EARTH * np.cos(np.radians(s_lat))))) % 360
            d = _great_circle(LAT, LON, s_lat, c_lon)
            bump = np.exp(-0.5 * (d / rad) ** 2)
            msl += amp * bump
            if amp < 0:  # warm sector east of a low, cold air west of it
                east = np.sin(np.radians(LON - c_lon))
                warm += 4.0 * bump * east
                near_low += bump
        msl += 150.0 * _smooth_noise(rng, LAT.shape, 1.0)
        # geostrophic wind of the pressure field (rho ~ 1.2 kg m-3), reduced by friction
        dpdy = -np.gradient(msl, axis=0) / dy            # axis 0 runs north → south
        dpdx = (np.roll(msl, -1, axis=1) - np.roll(msl, 1, axis=1)) / (2 * dx)
        ug, vg = -dpdy / (1.2 * f), dpdx / (1.2 * f)
        u_bg = -6.0 * np.cos(6 * phi)
        u10 = u_bg + 0.6 * np.clip(ug, -40, 40) + 0.8 * _smooth_noise(rng, LAT.shape, 1.0)
        v10 = 0.6 * np.clip(vg, -40, 40) + 0.8 * _smooth_noise(rng, LAT.shape, 1.0)
        solar = np.cos(2 * np.pi * ((hours + LON / 15.0) % 24 - 15.0) / 24.0)   # warmest at 15 h local time
        t2m = (245.0 + 55.0 * np.cos(phi) ** 2 - LAPSE * height + 5.0 * lsm * solar + warm
               + 1.0 * _smooth_noise(rng, LAT.shape, 1.5))
        surf["t2m"].append(t2m)
        surf["u10"].append(u10)
        surf["v10"].append(v10)
        surf["msl"].append(msl)
        # pressure levels
        t_sl = t2m + LAPSE * height
        z_l, u_l, v_l, t_l, q_l = [], [], [], [], []
        for p in levels:
            zp = (R_D * t_sl / G) * np.log(msl / (100.0 * p))               # first guess
            zp = (R_D * (t_sl - 0.5 * LAPSE * zp) / G) * np.log(msl / (100.0 * p))
            tp = np.maximum(t_sl - LAPSE * zp, 210.0)
            grow = 1.0 + np.maximum(zp, 0.0) / 15000.0
            jet = 30.0 * np.exp(-0.5 * ((np.abs(LAT) - 40.0) / 10.0) ** 2) * np.clip(zp / 10000.0, 0.0, None)
            up = (u_bg + np.clip(ug, -40, 40)) * grow + jet
            vp = np.clip(vg, -40, 40) * grow
            es = 611.2 * np.exp(17.67 * (tp - 273.15) / (tp - 29.65))
            qsat = 0.622 * es / (100.0 * p - 0.378 * es)
            rh = np.clip((0.8 - 0.3 * lsm + 0.15 * near_low) * (p / 1000.0) ** 1.5
                         + 0.05 * _smooth_noise(rng, LAT.shape, 1.0), 0.02, 1.0)
            z_l.append(G * zp)
            u_l.append(up)
            v_l.append(vp)
            t_l.append(tp)
            q_l.append(rh * qsat)
        for k, v in zip(("z", "u", "v", "t", "q"), (z_l, u_l, v_l, t_l, q_l), strict=True):
            atm[k].append(np.stack(v))

    units = {"t2m": "K", "u10": "m s**-1", "v10": "m s**-1", "msl": "Pa", "z": "m**2 s**-2", "u": "m s**-1",
             "v": "m s**-1", "t": "K", "q": "kg kg**-1", "lsm": "(0 - 1)", "slt": "~",
             "geopotential_at_surface": "m**2 s**-2"}
    data = {k: (("time", "latitude", "longitude"), np.stack(v).astype(np.float32)) for k, v in surf.items()}
    data |= {k: (("time", "level", "latitude", "longitude"), np.stack(v).astype(np.float32)) for k, v in atm.items()}
    data |= {"lsm": (("latitude", "longitude"), lsm.astype(np.float32)),
             "slt": (("latitude", "longitude"), slt.astype(np.float32)),
             "geopotential_at_surface": (("latitude", "longitude"), zs.astype(np.float32))}
    ds = xr.Dataset(data, coords={"time": times.astype("datetime64[ns]"), "level": np.array(levels, np.int32),
                                  "latitude": lat, "longitude": lon})
    for k, u in units.items():
        ds[k].attrs["units"] = u
    ds["level"].attrs["units"] = "hPa"
    ds.attrs.update({"title": "matteralign synthetic ERA5-style weather grid (not real data)",
                     "synthetic": "yes", "seed": int(seed), "script": "scripts/build_weather.py"})
    return ds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    ds = synthetic_weather(seed=args.seed)
    enc = {k: {"zlib": True, "complevel": 6} for k in ds.data_vars}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(args.out, engine="netcdf4", encoding=enc)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {dict(ds.sizes)}")


if __name__ == "__main__":
    main()
