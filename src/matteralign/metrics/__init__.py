"""Alignment metrics: pure functions of arrays, a registry of their properties, and engines.

Every public function takes arrays of shape ``(n_samples, n_features)`` and keyword-only
options, and computes on the arrays **as given**; normalisation is applied by the
pipeline (:func:`normalize`) and recorded with each number.
"""

from __future__ import annotations

from ._registry import INVARIANCES, METRICS, MetricSpec, get_metric, register

__all__ = ["METRICS", "MetricSpec", "register", "get_metric", "INVARIANCES"]
