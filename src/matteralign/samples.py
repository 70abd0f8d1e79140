"""Samples of matter with stable ids, and ordered datasets of them.

A :class:`Sample` is one piece of matter seen through one or more *views*: a 3D
structure (``ase.Atoms``), a SMILES or SELFIES string, a sequence, or free text, plus a
dict of physical labels. Every embedding row in the store carries its sample id, so
models are always compared on the same samples.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DatasetError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import ase

__all__ = ["Sample", "Dataset", "VIEWS"]

#: The views a sample may carry; adapters declare which one they read (their ``modality``).
VIEWS = ("atoms", "smiles", "selfies", "sequence", "text", "grid")


@dataclass
class Sample:
    """One sample of matter.

    Attributes
    ----------
    id : str
        Stable identifier, unique within its dataset (e.g. ``"molecules:00042"``).
    atoms : ase.Atoms, optional
        3D structure (periodic or not).
    smiles, selfies, sequence, text : str, optional
        String views of the same sample.
    grid : GridPatch or ndarray, optional
        Gridded fields for weather models: a :class:`matteralign.datasets.weather.GridPatch` (one time and
        patch of a grid; ``np.asarray`` gives its ``(variables, lat, lon)`` values, ``.grid`` the full fields).
    labels : dict
        Physical labels (floats), e.g. ``{"energy_xtb": -11.39, "gap_ev": 7.2}``.
    meta : dict
        Anything else worth keeping (source, prototype, transformation...).
    """

    id: str
    atoms: ase.Atoms | None = None
    smiles: str | None = None
    selfies: str | None = None
    sequence: str | None = None
    text: str | None = None
    grid: np.ndarray | None = None
    labels: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.id, str) or not self.id:
            raise InputError(f"Sample.id must be a non-empty string; got {self.id!r}")

    def has(self, view: str) -> bool:
        """Whether this sample carries ``view`` (one of :data:`VIEWS`)."""
        if view not in VIEWS:
            raise InputError(f"unknown view {view!r}; expected one of {VIEWS}")
        return getattr(self, view) is not None

    @property
    def n_atoms(self) -> int:
        """Number of atoms of the 3D view (0 when there is none)."""
        return 0 if self.atoms is None else len(self.atoms)


class Dataset(Sequence):
    """An ordered, named collection of :class:`Sample` with unique ids.

    Parameters
    ----------
    name : str
        Dataset name (used as the store group).
    samples : iterable of Sample
    meta : dict, optional
        Provenance: source, build script, counts of dropped samples, label units...
    """

    def __init__(self, name: str, samples: Iterable[Sample], meta: dict[str, Any] | None = None):
        self.name = name
        self.samples: list[Sample] = list(samples)
        self.meta: dict[str, Any] = dict(meta or {})
        ids = [s.id for s in self.samples]
        if len(set(ids)) != len(ids):
            seen, dup = set(), None
            for i in ids:
                if i in seen:
                    dup = i
                    break
                seen.add(i)
            raise DatasetError(f"dataset {name!r} has duplicated sample id {dup!r}; ids must be unique")
        self._index = {s.id: i for i, s in enumerate(self.samples)}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Dataset(self.name, self.samples[i], self.meta)
        return self.samples[i]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, n={len(self)})"

    @property
    def ids(self) -> list[str]:
        """Sample ids in order."""
        return [s.id for s in self.samples]

    def by_id(self, sample_id: str) -> Sample:
        """Return the sample with id ``sample_id``."""
        try:
            return self.samples[self._index[sample_id]]
        except KeyError:
            raise DatasetError(f"dataset {self.name!r} has no sample with id {sample_id!r}") from None

    def select(self, ids: Iterable[str]) -> Dataset:
        """The samples with the given ids, in the given order."""
        return Dataset(self.name, [self.by_id(i) for i in ids], self.meta)

    def subsample(self, n: int | None, seed: int = 0) -> Dataset:
        """A reproducible random subset of ``n`` samples (all, in order, when ``n`` is None or ≥ len).

        The subset is the first ``n`` positions of one seeded permutation
        (``numpy.random.default_rng(seed).permutation(len(self))``), returned in dataset order. The
        same ``(n, seed)`` always gives the same samples, and subsets of one seed are **nested**: the
        samples at ``n = 300`` are among those at ``n = 1000``, so raising ``n`` only adds samples
        (and a study that raises ``n`` extracts only the new ones; the store keeps the others).
        """
        if n is None or n >= len(self):
            return Dataset(self.name, self.samples, {**self.meta, "subsample": None, "order_seed": seed})
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"subsample size n must be a positive integer; got {n!r}")
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[: int(n)])
        return Dataset(
            self.name, [self.samples[i] for i in idx],
            {**self.meta, "subsample": {"n": int(n), "seed": seed}, "order_seed": seed, "subsample_of": len(self)},
        )

    def seeded_order(self, seed: int | None = None) -> np.ndarray:
        """Positions of the samples in the order of the seeded permutation :meth:`subsample` draws from.

        For a subsample of ``n`` that is the order of its first ``n`` positions, so the first ``m`` of this
        order are the same samples for every subsample of the seed with at least ``m`` of them (and for the
        whole dataset subsampled with that seed): a selection that takes the first ``m`` in this order (the
        study's energy subset) stays **nested** when ``n`` is raised. ``seed`` defaults to the subsample's own
        (or 0 for a dataset that was never subsampled).
        """
        sub = self.meta.get("subsample")
        if sub and "subsample_of" in self.meta:
            first = np.random.default_rng(sub["seed"]).permutation(self.meta["subsample_of"])[: sub["n"]]
            return np.searchsorted(np.sort(first), first)
        if seed is None:
            seed = self.meta.get("order_seed", 0)
        return np.random.default_rng(seed).permutation(len(self))

    def label_names(self) -> list[str]:
        """Names of labels present on at least one sample, sorted."""
        return sorted({k for s in self.samples for k in s.labels})

    def labels(self, name: str) -> np.ndarray:
        """Label ``name`` for every sample as a float array (NaN where a sample lacks it)."""
        return np.array([s.labels.get(name, np.nan) for s in self.samples], dtype=float)

    def fingerprint(self) -> str:
        """A short hash of the dataset name and its ordered sample ids (for provenance)."""
        h = hashlib.sha256(self.name.encode())
        for i in self.ids:
            h.update(b"\0" + i.encode())
        return h.hexdigest()[:16]
