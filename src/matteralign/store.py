"""The embedding store (zarr v3): the seam between model environments and the maths.

Layout (one zarr group per level; ``root`` carries the matteralign marker)::

    <store>/                                   attrs: matteralign_store = FORMAT_VERSION
      <dataset>/<model>/<layer>/               attrs: provenance, plan, complete
        sample_ids        (N,)      str        embedded samples, in dataset order
        pooled            (N, D)    float32    mean over atoms (the default pooling)
        pooled_sum        (N, D)    float32    only when asked for (poolings=...)
        pooled_max        (N, D)    float32    only when asked for
        atom_features     (ΣNatoms, D) float32 per-atom rows, sample after sample
        atom_offsets      (N + 1,)  int64      rows of sample i: offsets[i]:offsets[i+1]
        skipped_ids       (S,)      str        samples the model could not embed
        skipped_reasons   (S,)      str        why (one line each)
        shards/<k>/                            only while an extraction is in progress

Extraction runs in shards of ``shard_size`` consecutive samples of the dataset. A shard is
written into a temporary folder and committed by renaming it to ``shards/<k>`` (a rename is
atomic on a local file system), so a shard is either complete or absent. Killing an extraction
at any point and running it again recomputes only the missing shards; when every shard is
there they are concatenated in dataset order into the arrays above, the group is marked
``complete`` and the shards are removed. String models store one row per sample in
``atom_features`` (``atom_offsets`` = 0, 1, ..., N).

A finished group serves a later extraction of the same dataset with other samples (a larger
``n`` of a nested subsample): :meth:`Store.reusable_ids` lists the samples it holds, the
extraction computes shards of the others only, and :meth:`Store.begin` keeps the stored rows
aside (``base/``, with their digests) until :meth:`Store.finish` merges both in dataset order,
into the same arrays as a fresh extraction of the larger set.

Every shard's arrays carry content digests, written at commit and kept per array and shard in
the finished group's ``integrity`` record, so reads prove what they return. ``Store.repair``
takes a finished group with damaged rows back into its shards, less the damaged ones, so the
next extraction recomputes only those.

Only local paths are supported (atomic rename); ``file://`` URLs are accepted.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, StoreError, UnknownNameError

__all__ = ["Store", "FORMAT_VERSION", "MARKER"]

#: Attribute on the root group that identifies a matteralign store, and its format version.
MARKER = "matteralign_store"
FORMAT_VERSION = 1

_POOLINGS = ("mean", "sum", "max")
#: Keys of an extraction plan that say only which samples it covers: a finished group made with a plan
#: that differs from a new one in these alone is reused and extended (``Store.begin(..., order=...)``).
GROWABLE_PLAN_KEYS = ("dataset_fingerprint", "n_samples", "shard_size")
_BASE = "base"  # folder of the rows an extension keeps while it runs
_ARRAY_FOR = {"mean": "pooled", "sum": "pooled_sum", "max": "pooled_max"}


#: Folder under the store's root where finished shards wait for their deletion (see :func:`_discard`).
_DISCARDED = ".discarded"
#: Background deletions still running (see :func:`wait_for_discards`).
_DISCARDING: list = []


def _zarr():
    import zarr

    return zarr


def _safe(name: str, what: str) -> str:
    """A path component for ``name`` ("/" becomes "--"); rejects empty and dot names."""
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{what} name must be a non-empty string; got {name!r}")
    out = name.replace("/", "--").replace("\\", "--")
    if out.startswith(".") or out in ("shards",):
        raise InputError(f"{what} name {name!r} is not allowed as a store path component")
    return out


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("matteralign", "zarr", "numpy", "torch"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON (numpy scalars → Python, unknown objects → str)."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


class Store:
    """An embedding store on a local path.

    Parameters
    ----------
    path : str or path-like
        Folder of the store (created when missing and ``mode="a"``); ``file://`` URLs accepted.
    mode : {"a", "r"}
        ``"a"``: read and write (create if missing); ``"r"``: read only, the store must exist.

    Raises
    ------
    StoreError
        The path exists but is not a matteralign store (foreign or corrupt zarr, a file, a
        non-empty folder without the marker), or ``mode="r"`` and it does not exist.

    Examples
    --------
    >>> store = Store("runs/store")                                   # doctest: +SKIP
    >>> execute.extract(store, dataset, "chgnet-0.3.0")              # doctest: +SKIP
    >>> ids, X = store.read("molecules", "chgnet-0.3.0", "readout_norm")  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, *, mode: str = "a"):
        if mode not in ("a", "r"):
            raise InputError(f"Store mode must be 'a' or 'r'; got {mode!r}")
        p = os.fspath(path)
        if p.startswith("file://"):
            p = p[len("file://"):]
        elif "://" in p:
            raise StoreError(f"store path {p!r}: only local paths are supported (atomic shard commits need rename)")
        self.path = Path(p)
        self.mode = mode
        self._open_root()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ------------------------------------------------------------------ root
    def _open_root(self) -> None:
        zarr = _zarr()
        p = self.path
        if p.exists() and not p.is_dir():
            raise StoreError(f"store path {str(p)!r} is a file, not a matteralign store folder")
        if not p.exists() or (p.is_dir() and not any(p.iterdir())):
            if self.mode == "r":
                raise StoreError(f"no matteralign store at {str(p)!r}")
            p.mkdir(parents=True, exist_ok=True)
            root = zarr.open_group(str(p), mode="w")
            root.attrs[MARKER] = FORMAT_VERSION
            return
        try:
            root = zarr.open_group(str(p), mode="r")
            marker = root.attrs.get(MARKER)
        except Exception as exc:
            raise StoreError(f"{str(p)!r} is not a matteralign store (cannot open it as a zarr group: {exc})") from None
        if marker is None:
            raise StoreError(f"{str(p)!r} is a zarr store without the {MARKER!r} marker (foreign store?)")
        if marker != FORMAT_VERSION:
            raise StoreError(f"store {str(p)!r} has format version {marker!r}; this matteralign reads {FORMAT_VERSION}")

    def _group_path(self, dataset: str, model: str, layer: str) -> Path:
        return self.path / _safe(dataset, "dataset") / _safe(model, "model") / _safe(layer, "layer")

    def _ensure_groups(self, dataset: str, model: str, layer: str):
        zarr = _zarr()
        parts = [_safe(dataset, "dataset"), _safe(model, "model"), _safe(layer, "layer")]
        cur = self.path
        for part in parts:
            cur = cur / part
            if not (cur / "zarr.json").exists():
                zarr.open_group(str(cur), mode="a")
        return zarr.open_group(str(cur), mode="a")

    def _layer_group(self, dataset: str, model: str, layer: str, *, must_be_complete: bool = True):
        zarr = _zarr()
        gp = self._group_path(dataset, model, layer)
        if not (gp / "zarr.json").exists():
            have = [f"{d}/{m}/{lay}" for d, m, lay in self._triples()]
            hint = f"; the store holds: {', '.join(have)}" if have else "; the store is empty"
            raise StoreError(f"store {str(self.path)!r} has no embeddings for {dataset}/{model}/{layer}{hint}")
        try:
            g = zarr.open_group(str(gp), mode="r")
            attrs = dict(g.attrs)
        except Exception as exc:
            raise StoreError(f"corrupt store group {str(gp)!r}: {exc}") from None
        if must_be_complete and not attrs.get("complete"):
            raise StoreError(f"embeddings {dataset}/{model}/{layer} in {str(self.path)!r} are incomplete "
                             "(an extraction was interrupted): run the extraction again to finish it")
        return g

    def _triples(self) -> list[tuple[str, str, str]]:
        out = []
        if not self.path.is_dir():
            return out
        for d in sorted(x for x in self.path.iterdir() if x.is_dir() and not x.name.startswith(".")):
            for m in sorted(x for x in d.iterdir() if x.is_dir()):
                for lay in sorted(x for x in m.iterdir() if x.is_dir()):
                    if (lay / "zarr.json").exists():
                        out.append((d.name, m.name, lay.name))
        return out

    # ------------------------------------------------------------------ queries
    def has(self, dataset: str, model: str, layer: str) -> bool:
        """Whether complete embeddings of ``dataset`` by ``model`` at ``layer`` are stored."""
        gp = self._group_path(dataset, model, layer)
        if not (gp / "zarr.json").exists():
            return False
        try:
            return bool(_zarr().open_group(str(gp), mode="r").attrs.get("complete", False))
        except Exception:
            return False

    def list(self) -> list[dict[str, Any]]:
        """What the store holds: one dict per (dataset, model, layer).

        Returns
        -------
        list of dict
            Keys ``dataset``, ``model``, ``layer``, ``complete``, ``n`` (embedded samples),
            ``n_skipped``, ``dim``, ``poolings`` (stored pooled arrays), ``n_shards`` (committed
            shards of an unfinished extraction), ``error`` (why the layer's metadata cannot be read,
            else ``None``; contents are checked by :meth:`verify`).
        """
        zarr = _zarr()
        rows = []
        for d, m, lay in self._triples():
            gp = self.path / d / m / lay
            row = {"dataset": d, "model": m, "layer": lay, "complete": False, "n": None, "n_skipped": None,
                   "dim": None, "poolings": [], "n_shards": len(self._committed_shards(gp)), "error": None}
            try:
                g = zarr.open_group(str(gp), mode="r")
                attrs = dict(g.attrs)
                complete = bool(attrs.get("complete"))
                row.update(dataset=attrs.get("dataset", d), model=attrs.get("model", m), layer=attrs.get("layer", lay),
                           complete=complete)
                if complete:
                    pooled = g["pooled"]
                    row.update(n=int(pooled.shape[0]), dim=int(pooled.shape[1]),
                               n_skipped=int(g["skipped_ids"].shape[0]),
                               poolings=[p for p, a in _ARRAY_FOR.items() if a in g])
            except Exception as exc:  # damaged metadata: listed, not fatal (store verify/repair deal with it)
                row.update(complete=False, error=f"{type(exc).__name__}: {exc}")
            rows.append(row)
        return rows

    def provenance(self, dataset: str, model: str, layer: str) -> dict[str, Any]:
        """The attrs of a stored layer: model provenance, dataset name and fingerprint, versions, times.

        The integrity record (per-shard digests) is left out; :meth:`content_digest` sums it up.
        """
        attrs = dict(self._layer_group(dataset, model, layer).attrs)
        attrs.pop("integrity", None)
        return attrs

    def content_digest(self, dataset: str, model: str, layer: str, *, pooling: str = "mean") -> str:
        """One digest of a stored layer's sample ids and pooled rows, from the digests recorded at commit.

        Result caches key on it: embeddings recomputed after a repair (or by another model version)
        get a new digest, so results computed from the old ones are never reused. Costs no array read.

        Returns
        -------
        str
            Hex digest; for a layer stored without an integrity record, a digest of its arrays' contents.
        """
        import hashlib

        if pooling not in _POOLINGS:
            raise UnknownNameError("pooling", str(pooling), _POOLINGS)
        g = self._layer_group(dataset, model, layer)
        manifest = g.attrs.get("integrity")
        h = hashlib.sha256()
        names = ("sample_ids", _ARRAY_FOR[pooling]) if _present(g, _ARRAY_FOR[pooling]) else (
            "sample_ids", "atom_features", "atom_offsets")
        for name in names:
            if manifest is not None and name in manifest["arrays"]:
                entry = manifest["arrays"][name]
                h.update(json.dumps([manifest["algo"], name, entry["shape"], entry["dtype"], entry["digests"]]).encode())
            else:
                h.update(_digest(self._read_array(g, name, (dataset, model, layer)), "sha256").encode())
        return h.hexdigest()[:32]

    def skipped(self, dataset: str, model: str, layer: str) -> dict[str, str]:
        """Sample id → reason, for every sample the model did not embed."""
        g = self._layer_group(dataset, model, layer)
        where = (dataset, model, layer)
        ids, reasons = self._read_array(g, "skipped_ids", where), self._read_array(g, "skipped_reasons", where)
        return dict(zip(_strs(ids), _strs(reasons), strict=True))

    def read(self, dataset: str, model: str, layer: str, *, pooling: str = "mean") -> tuple[list[str], np.ndarray]:
        """Pooled embeddings, one row per embedded sample.

        Parameters
        ----------
        dataset, model, layer : str
        pooling : {"mean", "sum", "max"}
            Read the stored array, or pool the stored per-atom features when it was not stored.

        Returns
        -------
        ids : list of str, length N
        X : ndarray, shape (N, D), float32
        """
        if pooling not in _POOLINGS:
            raise UnknownNameError("pooling", str(pooling), _POOLINGS)
        g = self._layer_group(dataset, model, layer)
        where = (dataset, model, layer)
        ids = _strs(self._read_array(g, "sample_ids", where))
        name = _ARRAY_FOR[pooling]
        if _present(g, name):
            return ids, np.asarray(self._read_array(g, name, where), dtype=np.float32)
        if not _present(g, "atom_features"):
            raise StoreError(f"{dataset}/{model}/{layer}: pooling {pooling!r} was not stored and there are no "
                             "per-atom features to compute it from")
        feats, offsets = self._read_array(g, "atom_features", where), self._read_array(g, "atom_offsets", where)
        return ids, _pool_segments(feats, offsets, pooling)

    def read_atoms(self, dataset: str, model: str, layer: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Per-atom features.

        Returns
        -------
        ids : list of str, length N
        features : ndarray, shape (ΣNatoms, D), float32
        offsets : ndarray, shape (N + 1,), int64
            The rows of sample ``i`` are ``features[offsets[i]:offsets[i + 1]]``.
        """
        g = self._layer_group(dataset, model, layer)
        if not _present(g, "atom_features"):
            raise StoreError(f"{dataset}/{model}/{layer} was stored without per-atom features (save_atoms=False)")
        where = (dataset, model, layer)
        return _strs(self._read_array(g, "sample_ids", where)), \
            np.asarray(self._read_array(g, "atom_features", where), dtype=np.float32), \
            np.asarray(self._read_array(g, "atom_offsets", where), dtype=np.int64)

    # ------------------------------------------------------------------ integrity
    def _fix(self) -> str:
        return (f"run `matteralign store repair {self.path}` to delete the damaged shards, then run the study "
                f"(or extraction) again to recompute them; `matteralign store verify {self.path}` lists every damage")

    def _read_array(self, g, name: str, where: tuple[str, str, str], *, force: bool = False) -> np.ndarray:
        """Read a whole stored array and check it against the digests recorded when it was committed.

        A check passes once per process for unchanged files (``force`` checks again). A missing,
        damaged or foreign chunk raises :class:`StoreError` naming the layer, array and shards.
        """
        dataset, model, layer = where
        gp = self._group_path(dataset, model, layer)
        label = f"{dataset}/{model}/{layer}"
        manifest = g.attrs.get("integrity")
        try:
            fp = _fingerprint(gp / name) + _fingerprint_file(gp / "zarr.json")
            data = np.asarray(g[name][:])
        except Exception as exc:  # truncated metadata, undecodable chunk, ...
            bad = self._unreadable_shards(g, name, manifest)
            at = f" in shard(s) {', '.join(map(str, bad))}" if bad else ""
            raise _Damage(f"store {str(self.path)!r}: {label}: the array {name!r} cannot be read{at} "
                          f"({type(exc).__name__}: {exc}); {self._fix()}", group=gp, shards=bad,
                          array=name) from None
        if manifest is None:
            if str(gp) not in _warned_legacy:
                import warnings

                _warned_legacy.add(str(gp))
                warnings.warn(f"{label} in {str(self.path)!r} was stored without content digests (an older "
                              "matteralign); its contents cannot be verified", stacklevel=3)
            return data
        key = str(gp / name)
        if not force and _verified.get(key) == fp:
            return data
        entry = manifest.get("arrays", {}).get(name)
        if entry is None:
            raise _Damage(f"store {str(self.path)!r}: {label}: the array {name!r} is not in the layer's integrity "
                          f"record (a foreign array?); {self._fix()}", group=gp, array=name)
        if list(data.shape) != list(entry["shape"]) or _dtype_tag(data) != entry["dtype"]:
            raise _Damage(f"store {str(self.path)!r}: {label}: the array {name!r} has shape {list(data.shape)} "
                          f"and dtype {_dtype_tag(data)}, but {entry['shape']} and {entry['dtype']} were committed; "
                          f"{self._fix()}", group=gp, array=name)
        bad = []
        for k, (sh, want) in enumerate(zip(manifest["shards"], entry["digests"], strict=True)):
            lo, hi = _range_of(name, sh)
            if _digest(data[lo:hi], manifest["algo"]) != want:
                bad.append(k)
        if bad:
            first = manifest["shards"][bad[0]]["rows"]
            listed = ", ".join(str(b) for b in bad[:8]) + (", ..." if len(bad) > 8 else "")
            raise _Damage(f"store {str(self.path)!r}: {label}: array {name!r} does not match its content digest in "
                          f"shard(s) {listed} of {len(manifest['shards'])} (shard {bad[0]} holds samples "
                          f"{first[0]}..{first[1] - 1}): a chunk is missing or damaged; {self._fix()}",
                          group=gp, shards=bad, array=name)
        _verified[key] = fp
        return data

    @staticmethod
    def _unreadable_shards(g, name: str, manifest: dict | None) -> list[int]:
        """The shards whose rows fall in chunks of ``name`` that cannot be read (empty when unknown)."""
        if not manifest:
            return []
        try:
            arr = g[name]
            step = int(arr.chunks[0]) or 1
            failed = []
            for lo in range(0, int(arr.shape[0]), step):
                try:
                    arr[lo:lo + step]
                except Exception:
                    failed.append((lo, lo + step))
            return [k for k, sh in enumerate(manifest["shards"])
                    if any(lo < _range_of(name, sh)[1] and _range_of(name, sh)[0] < hi for lo, hi in failed)]
        except Exception:  # the array's metadata itself is unreadable
            return []

    def _read_shard(self, gp: Path, k: int | str, where: tuple[str, str, str]) -> dict[str, np.ndarray]:
        """Every array of committed shard ``k`` (or of the rows an extension keeps, ``k = "base"``), checked
        against the digests written with it."""
        label = "/".join(where)
        sp = gp / _BASE if k == _BASE else gp / "shards" / f"{k:06d}"
        try:
            s = _zarr().open_group(str(sp), mode="r")
            attrs = dict(s.attrs)
            arrays = {name: np.asarray(s[name][:]) for name in attrs.get("digests", {}) or [n for n, _ in s.arrays()]}
        except Exception as exc:
            raise _Damage(f"store {str(self.path)!r}: {label}: committed shard {k} cannot be read "
                          f"({type(exc).__name__}: {exc}); {self._fix()}", group=gp, shards=[k],
                          in_progress=True) from None
        digests = attrs.get("digests")
        if digests is not None:
            algo = attrs.get("digest_algo", "sha256")
            for name, want in digests.items():
                if _digest(arrays[name], algo) != want:
                    raise _Damage(f"store {str(self.path)!r}: {label}: array {name!r} of committed shard {k} does "
                                  f"not match its content digest (a chunk is missing or damaged); {self._fix()}",
                                  group=gp, shards=[k], array=name, in_progress=True)
        arrays["__attrs__"] = attrs
        return arrays

    def verify(self) -> list[dict[str, Any]]:
        """Check every stored array (and every committed shard of unfinished extractions) against its digests.

        Reads the whole store once; unchanged arrays already checked by this process are checked again.

        Returns
        -------
        list of dict
            One dict per damage found (empty when the store is intact): ``dataset``, ``model``,
            ``layer`` (store path components), ``shards`` (damaged shard numbers; empty when the
            whole layer is unreadable), ``array``, ``in_progress`` (a shard of an unfinished
            extraction), ``message``.
        """
        problems = []
        for d, m, lay in self._triples():
            gp = self.path / d / m / lay
            where = (d, m, lay)
            try:
                g = _zarr().open_group(str(gp), mode="r")
                attrs = dict(g.attrs)
            except Exception as exc:
                problems.append({"dataset": d, "model": m, "layer": lay, "shards": [], "array": None,
                                 "in_progress": False, "message": f"store {str(self.path)!r}: {d}/{m}/{lay}: the "
                                 f"layer's metadata cannot be read ({type(exc).__name__}: {exc})"})
                continue
            found: list[_Damage] = []
            if attrs.get("complete"):
                names = list((attrs.get("integrity") or {}).get("arrays", {})) or [n for n, _ in g.arrays()]
                for name in names:
                    try:
                        self._read_array(g, name, where, force=True)
                    except _Damage as exc:
                        found.append(exc)
            else:
                for k in self._committed_shards(gp) + ([_BASE] if (gp / _BASE).is_dir() else []):
                    try:
                        self._read_shard(gp, k, where)
                    except _Damage as exc:
                        if k == _BASE:  # the kept rows of an extension: the layer is recomputed whole
                            exc.shards = []
                        found.append(exc)
            problems += [{"dataset": d, "model": m, "layer": lay, "shards": e.shards, "array": e.array,
                          "in_progress": e.in_progress, "message": str(e)} for e in found]
        return problems

    def repair(self) -> list[dict[str, Any]]:
        """Delete what :meth:`verify` finds damaged, so that the next run recomputes only that.

        Damage is removed per extraction shard: a finished layer is taken back into its extraction
        shards (each checked against the digests recorded for it), the damaged shards are left out,
        and the layer is marked unfinished, so the next extraction recomputes just the samples of
        those shards and consolidates the layer again (into the same contents when the model is
        deterministic). A damaged shard of an unfinished extraction is deleted alone. A layer whose
        metadata, array metadata or shard record cannot be read (or that was stored without
        digests) is deleted whole. Leftover temporary shard folders of killed extractions are removed.

        Returns
        -------
        list of dict
            The damages found (as :meth:`verify`), each with ``removed`` (the path deleted: a shard
            folder, or the layer folder when it was deleted whole) and ``recompute`` (the shard
            numbers the next run recomputes, or ``None`` for the whole layer).
        """
        from ._lock import FolderLock

        if self.mode == "r":
            raise StoreError(f"store {str(self.path)!r} is open read-only; open it with mode='a' to repair it")
        with FolderLock(self.path, purpose="store repair", timeout=600):
            problems = self.verify()
            layers: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
            for p in problems:
                layers.setdefault((p["dataset"], p["model"], p["layer"]), []).append(p)
            for (d, m, lay), found in layers.items():
                gp = self.path / d / m / lay
                if all(p["in_progress"] and p["shards"] for p in found):  # shards of an unfinished extraction
                    for p in found:
                        target = gp / "shards" / f"{p['shards'][0]:06d}"
                        shutil.rmtree(target, ignore_errors=True)
                        p.update(removed=str(target), recompute=list(p["shards"]))
                    continue
                bad = None if any(not p["shards"] or p["in_progress"] for p in found) else \
                    sorted({k for p in found for k in p["shards"]})
                recompute = self._reopen(gp, bad) if bad is not None else None
                if recompute is None:
                    shutil.rmtree(gp, ignore_errors=True)
                for p in found:
                    p.update(removed=str(gp) if recompute is None else ", ".join(
                        str(gp / "shards" / f"{k:06d}") for k in recompute), recompute=recompute)
            for d, m, lay in self._triples():
                sd = self.path / d / m / lay / "shards"
                for tmp in sd.glob(".tmp-*") if sd.is_dir() else []:
                    shutil.rmtree(tmp, ignore_errors=True)
        return problems

    def _reopen(self, gp: Path, bad: Sequence[int]) -> list[int] | None:
        """Take finished layer ``gp`` back into its committed extraction shards, less the ``bad`` ones.

        Each kept shard's rows are read from the consolidated arrays and checked against the digests
        recorded for that shard (a shard found damaged here is left out too); the layer is then marked
        unfinished and its consolidated arrays are removed. The shards' sample order within a block is
        not recorded, so a taken-back shard records the set of its samples (``begin`` checks that).

        Returns
        -------
        list of int or None
            The shards left out (to recompute); ``None`` when the layer has no shard record (stored
            without digests, or its metadata cannot be read): then it has to be deleted whole.
        """
        zarr = _zarr()
        try:
            g = zarr.open_group(str(gp), mode="r")
            attrs = dict(g.attrs)
            manifest = attrs.get("integrity")
            names = list(manifest["arrays"]) if manifest and manifest.get("shards") else None
            arrays = {name: g[name] for name in names or []}
        except Exception:
            return None
        if names is None or not {"sample_ids", "atom_offsets", "skipped_ids", "skipped_reasons"} <= set(names):
            return None
        algo, bad = manifest["algo"], set(bad)
        self._cleanup_shards(gp)
        for k, sh in enumerate(manifest["shards"]):
            if k in bad:
                continue
            rows = {}
            for name in names:
                lo, hi = _range_of(name, sh)
                try:
                    data = np.asarray(arrays[name][lo:hi])
                except Exception:
                    data = None
                if data is None or _digest(data, algo) != manifest["arrays"][name]["digests"][k]:
                    bad.add(k)
                    break
                rows[name] = data
            else:
                ids, skipped = _strs(rows["sample_ids"]), _strs(rows["skipped_ids"])
                content = {"sample_ids": _str_array(ids), "n_atoms": np.diff(rows["atom_offsets"]).astype(np.int64)}
                for name in ("atom_features", *(_ARRAY_FOR[p] for p in _POOLINGS)):
                    if name in rows:
                        content[name] = rows[name].astype(np.float32)
                content["skipped_ids"] = _str_array(skipped)
                content["skipped_reasons"] = _str_array(_strs(rows["skipped_reasons"]))
                dim = int(content["pooled"].shape[1]) if ids and "pooled" in content else int(attrs.get("dim") or 0)
                _commit_shard(gp, k, content, {"block_ids_set_sha": _sha(sorted(ids + skipped)), "dim": dim,
                                               "taken_back": True})
        g = zarr.open_group(str(gp), mode="a")
        g.attrs["complete"] = False  # first: a kill from here on leaves an unfinished extraction, not a damaged layer
        for key in ("integrity", "completed", "n"):
            if key in g.attrs:
                del g.attrs[key]
        for name in names:
            shutil.rmtree(gp / name, ignore_errors=True)
        return sorted(bad)

    # ------------------------------------------------------------------ writing
    @staticmethod
    def _committed_shards(gp: Path) -> list[int]:
        sd = gp / "shards"
        if not sd.is_dir():
            return []
        return sorted(int(x.name) for x in sd.iterdir() if x.is_dir() and x.name.isdigit())

    def write_shard(self, dataset: str, model: str, layer: str, index: int, *, ids: Sequence[str],
                    arrays: Sequence[np.ndarray], skipped: dict[str, str] | None = None,
                    block_ids: Sequence[str] | None = None, poolings: Sequence[str] = ("mean",),
                    save_atoms: bool = True) -> Path:
        """Write one shard and commit it atomically (temporary folder, then rename).

        Parameters
        ----------
        dataset, model, layer : str
        index : int
            Shard number (shards are concatenated in increasing index).
        ids : sequence of str
            Ids of the embedded samples of this shard, in order.
        arrays : sequence of ndarray
            One ``(n_atoms_i, D)`` (or ``(1, D)``) float array per id.
        skipped : dict of str to str, optional
            Id → reason for the samples of this shard that were not embedded.
        block_ids : sequence of str, optional
            Every sample id the shard covers (embedded and skipped), to check a resumed run.
        poolings : sequence of {"mean", "sum", "max"}
        save_atoms : bool
            Keep the per-atom features (else only pooled rows).

        Returns
        -------
        Path
            The committed shard folder. A shard that is already committed is left as it is, and nothing
            is written into a layer that is already finished (a job extracting several layers recomputes
            a shard that only some of them lack).
        """
        if self.mode == "r":
            raise StoreError(f"store {str(self.path)!r} is open read-only")
        if len(ids) != len(arrays):
            raise InputError(f"write_shard: {len(ids)} ids but {len(arrays)} arrays")
        for p in poolings:
            if p not in _POOLINGS:
                raise UnknownNameError("pooling", str(p), _POOLINGS)
        skipped = dict(skipped or {})
        self._ensure_groups(dataset, model, layer)
        gp = self._group_path(dataset, model, layer)
        final = gp / "shards" / f"{int(index):06d}"
        if final.exists() or self.has(dataset, model, layer):  # a layer already finished needs no shard
            return final
        (gp / "shards").mkdir(parents=True, exist_ok=True)
        dims = {np.asarray(a).shape[1] for a in arrays if np.asarray(a).ndim == 2}
        if len(dims) > 1:
            raise InputError(f"write_shard: arrays of shard {index} have different widths {sorted(dims)}")
        for i, a in zip(ids, arrays, strict=True):
            a = np.asarray(a)
            if a.ndim != 2 or a.shape[0] == 0:
                raise InputError(f"write_shard: features of sample {i!r} must be a non-empty 2D array; got {a.shape}")
            if not np.isfinite(a).all():
                raise InputError(f"write_shard: features of sample {i!r} contain NaN or inf")
        d = dims.pop() if dims else 0
        counts = np.array([np.asarray(a).shape[0] for a in arrays], dtype=np.int64)
        feats = (np.concatenate([np.asarray(a, dtype=np.float32) for a in arrays]) if arrays
                 else np.zeros((0, d), np.float32))
        offsets = np.concatenate([[0], np.cumsum(counts)])
        content = {"sample_ids": _str_array(ids), "n_atoms": counts}
        if save_atoms:
            content["atom_features"] = feats
        for p in poolings:
            content[_ARRAY_FOR[p]] = _pool_segments(feats, offsets, p) if len(ids) else np.zeros((0, d), np.float32)
        content["skipped_ids"] = _str_array(list(skipped))
        content["skipped_reasons"] = _str_array(list(skipped.values()))
        return _commit_shard(gp, int(index), content, {
            "block_ids_sha": _sha(block_ids if block_ids is not None else list(ids) + list(skipped)), "dim": int(d)})

    def begin(self, dataset: str, model: str, layer: str, *, plan: dict[str, Any], blocks: Sequence[Sequence[str]],
              dataset_meta: dict[str, Any] | None = None, overwrite: bool = False,
              order: Sequence[str] | None = None) -> dict[str, Any]:
        """Open (or resume) the group of one extraction and say which shards are still to compute.

        Parameters
        ----------
        dataset, model, layer : str
        plan : dict
            What the embeddings are made of (dataset fingerprint, sample count, shard size, poolings,
            ``save_atoms``); a stored group made with another plan is refused unless ``overwrite``.
        blocks : sequence of sequence of str
            The sample ids of each shard, in order (a committed shard must cover the same ids).
        dataset_meta : dict, optional
            The dataset's meta (kept in the group's attrs).
        overwrite : bool
            Discard stored embeddings of this (dataset, model, layer) first.
        order : sequence of str, optional
            Every sample id of the dataset, in order. Given, a finished group made with a plan that differs
            only in the samples (:data:`GROWABLE_PLAN_KEYS`) is **extended**: ``blocks`` then hold just the
            samples to compute (those :meth:`reusable_ids` does not list); no blocks leaves the group as it
            is, and otherwise the stored rows are kept aside, the new shards are computed, and
            :meth:`finish` merges both in the order of ``order`` (the same arrays as a fresh extraction).

        Returns
        -------
        dict
            ``complete`` (bool: nothing to do), ``done`` (committed shard indices), ``todo`` (the others),
            ``path``.

        Raises
        ------
        StoreError
            The store is read-only, the stored plan differs, or a committed shard covers other samples.
        """
        if self.mode == "r":
            raise StoreError(f"store {str(self.path)!r} is open read-only")
        gp = self._group_path(dataset, model, layer)
        if overwrite and gp.exists():
            shutil.rmtree(gp)
        g = self._ensure_groups(dataset, model, layer)
        attrs = dict(g.attrs)
        plan = _jsonable(plan)
        if (order is not None and attrs.get("complete") and attrs.get("plan") is not None and attrs["plan"] != plan
                and _growable(attrs["plan"], plan)):
            if not any(len(b) for b in blocks):  # every requested sample is stored: nothing to compute
                self._cleanup_shards(gp)
                return {"complete": True, "done": [], "todo": [], "path": str(gp)}
            self._start_extension(gp, (dataset, model, layer), plan, blocks, order, dataset_meta)
            attrs = dict(_zarr().open_group(str(gp), mode="r").attrs)
        if attrs.get("plan") is not None and attrs["plan"] != plan:
            old = attrs["plan"]
            diff = {k: (old.get(k), v) for k, v in plan.items() if old.get(k) != v}
            raise StoreError(f"{str(gp)!r} holds embeddings made with a different plan {diff} (stored, requested); "
                             "pass overwrite=True (CLI: --overwrite) to replace them")
        if attrs.get("complete"):
            self._cleanup_shards(gp)
            return {"complete": True, "done": list(range(len(blocks))), "todo": [], "path": str(gp)}
        if attrs.get("plan") is None:
            g.attrs.update(_jsonable({"dataset": dataset, "model": model, "layer": layer, "plan": plan,
                                      "complete": False, "dataset_meta": dataset_meta or {},
                                      "versions": _versions(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
        done = set(self._committed_shards(gp))
        for k, ids in enumerate(blocks):  # a committed shard must cover the same samples
            if k in done:
                try:
                    sattrs = dict(_zarr().open_group(str(gp / "shards" / f"{k:06d}"), mode="r").attrs)
                except Exception as exc:  # damaged shard metadata
                    raise _Damage(f"store {str(self.path)!r}: {dataset}/{model}/{layer}: committed shard {k} cannot "
                                  f"be read ({type(exc).__name__}: {exc}); {self._fix()}", group=gp, shards=[k],
                                  in_progress=True) from None
                # a shard taken back out of a finished layer by repair knows its samples, not their order
                same = (sattrs.get("block_ids_sha") == _sha(list(ids)) if "block_ids_sha" in sattrs
                        else sattrs.get("block_ids_set_sha") == _sha(sorted(ids)))
                if not same:
                    raise StoreError(f"shard {k} of {str(gp)!r} covers other samples than this dataset's block {k}; "
                                     "pass overwrite=True to start again")
        return {"complete": False, "done": sorted(done), "todo": [k for k in range(len(blocks)) if k not in done],
                "path": str(gp)}

    def reusable_ids(self, dataset: str, model: str, layer: str, *, plan: dict[str, Any]) -> set[str] | None:
        """The sample ids (embedded and skipped) an extraction with ``plan`` need not compute again.

        A finished group made with a plan that differs from ``plan`` only in which samples it covers
        (:data:`GROWABLE_PLAN_KEYS`: e.g. the same dataset at another ``n``) offers every sample it holds;
        an unfinished extension of such a group (see :meth:`begin`) offers the samples it keeps aside.

        Returns
        -------
        set of str or None
            ``None`` when the group is planned as ``plan`` already (finished, or an interrupted extraction
            of the whole dataset: :meth:`begin` resumes it) or there is nothing to reuse (no group, or one
            made with other poolings / ``save_atoms``, which :meth:`begin` refuses).
        """
        gp = self._group_path(dataset, model, layer)
        if not (gp / "zarr.json").exists():
            return None
        try:
            g = _zarr().open_group(str(gp), mode="r")
            attrs = dict(g.attrs)
        except Exception:
            return None  # damaged metadata: begin and verify say so
        stored, plan = attrs.get("plan"), _jsonable(plan)
        where = (dataset, model, layer)
        if attrs.get("complete") and stored is not None and stored != plan and _growable(stored, plan):
            return set(_strs(self._read_array(g, "sample_ids", where))) | set(
                _strs(self._read_array(g, "skipped_ids", where)))
        if not attrs.get("complete") and stored == plan and (gp / _BASE).is_dir():
            base = self._read_shard(gp, _BASE, where)
            return set(_strs(base["sample_ids"])) | set(_strs(base["skipped_ids"]))
        return None

    def _start_extension(self, gp: Path, where: tuple[str, str, str], plan: dict[str, Any],
                         blocks: Sequence[Sequence[str]], order: Sequence[str],
                         dataset_meta: dict[str, Any] | None) -> None:
        """Keep a finished group's rows aside (``<group>/base``, with their digests) and reopen the group
        under ``plan``, so the shards of ``blocks`` can be added; :meth:`_consolidate` merges them."""
        zarr = _zarr()
        g = zarr.open_group(str(gp), mode="r")
        attrs = dict(g.attrs)
        redo = {i for b in blocks for i in b}  # samples computed again are not kept
        ids = _strs(self._read_array(g, "sample_ids", where))
        offsets = np.asarray(self._read_array(g, "atom_offsets", where), dtype=np.int64)
        keep = np.array([i not in redo for i in ids], dtype=bool)
        counts = np.diff(offsets)
        content: dict[str, np.ndarray] = {"sample_ids": _str_array([i for i, k in zip(ids, keep, strict=True) if k]),
                                          "n_atoms": counts[keep].astype(np.int64)}
        if _present(g, "atom_features"):
            content["atom_features"] = np.asarray(self._read_array(g, "atom_features", where), np.float32)[
                np.repeat(keep, counts)]
        for p in plan.get("poolings", ["mean"]):
            if _present(g, _ARRAY_FOR[p]):
                content[_ARRAY_FOR[p]] = np.asarray(self._read_array(g, _ARRAY_FOR[p], where), np.float32)[keep]
        sk_ids = _strs(self._read_array(g, "skipped_ids", where))
        sk_why = _strs(self._read_array(g, "skipped_reasons", where))
        sk = [(i, w) for i, w in zip(sk_ids, sk_why, strict=True) if i not in redo]
        content["skipped_ids"] = _str_array([i for i, _ in sk])
        content["skipped_reasons"] = _str_array([w for _, w in sk])
        content["order"] = _str_array(list(order))
        shutil.rmtree(gp / _BASE, ignore_errors=True)  # left by an extension killed before it began
        tmp = gp / f".tmp-base-{uuid.uuid4().hex[:8]}"
        s = zarr.open_group(str(tmp), mode="w")
        algo = _digest_algo()
        for name, data in content.items():
            s.create_array(name, data=data)
        s.attrs.update({"dim": int(attrs.get("dim") or 0), "digest_algo": algo,
                        "digests": {name: _digest(data, algo) for name, data in content.items()}})
        os.rename(tmp, gp / _BASE)  # the stored rows are safe from here on
        w = zarr.open_group(str(gp), mode="a")
        w.attrs["complete"] = False  # first: a kill from here on leaves an extension to resume
        for key in ("integrity", "completed", "n"):
            if key in w.attrs:
                del w.attrs[key]
        w.attrs.update(_jsonable({"plan": plan, "dataset_meta": dataset_meta or {}, "extended_from": {
            "plan": attrs.get("plan"), "n": len(ids), "kept": int(keep.sum()) + len(sk)}}))
        for name in [n for n, _ in g.arrays()]:
            shutil.rmtree(gp / name, ignore_errors=True)

    def shard_has_atoms(self, dataset: str, model: str, layer: str, index: int) -> bool | None:
        """Whether committed shard ``index`` kept per-atom features (``None`` when it is not committed)."""
        sp = self._group_path(dataset, model, layer) / "shards" / f"{int(index):06d}"
        if not sp.is_dir():
            return None
        return "atom_features" in _zarr().open_group(str(sp), mode="r")

    def set_provenance(self, dataset: str, model: str, layer: str, provenance: dict[str, Any]) -> None:
        """Record what produced a group's embeddings (kept from the first committed shard on)."""
        g = self._ensure_groups(dataset, model, layer)
        if "provenance" not in g.attrs:
            g.attrs["provenance"] = _jsonable(provenance)

    def finish(self, dataset: str, model: str, layer: str, *, n_shards: int, poolings: Sequence[str] = ("mean",),
               save_atoms: bool = True, computed: int = 0, seconds: float = 0.0) -> dict[str, Any]:
        """Concatenate the committed shards into the group's arrays and mark it complete.

        Returns
        -------
        dict
            ``dataset``, ``model``, ``layer``, ``n`` (embedded), ``n_skipped``, ``dim``, ``computed_shards``,
            ``seconds``, ``path``.
        """
        gp = self._group_path(dataset, model, layer)
        if not self.has(dataset, model, layer):
            self._consolidate(gp, n_shards, list(dict.fromkeys(["mean", *poolings])), save_atoms)
        return self._summary(dataset, model, layer, computed, seconds)

    def _consolidate(self, gp: Path, n_shards: int, poolings: Sequence[str], save_atoms: bool) -> None:
        from ._lock import FolderLock

        zarr = _zarr()
        where = tuple(gp.relative_to(self.path).parts)
        with FolderLock(self.path, purpose="store commit", timeout=3600):
            if _zarr().open_group(str(gp), mode="r").attrs.get("complete"):
                self._cleanup_shards(gp)  # another process consolidated it while this one waited
                return
            have = self._committed_shards(gp)
            if have != list(range(n_shards)):
                raise StoreError(f"{str(gp)!r}: expected shards 0..{n_shards - 1}, found {have}")
            shards = [self._read_shard(gp, k, where) for k in range(n_shards)]  # each checked against its digests
            base = self._read_shard(gp, _BASE, where) if (gp / _BASE).is_dir() else None  # an extension's rows
            if base is not None:
                shards = [base, *shards]
            dims = {int(s["__attrs__"]["dim"]) for s in shards if s["sample_ids"].shape[0] > 0}
            if len(dims) > 1:
                raise StoreError(f"{str(gp)!r}: shards have different feature widths {sorted(dims)}")
            d = dims.pop() if dims else 0
            ids = [i for s in shards for i in _strs(s["sample_ids"])]
            if len(set(ids)) != len(ids):
                raise StoreError(f"{str(gp)!r}: duplicated sample ids across shards")
            g = zarr.open_group(str(gp), mode="a")
            counts = np.concatenate([s["n_atoms"] for s in shards]).astype(np.int64)
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            content: dict[str, np.ndarray] = {"sample_ids": _str_array(ids), "atom_offsets": offsets}
            for p in poolings:
                name = _ARRAY_FOR[p]
                parts = [s[name] for s in shards if s["sample_ids"].shape[0] > 0]
                content[name] = np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, d), np.float32)
            if save_atoms:
                parts = [s["atom_features"] for s in shards if s["sample_ids"].shape[0] > 0]
                content["atom_features"] = (np.concatenate(parts).astype(np.float32) if parts
                                            else np.zeros((0, d), np.float32))
            content["skipped_ids"] = _str_array([i for s in shards for i in _strs(s["skipped_ids"])])
            content["skipped_reasons"] = _str_array([r for s in shards for r in _strs(s["skipped_reasons"])])
            ranges = _shard_ranges([len(s["sample_ids"]) for s in shards], [int(s["n_atoms"].sum()) for s in shards],
                                   [len(s["skipped_ids"]) for s in shards])
            if base is not None:  # the kept and the new rows in dataset order, in the shards of a fresh extraction
                plan = dict(g.attrs).get("plan") or {}
                content, ranges = _in_order(content, _strs(base["order"]), int(plan.get("shard_size") or 256))
                ids = _strs(content["sample_ids"])
            manifest = _manifest(content, ranges, _digest_algo())
            chunk_rows = {"atom_features": 65536, "pooled": 8192, "pooled_sum": 8192, "pooled_max": 8192}
            for name, data in content.items():
                if name in g:
                    del g[name]
                kw = {}
                if name in chunk_rows and data.ndim == 2 and data.shape[0] > 0:
                    kw["chunks"] = (min(data.shape[0], chunk_rows[name]), max(data.shape[1], 1))
                g.create_array(name, data=data, **kw)
            g.attrs.update({"complete": True, "n": len(ids), "dim": d, "pooling": "mean", "integrity": manifest,
                            "completed": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            self._cleanup_shards(gp)

    @staticmethod
    def _cleanup_shards(gp: Path) -> None:
        for sd in (gp / "shards", gp / _BASE):
            if sd.exists():
                _discard(sd, gp.parents[2] / _DISCARDED)  # the store's root (root/dataset/model/layer)

    def _summary(self, dataset: str, model: str, layer: str, computed: int, seconds: float) -> dict[str, Any]:
        g = self._layer_group(dataset, model, layer)
        return {"dataset": dataset, "model": model, "layer": layer, "n": int(g["pooled"].shape[0]),
                "n_skipped": int(g["skipped_ids"].shape[0]), "dim": int(g["pooled"].shape[1]),
                "computed_shards": computed, "seconds": seconds, "path": str(self._group_path(dataset, model, layer))}


# ---------------------------------------------------------------------- helpers
def _discard(folder: Path, trash: Path) -> None:
    """Remove ``folder`` without making the caller wait: it is renamed into ``trash`` at once (atomic, on the
    same filesystem) and deleted there by a background thread (a large extraction leaves thousands of small
    shard directories). What an interrupted deletion leaves in ``trash`` goes with the next discard."""
    import threading

    trash.mkdir(exist_ok=True)
    gone = trash / uuid.uuid4().hex
    try:
        os.rename(folder, gone)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        return
    t = threading.Thread(target=shutil.rmtree, args=(trash,), kwargs={"ignore_errors": True}, daemon=True,
                         name="matteralign-discard")
    t.start()
    _DISCARDING.append(t)


def wait_for_discards() -> None:
    """Wait until the background deletions of finished shards are done (an extraction calls it before it
    returns, so that a store is never copied or removed while a deletion still runs inside it)."""
    while _DISCARDING:
        _DISCARDING.pop().join()


def _str_array(values: Sequence[str]) -> np.ndarray:
    string_dtype = getattr(np.dtypes, "StringDType", None)  # numpy >= 2: zarr's variable-length strings
    if string_dtype is None:  # numpy < 2 (model environments pinning it): fixed-width unicode, which zarr 3 takes
        return np.array([str(v) for v in values], dtype=str)
    return np.array([str(v) for v in values], dtype=string_dtype())


def _strs(arr) -> list[str]:
    return [str(x) for x in np.asarray(arr[:]).tolist()] if arr.shape[0] else []


def _sha(ids: Sequence[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for i in ids:
        h.update(str(i).encode() + b"\0")
    return h.hexdigest()[:16]


def _pool_segments(feats: np.ndarray, offsets: np.ndarray, how: str) -> np.ndarray:
    """Pool consecutive row segments ``feats[offsets[i]:offsets[i+1]]`` (float64 accumulation)."""
    starts = offsets[:-1]
    if len(starts) == 0:
        return np.zeros((0, feats.shape[1]), np.float32)
    if how == "max":
        return np.maximum.reduceat(feats, starts, axis=0).astype(np.float32)
    s = np.add.reduceat(feats.astype(np.float64), starts, axis=0)
    if how == "mean":
        s /= np.diff(offsets)[:, None]
    return s.astype(np.float32)


#: Consolidated arrays with one row per embedded sample (their shard ranges are the shards' rows).
_ROW_ARRAYS = ("sample_ids", "pooled", "pooled_sum", "pooled_max")
_verified: dict[str, tuple] = {}  # array folder -> fingerprint of its files when it was last verified
_warned_legacy: set[str] = set()


def _digest_algo() -> str:
    """The digest written by this process: xxh3-128 when xxhash is installed, else SHA-256."""
    try:
        import xxhash  # noqa: F401
    except ImportError:  # a model environment without xxhash
        return "sha256"
    return "xxh3_128"


def _new_hash(algo: str):
    if algo == "xxh3_128":
        import xxhash

        return xxhash.xxh3_128()
    if algo == "sha256":
        import hashlib

        return hashlib.sha256()
    raise StoreError(f"unknown content digest {algo!r} in the store (written by a newer matteralign?)")


def _is_str(data: np.ndarray) -> bool:
    return data.dtype.kind in ("U", "O", "T", "S")


def _dtype_tag(data: np.ndarray) -> str:
    """A dtype name that is the same whichever numpy wrote or reads the array (strings: "str")."""
    return "str" if _is_str(data) else np.dtype(data.dtype).newbyteorder("<").str


def _digest(data: np.ndarray, algo: str) -> str:
    """Content digest of an array (rows of strings, or the little-endian bytes of numbers)."""
    h = _new_hash(algo)
    h.update(_dtype_tag(data).encode() + b"|" + repr(tuple(data.shape[1:])).encode() + b"|")
    if _is_str(data):
        h.update("\0".join(str(x) for x in data.tolist()).encode("utf-8", "surrogatepass"))
    else:
        h.update(np.ascontiguousarray(data, dtype=np.dtype(data.dtype).newbyteorder("<")))
    return h.hexdigest()


def _growable(stored: dict[str, Any], plan: dict[str, Any]) -> bool:
    """Whether a finished group made with plan ``stored`` can serve (and grow into) plan ``plan``."""
    keys = set(stored) | set(plan)
    return all(stored.get(k) == plan.get(k) for k in keys - set(GROWABLE_PLAN_KEYS))


def _in_order(content: dict[str, np.ndarray], order: Sequence[str],
              shard_size: int) -> tuple[dict[str, np.ndarray], list[dict[str, list[int]]]]:
    """Consolidated arrays put in the order of ``order`` (ids outside it last, as they were), and the shard
    ranges of a fresh extraction of that order (blocks of ``shard_size`` samples, embedded or skipped)."""
    pos = {i: k for k, i in enumerate(order)}
    ids, sk = _strs(content["sample_ids"]), _strs(content["skipped_ids"])
    rank = [pos.get(i, len(order)) for i in ids]
    perm = np.array(sorted(range(len(ids)), key=rank.__getitem__), dtype=np.int64)
    sk_perm = sorted(range(len(sk)), key=lambda r: pos.get(sk[r], len(order)))
    offsets = content["atom_offsets"]
    counts = np.diff(offsets)[perm]
    out = dict(content)
    out["sample_ids"] = _str_array([ids[r] for r in perm])
    out["atom_offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    for name in ("pooled", "pooled_sum", "pooled_max"):
        if name in content:
            out[name] = content[name][perm]
    if "atom_features" in content:
        starts = offsets[:-1][perm]
        rows = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        out["atom_features"] = content["atom_features"][rows]
    out["skipped_ids"] = _str_array([sk[r] for r in sk_perm])
    out["skipped_reasons"] = _str_array([_strs(content["skipped_reasons"])[r] for r in sk_perm])
    # the blocks a fresh extraction of `order` would have shards for (then the ids stored outside it)
    everything = sorted([(pos.get(i, len(order)), 0, i) for i in ids] + [(pos.get(i, len(order)), 1, i) for i in sk])
    n_rows, n_atoms, n_skipped = [], [], []
    r = 0
    for lo in range(0, len(everything), shard_size):
        block = everything[lo:lo + shard_size]
        nr = sum(1 for _, kind, _ in block if kind == 0)
        n_rows.append(nr)
        n_atoms.append(int(counts[r:r + nr].sum()))
        n_skipped.append(len(block) - nr)
        r += nr
    return out, _shard_ranges(n_rows, n_atoms, n_skipped)


def _shard_ranges(n_rows: Sequence[int], n_atoms: Sequence[int], n_skipped: Sequence[int]) -> list[dict[str, list[int]]]:
    """Row ranges of each extraction shard in the consolidated arrays."""
    out, r, a, s = [], 0, 0, 0
    for nr, na, ns in zip(n_rows, n_atoms, n_skipped, strict=True):
        out.append({"rows": [r, r + nr], "atoms": [a, a + na], "skipped": [s, s + ns]})
        r, a, s = r + nr, a + na, s + ns
    return out


def _range_of(name: str, shard: dict[str, list[int]]) -> tuple[int, int]:
    if name in _ROW_ARRAYS:
        return tuple(shard["rows"])
    if name == "atom_offsets":
        return shard["rows"][0], shard["rows"][1] + 1
    if name == "atom_features":
        return tuple(shard["atoms"])
    if name in ("skipped_ids", "skipped_reasons"):
        return tuple(shard["skipped"])
    raise StoreError(f"no shard ranges are defined for the stored array {name!r}")


def _manifest(arrays: dict[str, np.ndarray], shards: list[dict[str, list[int]]], algo: str) -> dict[str, Any]:
    """The integrity record of a consolidated layer: per array, its shape, dtype and one digest per shard."""
    out = {"algo": algo, "shards": shards, "arrays": {}}
    for name, data in arrays.items():
        digests = []
        for sh in shards:
            lo, hi = _range_of(name, sh)
            digests.append(_digest(data[lo:hi], algo))
        out["arrays"][name] = {"shape": list(data.shape), "dtype": _dtype_tag(data), "digests": digests}
    return out


def _commit_shard(gp: Path, index: int, content: dict[str, np.ndarray], attrs: dict[str, Any]) -> Path:
    """Write the arrays of shard ``index`` of layer ``gp`` with their digests and commit it by a rename."""
    final = gp / "shards" / f"{index:06d}"
    (gp / "shards").mkdir(parents=True, exist_ok=True)
    tmp = gp / "shards" / f".tmp-{index:06d}-{uuid.uuid4().hex[:8]}"
    g = _zarr().open_group(str(tmp), mode="w")
    algo = _digest_algo()
    for name, data in content.items():
        g.create_array(name, data=data)
    g.attrs.update({**attrs, "digest_algo": algo,
                    "digests": {name: _digest(data, algo) for name, data in content.items()}})
    try:
        os.rename(tmp, final)  # the commit
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process committed the same shard first
    return final


def _present(g, name: str) -> bool:
    """Whether group ``g`` holds an array ``name`` (by its folder: works when its metadata is damaged)."""
    return (Path(str(g.store.root)) / g.path / name).is_dir()


def _fingerprint_file(path: Path) -> tuple:
    st = os.stat(path)
    return ((path.name, st.st_size, st.st_mtime_ns),)


def _fingerprint(folder: Path) -> tuple:
    """Names, sizes and modification times of every file under ``folder`` (changes when a chunk does)."""
    out = []
    for root, _dirs, files in os.walk(folder):
        for f in files:
            st = os.stat(os.path.join(root, f))
            out.append((os.path.relpath(os.path.join(root, f), folder), st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


class _Damage(StoreError):
    """A StoreError that knows which group, shard and array are damaged (for verify/repair)."""

    def __init__(self, message: str, *, group: Path, shards: Sequence[int] | None = None, array: str | None = None,
                 in_progress: bool = False):
        super().__init__(message)
        self.group, self.shards, self.array, self.in_progress = group, list(shards or []), array, in_progress
