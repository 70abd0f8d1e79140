"""Sample and label helpers shared by the probe, transfer, map and convergence analyses.

Nothing heavy is imported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from ..samples import Dataset
    from .base import AnalysisContext, Embedding

__all__ = ["physical_labels", "sample_subset", "rows_for", "composition_of", "label_values"]

#: Label prefixes that are bookkeeping flags, not physical quantities.
_FLAG_PREFIXES = ("has_", "is_", "flag_")


def physical_labels(dataset: Dataset, params: dict[str, Any], *, min_values: int = 10) -> list[str]:
    """Labels to analyse: ``params["labels"]`` when given (those present), else every label with at least
    ``min_values`` finite values and non-zero variance, minus flags (``has_*``) and ``params["exclude_labels"]``.
    """
    present = dataset.label_names()
    wanted = params.get("labels")
    if wanted is not None:
        if isinstance(wanted, str) or not isinstance(wanted, Sequence):
            raise ConfigError(f"analysis parameter labels must be a list of label names; got {wanted!r}")
        names = [w for w in wanted if w in present]
    else:
        names = [p for p in present if not p.startswith(_FLAG_PREFIXES)]
    excl = set(params.get("exclude_labels") or ())
    out = []
    for name in names:
        if name in excl:
            continue
        v = dataset.labels(name)
        v = v[np.isfinite(v)]
        if v.size >= min_values and float(np.ptp(v)) > 0.0:
            out.append(name)
    return out


def sample_subset(dataset: Dataset, max_samples: int | None, seed: int) -> list[str]:
    """Ids of a seeded random subset (dataset order) of at most ``max_samples`` samples."""
    if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 10):
        raise ConfigError(
            f"analysis parameter max_samples must be an integer ≥ 10 or null; got {max_samples!r}"
        )
    return dataset.subsample(max_samples, seed=seed).ids


def rows_for(emb: Embedding, ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The ids of ``ids`` that ``emb`` embedded (in ``ids`` order) and their rows as float64."""
    have = set(emb.ids)
    keep = [i for i in ids if i in have]
    if not keep:
        return [], np.zeros((0, emb.X.shape[1]))
    return keep, np.asarray(emb.aligned(keep), dtype=np.float64)


def label_values(dataset: Dataset, ids: Sequence[str], name: str) -> np.ndarray:
    """Label ``name`` for ``ids`` (NaN where missing or non-finite)."""
    v = np.array([dataset.by_id(i).labels.get(name, np.nan) for i in ids], dtype=float)
    v[~np.isfinite(v)] = np.nan
    return v


def composition_of(dataset: Dataset, ids: Sequence[str], *, kind: str = "counts") -> np.ndarray | None:
    """Element counts (or fractions) of the samples' 3D structures; None when a sample has no structure."""
    from ..probes import composition_matrix

    structs = [dataset.by_id(i).atoms for i in ids]
    if not structs or any(s is None for s in structs):
        return None
    return composition_matrix(structs, kind=kind)[0]


def embedded_models(ctx: AnalysisContext, dataset: str) -> list[str]:
    """Models with an embedding of ``dataset``, ordered (controls last, family, name)."""
    from ._common import order_models

    return order_models(ctx.models, ctx.embeddings.get(dataset, {}).keys())


def select_models(ctx: AnalysisContext, names, max_models: int | None) -> list[str]:
    """At most ``max_models`` of ``names``: interatomic potentials first, then other models, then controls;
    within each tier families take turns (so every family is represented before any has two members).
    ``None`` keeps all, in that order."""
    from ._common import family_of, is_control, is_mlip

    names = sorted(set(names))
    tiers: list[list[str]] = [[], [], []]
    for m in names:
        meta = ctx.models.get(m)
        tiers[2 if is_control(meta) else (0 if is_mlip(meta) else 1)].append(m)
    out: list[str] = []
    for tier in tiers:
        fams: dict[str, list[str]] = {}
        for m in tier:
            fams.setdefault(family_of(ctx.models, m), []).append(m)
        queues = [fams[f] for f in sorted(fams)]
        while any(queues):
            for q in queues:
                if q:
                    out.append(q.pop(0))
    return out if max_models is None else out[: int(max_models)]
