"""Per-model caches: everything a metric needs that depends on one representation only.

An M x M alignment matrix then costs M calls to :func:`prepare` (one exact kNN search each, the
expensive part) plus M^2 cheap combines (``MetricSpec.from_cache``), each O(N k) or O(N D^2).

Extending the cache (for other metric modules): put per-model quantities in ``cache.extras`` under a
namespaced key and compute them lazily with :meth:`ModelCache.memo`::

    def _row_sums(cache):            # e.g. Euclidean distance row sums for distance correlation
        return cache.memo(("dcor", "row_sums"), lambda: compute_row_sums(cache.features))

Keys are any hashable (use a tuple starting with the module name); values are whatever the metric
needs. ``memo`` computes once per cache and returns the stored value afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ._knn import knn_graph
from ._validate import check_array, check_positive_int
from .normalize import normalize as _normalize

__all__ = ["ModelCache", "prepare"]


@dataclass
class ModelCache:
    """Cached, one-model quantities for fast pair metrics (built by :func:`prepare`).

    Attributes
    ----------
    features : ndarray, shape (n_samples, n_features)
        The representation after normalisation (float32 input stays float32, otherwise float64).
    normalize : str
        Normalisation applied to ``features`` (``"l2"``, ``"max"``, ``"clamp95"`` or ``"none"``).
    knn_indices : ndarray of int32, shape (n_samples, k_max) or None
        Exact inner-product neighbours of each row (self excluded), best first, ties by lower index.
    knn_values : ndarray of float64, shape (n_samples, k_max) or None
        The inner products ``<x_i, x_j>`` for ``knn_indices``.
    mean : ndarray of float64, shape (n_features,)
        Column means of ``features``.
    name : str or None
        Model name (for tables and messages).
    extras : dict
        Lazily computed quantities keyed by tuples (see :meth:`memo`); free for any metric module.
    """

    features: np.ndarray
    normalize: str
    knn_indices: np.ndarray | None
    knn_values: np.ndarray | None
    mean: np.ndarray
    name: str | None = None
    extras: dict[Hashable, Any] = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.features.shape[0])

    @property
    def d(self) -> int:
        """Number of features."""
        return int(self.features.shape[1])

    @property
    def k_max(self) -> int:
        """Largest neighbour count cached (0 when no kNN graph is cached)."""
        return 0 if self.knn_indices is None else int(self.knn_indices.shape[1])

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """Return ``extras[key]``, computing and storing it with ``compute()`` the first time."""
        if key not in self.extras:
            self.extras[key] = compute()
        return self.extras[key]

    def knn(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The first ``k`` cached neighbours: ``(indices (N, k) int32, inner products (N, k) float64)``.

        Extends the cached graph (one new search) when ``k > k_max``.
        """
        k = check_positive_int(k, "k", minimum=1, maximum=self.n - 1)
        if k > self.k_max:
            self.knn_indices, self.knn_values = knn_graph(self.features, k=k, metric="ip")
        return self.knn_indices[:, :k], self.knn_values[:, :k]

    def centered64(self) -> np.ndarray:
        """Column-centred features in float64 (cached; O(N D) memory)."""
        return self.memo(("cka", "centered64"), lambda: self.features.astype(np.float64) - self.mean)


def prepare(
    X,
    *,
    k_max: int | None = 25,
    normalize: str | None = "l2",
    name: str | None = None,
) -> ModelCache:
    """Build the per-model cache used by :func:`pairwise` and the metrics' ``from_cache`` paths.

    Parameters
    ----------
    X : array_like, shape (n_samples, n_features)
        One model's representation of the samples.
    k_max : int or None
        Neighbours to cache (one exact inner-product kNN search). Clipped to ``n_samples - 1``;
        ``None`` or 0 skips the search (kNN metrics then search on first use).
    normalize : {"l2", "max", "clamp95", "none", None}
        Row normalisation applied first (see :func:`matteralign.metrics.normalize`) and recorded.
    name : str, optional
        Model name used in error messages.

    Returns
    -------
    ModelCache
        Normalised features, the kNN graph up to ``k_max``, column means and an ``extras`` slot.

    Notes
    -----
    Cost: one exact kNN search, O(N^2 D) time and O(B N) memory, plus O(N D). Everything else is computed
    lazily and memoised in ``extras`` by the metrics that need it.
    """
    label = name or "X"
    arr = check_array(X, label)
    feats = _normalize(arr, method=normalize, name=label)
    method = "none" if normalize is None else normalize
    if not (feats != feats[0]).any():
        raise InputError(f"all {feats.shape[0]} rows of {label} are identical after {method!r} normalisation.")
    cache = ModelCache(
        features=feats,
        normalize=method,
        knn_indices=None,
        knn_values=None,
        mean=feats.mean(axis=0, dtype=np.float64),
        name=name,
    )
    if k_max:
        k_max = check_positive_int(k_max, "k_max", minimum=1)
        cache.knn(min(k_max, cache.n - 1))
    return cache
