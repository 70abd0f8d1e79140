"""Alignment metrics: pure functions of arrays, a registry of their properties, and engines.

Every public function takes arrays of shape ``(n_samples, n_features)`` and keyword-only
options. One normalisation rule holds everywhere: the functions, :func:`prepare`, :func:`pairwise`,
``matteralign compare`` and the study L2-normalise the rows first (``normalize="l2"``, recorded with each
number); ``normalize=None`` computes on the arrays as given. A registered ``MetricSpec.function`` is
the as-given form (the pipeline normalises once per model before calling it).
"""

from __future__ import annotations

from ._cache import ModelCache, prepare
from ._knn import knn_graph
from ._registry import INVARIANCES, METRICS, MetricSpec, get_metric, register
from .cka import cka, unbiased_cka
from .dcor import distance_correlation, distance_correlation_matrix
from .geometry import pairwise_geometry
from .idcor import IdCorResult, id_correlation
from .imbalance import (
    ImbalanceEstimate,
    information_imbalance,
    information_imbalance_matrix,
    information_imbalance_subsets,
)
from .intrinsic_dim import intrinsic_dimension
from .knn import cknna, cycle_knn, mutual_knn
from .normalize import normalize
from .pairwise import pairwise, to_matrix
from .significance import PermutationResult, SubsampleResult, permutation_test, subsample_ci

__all__ = ["METRICS", "MetricSpec", "register", "get_metric", "INVARIANCES"]
__all__ += ["ModelCache", "prepare", "knn_graph", "normalize", "cknna", "cycle_knn", "mutual_knn"]
__all__ += ["cka", "unbiased_cka", "pairwise", "to_matrix"]
__all__ += ["distance_correlation", "distance_correlation_matrix", "intrinsic_dimension", "id_correlation"]
__all__ += ["IdCorResult", "information_imbalance", "information_imbalance_subsets", "information_imbalance_matrix"]
__all__ += ["ImbalanceEstimate", "pairwise_geometry"]
__all__ += ["permutation_test", "subsample_ci", "PermutationResult", "SubsampleResult"]
