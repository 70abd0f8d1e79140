"""What travels between the driver and a worker: samples in, arrays out, as ``.npz`` files (no pickles).

Model environments may pin another numpy (``numpy<2`` for MatterGen and EquiformerV2), and a numpy 2
pickle does not load under numpy 1, so units carry plain arrays only:

* :func:`write_samples` / :func:`read_samples` — a shard's samples with every view a model reads:
  ids, atoms (numbers, positions, cell, pbc, scalar ``info`` entries such as ``charge``), the string
  views (SMILES, SELFIES, sequence, text) and the gridded weather views (each full grid once);
* :func:`pack_embedding` / :func:`unpack_embedding` — a unit's result: embedded ids, one ``(n_i, D)``
  array per id and layer (concatenated, with counts), skipped ids with reasons, energies when the
  forward pass gave them, and the extractor's provenance as JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["write_samples", "read_samples", "pack_embedding", "unpack_embedding", "jsonable"]

_STRING_VIEWS = ("smiles", "selfies", "sequence", "text")
#: Per-atom arrays of ``ase.Atoms`` that travel with the atoms (read by protein structure models).
_ATOM_ARRAYS = ("atom_name", "residue_index")


def jsonable(obj: Any) -> Any:
    """``obj`` round-tripped through JSON (numpy scalars become Python numbers, unknown objects strings)."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def write_samples(samples: Sequence, path: str | os.PathLike, *, name: str | None = None,
                  meta: dict | None = None) -> None:
    """Write ``samples`` (every view a model reads) to ``path`` (``.npz``).

    ``samples`` may be a :class:`~matteralign.samples.Dataset`, whose name and meta are kept unless given.
    """
    from ..datasets.weather import pack_grids

    name = getattr(samples, "name", "") if name is None else name
    meta = getattr(samples, "meta", None) if meta is None else meta
    ids, numbers, positions, counts, cells, pbc, has, infos = [], [], [], [], [], [], [], []
    strings: dict[str, list[str]] = {v: [] for v in _STRING_VIEWS}
    present: dict[str, list[bool]] = {v: [] for v in _STRING_VIEWS}
    for s in samples:
        ids.append(s.id)
        for v in _STRING_VIEWS:
            val = getattr(s, v, None)
            present[v].append(val is not None)
            strings[v].append("" if val is None else str(val))
        a = s.atoms
        infos.append(json.dumps({k: v for k, v in (a.info.items() if a is not None else ())
                                 if isinstance(v, (bool, int, float, str))}))
        if a is None:
            has.append(False)
            counts.append(0)
            cells.append(np.zeros((3, 3)))
            pbc.append([False] * 3)
            continue
        has.append(True)
        numbers.append(np.asarray(a.get_atomic_numbers(), dtype=np.int64))
        positions.append(np.asarray(a.get_positions(), dtype=np.float64))
        counts.append(len(a))
        cells.append(np.asarray(a.cell[:], dtype=np.float64))
        pbc.append([bool(x) for x in a.get_pbc()])
    extra = {}
    for v in _STRING_VIEWS:
        if any(present[v]):
            extra[f"view_{v}"] = np.array(strings[v], dtype=str)
            extra[f"has_{v}"] = np.array(present[v], dtype=bool)
    for key in _ATOM_ARRAYS:  # per-atom arrays that structure models read (protein atom names, residues)
        if any(s.atoms is not None and key in s.atoms.arrays for s in samples):
            if not all(s.atoms is None or key in s.atoms.arrays for s in samples):
                continue
            parts = [np.asarray(s.atoms.arrays[key]) for s in samples if s.atoms is not None]
            extra[f"atoms_{key}"] = np.concatenate(parts)
    grids = pack_grids(samples)
    np.savez(path, **grids, **extra, ids=np.array(ids, dtype=str), has_atoms=np.array(has, bool),
             counts=np.array(counts, np.int64),
             numbers=np.concatenate(numbers) if numbers else np.zeros(0, np.int64),
             positions=np.concatenate(positions) if positions else np.zeros((0, 3)),
             cells=np.array(cells, np.float64).reshape(-1, 3, 3), pbc=np.array(pbc, bool).reshape(-1, 3),
             info=np.array(infos, dtype=str), meta=np.array(json.dumps({"name": name, "meta": jsonable(meta or {})})))


def read_samples(path: str | os.PathLike):
    """The :class:`~matteralign.samples.Dataset` written by :func:`write_samples`."""
    from ..datasets.weather import unpack_grids
    from ..samples import Dataset, Sample

    with np.load(path, allow_pickle=False) as npz:
        z = {k: npz[k] for k in npz.files}  # each NpzFile lookup decompresses again: read every array once
    meta = json.loads(str(z["meta"]))
    offs = np.concatenate([[0], np.cumsum(z["counts"])])
    samples = []
    views = {v: (z[f"view_{v}"].tolist(), z[f"has_{v}"]) for v in _STRING_VIEWS if f"view_{v}" in z}
    for i, sid in enumerate(z["ids"].tolist()):
        atoms = None
        if z["has_atoms"][i]:
            from ase import Atoms

            sl = slice(offs[i], offs[i + 1])
            atoms = Atoms(numbers=z["numbers"][sl], positions=z["positions"][sl], cell=z["cells"][i], pbc=z["pbc"][i],
                          info=json.loads(str(z["info"][i])))
            for key in _ATOM_ARRAYS:
                if f"atoms_{key}" in z:
                    atoms.new_array(key, z[f"atoms_{key}"][sl])
        kw = {v: str(vals[i]) for v, (vals, has) in views.items() if has[i]}
        samples.append(Sample(id=str(sid), atoms=atoms, **kw))
    grids = unpack_grids(z)
    if grids is not None:
        for s, g in zip(samples, grids, strict=True):
            s.grid = g
    return Dataset(meta["name"] or "samples", samples, meta["meta"])


def pack_embedding(path: str | os.PathLike, *, ids: Sequence[str], arrays: dict[str, Sequence[np.ndarray]],
                   skipped: dict[str, str], energies: np.ndarray | None = None,
                   provenance: dict | None = None) -> None:
    """Write one unit's result: per-layer arrays of the embedded ids, skipped ids, energies, provenance."""
    out: dict[str, np.ndarray] = {"ids": np.array(list(ids), dtype=str),
                                  "skipped_ids": np.array(list(skipped), dtype=str),
                                  "skipped_reasons": np.array(list(skipped.values()), dtype=str),
                                  "layers": np.array(list(arrays), dtype=str),
                                  "provenance": np.array(json.dumps(jsonable(provenance or {})))}
    for k, (layer, arrs) in enumerate(arrays.items()):
        arrs = [np.asarray(a, dtype=np.float32) for a in arrs]
        d = arrs[0].shape[1] if arrs and arrs[0].ndim == 2 else 0
        out[f"counts{k}"] = np.array([a.shape[0] for a in arrs], dtype=np.int64)
        out[f"feats{k}"] = np.concatenate(arrs) if arrs else np.zeros((0, d), np.float32)
        out[f"layer{k}"] = np.array(layer)
    if energies is not None:
        out["energies"] = np.asarray(energies, dtype=np.float64)
    np.savez(path, **out)


def unpack_embedding(path: str | os.PathLike) -> dict[str, Any]:
    """Read a result written by :func:`pack_embedding`.

    Returns
    -------
    dict
        ``ids`` (list of str), ``arrays`` ({layer: list of (n_i, D) float32}), ``skipped`` ({id: reason}),
        ``energies`` (ndarray or None), ``provenance`` (dict).
    """
    with np.load(path, allow_pickle=False) as npz:
        z = {k: npz[k] for k in npz.files}
    arrays = {}
    for k, layer in enumerate(z["layers"].tolist()):
        counts = z[f"counts{k}"]
        feats = z[f"feats{k}"]
        offs = np.concatenate([[0], np.cumsum(counts)])
        arrays[str(layer)] = [feats[offs[i]:offs[i + 1]] for i in range(len(counts))]
    return {"ids": [str(i) for i in z["ids"].tolist()], "arrays": arrays,
            "skipped": dict(zip(map(str, z["skipped_ids"].tolist()), map(str, z["skipped_reasons"].tolist()),
                                strict=True)),
            "energies": z["energies"] if "energies" in z else None,
            "provenance": json.loads(str(z["provenance"]))}
