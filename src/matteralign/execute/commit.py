"""The one committer: results come back to the driver, which writes them to the store.

Executors never write the store (so machines need no shared filesystem). Each extraction result is one
shard, committed atomically by :meth:`matteralign.store.Store.write_shard`; when every shard of a group
is there, :meth:`~matteralign.store.Store.finish` concatenates them. A unit that ran twice (a worker died
after finishing it) is committed once: a committed shard is left as it is.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .units import EnergyUnit, ExtractUnit

__all__ = ["ExtractionJob", "Committer"]


@dataclass
class ExtractionJob:
    """One ``(dataset, model)`` extraction: its layers, shards and store options."""

    dataset: str
    model: str
    layers: tuple[str, ...]
    n_shards: int
    todo: list[int]
    poolings: tuple[str, ...] = ("mean",)
    save_atoms: bool = True
    with_energy: bool = False
    t0: float = field(default_factory=time.perf_counter)
    committed: set = field(default_factory=set)
    provenance_set: bool = False
    summaries: dict[str, dict] = field(default_factory=dict)


class Committer:
    """Writes units' results into the store (extraction shards) and the results folder (energies).

    Parameters
    ----------
    store : Store
    jobs : dict
        ``(dataset, model) -> ExtractionJob`` of the extraction units that will arrive.
    energies_dir : path, optional
        Where energy results go (``<dir>/<dataset>/<model>-<key>.npz``).
    """

    def __init__(self, store, jobs: dict[tuple[str, str], ExtractionJob] | None = None,
                 energies_dir: str | os.PathLike | None = None):
        self.store = store
        self.jobs = dict(jobs or {})
        self.energies_dir = Path(energies_dir) if energies_dir else None
        self.energy_keys: dict[tuple[str, str], str] = {}
        self.energies: dict[str, dict[str, tuple[list[str], np.ndarray]]] = {}
        self.skipped: dict[tuple[str, str], int] = {}

    def __call__(self, unit, result) -> None:
        if isinstance(unit, ExtractUnit):
            self._commit_shard(unit, result)
        elif isinstance(unit, EnergyUnit):
            self._commit_energy(unit, result)

    def _commit_shard(self, unit: ExtractUnit, result: dict[str, Any]) -> None:
        job = self.jobs[(unit.dataset, unit.model)]
        if unit.shard in job.committed:
            return
        from .extraction import MAX_ATOM_FEATURES

        block = [s.id for s in unit.samples]
        for layer in unit.layers:
            arrays = result["arrays"][layer]
            if result.get("provenance") and not job.provenance_set:  # once per job, not once per shard
                self.store.set_provenance(unit.dataset, unit.model, layer, {**result["provenance"], "layer": layer})
            # a descriptor that declares more than MAX_ATOM_FEATURES per atom (SOAP: 3,384) is kept pooled only
            wide = int((result.get("provenance") or {}).get("n_features") or 0) > MAX_ATOM_FEATURES
            self.store.write_shard(unit.dataset, unit.model, layer, unit.shard, ids=result["ids"],
                                   arrays=arrays, skipped=result["skipped"], block_ids=block,
                                   poolings=job.poolings, save_atoms=job.save_atoms and not wide)
        job.provenance_set = job.provenance_set or bool(result.get("provenance"))
        self.skipped[(unit.dataset, unit.model)] = self.skipped.get((unit.dataset, unit.model), 0) + len(result["skipped"])
        if job.with_energy and result.get("energies") is not None and self.energies_dir is not None:
            self._save_shard_energies(unit, result)
        job.committed.add(unit.shard)
        if job.committed >= set(job.todo):
            self.finish(job)

    def finish(self, job: ExtractionJob) -> None:
        """Consolidate every layer of ``job`` (all its shards are committed)."""
        for layer in job.layers:
            # the shards say whether per-atom features were kept (not for very wide descriptors)
            keep_atoms = job.save_atoms and self.store.shard_has_atoms(job.dataset, job.model, layer, 0) is not False
            job.summaries[layer] = self.store.finish(job.dataset, job.model, layer, n_shards=job.n_shards,
                                                     poolings=job.poolings, save_atoms=keep_atoms,
                                                     computed=len(job.committed),
                                                     seconds=time.perf_counter() - job.t0)

    # ------------------------------------------------------------------ energies
    def _shard_energy_path(self, dataset: str, model: str, shard: int) -> Path:
        assert self.energies_dir is not None
        return self.energies_dir / dataset / "from-extraction" / model / f"{shard:06d}.npz"

    def _save_shard_energies(self, unit: ExtractUnit, result: dict[str, Any]) -> None:
        path = self._shard_energy_path(unit.dataset, unit.model, unit.shard)
        _atomic_savez(path, ids=np.array(result["ids"], dtype=str), energy=np.asarray(result["energies"], float))

    def shard_energies(self, dataset: str, model: str, n_shards: int) -> tuple[list[str], np.ndarray] | None:
        """Energies the extraction of ``(dataset, model)`` gave, when every shard's file is there."""
        ids, energy = [], []
        for k in range(n_shards):
            path = self._shard_energy_path(dataset, model, k)
            if not path.exists():
                return None
            z = np.load(path, allow_pickle=False)
            ids.extend(str(i) for i in z["ids"].tolist())
            energy.append(z["energy"])
        return ids, (np.concatenate(energy) if energy else np.zeros(0))

    def energy_path(self, dataset: str, model: str, key: str) -> Path:
        assert self.energies_dir is not None
        return self.energies_dir / dataset / f"{model}-{key}.npz"

    def _commit_energy(self, unit: EnergyUnit, result: dict[str, Any]) -> None:
        key = self.energy_keys[(unit.dataset, unit.model)]
        _atomic_savez(self.energy_path(unit.dataset, unit.model, key), ids=np.array(result["ids"], dtype=str),
                      energy=np.asarray(result["energy"], dtype=float))
        self.energies.setdefault(unit.dataset, {})[unit.model] = (list(result["ids"]), np.asarray(result["energy"]))


def _atomic_savez(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
