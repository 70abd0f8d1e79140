"""Baselines for gridded (weather) samples: the raw patch values and a random projection of them.

Both read the ``grid`` view (:class:`~matteralign.datasets.weather.GridPatch`) and run in the main
environment. Each variable row of a patch (:meth:`~matteralign.datasets.weather.WeatherGrid.variables`:
surface fields, each atmospheric field on each level, static fields) is standardised by that
variable's mean and standard deviation over the whole grid (every time and cell), so pascals and
kg/kg weigh alike:

.. math:: z_{v,c} = (x_{v,c} - \\mu_v) / \\sigma_v, \\qquad \\text{grid-patch: } h = \\mathrm{vec}(z),
          \\qquad \\text{grid-random: } h = R\\,\\mathrm{vec}(z)/\\sqrt{d_{in}}, \\ R_{ij} \\sim \\mathcal N(0, 1)

``grid-patch`` is what a linear probe of a weather label can reach without any model (the labels are
patch means of some of these very values); ``grid-random`` is the random-projection control of the same
input (R seeded by ``seed``, d = 64 by default).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ._registry import ModelSpec, register
from .base import Extractor

__all__ = ["GridPatchExtractor", "GridRandomExtractor"]


class GridPatchExtractor(Extractor):
    """The patch's own fields, standardised per variable over the grid and flattened: (1, V·p·p) per sample."""

    name = "grid-patch"
    family = "descriptor"
    modality = "grid"
    default_layer = "patch"

    def __init__(self, **options: Any):
        options.setdefault("batch_size", 1024)
        super().__init__(**options)
        self._stats: dict[int, tuple[Any, np.ndarray, np.ndarray]] = {}

    def input_reason(self, obj: Any) -> str | None:
        from ..datasets.weather import GridPatch

        if not isinstance(obj, GridPatch):
            return f"expected a weather grid patch (GridPatch); got {type(obj).__name__}"
        return None

    def _standardiser(self, grid) -> tuple[np.ndarray, np.ndarray]:
        key = id(grid)
        if key not in self._stats:
            from ..datasets.weather import ATMOS_VARS, STATIC_VARS, SURF_VARS

            # the rows of WeatherGrid.variables(): surface, atmospheric per level, static
            stacks = [grid.surf[v] for v in SURF_VARS]
            stacks += [grid.atmos[v][:, k] for v in ATMOS_VARS for k in range(len(grid.levels))]
            stacks += [grid.static[v] for v in STATIC_VARS]
            mu = np.array([float(np.mean(a, dtype=np.float64)) for a in stacks])
            sd = np.array([float(np.std(a, dtype=np.float64)) for a in stacks])
            sd[sd == 0] = 1.0  # a constant field (e.g. an all-ocean mask) stays 0
            self._stats[key] = (grid, mu, sd)  # the grid is held so that its id is not reused
        _, mu, sd = self._stats[key]
        return mu, sd

    def _features(self, patch) -> np.ndarray:
        mu, sd = self._standardiser(patch.grid)
        z = (np.asarray(patch, dtype=np.float64) - mu[:, None, None]) / sd[:, None, None]
        return z.reshape(-1)

    def _embed(self, inputs, layer):
        return [self._features(p)[None, :].astype(np.float32) for p in inputs]

    def _provenance(self) -> dict[str, Any]:
        return {"standardised": "per variable over the whole grid (all times and cells)", "per_atom": False}


class GridRandomExtractor(GridPatchExtractor):
    """A fixed Gaussian random projection of the standardised patch: (1, dim) per sample."""

    name = "grid-random"
    family = "control"
    default_layer = "projection"

    def __init__(self, *, dim: int = 64, **options: Any):
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise InputError(f"grid-random: dim must be a positive integer; got {dim!r}")
        self.dim = int(dim)
        super().__init__(**options)
        self._proj: dict[int, np.ndarray] = {}

    def _embed(self, inputs, layer):
        out = []
        for p in inputs:
            x = self._features(p)
            if x.size not in self._proj:
                rng = np.random.default_rng(self.seed)
                self._proj[x.size] = rng.standard_normal((self.dim, x.size)) / np.sqrt(x.size)
            out.append((self._proj[x.size] @ x)[None, :].astype(np.float32))
        return out

    def _provenance(self) -> dict[str, Any]:
        return {**super()._provenance(), "dim": self.dim, "n_features": self.dim,
                "projection": "N(0, 1)/sqrt(d_in), numpy default_rng(seed)"}


register(ModelSpec(
    name="grid-patch", factory=f"{__name__}:GridPatchExtractor", family="descriptor", modality="grid", kind="descriptor",
    embedding_type="descriptor",
    layers=("patch",), default_layer="patch",
    description="Raw weather patch: every variable standardised over the grid, flattened (27·16 = 432-d on the bundled grid)"))
register(ModelSpec(
    name="grid-random", factory=f"{__name__}:GridRandomExtractor", family="control", modality="grid", kind="control", control=True,
    layers=("projection",), default_layer="projection",
    description="Gaussian random projection (d=64) of the standardised weather patch: a grid control"))
