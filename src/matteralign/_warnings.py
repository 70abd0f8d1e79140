"""Warnings of a study run: collected from the driver and every worker, shown once at the end, and reported.

Third-party packages warn a lot while a study runs (duplicated rows dropped by an intrinsic-dimension
estimator, non-finite descriptors, truncated strings, ...). Printed as they come, they break the progress
display and are lost in it. During :func:`collect` the driver records Python warnings instead of printing
them, and each worker process (:func:`install_worker_hook`, called by the worker's main loop) keeps counts of
its own in a JSON file in the run's folder. :meth:`WarningLog.summary` merges both into counts by kind; the
study prints that summary after the run and the report shows it in its provenance.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["WarningLog", "collect", "current", "install_worker_hook", "ENV_VAR"]

#: Folder where worker processes append their warnings (set by :func:`collect` for the run's workers).
ENV_VAR = "MATTERALIGN_WARNINGS_DIR"

_CURRENT: list[WarningLog] = []

#: Hidden by Python's default filters, and here too: they speak to developers, not to the study's reader.
_QUIET = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def _filters() -> None:
    """Count every occurrence (not once per place), except the kinds Python hides by default."""
    warnings.simplefilter("always")
    for category in _QUIET:
        warnings.filterwarnings("ignore", category=category)


def _kind(category: str, message: str) -> str:
    """One line per kind of warning: numbers, quoted values and paths replaced so repeats count together."""
    first = str(message).strip().splitlines()[0] if str(message).strip() else ""
    text = re.sub(r"(['\"]).*?\1", "…", first)
    text = re.sub(r"(/[\w.\-]+)+", "…", text)
    text = re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "N", text)
    return f"{category}: {text[:160]}"


class _Tally:
    """Counts by kind with the first example of each (a run may warn millions of times)."""

    def __init__(self):
        self.kinds: dict[str, dict[str, Any]] = {}

    def add(self, category: str, message: str, filename: str = "?", lineno: int = 0) -> None:
        kind = _kind(category, message)
        entry = self.kinds.get(kind)
        if entry is None:
            self.kinds[kind] = {
                "count": 1,
                "example": str(message)[:500],
                "source": f"{Path(filename).name}:{lineno}",
            }
        else:
            entry["count"] += 1


class WarningLog(_Tally):
    """The warnings of one run (see :func:`collect`)."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = Path(folder)

    def summary(self) -> list[dict[str, Any]]:
        """Counts by kind over the driver and every worker, most frequent first:
        ``[{"kind", "count", "example", "source"}, ...]``."""
        merged = {k: dict(v) for k, v in self.kinds.items()}
        if self.folder.is_dir():
            for f in sorted(self.folder.glob("*.json")):
                try:
                    kinds = json.loads(f.read_text())
                except (OSError, ValueError):
                    continue
                for k, v in kinds.items():
                    if k in merged:
                        merged[k]["count"] += int(v["count"])
                    else:
                        merged[k] = dict(v)
        rows = [{"kind": k, **v} for k, v in merged.items()]
        return sorted(rows, key=lambda r: (-r["count"], r["kind"]))

    def lines(self) -> list[str]:
        """The summary as text lines (empty when nothing warned)."""
        rows = self.summary()
        if not rows:
            return []
        total = sum(r["count"] for r in rows)
        out = [f"{total} warning(s) of {len(rows)} kind(s) during the run:"]
        out += [f"  {r['count']:>6} × {r['kind']}  ({r['source']})" for r in rows]
        return out


@contextlib.contextmanager
def collect() -> Iterator[WarningLog]:
    """Record the driver's and its workers' warnings during the block (workers write to a scratch folder)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="matteralign-warnings-"))
    log = WarningLog(folder)
    old_env = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = str(folder.resolve())
    _CURRENT.append(log)
    try:
        with warnings.catch_warnings():
            _filters()

            def show(message, category, filename, lineno, file=None, line=None):
                log.add(category.__name__, str(message), filename, lineno)

            warnings.showwarning = show
            yield log
    finally:
        log.kinds = {r.pop("kind"): r for r in log.summary()}  # the workers' counts merged in, then
        log.folder = Path(folder / "gone")  # the scratch folder goes
        shutil.rmtree(folder, ignore_errors=True)
        _CURRENT.remove(log)
        if old_env is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old_env


def current() -> WarningLog | None:
    """The log of the run in progress in this process (``None`` outside :func:`collect`)."""
    return _CURRENT[-1] if _CURRENT else None


def install_worker_hook() -> None:
    """In a worker process: keep counts of every warning in ``$MATTERALIGN_WARNINGS_DIR/<pid>.json``.

    A no-op when the variable is not set (a worker outside a study run).
    """
    folder = os.environ.get(ENV_VAR)
    if not folder:
        return
    path = Path(folder) / f"{os.getpid()}.json"
    tally = _Tally()
    _filters()

    def show(message, category, filename, lineno, file=None, line=None):
        tally.add(category.__name__, str(message), filename, lineno)
        tmp = path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(tally.kinds))
            os.replace(tmp, path)

    warnings.showwarning = show
