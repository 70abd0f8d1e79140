"""Distance correlation and information imbalance of every pair of models in one streamed pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ._blocked import check_precision, distance_sums, exact_knn_l2, prepare_workspace
from ._validate import check_k
from .dcor import _check_many, _ratio
from .imbalance import imbalance_counter, imbalance_from_counter
from .normalize import rows_many as _rows_many

__all__ = ["pairwise_geometry"]


def pairwise_geometry(
    reps: Mapping[str, object] | Sequence,
    *,
    k: int = 1,
    precision: str = "float64",
    block_rows: int | None = None,
    normalize: str | None = "l2",
) -> dict[str, np.ndarray]:
    """dCor, dCor², bias-corrected dCor² and information imbalance for all ``M x M`` pairs, one pass.

    Each block of rows computes every model's distance block once (one GEMM per model); the block
    feeds both the stacked-Gram accumulation of all ``S_mn = sum_ij a^m_ij a^n_ij`` (one ``M x M``
    GEMM) and the rank counts of every ordered pair for the information imbalance. ``M`` models
    therefore cost about ``M`` distance passes plus ``M`` exact kNN searches, not ``M^2`` pair passes.

    Parameters
    ----------
    reps : mapping of name -> array (n_samples, d_m), or a sequence of arrays
        Representations of the same samples (same row order), normalised by ``normalize``.
    k : int
        Neighbours for the information imbalance.
    precision : {"float64", "float32"}
        Precision of the distance GEMMs (sums are float64; imbalance ranks are exact either way).
    block_rows : int, optional
        Rows per block.
    normalize : {"l2", "max", "clamp95", "none"} or None
        Row normalisation applied to each representation first. Default ``"l2"``, the one rule of every metric
        function, :func:`~matteralign.metrics.pairwise`, ``matteralign compare`` and the study (see
        :func:`~matteralign.metrics.normalize`); ``None`` computes on the arrays as given.

    Returns
    -------
    dict
        ``"names"`` (list of str), ``"dcor"``, ``"dcor2"``, ``"dcor2_unbiased"`` (symmetric ``(M, M)``)
        and ``"information_imbalance"`` (``[m, n] = Δ(m → n)``), each equal to the single-pair
        functions of :mod:`matteralign.metrics`.
    """
    reps = _rows_many(reps, normalize)
    check_precision(precision)
    if isinstance(reps, Mapping):
        names = [str(n) for n in reps]
        reps = list(reps.values())
    else:
        names = [str(i) for i in range(len(reps))]
    arrays = _check_many(reps, min_samples=4)
    n = arrays[0].shape[0]
    k = check_k(k, n)
    m = len(arrays)
    workspaces = [prepare_workspace(a, precision=precision) for a in arrays]
    nn = {i: exact_knn_l2(arrays[i], k, ws=workspaces[i])[1] for i in range(m)}
    pairs = [(a, b) for a in range(m) for b in range(m)]
    counter = imbalance_counter(workspaces, nn, pairs)
    sums = distance_sums(workspaces, block_rows=block_rows, on_block=counter)
    v = _ratio(sums.dcov2())
    return {
        "names": names,
        "dcor": np.sqrt(np.clip(v, 0.0, None)),
        "dcor2": v,
        "dcor2_unbiased": _ratio(sums.dcov2(unbiased=True)),
        "information_imbalance": imbalance_from_counter(counter, pairs, m),
    }
