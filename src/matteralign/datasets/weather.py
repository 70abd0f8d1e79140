"""Gridded weather data: ERA5-style NetCDF/zarr files read into (time, patch) samples.

A file holds the variables a weather foundation model such as Aurora reads, under ERA5 short names
(or their CDS / WeatherBench2 spellings), on a regular latitude-longitude grid:

* surface, dims ``(time, latitude, longitude)``: ``2t`` (``t2m``) [K], ``10u`` (``u10``) and ``10v``
  (``v10``) [m s⁻¹], ``msl`` [Pa];
* static, dims ``(latitude, longitude)`` (a leading time axis is allowed; its first entry is used):
  ``lsm`` [0–1], ``z`` (surface geopotential, also ``geopotential_at_surface``/``z_surf``/``zs``)
  [m² s⁻²], ``slt`` [soil type category];
* atmospheric, dims ``(time, level, latitude, longitude)`` on pressure levels [hPa]: ``z`` [m² s⁻²],
  ``u``, ``v`` [m s⁻¹], ``t`` [K], ``q`` [kg kg⁻¹].

A **sample** is one (time, patch): the ``patch_size × patch_size`` cells at patch row ``i`` and
column ``j`` (counted from the first latitude/longitude after sorting latitude north to south and
longitude from 0° east). Its id is ``<name>:<time>:<i>:<j>`` (time to the hour, e.g.
``weather:2020-01-01T06:3:7``) and its labels are the physical quantities at that patch, averaged
over its cells:

* ``temperature_2m_k``: 2 m temperature [K];
* ``specific_humidity_g_kg``: specific humidity at the lowest model level (highest pressure) [g kg⁻¹];
* ``mslp_hpa``: mean sea-level pressure [hPa];
* ``wind_speed_10m_m_s``: 10 m wind speed :math:`\\sqrt{u_{10}^2 + v_{10}^2}` averaged over cells [m s⁻¹].

``Sample.grid`` is a :class:`GridPatch`: the patch's own values (``np.asarray(patch)``, shape
``(variables, patch_size, patch_size)``) and a reference to the :class:`WeatherGrid` holding the full
fields of every time, which a grid model runs on once per time (the patch picks its row of the
model's per-patch latent). The grid travels to a model environment with the samples
(:func:`pack_grids` / :func:`unpack_grids`), so subsets (``Dataset.select``/``subsample``) keep it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from ..samples import Dataset, Sample

__all__ = ["WeatherGrid", "GridPatch", "read_weather", "load_weather", "grid_dataset", "pack_grids", "unpack_grids",
           "SURF_VARS", "STATIC_VARS", "ATMOS_VARS", "LABELS"]

#: Aurora's names of the surface, static and atmospheric variables, in the order they are stored.
SURF_VARS = ("2t", "10u", "10v", "msl")
STATIC_VARS = ("lsm", "z", "slt")
ATMOS_VARS = ("z", "u", "v", "t", "q")

#: Label name → unit.
LABELS = {"temperature_2m_k": "K (2 m temperature, patch mean)",
          "specific_humidity_g_kg": "g/kg (specific humidity at the lowest level, patch mean)",
          "mslp_hpa": "hPa (mean sea-level pressure, patch mean)",
          "wind_speed_10m_m_s": "m/s (10 m wind speed, patch mean)"}

_SURF_ALIASES = {"2t": ("2t", "t2m", "2m_temperature"), "10u": ("10u", "u10", "10m_u_component_of_wind"),
                 "10v": ("10v", "v10", "10m_v_component_of_wind"), "msl": ("msl", "mean_sea_level_pressure")}
_STATIC_ALIASES = {"lsm": ("lsm", "land_sea_mask"), "slt": ("slt", "soil_type"),
                   "z": ("geopotential_at_surface", "z_surf", "zs", "z")}
_ATMOS_ALIASES = {"z": ("z", "geopotential"), "u": ("u", "u_component_of_wind"), "v": ("v", "v_component_of_wind"),
                  "t": ("t", "temperature"), "q": ("q", "specific_humidity")}
_DIM_ALIASES = {"time": ("time", "valid_time"), "level": ("level", "pressure_level", "isobaricInhPa", "plev"),
                "latitude": ("latitude", "lat"), "longitude": ("longitude", "lon")}


@dataclass(eq=False)
class WeatherGrid:
    """The full fields of a gridded dataset, every time (shared by all of its :class:`GridPatch`).

    Attributes
    ----------
    name : str
        Dataset name (the prefix of the sample ids).
    times : ndarray of datetime64[s], shape (T,)
    lat : ndarray, shape (H,)
        Latitudes [°], strictly decreasing (north to south).
    lon : ndarray, shape (W,)
        Longitudes [°] in [0, 360), strictly increasing.
    levels : tuple of int
        Pressure levels [hPa] of the atmospheric variables, in stored order.
    surf : dict of str to ndarray (T, H, W) float32
    static : dict of str to ndarray (H, W) float32
    atmos : dict of str to ndarray (T, L, H, W) float32
    patch_size : int
        Cells per patch side; H and W are multiples of it.
    """

    name: str
    times: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    levels: tuple[int, ...]
    surf: dict[str, np.ndarray]
    static: dict[str, np.ndarray]
    atmos: dict[str, np.ndarray]
    patch_size: int = 4

    @property
    def shape(self) -> tuple[int, int]:
        """Grid size (H, W)."""
        return int(self.lat.size), int(self.lon.size)

    @property
    def patch_shape(self) -> tuple[int, int]:
        """Patches per column and per row (H / patch_size, W / patch_size)."""
        h, w = self.shape
        return h // self.patch_size, w // self.patch_size

    def time_label(self, t: int) -> str:
        """Time ``t`` to the hour, as in the sample ids (``2020-01-01T06``)."""
        return str(np.datetime_as_string(self.times[t], unit="h"))

    def variables(self) -> list[str]:
        """Names of the rows of :meth:`patch_values`: surface, atmospheric per level, then static."""
        return ([f"surf:{v}" for v in SURF_VARS] + [f"atmos:{v}@{lev}" for v in ATMOS_VARS for lev in self.levels]
                + [f"static:{v}" for v in STATIC_VARS])

    def patch_values(self, t: int, i: int, j: int) -> np.ndarray:
        """The fields of patch (i, j) at time index ``t``, shape (variables, p, p), float32 (see :meth:`variables`)."""
        p = self.patch_size
        ys, xs = slice(i * p, (i + 1) * p), slice(j * p, (j + 1) * p)
        rows = [self.surf[v][t, ys, xs] for v in SURF_VARS]
        rows += [self.atmos[v][t, k, ys, xs] for v in ATMOS_VARS for k in range(len(self.levels))]
        rows += [self.static[v][ys, xs] for v in STATIC_VARS]
        return np.stack(rows).astype(np.float32)

    def history(self, t: int, steps: int = 2) -> list[int]:
        """Time indices of the ``steps`` inputs ending at ``t`` (the first time is repeated when there is no earlier one)."""
        return [max(t - k, 0) for k in range(steps - 1, -1, -1)]


@dataclass(eq=False)
class GridPatch:
    """One (time, patch) of a :class:`WeatherGrid`: the ``grid`` view of a weather sample.

    ``np.asarray(patch)`` gives the patch's own fields, shape (variables, p, p) (see
    :meth:`WeatherGrid.variables`); a grid model reads ``patch.grid`` to run on the whole field of time ``t``.
    """

    grid: WeatherGrid
    t: int
    i: int
    j: int

    @property
    def values(self) -> np.ndarray:
        """The patch's fields, shape (variables, p, p), float32."""
        return self.grid.patch_values(self.t, self.i, self.j)

    @property
    def shape(self) -> tuple[int, ...]:
        p = self.grid.patch_size
        return (len(self.grid.variables()), p, p)

    def __array__(self, dtype=None, copy=None):
        v = self.values
        return v if dtype is None else v.astype(dtype)

    def __repr__(self) -> str:
        return f"GridPatch({self.grid.name!r}, time={self.grid.time_label(self.t)}, i={self.i}, j={self.j})"


# ---------------------------------------------------------------------- samples and labels
def _labels(grid: WeatherGrid, t: int, i: int, j: int) -> dict[str, float]:
    p = grid.patch_size
    ys, xs = slice(i * p, (i + 1) * p), slice(j * p, (j + 1) * p)
    low = int(np.argmax(grid.levels))  # highest pressure = lowest level
    u, v = grid.surf["10u"][t, ys, xs].astype(np.float64), grid.surf["10v"][t, ys, xs].astype(np.float64)
    return {
        "temperature_2m_k": float(grid.surf["2t"][t, ys, xs].astype(np.float64).mean()),
        "specific_humidity_g_kg": float(grid.atmos["q"][t, low, ys, xs].astype(np.float64).mean() * 1000.0),
        "mslp_hpa": float(grid.surf["msl"][t, ys, xs].astype(np.float64).mean() / 100.0),
        "wind_speed_10m_m_s": float(np.sqrt(u * u + v * v).mean()),
    }


def grid_dataset(grid: WeatherGrid, meta: dict[str, Any] | None = None) -> Dataset:
    """Every (time, patch) of ``grid`` as a :class:`Dataset` (time-major, then patch row, then column).

    Returns
    -------
    Dataset
        ``len = T · (H/p) · (W/p)``; each sample has ``grid`` (:class:`GridPatch`), the :data:`LABELS`, and
        meta ``time``, ``i``, ``j``, ``lat``, ``lon`` (patch centre [°]).
    """
    nh, nw = grid.patch_shape
    p = grid.patch_size
    samples = []
    for t in range(grid.times.size):
        tl = grid.time_label(t)
        for i in range(nh):
            lat = float(grid.lat[i * p:(i + 1) * p].mean())
            for j in range(nw):
                lon = float(grid.lon[j * p:(j + 1) * p].mean())
                samples.append(Sample(id=f"{grid.name}:{tl}:{i}:{j}", grid=GridPatch(grid, t, i, j),
                                      labels=_labels(grid, t, i, j),
                                      meta={"time": tl, "i": i, "j": j, "lat": round(lat, 4), "lon": round(lon, 4)}))
    info = {"name": grid.name, "grid": {"shape": list(grid.shape), "patch_size": p, "patches": [nh, nw],
                                        "times": [grid.time_label(t) for t in range(grid.times.size)],
                                        "levels_hpa": list(grid.levels),
                                        "variables": {"surf": list(SURF_VARS), "static": list(STATIC_VARS),
                                                      "atmos": list(ATMOS_VARS)}},
            "units": dict(LABELS), **(meta or {})}
    return Dataset(grid.name, samples, info)


# ---------------------------------------------------------------------- reading files
def _find(ds, aliases: tuple[str, ...], path: Path, what: str, *, want_level: bool | None = None):
    for a in aliases:
        if a in ds.data_vars:
            var = ds[a]
            if want_level is not None and ("level" in var.dims) != want_level:
                continue
            return var
    raise DatasetError(f"{str(path)!r} has no {what} variable (looked for {', '.join(aliases)}); "
                       f"variables present: {sorted(map(str, ds.data_vars))}")


def _open(path: Path):
    try:
        import xarray as xr
    except ImportError as exc:  # pragma: no cover - xarray is in the models extra
        from ..errors import MissingDependencyError

        raise MissingDependencyError("xarray", "gridded weather files", extra="models") from exc
    try:
        if path.suffix == ".zarr" or path.is_dir():
            import warnings

            with warnings.catch_warnings():  # a store without consolidated metadata is read as it is
                warnings.simplefilter("ignore", RuntimeWarning)
                return xr.open_zarr(path, consolidated=None)
        return xr.open_dataset(path)
    except Exception as exc:
        raise DatasetError(f"cannot read {str(path)!r} as NetCDF/zarr weather data "
                           f"({type(exc).__name__}: {str(exc)[:200]})") from exc


def read_weather(path: str | Path, *, patch_size: int = 4, name: str | None = None) -> Dataset:
    """Read an ERA5-style NetCDF (``.nc``) or zarr (``.zarr``) file into (time, patch) samples.

    Parameters
    ----------
    path : str or Path
        The file (NetCDF) or folder (zarr); variables and dims as in the module docstring.
    patch_size : int
        Cells per patch side (Aurora's encoder patch is 4). Rows and columns beyond the last whole
        patch are dropped (recorded in ``meta["grid"]["cropped"]``).
    name : str, optional
        Dataset name and id prefix (default: the file stem).

    Returns
    -------
    Dataset
        See :func:`grid_dataset`. Latitudes are sorted north to south and longitudes mapped to [0, 360)
        and sorted (Aurora's convention).

    Raises
    ------
    DatasetError
        Missing file, unreadable file, a missing variable or dimension, non-finite values, or a grid
        smaller than one patch.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"weather file {str(p)!r} does not exist")
    if isinstance(patch_size, bool) or not isinstance(patch_size, (int, np.integer)) or patch_size < 1:
        raise DatasetError(f"patch_size must be a positive integer; got {patch_size!r}")
    ds = _open(p)
    try:
        ren = {}
        for canon, aliases in _DIM_ALIASES.items():
            hit = [a for a in aliases if a in ds.dims]
            if hit:
                if hit[0] != canon:
                    ren[hit[0]] = canon
            elif canon != "level":
                raise DatasetError(f"{str(p)!r} has no {canon!r} dimension (looked for {', '.join(aliases)}); "
                                   f"dims present: {sorted(map(str, ds.dims))}")
        ds = ds.rename(ren)
        if "level" not in ds.dims:
            raise DatasetError(f"{str(p)!r} has no pressure-level dimension (looked for "
                               f"{', '.join(_DIM_ALIASES['level'])}); the atmospheric variables need one")
        # Aurora's convention: latitude north → south, longitude in [0, 360) increasing
        ds = ds.assign_coords(longitude=(ds["longitude"] % 360.0)).sortby("longitude").sortby("latitude", ascending=False)
        surf = {k: _find(ds, a, p, f"surface {k!r}", want_level=False) for k, a in _SURF_ALIASES.items()}
        static = {k: _find(ds, a, p, f"static {k!r}", want_level=False) for k, a in _STATIC_ALIASES.items()}
        atmos = {k: _find(ds, a, p, f"atmospheric {k!r}", want_level=True) for k, a in _ATMOS_ALIASES.items()}
        for k, var in [*surf.items(), *atmos.items()]:
            if "time" not in var.dims:
                raise DatasetError(f"{str(p)!r}: variable {var.name!r} ({k}) has no time dimension; dims {var.dims}")
        lat = np.asarray(ds["latitude"].values, dtype=np.float64)
        lon = np.asarray(ds["longitude"].values, dtype=np.float64)
        h, w = (lat.size // patch_size) * patch_size, (lon.size // patch_size) * patch_size
        if h == 0 or w == 0:
            raise DatasetError(f"{str(p)!r}: the grid {lat.size}×{lon.size} is smaller than one "
                               f"{patch_size}×{patch_size} patch")

        def arr(var, order):
            a = np.asarray(var.transpose(*order).values, dtype=np.float32)
            a = a[..., :h, :w]
            if not np.isfinite(a).all():
                raise DatasetError(f"{str(p)!r}: variable {var.name!r} has non-finite values (NaN/inf)")
            return a

        def static_arr(var):
            if "time" in var.dims:
                var = var.isel(time=0)
            extra = [d for d in var.dims if d not in ("latitude", "longitude")]
            if extra:
                raise DatasetError(f"{str(p)!r}: static variable {var.name!r} has extra dims {extra}")
            return arr(var, ("latitude", "longitude"))

        grid = WeatherGrid(
            name=name or p.stem, times=np.asarray(ds["time"].values).astype("datetime64[s]"),
            lat=lat[:h], lon=lon[:w], levels=tuple(int(round(float(x))) for x in ds["level"].values),
            surf={k: arr(v, ("time", "latitude", "longitude")) for k, v in surf.items()},
            static={k: static_arr(v) for k, v in static.items()},
            atmos={k: arr(v, ("time", "level", "latitude", "longitude")) for k, v in atmos.items()},
            patch_size=int(patch_size))
        attrs = {k: v for k, v in ds.attrs.items() if isinstance(v, (str, int, float))}
    finally:
        ds.close()
    if grid.times.size == 0:
        raise DatasetError(f"{str(p)!r} holds no time steps")
    cropped = [int(lat.size - h), int(lon.size - w)]
    out = grid_dataset(grid, {"file": str(p), "attrs": attrs})
    out.meta["grid"]["cropped"] = cropped
    return out


def load_weather() -> Dataset:
    """The bundled ``weather`` dataset: a small seeded *synthetic* ERA5-style grid (see scripts/build_weather.py)."""
    from .builtin import data_path

    ds = read_weather(data_path("weather.nc"), name="weather")
    ds.meta["synthetic"] = True
    return ds


# ---------------------------------------------------------------------- transport to a model environment
def pack_grids(samples) -> dict[str, np.ndarray]:
    """The grid views of ``samples`` as plain arrays (no pickles) for :func:`unpack_grids`.

    Each distinct :class:`WeatherGrid` is written once (``grid{k}/...`` arrays); each sample gets
    ``grid_ref`` (k, or −1 without a grid view) and ``grid_tij`` (time index, patch row, column).
    Returns an empty dict when no sample has a grid view.
    """
    import json

    refs, tij, grids = [], [], {}
    for s in samples:
        g = getattr(s, "grid", None)
        if not isinstance(g, GridPatch):
            refs.append(-1)
            tij.append((0, 0, 0))
            continue
        k = grids.setdefault(id(g.grid), (len(grids), g.grid))[0]
        refs.append(k)
        tij.append((g.t, g.i, g.j))
    if not grids:
        return {}
    out: dict[str, np.ndarray] = {"grid_ref": np.array(refs, np.int64), "grid_tij": np.array(tij, np.int64)}
    for k, grid in grids.values():
        head = {"name": grid.name, "levels": list(grid.levels), "patch_size": grid.patch_size}
        out[f"grid{k}/head"] = np.array(json.dumps(head))
        out[f"grid{k}/times"] = grid.times.astype("datetime64[s]").astype(np.int64)
        out[f"grid{k}/lat"], out[f"grid{k}/lon"] = grid.lat, grid.lon
        for part in ("surf", "static", "atmos"):
            for v, a in getattr(grid, part).items():
                out[f"grid{k}/{part}/{v}"] = a
    return out


def unpack_grids(z) -> list[GridPatch | None] | None:
    """The grid views written by :func:`pack_grids` (``z``: a mapping such as an ``np.load`` result), or None."""
    import json

    if "grid_ref" not in z:
        return None
    refs, tij = z["grid_ref"], z["grid_tij"]
    grids: dict[int, WeatherGrid] = {}
    for k in sorted({int(r) for r in refs if r >= 0}):
        head = json.loads(str(z[f"grid{k}/head"]))
        parts: dict[str, dict[str, np.ndarray]] = {"surf": {}, "static": {}, "atmos": {}}
        for part, names in (("surf", SURF_VARS), ("static", STATIC_VARS), ("atmos", ATMOS_VARS)):
            for v in names:
                parts[part][v] = np.asarray(z[f"grid{k}/{part}/{v}"])
        grids[k] = WeatherGrid(name=head["name"], times=np.asarray(z[f"grid{k}/times"]).astype("datetime64[s]"),
                               lat=np.asarray(z[f"grid{k}/lat"]), lon=np.asarray(z[f"grid{k}/lon"]),
                               levels=tuple(head["levels"]), patch_size=int(head["patch_size"]), **parts)
    return [None if r < 0 else GridPatch(grids[int(r)], int(t), int(i), int(j))
            for r, (t, i, j) in zip(refs.tolist(), tij.tolist(), strict=True)]
