"""Helpers shared by the adapters of interatomic potentials (structures, hooks, seeding)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = [
    "structure_reason",
    "boxed",
    "n_isolated",
    "capture",
    "seeded",
    "count_parameters",
    "relative_to_package",
]


def protein_structure_reason(obj: Any) -> str | None:
    """Why ``obj`` cannot be read as a protein structure (``None`` when it can): the atoms of a protein sample
    carry per-atom ``atom_name`` and ``residue_index`` arrays (see :mod:`matteralign.datasets.protein`) and
    at least one CA atom."""
    arrays = getattr(obj, "arrays", {})
    if "atom_name" not in arrays or "residue_index" not in arrays:
        return "structure has no atom_name/residue_index arrays (not read as a protein)"
    names = np.asarray(arrays["atom_name"]).astype(str)
    if not (names == "CA").any():
        return "structure has no CA atom"
    return None


def structure_reason(atoms: Any, *, allowed_z: set[int] | None = None, max_z: int | None = None) -> str | None:
    """Common checks on an ``ase.Atoms`` input: type, emptiness, finite positions, cell, elements.

    Returns the reason it cannot be embedded, or ``None``.
    """
    try:
        from ase import Atoms
    except ImportError:  # pragma: no cover - ase is a dependency of every atoms model
        return "ase is not installed"
    if not isinstance(atoms, Atoms):
        return f"expected an ase.Atoms; got {type(atoms).__name__}"
    if len(atoms) == 0:
        return "structure has no atoms"
    pos = atoms.get_positions()
    if not np.isfinite(pos).all():
        return "structure has non-finite positions"
    pbc = atoms.get_pbc()
    if pbc.any() and not pbc.all():
        return f"partially periodic structures (pbc={pbc.tolist()}) are not supported"
    if pbc.all() and abs(atoms.cell.volume) < 1e-6:
        return "periodic structure has a zero-volume cell"
    z = atoms.get_atomic_numbers()
    if allowed_z is not None:
        bad = sorted({int(x) for x in z} - set(allowed_z))
        if bad:
            from ase.data import chemical_symbols

            return (f"element(s) {', '.join(chemical_symbols[b] for b in bad)} not supported "
                    f"(model knows {', '.join(chemical_symbols[a] for a in sorted(allowed_z))})")
    if max_z is not None and (z.max() > max_z or z.min() < 1):
        from ase.data import chemical_symbols

        bad = sorted({int(x) for x in z if x > max_z or x < 1})
        return f"element(s) {', '.join(chemical_symbols[b] if b < len(chemical_symbols) else str(b) for b in bad)} " \
               f"beyond Z = {max_z}"
    return None


def boxed(atoms, *, gap: float):
    """A periodic copy of a non-periodic structure in a vacuum box (periodic ones are returned as is).

    The box is orthorhombic, its edges the molecule's extent plus ``gap`` along each axis, so
    periodic images are at least ``gap`` apart: with ``gap = cutoff + 10 Å`` no atom sees an image.
    """
    if atoms.get_pbc().all():
        return atoms
    a = atoms.copy()
    pos = a.get_positions()
    extent = pos.max(axis=0) - pos.min(axis=0)
    cell = np.diag(extent + gap)
    a.set_cell(cell)
    a.set_pbc(True)
    a.set_positions(pos - pos.min(axis=0) + gap / 2)
    return a


def n_isolated(atoms, cutoff: float) -> int:
    """Number of atoms with no neighbour (periodic images included) within ``cutoff`` Å."""
    if len(atoms) == 1 and not atoms.get_pbc().any():
        return 1
    from ase.neighborlist import neighbor_list

    i = neighbor_list("i", atoms, cutoff, self_interaction=False)
    return int(len(atoms) - len(np.unique(i)))


@contextmanager
def capture(modules: Mapping[str, Any], take: Callable[[str, Any], Any] | None = None) -> Iterator[dict]:
    """Forward hooks on named modules; yields ``{name: [output, ...]}`` filled on each call.

    ``take(name, output)`` selects what to keep (default: the output itself, detached).
    Hooks are removed on exit, also on error.
    """
    store: dict[str, list] = {n: [] for n in modules}
    handles = []

    def make(name):
        def hook(_module, _inputs, output):
            out = take(name, output) if take is not None else output
            store[name].append(out.detach() if hasattr(out, "detach") else out)

        return hook

    try:
        for name, mod in modules.items():
            handles.append(mod.register_forward_hook(make(name)))
        yield store
    finally:
        for h in handles:
            h.remove()


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's RNG inside the block and restore the global state after it."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def count_parameters(module) -> int:
    """Number of parameters of a torch module."""
    return int(sum(p.numel() for p in module.parameters()))


def relative_to_package(path: str, package: str) -> str:
    """``path`` relative to the installed ``package`` directory (for provenance that travels)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return os.path.basename(path)
    root = list(spec.submodule_search_locations)[0]
    try:
        return os.path.relpath(path, os.path.dirname(root))
    except ValueError:  # pragma: no cover - different drives
        return path


class ForwardEnergyMixin:
    """For adapters whose ``_forward(atoms_list, layers) -> (features by layer, energies in eV)`` computes
    the features and the model's own energy in one pass (CHGNet, SevenNet)."""

    def _embed(self, inputs, layer):
        feats, _ = self._forward(inputs, [layer])
        return feats[layer]

    def embed_with_energy(self, inputs, layers) -> tuple[dict[str, list[np.ndarray]], np.ndarray]:
        """Features at ``layers`` and the model's energy (eV) of each structure, from one forward pass.

        Returns
        -------
        feats : dict of str to list of ndarray
            Per layer, one ``(n_atoms_i, d)`` float32 array per structure (as :meth:`embed` gives).
        energies : ndarray, shape (n_structures,), float64
        """
        inputs = self._checked_structures(inputs, "embed")
        layers = [self.resolve_layer(layer) for layer in layers]
        with self._runtime():
            feats, energies = self._forward(inputs, layers)
        return ({layer: [np.ascontiguousarray(a, dtype=np.float32) for a in feats[layer]] for layer in layers},
                np.asarray(energies, dtype=np.float64))

    def predict_energy(self, atoms_list) -> np.ndarray:
        """The model's own total energy per structure, in eV (molecules prepared as for :meth:`embed`).

        Returns
        -------
        ndarray, shape (n_structures,), float64
        """
        atoms_list = self._checked_structures(atoms_list)
        with self._runtime():
            return self._forward(atoms_list, [])[1]
