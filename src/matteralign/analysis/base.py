"""The contract between the study runner and the analyses.

An analysis is a function ``run(ctx: AnalysisContext) -> AnalysisResult`` registered in
:data:`ANALYSES`. It reads pooled embeddings, labels and the tidy metric tables from the
context, writes its figures into ``ctx.out_dir`` and returns tables plus computed findings
(sentences whose numbers come from the tables). The report renders results in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UnknownNameError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..samples import Dataset

__all__ = ["AnalysisContext", "AnalysisResult", "ANALYSES", "READS_RESULTS", "register_analysis", "get_analysis",
           "Embedding"]


@dataclass
class Embedding:
    """Pooled representation of one dataset by one model (one layer).

    ``ids[i]`` is the sample id of row ``i`` of ``X`` (float32, shape (n, d)).
    """

    ids: list[str]
    X: np.ndarray
    layer: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    #: Every extracted layer of the model, in forward order (this one included), when the study extracts
    #: more than one (``[layers] model = "all"`` or a list); empty otherwise. Read by the ``layers`` analysis.
    layers: dict[str, Embedding] = field(default_factory=dict)

    def aligned(self, ids: list[str]) -> np.ndarray:
        """Rows for ``ids`` in that order (all must be present)."""
        pos = {s: i for i, s in enumerate(self.ids)}
        return self.X[[pos[s] for s in ids]]


@dataclass
class AnalysisContext:
    """Everything an analysis may read.

    Attributes
    ----------
    out_dir : Path
        Folder for this analysis' figures (created by the runner).
    datasets : dict
        Dataset name -> :class:`~matteralign.samples.Dataset` (the sampled subset, with labels).
    embeddings : dict
        Dataset name -> model name -> :class:`Embedding` (pooled, normalisation NOT applied).
    models : dict
        Model name -> metadata: ``family`` (str), ``embedding_type`` (invariant | equivariant | vanilla |
        descriptor | text | random), ``n_params`` (int or None), ``modality``, ``control`` (bool).
    pairs : pandas.DataFrame
        Tidy pair results: dataset, model_a, model_b, metric, params (JSON), n, value, p_value,
        ci_low, ci_high, normalize.
    per_model : pandas.DataFrame
        Tidy single-model results: dataset, model, metric, params, n, value.
    energies : dict
        Dataset name -> model name -> (ids, predicted energy per structure in eV) for models that predict
        energies; the reference energies are labels of the dataset (e.g. ``energy_xtb_ev``).
    params : dict
        This analysis' parameters from the study file.
    normalize : str
        Normalisation applied before the metrics ("l2", "max", "clamp95" or "none").
    seed : int
    results : dict
        Results of the analyses that ran before this one, by name (the findings read them).
    """

    out_dir: Path
    datasets: dict[str, Dataset]
    embeddings: dict[str, dict[str, Embedding]]
    models: dict[str, dict[str, Any]]
    pairs: pd.DataFrame
    per_model: pd.DataFrame
    energies: dict[str, dict[str, tuple[list[str], np.ndarray]]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    normalize: str = "l2"
    seed: int = 0
    results: dict[str, AnalysisResult] = field(default_factory=dict)


@dataclass
class AnalysisResult:
    """What an analysis hands to the report.

    Attributes
    ----------
    name : str
        Registry name (also the report section anchor).
    title : str
        Section title.
    summary : str
        One or two paragraphs of plain text explaining what is shown and how to read it.
    figures : list of Path
        Image files (PNG/SVG) written under ``ctx.out_dir``, in display order.
    tables : dict of str -> DataFrame
        Tables to show (and to save as CSV/parquet by the runner).
    findings : list of str
        Computed statements whose numbers come from ``tables`` (e.g. "CKNNA of random vs every model
        is at most 0.02"). Each must be true of the data by construction.
    files : list of Path
        Other artefacts (e.g. a Newick tree file).
    captions : dict of str -> str
        Caption of each figure, keyed by the figure's file name (what it shows, on which samples, how
        to read it); the report falls back to the section title and the file name.
    """

    name: str
    title: str
    summary: str = ""
    figures: list[Path] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    captions: dict[str, str] = field(default_factory=dict)


#: Registered analyses: name -> ``run(ctx) -> AnalysisResult``. Order = report order.
ANALYSES: dict[str, Callable[[AnalysisContext], AnalysisResult]] = {}


#: Options each analysis reads from its ``[analyses.NAME]`` table (None: not declared, not checked).
ANALYSIS_OPTIONS: dict[str, frozenset[str] | None] = {}


#: Analyses that read other analyses' results (``ctx.results``): they run after all the others.
READS_RESULTS: set[str] = set()
#: Relative cost of each analysis (a scheduling hint: the costly ones start first, so that the stage is not
#: left waiting on one long analysis started last).
ANALYSIS_COST: dict[str, float] = {}


def register_analysis(name: str, *, options: Iterable[str] | None = None, reads_results: bool = False,
                      cost: float = 1.0):
    """Decorator registering ``run(ctx)`` under ``name``.

    Parameters
    ----------
    name : str
    options : iterable of str, optional
        The option names the analysis reads from ``ctx.params``; a study giving any other option is
        refused before any work. ``None`` (third-party analyses that do not declare them) skips the check.
    reads_results : bool
        The analysis reads ``ctx.results`` (the results of the analyses that run before it); it then
        runs after every analysis that does not, which otherwise run side by side.
    cost : float
        Its cost relative to a typical analysis (1); analyses that run side by side start in decreasing
        cost.
    """

    def deco(fn):
        ANALYSES[name] = fn
        ANALYSIS_OPTIONS[name] = None if options is None else frozenset(options)
        ANALYSIS_COST[name] = float(cost)
        if reads_results:
            READS_RESULTS.add(name)
        else:
            READS_RESULTS.discard(name)
        return fn

    return deco


def analysis_options(name: str) -> frozenset[str] | None:
    """The options analysis ``name`` declares (``None`` when it declares none)."""
    get_analysis(name)
    return ANALYSIS_OPTIONS.get(name)


def get_analysis(name: str) -> Callable[[AnalysisContext], AnalysisResult]:
    """The analysis registered under ``name``."""
    from . import _load_all

    _load_all()
    try:
        return ANALYSES[name]
    except KeyError:
        raise UnknownNameError("analysis", name, ANALYSES) from None
