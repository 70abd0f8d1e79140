"""The metric registry: one :class:`MetricSpec` per measure, in :data:`METRICS`.

A metric is a function of arrays plus an honest description of its properties. The
registry-wide property tests (``tests/metrics/test_properties.py``) check every claim
made here (symmetry, bounds, invariances, self-similarity) for every registered metric,
so a new metric is one new module plus one :func:`register` call.

Third-party metrics register through the entry-point group ``matteralign.metrics``; the
entry point must name a :class:`MetricSpec` (or a callable returning one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, UnknownNameError

__all__ = ["MetricSpec", "METRICS", "register", "get_metric", "INVARIANCES"]

#: Transformations a metric may claim invariance to. Each is applied to one argument
#: (``X``) unless it says "joint".
INVARIANCES = frozenset(
    {
        "orthogonal",  # X -> X Q, Q orthogonal
        "isotropic_scale",  # X -> c X, c > 0
        "translation",  # X -> X + v
        "feature_permutation",  # X -> X[:, perm]
        "sample_permutation",  # (X, Y) -> (X[perm], Y[perm]) jointly
    }
)


@dataclass(frozen=True)
class MetricSpec:
    """Description of one registered measure.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"cknna"``.
    function : callable
        ``function(X, Y, **params) -> float`` for pair metrics (``arity=2``) or
        ``function(X, **params) -> float`` for single-representation measures (``arity=1``).
        Computes on the arrays as given (no normalisation): for a public function ``f`` with a
        ``normalize`` parameter it is ``f`` with ``normalize=None`` bound (``normalize.as_given``).
    symmetric : bool
        ``function(X, Y) == function(Y, X)``.
    bounds : (float, float)
        Closed range of values (``-inf``/``inf`` where unbounded).
    higher_is_better : bool or None
        Direction of agreement; ``None`` for measures that are not similarities (e.g. intrinsic dimension).
    invariances : frozenset of str
        Subset of :data:`INVARIANCES` that the metric honours exactly.
    reference : str
        Where the definition comes from (arXiv id / DOI and the reference implementation).
    params : mapping
        Default keyword-only parameters (e.g. ``{"k": 25}``); recorded with every number.
    arity : int
        2 for pair metrics, 1 for measures of a single representation.
    self_value : float or None
        Value of ``function(X, X)`` when exactly known (e.g. 1.0); ``None`` if it depends on the data.
    from_cache : callable, optional
        ``from_cache(cache_x, cache_y, **params) -> float`` computing the metric from two per-model
        caches (:func:`matteralign.metrics.prepare`) in O(N k) or O(D^2); used by ``pairwise``.
    from_caches_all : callable, optional
        ``from_caches_all(caches, **params) -> ndarray (M, M)``: all pairs at once (stacked passes).
    null_from_cache : callable, optional
        ``null_from_cache(cache_x, cache_y, perm, **params) -> float``: the metric with the rows of
        ``Y`` permuted by ``perm``, computed cheaply (e.g. relabelling cached neighbour indices).
    null_kernel : callable, optional
        ``null_kernel(cache, **params) -> ndarray (N, N)``: a per-model matrix ``M`` (commuting with row
        permutations: ``M(Y[pi]) = M(Y)[pi][:, pi]``) such that the metric is
        ``null_ratio(<M_x, M_y>, <M_x, M_x>, <M_y, M_y>, n=N, **params)``; the permutation null then costs
        O(N^2) per permutation (:mod:`matteralign.metrics.calibration`).
    null_ratio : callable, optional
        The combine of ``null_kernel`` (see above).
    null_factor : callable, optional
        ``null_factor(cache, **params) -> ndarray (N, D)``: a factor ``F`` of the kernel,
        ``null_kernel(cache) = F F^T`` (linear CKA: the centred features). Then
        ``<M_x, M_y[pi][:, pi]> = ||F_x^T F_y[pi]||_F^2``, O(N D_x D_y) per pair and permutation with no
        N x N matrix; the calibration takes this route when it costs less than the kernel route.
    null_max_n : int, optional
        Largest number of samples for the null routes of this metric; above it the null is computed on a
        seeded subset of this size (recorded with the number). ``None``: no limit.
    needs : frozenset of str
        What the per-model cache must hold for ``from_cache``: ``"knn"``, ``"features"``, ...
    description : str
        One line for ``matteralign list metrics``.
    """

    name: str
    function: Callable[..., float]
    symmetric: bool
    bounds: tuple[float, float]
    higher_is_better: bool | None
    invariances: frozenset[str]
    reference: str
    params: Mapping[str, Any] = field(default_factory=dict)
    arity: int = 2
    self_value: float | None = None
    from_cache: Callable[..., float] | None = None
    from_caches_all: Callable[..., Any] | None = None
    null_from_cache: Callable[..., float] | None = None
    null_kernel: Callable[..., Any] | None = None
    null_ratio: Callable[..., float] | None = None
    null_factor: Callable[..., Any] | None = None
    null_max_n: int | None = None
    needs: frozenset[str] = frozenset()
    description: str = ""

    def __post_init__(self):
        unknown = set(self.invariances) - INVARIANCES
        if unknown:
            raise InputError(f"metric {self.name!r} claims unknown invariances {sorted(unknown)}; "
                             f"known: {sorted(INVARIANCES)}")
        if self.arity not in (1, 2):
            raise InputError(f"metric {self.name!r}: arity must be 1 or 2; got {self.arity}")


#: Every registered metric, by name.
METRICS: dict[str, MetricSpec] = {}


def register(spec: MetricSpec, *, replace: bool = False) -> MetricSpec:
    """Add ``spec`` to :data:`METRICS` and return it."""
    if spec.name in METRICS and not replace:
        raise InputError(f"a metric named {spec.name!r} is already registered; pass replace=True to override")
    METRICS[spec.name] = spec
    return spec


_entry_points_loaded = False


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="matteralign.metrics"):
        obj = ep.load()
        spec = obj() if callable(obj) and not isinstance(obj, MetricSpec) else obj
        if isinstance(spec, MetricSpec) and spec.name not in METRICS:
            register(spec)


def get_metric(name: str) -> MetricSpec:
    """Return the spec registered under ``name`` (raises :class:`UnknownNameError` with close matches)."""
    if name not in METRICS:
        _load_entry_points()
    try:
        return METRICS[name]
    except KeyError:
        raise UnknownNameError("metric", name, METRICS) from None
