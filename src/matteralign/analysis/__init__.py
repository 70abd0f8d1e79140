"""Analyses of a study: each module registers one ``run(ctx) -> AnalysisResult``.

Importing this package imports nothing heavy; :func:`_load_all` imports the analysis
modules (which import matplotlib etc. lazily inside ``run``).
"""

from __future__ import annotations

import importlib

from .base import (
    ANALYSES,
    AnalysisContext,
    AnalysisResult,
    Embedding,
    analysis_options,
    get_analysis,
    register_analysis,
)

__all__ = ["ANALYSES", "AnalysisContext", "AnalysisResult", "Embedding", "analysis_options", "get_analysis",
           "register_analysis"]

#: Analysis modules in report order.
_MODULES = [
    "matrix",
    "calibration",
    "layers",
    "ksweep",
    "tree",
    "dimension",
    "imbalance",
    "ood",
    "probes",
    "transfer",
    "maps",
    "convergence",
    "findings",
]


def _load_all() -> None:
    for mod in _MODULES:
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{mod}":
                raise
