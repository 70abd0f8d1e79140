"""ASE database readers: SQLite ``.db`` (``ase.db``) and ``.aselmdb`` shards (OMat24, OMol25, sAlex).

``.aselmdb`` is the LMDB backend of the ``ase-db-backends`` package; ``ase.db.connect`` dispatches on the
file extension to ``ase_db_backends.aselmdb.LMDBDatabase``, which the FAIR-chem datasets use for their
shards.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError, MissingDependencyError
from ..samples import Dataset, Sample
from ._common import Skipper, check_file, finish, numeric_labels
from ._format import atoms_text

__all__ = ["read_asedb", "read_aselmdb"]

#: key_value_pairs / data keys used as the sample id, in order of preference.
ID_KEYS = ("sample_id", "sid", "id", "mol_id", "name")


def _read(path: Path, kind: str, *, name: str | None, skip_invalid: bool, text: bool) -> Dataset:
    from ase.db import connect

    try:
        db = connect(str(path), type=kind, use_lock_file=False, **({"readonly": True} if kind == "aselmdb" else {}))
        n_rows = db.count()
        rows = db.select()
    except ImportError as exc:
        raise MissingDependencyError("ase-db-backends", "reading .aselmdb files", "models") from exc
    except Exception as exc:  # noqa: BLE001 - sqlite3.DatabaseError, lmdb.Error, ...
        raise DatasetError(f"{str(path)!r} is not a readable ASE {kind} database: {exc}") from None
    skip = Skipper(path, skip_invalid=skip_invalid)
    samples = []
    record = 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except Exception as exc:  # noqa: BLE001 - a corrupt row stops the cursor
            skip.bad(f"record {record}", f"unreadable row ({exc})")
            break
        try:
            atoms = row.toatoms()
            kvp = dict(row.key_value_pairs)
            data = dict(row.get("data") or {})
            sid = next((str(src[k]) for src in (kvp, data) for k in ID_KEYS if k in src and str(src[k])),
                       f"{path.stem}:{row.id}")
            labels = numeric_labels(kvp, exclude=ID_KEYS)
            energy = row.get("energy")
            if energy is not None:
                labels.setdefault("energy", float(energy))
                labels.setdefault("energy_per_atom", float(energy) / max(len(atoms), 1))
        except Exception as exc:  # noqa: BLE001
            skip.bad(f"record {record} (row id {getattr(row, 'id', '?')})", f"cannot be turned into atoms ({exc})")
            record += 1
            continue
        if not atoms.pbc.any():
            atoms.cell = None
        samples.append(Sample(id=sid, atoms=atoms, text=atoms_text(atoms) if text else None, labels=labels,
                              meta={"row_id": int(row.id)}))
        record += 1
    return finish(name or path.stem, samples, {"format": kind, "n_rows": int(n_rows), **skip.meta()}, path)


def read_asedb(path: str | Path, *, name: str | None = None, skip_invalid: bool = False,
               text: bool = True) -> Dataset:
    """Read an ASE SQLite database (``.db``): one sample per row.

    Ids from the ``sample_id``/``sid``/``id``/``mol_id``/``name`` key-value pair (or ``data``), else
    ``"<stem>:<row id>"``; labels from the numeric key-value pairs plus ``energy``/``energy_per_atom`` when a
    row has an energy.

    Raises
    ------
    DatasetError
        Missing or unreadable file, a corrupt row (unless ``skip_invalid``), or an empty database.
    """
    return _read(check_file(path, "ASE database"), "db", name=name, skip_invalid=skip_invalid, text=text)


def read_aselmdb(path: str | Path, *, name: str | None = None, skip_invalid: bool = False,
                 text: bool = True) -> Dataset:
    """Read an ``.aselmdb`` shard (the format of OMat24, OMol25 and sAlex) with ``ase-db-backends``.

    Same ids and labels as :func:`read_asedb`; OMat24-style ``sid`` entries in ``data`` become the ids.
    """
    path = check_file(path, "aselmdb")
    try:
        import ase_db_backends  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("ase-db-backends", "reading .aselmdb files", "models") from exc
    return _read(path, "aselmdb", name=name, skip_invalid=skip_invalid, text=text)
