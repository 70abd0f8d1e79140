"""The analyse stage as units: one :class:`~matteralign.execute.units.CallUnit` per analysis.

:func:`run_analysis` is pure in the sense the executors need: the context travels with the unit, the
analysis writes its figures into a private temporary folder, and the figures come back *as bytes* with
the result, so the driver writes them (:func:`place_files`) — a worker never writes the study's folder,
and an analysis runs the same on a Ray node without a shared filesystem. Analyses that do not read other
analyses' results run side by side; those that do (``reads_results`` at registration, e.g. the
findings) run after them.

A failing analysis does not stop the others: its unit returns the error text instead of a result (a
:class:`~matteralign.errors.MatterAlignError`'s message, or the traceback of a bug), and the report
shows it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["run_analysis", "place_files"]


def run_analysis(name: str, ctx_fields: dict[str, Any]) -> dict[str, Any]:
    """Run analysis ``name`` on an :class:`~matteralign.analysis.AnalysisContext` built from ``ctx_fields``
    (every field but ``out_dir``).

    Returns
    -------
    dict
        ``result`` (the :class:`~matteralign.analysis.AnalysisResult`, its figure and file paths relative
        to the analysis folder, or ``None``), ``files`` (relative path → bytes of everything it wrote),
        ``error`` (``None``, or ``(kind, text)`` with kind ``"user"`` for a MatterAlignError and ``"bug"``
        for any other exception) and ``seconds``.
    """
    from ..analysis import AnalysisContext, get_analysis
    from ..errors import MatterAlignError

    tmp = Path(tempfile.mkdtemp(prefix=f"matteralign-analysis-{name}-"))
    out_dir = tmp / "figures"
    out_dir.mkdir()
    t0 = time.perf_counter()
    try:
        try:
            res = get_analysis(name)(AnalysisContext(out_dir=out_dir, **ctx_fields))
        except MatterAlignError as exc:
            return {"result": None, "files": {}, "error": ("user", str(exc)), "seconds": time.perf_counter() - t0}
        except Exception:  # an analysis bug must not lose the other results; the report shows it
            return {"result": None, "files": {}, "error": ("bug", traceback.format_exc()),
                    "seconds": time.perf_counter() - t0}
        seconds = time.perf_counter() - t0
        files = {}
        for root, _dirs, names in os.walk(out_dir):
            for fname in names:
                path = Path(root) / fname
                files[path.relative_to(out_dir).as_posix()] = path.read_bytes()
        if res is not None:
            res.figures = [_relative(p, out_dir) for p in res.figures]
            res.files = [_relative(p, out_dir) for p in res.files]
        return {"result": res, "files": files, "error": None, "seconds": seconds}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _relative(path, out_dir: Path) -> Path:
    """``path`` relative to ``out_dir`` when it lies there (as the analysis wrote it), else unchanged."""
    p = Path(path)
    try:
        return p.resolve().relative_to(out_dir.resolve())
    except ValueError:
        return p


def place_files(reply: dict[str, Any], fig_dir: Path):
    """Write the files of a :func:`run_analysis` reply under ``fig_dir`` (atomically each) and return its
    result with figure and file paths under ``fig_dir``."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    for rel, data in reply["files"].items():
        dest = fig_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    res = reply["result"]
    if res is not None:
        res.figures = [p if Path(p).is_absolute() else fig_dir / p for p in res.figures]
        res.files = [p if Path(p).is_absolute() else fig_dir / p for p in res.files]
    return res
