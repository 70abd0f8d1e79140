"""FASTA reader: one sample per record, with the ``sequence`` view (proteins, nucleic acids)."""

from __future__ import annotations

import re
from pathlib import Path

from ..samples import Dataset, Sample
from ._common import Skipper, check_file, finish

__all__ = ["read_fasta"]

_VALID = re.compile(r"^[A-Za-z*\-.]+$")


def read_fasta(path: str | Path, *, name: str | None = None, skip_invalid: bool = False) -> Dataset:
    """Read a FASTA file.

    Parameters
    ----------
    path : str or Path
    name : str, optional
        Dataset name (default: the file stem).
    skip_invalid : bool
        Skip and count records with an empty sequence or characters outside letters, ``*``, ``-``, ``.``.

    Returns
    -------
    Dataset
        Ids = the first word of each header (``>sp|P69905|HBA_HUMAN ...`` → ``sp|P69905|HBA_HUMAN``), else
        ``"<stem>:<index>"``; the ``sequence`` view (upper-case, line breaks removed); ``meta["description"]``
        = the rest of the header; labels ``length``.

    Raises
    ------
    DatasetError
        Missing file, sequence lines before the first header, an invalid record (unless ``skip_invalid``),
        or no record.
    """
    path = check_file(path, "FASTA")
    skip = Skipper(path, skip_invalid=skip_invalid)
    records: list[tuple[int, str, list[str]]] = []
    with open(path) as fh:
        for line_no, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line or line.startswith(";"):
                continue
            if line.startswith(">"):
                records.append((line_no, line[1:].strip(), []))
            elif not records:
                skip.bad(f"line {line_no}", "sequence data before the first '>' header")
            else:
                records[-1][2].append(line)
    samples = []
    for index, (line_no, header, chunks) in enumerate(records):
        seq = "".join(chunks).replace(" ", "").upper()
        if not seq:
            skip.bad(f"record {index} (line {line_no})", "empty sequence")
            continue
        if not _VALID.match(seq):
            bad = sorted(set(re.sub(r"[A-Za-z*\-.]", "", seq)))
            skip.bad(f"record {index} (line {line_no})", f"invalid sequence characters {''.join(bad)!r}")
            continue
        word, _, description = header.partition(" ")
        sid = word or f"{path.stem}:{index}"
        samples.append(Sample(id=sid, sequence=seq, labels={"length": float(len(seq))},
                              meta={"description": description.strip(), "line": line_no}))
    return finish(name or path.stem, samples, {"format": "fasta", **skip.meta()}, path)
