"""Helpers shared by the file readers: file checks, numeric labels, skip-or-raise, the empty check."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from ..samples import Dataset, Sample

__all__ = ["check_file", "numeric_labels", "Skipper", "finish"]


def check_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path; DatasetError when it does not exist or is not a file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"{what} file {str(p)!r} does not exist")
    if not p.is_file():
        raise DatasetError(f"{what} path {str(p)!r} is not a file")
    return p


def numeric_labels(mapping: dict[str, Any] | None, *, exclude: tuple[str, ...] = ()) -> dict[str, float]:
    """The finite real-number scalars of ``mapping`` as floats (bools, strings, arrays and NaN left out)."""
    out: dict[str, float] = {}
    for key, value in (mapping or {}).items():
        if key in exclude or isinstance(value, bool):
            continue
        if hasattr(value, "item") and getattr(value, "size", 1) == 1 and getattr(value, "ndim", 0) == 0:
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
            out[str(key)] = float(value)
    return out


class Skipper:
    """Raise on a bad record, or (``skip_invalid=True``) count it and go on.

    Parameters
    ----------
    path : Path
        The file being read (named in messages).
    skip_invalid : bool
        Whether bad records are skipped and counted instead of raising.
    """

    def __init__(self, path: Path, *, skip_invalid: bool):
        self.path, self.skip_invalid = path, skip_invalid
        self.skipped: list[str] = []

    def bad(self, where: str, why: str) -> None:
        """Record (or raise on) a bad record at ``where`` (e.g. ``"line 12"``, ``"record 3"``)."""
        if not self.skip_invalid:
            raise DatasetError(
                f"{str(self.path)!r}, {where}: {why} (pass skip_invalid=True to skip and count such records)"
            )
        self.skipped.append(f"{where}: {why}")

    def meta(self) -> dict[str, Any]:
        """Metadata entries describing the skips."""
        return {"skipped": len(self.skipped), "skipped_records": self.skipped[:100]}


def finish(name: str, samples: list[Sample], meta: dict[str, Any], path: Path) -> Dataset:
    """The dataset, or DatasetError when no sample was read."""
    if not samples:
        extra = f" ({meta['skipped']} records skipped as unreadable)" if meta.get("skipped") else ""
        raise DatasetError(f"dataset file {str(path)!r} holds no samples{extra}")
    return Dataset(name, samples, {"name": name, "file": str(path), **meta})
